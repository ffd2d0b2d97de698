"""The per-version row in the ``Pipeline`` table: the stage a version reached, saved ETag-guarded, and the alert of a
terminal stage, queued in the same write (an outbox) and sent from there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from shared.core import alerts
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import iso, parse_iso
from shared.core.context import AppContext
from shared.core.state import PIPELINE, ConcurrencyConflict, Record
from shared.pipeline.snapshot_sets import SnapshotSetKey


class Stage(StrEnum):
    """Stages, in order. "refused" and "failed" are terminal until the set changes (new snapshots)."""

    ASSEMBLING = "assembling"
    VALIDATED = "validated"
    IMAGE_REQUESTED = "image-requested"
    VERSION_REQUESTED = "version-requested"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


TERMINAL = (Stage.DONE, Stage.REFUSED, Stage.FAILED)


@dataclass(frozen=True)
class Outcome:
    stage: str
    detail: str = ""


def load_stage(context: AppContext, key: SnapshotSetKey) -> Record | None:
    return context.state.table(PIPELINE).get(key.partition_key, key.row_key)


def save_stage(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, **extra: str) -> Record:
    data = dict(row.data) if row else {}
    data.pop("released", None)
    data.update(extra)
    data.update({"stage": str(stage), "updatedAt": iso(context.clock.now())})
    saved = context.state.table(PIPELINE).save(key.partition_key, key.row_key, data, expected=row)
    if stage in TERMINAL:
        from shared.pipeline.set_membership import mark_open

        mark_open(context, key, False)  # finished: the sweep reads it no more (its rows wait for expiry)
    return saved


def finish_stage_only(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, detail: str,
                       alert: Alert | None) -> Record:
    """Reach a terminal stage and queue its alert in the same row write (an outbox): the alert goes out even when
    sending fails now, from the redelivered event or the sweep, and never twice (the alerts table de-duplicates)."""
    if alert is None:
        return save_stage(context, key, row, stage, detail=detail)
    return save_stage(context, key, row, stage, detail=detail,
                       outbox=json.dumps(_alert_json(alert), separators=(",", ":")))


def finish(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, detail: str,
            alert: Alert | None) -> Record:
    return flush_outbox(context, finish_stage_only(context, key, row, stage, detail, alert))


def flush_outbox(context: AppContext, row: Record) -> Record:
    raw = row.data.get("outbox")
    if not raw:
        return row
    alert = _alert_from_json(json.loads(raw))
    sent = AlertPublisher(context).publish(alert)  # raises when the topic refuses: the row keeps the outbox
    # False means "already sent", or "another instance claimed it moments ago" (the alerts table hands a
    # claim over once it is STALE_CLAIM old): keep the outbox until that can no longer be the case.
    if sent or context.clock.now() - alert.occurred_at >= alerts.STALE_CLAIM:
        data = {k: v for k, v in row.data.items() if k != "outbox"}
        try:
            return context.state.table(PIPELINE).replace(row, data)
        except ConcurrencyConflict:
            return row  # someone else flushed (or reopened) it
    return row


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {"type": alert.type, "severity": alert.severity, "subject": alert.subject, "title": alert.title,
            "diagnosis": alert.diagnosis,
            "fix": alert.fix, "dedupe": alert.dedupe_key, "at": iso(alert.occurred_at), "details": alert.details,
            "repeatAfter": alert.repeat_after.total_seconds() if alert.repeat_after is not None else None}


def _alert_from_json(data: dict[str, Any]) -> Alert:
    occurred = parse_iso(data["at"])
    assert occurred is not None
    repeat = data.get("repeatAfter")
    return Alert(data["type"], data["severity"], data["subject"], data["title"], data["diagnosis"], data["fix"],
                 data["dedupe"], occurred,
                 dict(data.get("details") or {}), repeat_after=timedelta(seconds=float(repeat)) if repeat else None)


def publish_alert(context: AppContext, kind: str, subject: str, title: str, diagnosis: str, fix: str, *, dedupe: str,
           severity: str = alerts.SEVERITY_WARNING, details: dict[str, Any] | None = None) -> None:
    AlertPublisher(context).publish(Alert(kind, severity, subject, title, diagnosis, fix, dedupe, context.clock.now(),
                                          details or {}))


def provisioning_state(resource: dict[str, Any] | None) -> str:
    return str(((resource or {}).get("properties") or {}).get("provisioningState") or "").lower()
