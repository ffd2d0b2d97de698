"""The CLI's output schemas are JSON files (autopilot/schemas/), valid JSON Schema, whose version constants are the
ones the code writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from autopilot import report, status

SCHEMAS = Path(__file__).resolve().parents[2] / "autopilot" / "schemas"


@pytest.mark.parametrize(("name", "loaded", "key", "version"), [
    ("status", status.STATUS_SCHEMA, "statusVersion", status.STATUS_VERSION),
    ("plan", status.PLAN_SCHEMA, "planVersion", status.PLAN_VERSION),
    ("reconcile", status.RECONCILE_SCHEMA, "reconcileVersion", status.RECONCILE_VERSION),
    ("report", report.REPORT_SCHEMA, "reportVersion", report.REPORT_VERSION),
])
def test_each_schema_is_a_file_with_the_codes_version(name: str, loaded: dict, key: str, version: int) -> None:
    on_disk = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(on_disk)
    assert loaded == on_disk
    assert on_disk["properties"][key] == {"const": version}
