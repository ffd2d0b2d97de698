"""The reliability suite's figures: printed at the end of the run and written to out/reliability/summary.json.

Every test counts what it ran (hypothesis examples, seeds, rounds), what it injected (faults) and each
invariant check that held, in :data:`tests.reliability.harness.LEDGER`; this file reports them once the
session ends. ``make chaos`` (``AUTOPILOT_CHAOS=long``) runs the same tests with about ten times the cases.
"""

from __future__ import annotations

from typing import Any

import pytest

from .harness import CHAOS, LEDGER, dump

_outcomes: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}
_seconds = 0.0  # time spent in the reliability tests (setup, call and teardown), whatever else the session ran


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _seconds
    if "tests/reliability/" not in report.nodeid.replace("\\", "/"):
        return
    _seconds += report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def _summary() -> dict[str, Any]:
    return {**LEDGER.summary(), "tests": dict(_outcomes), "seconds": round(_seconds, 1),
            "command": "make chaos" if CHAOS else "make test  (or: .venv/bin/pytest tests/reliability)"}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    summary = _summary()
    if not summary["cases"]:
        return  # the reliability tests did not run in this session (deselected)
    path = dump("summary-chaos.json" if CHAOS else "summary.json", summary)
    terminalreporter.write_sep("-", "reliability figures")
    terminalreporter.write_line(
        f"reliability ({summary['profile']}): {summary['cases']} cases, {summary['faults_injected']} faults injected, "
        f"{summary['invariant_checks_held']} invariant checks held ({len(summary['invariants'])} invariants), "
        f"tests {summary['tests']}, {summary['seconds']} s -> {path.relative_to(path.parents[2])}")
