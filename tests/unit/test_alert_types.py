"""Alert types are written once (shared/core/alerts.py) and there is one Alert class: what the watch's policy raises is
what the publisher sends."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from shared.core import alerts
from shared.core.alerts import POOL_ALERT_SEVERITY, Alert
from shared.watch.episodes import decide
from shared.watch.pool_policy import DesiredTarget, PoolView
from shared.watch.resize_errors import AlertType, parse_errors

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "/subscriptions/s/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct"
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
QUOTA = {"code": "AccountCoreQuotaReached", "message": "The specified account has reached VM core quota"}


def test_the_watch_alert_types_are_the_alerts_module_names_each_with_a_severity() -> None:
    names = {value for key, value in vars(alerts).items() if key.isupper() and isinstance(value, str)}
    assert {t.value for t in AlertType} <= names
    assert set(POOL_ALERT_SEVERITY) == {t.value for t in AlertType}


def test_a_decision_raises_the_alert_the_publisher_sends() -> None:
    view = PoolView(account_id=ACCOUNT, pool_id="render", allocation_state="steady", current_dedicated=10,
                    target_dedicated=10, resize_errors=parse_errors([QUOTA]), metadata={"autopilot.managed": "true"})
    decision = decide(view, DesiredTarget(800, 0), None, T0)
    [alert] = decision.alerts
    assert isinstance(alert, Alert) and alert.type is AlertType.QUOTA_REACHED
    assert alert.subject == f"{ACCOUNT}/pools/render" and alert.severity == alerts.SEVERITY_WARNING
    assert alert.event()["eventType"] == "BatchImageAutopilot.QuotaReached"
    assert alert.details["account"] == ACCOUNT and alert.details["desiredDedicatedNodes"] == 800


def test_no_second_alert_class_or_alert_type_spelling_in_the_app() -> None:
    classes, spellings = [], []
    types = {t.value for t in AlertType}
    for folder in ("shared", "handlers", "autopilot"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name == "Alert" and path.name != "alerts.py":
                    classes.append(str(path.relative_to(ROOT)))
                if isinstance(node, ast.Constant) and node.value in types and path.name != "alerts.py":
                    spellings.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert classes == []
    assert spellings == []
