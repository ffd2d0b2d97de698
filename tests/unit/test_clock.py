"""Times as text: the app's stored spelling (clock.iso) and the CLI's "Z" spelling (clock.iso_z), each defined once."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from shared.core.clock import iso, iso_z, parse_iso

ROOT = Path(__file__).resolve().parents[2]
MOMENT = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_both_spellings_read_back() -> None:
    assert iso_z(MOMENT) == "2026-11-02T06:30:00Z" and iso_z(None) is None
    assert iso(MOMENT) == "2026-11-02T06:30:00+00:00"
    assert parse_iso(iso_z(MOMENT)) == parse_iso(iso(MOMENT)) == MOMENT


def test_no_other_module_defines_iso() -> None:
    defined = [str(path.relative_to(ROOT)) for folder in ("shared", "handlers", "autopilot")
               for path in (ROOT / folder).rglob("*.py") if path.name != "clock.py"
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.FunctionDef) and node.name in {"iso", "iso_z"}]
    assert defined == []
