"""One duration helper (shared/core/durations.py): every app-side reader and writer of a duration gives the same
answer."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot import scenario
from shared.config import family_parts
from shared.core import durations
from shared.watch import pool_policy

ROOT = Path(__file__).resolve().parents[2]
HOURS_26 = timedelta(hours=26)


def test_26_hours_formats_one_way_everywhere() -> None:
    assert durations.format_iso_duration(HOURS_26) == "P1DT2H"
    assert pool_policy.format_duration(HOURS_26) == "P1DT2H"  # resizeTimeout the watch writes
    view = pool_policy.PoolView.from_dict({"id": "p", "resizeTimeout": "PT26H", "metadata": []})
    assert view.resize_timeout == HOURS_26
    assert pool_policy.ResizeStep(1, 0, HOURS_26).resize_timeout_iso == "P1DT2H"
    assert durations.format_short(HOURS_26) == scenario.format_duration(HOURS_26) == "1d2h"
    for text in ("P1DT2H", "PT26H", "PT1560M", "pt26h", "PT93600S"):
        assert pool_policy.parse_duration(text) == scenario.parse_duration(text) == HOURS_26, text
    assert family_parts.parse_span("1d2h") == scenario.parse_duration("26h") == HOURS_26


def test_weeks_parse_and_months_are_refused() -> None:
    assert durations.parse_iso_duration("P1W") == pool_policy.parse_duration("P1W") == timedelta(days=7)
    assert scenario.parse_duration("P1W") == timedelta(days=7)
    for text in ("P1M", "P1Y", "P1Y2D"):
        with pytest.raises(ValueError, match="no fixed length"):
            durations.parse_iso_duration(text)
        assert pool_policy.parse_duration(text) is None


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "15M", "PTxM", "-PT1H", "1h"])
def test_what_is_not_an_iso_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 duration"):
        durations.parse_iso_duration(text)


def test_short_form_seconds_only_where_allowed() -> None:
    assert durations.parse_short("45s") == timedelta(seconds=45)
    for text in ("45s", "", "h", "90", "1x"):
        with pytest.raises(ValueError, match="not a duration"):
            durations.parse_short(text, seconds=False)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_iso_round_trip(delta: timedelta) -> None:
    assert durations.parse_iso_duration(durations.format_iso_duration(delta)) == delta


@given(st.integers(min_value=0, max_value=400 * 86400).map(lambda s: timedelta(seconds=s)))
def test_short_round_trip(delta: timedelta) -> None:
    assert durations.parse_short(durations.format_short(delta)) == delta


def test_no_other_app_module_spells_an_iso_duration_by_hand() -> None:
    """The emulator keeps its own copy (it is the oracle); the app's modules go through shared/core/durations.py."""
    hand_made = re.compile(r"f\"PT\{|re\.compile\(r\"\^P\(|\"PT\" \+")
    offenders = [str(path.relative_to(ROOT)) for folder in ("shared", "handlers", "autopilot")
                 for path in (ROOT / folder).rglob("*.py")
                 if path.name != "durations.py" and hand_made.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
