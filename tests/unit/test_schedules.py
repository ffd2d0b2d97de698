"""Target schedules from pool metadata: parsing with clear errors, and the entry in force at a moment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.families import FamilyConfigError, families_from_dict
from shared.config.family_parts import ScheduleEntry as FamiliesEntry
from shared.watch import ncrontab
from shared.watch.schedules import (
    EXAMPLE,
    ScheduleEntry,
    ScheduleError,
    TargetSchedule,
    parse_schedule,
    target_in_force,
)

WEEKDAYS = json.dumps([{"cron": "0 0 7 * * MON-FRI", "dedicated": 800, "spot": 0},
                       {"cron": "0 0 19 * * MON-FRI", "dedicated": 50, "spot": 10}])


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_parse_the_documented_example() -> None:
    schedule = parse_schedule(EXAMPLE)
    assert [(e.cron, e.dedicated, e.spot) for e in schedule.entries] == [("0 0 7 * * MON-FRI", 800, 0),
                                                                         ("0 0 19 * * MON-FRI", 50, 0)]


@pytest.mark.parametrize(
    ("now", "dedicated", "fired"),
    [
        (at(2026, 11, 2, 6, 0), 50, at(2026, 10, 30, 19, 0)),  # Monday before 07:00: Friday evening's entry
        (at(2026, 11, 2, 7, 0), 800, at(2026, 11, 2, 7, 0)),  # on the second
        (at(2026, 11, 2, 18, 59, 59), 800, at(2026, 11, 2, 7, 0)),
        (at(2026, 11, 2, 19, 0, 1), 50, at(2026, 11, 2, 19, 0)),
        (at(2026, 11, 8, 12, 0), 50, at(2026, 11, 6, 19, 0)),  # Sunday
    ],
)
def test_target_in_force(now: datetime, dedicated: int, fired: datetime) -> None:
    in_force = target_in_force(parse_schedule(WEEKDAYS), now)
    assert in_force is not None
    assert (in_force.dedicated, in_force.fired_at) == (dedicated, fired)
    assert in_force.spot == (0 if dedicated == 800 else 10)


def test_nothing_in_force_within_the_lookback() -> None:
    yearly = parse_schedule([{"cron": "0 0 0 1 JAN *", "dedicated": 5}])
    assert target_in_force(yearly, at(2026, 11, 2)) is None
    assert target_in_force(yearly, at(2026, 1, 5)) is not None
    assert target_in_force(yearly, at(2026, 11, 2), lookback=timedelta(days=400)) is not None
    assert target_in_force(TargetSchedule(()), at(2026, 11, 2)) is None


def test_same_moment_later_entry_wins() -> None:
    s = parse_schedule([{"cron": "0 0 7 * * *", "dedicated": 1}, {"cron": "0 0 7 * * MON", "dedicated": 2}])
    assert target_in_force(s, at(2026, 11, 2, 8)).dedicated == 2  # type: ignore[union-attr]
    assert target_in_force(s, at(2026, 11, 3, 8)).dedicated == 1  # type: ignore[union-attr]


def test_aliases_and_wrappers() -> None:
    s = parse_schedule({"entries": [{"cron": "0 0 7 * * *", "lowPriority": 3}]})
    assert (s.entries[0].dedicated, s.entries[0].spot) == (0, 3)
    assert parse_schedule("[]").entries == ()
    assert parse_schedule([{"cron": " 0 0 7 * * * ", "dedicated": 2.0}]).entries[0].dedicated == 2


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("[{", "not valid JSON"),
        ('{"cron": "0 0 7 * * *"}', "JSON list"),
        ("[1]", "entry 1 must be an object"),
        ('[{"dedicated": 3}]', "entry 1 needs 'cron'"),
        ('[{"cron": "0 0 7 * * *", "dedicated": 1}, {"cron": "0 0 25 * * *", "dedicated": 1}]',
         "entry 2: NCRONTAB expression"),
        ('[{"cron": "0 0 7 * * *", "dedicated": -1}]', "between 0 and"),
        ('[{"cron": "0 0 7 * * *", "dedicated": 1.5}]', "whole number"),
        ('[{"cron": "0 0 7 * * *", "dedicated": true}]', "whole number"),
        ('[{"cron": "0 0 7 * * *", "dedicated": "10"}]', "whole number"),
        ('[{"cron": "0 0 7 * * *"}]', "needs 'dedicated' and/or 'spot'"),
        ('[{"cron": "0 0 7 * * *", "dedicted": 1}]', "unknown key(s) 'dedicted'"),
        ('[{"cron": "0 0 7 * * *", "spot": 1, "lowPriority": 1}]', "keep 'spot'"),
    ],
)
def test_errors_say_what_and_show_an_example(value: str, says: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(value)
    assert says in str(info.value)
    assert EXAMPLE in str(info.value)


def test_cron_errors_name_the_field() -> None:
    with pytest.raises(ScheduleError, match="field 'hour'"):
        parse_schedule('[{"cron": "0 0 25 * * *", "dedicated": 1}]')


crons = st.sampled_from(["0 0 7 * * MON-FRI", "0 0 19 * * MON-FRI", "0 30 */6 * * *", "0 0 0 * * SUN",
                         "0 0 12 1,15 * *", "0 */20 * * * SAT"])
entries = st.lists(st.fixed_dictionaries({"cron": crons, "dedicated": st.integers(0, 3000),
                                          "spot": st.integers(0, 1000)}), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(entries, st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_the_entry_in_force_fired_last(raw: list[dict], now: datetime) -> None:
    schedule = parse_schedule(raw)
    in_force = target_in_force(schedule, now)
    # unbounded search, independent of the lookback
    last_fires = [ncrontab.last_at_or_before(e.cron, now) for e in schedule.entries]
    if in_force is None:
        assert all(fired is None or fired < now - timedelta(days=8) for fired in last_fires)
        return
    assert now - timedelta(days=8) <= in_force.fired_at <= now
    assert ncrontab.matches(in_force.entry.cron, in_force.fired_at)
    assert all(fired is None or fired <= in_force.fired_at for fired in last_fires)
    ties = [e for e, fired in zip(schedule.entries, last_fires, strict=True) if fired == in_force.fired_at]
    assert in_force.entry == ties[-1]


# One ScheduleEntry and one entry check for the families configuration and for pool metadata.
@pytest.mark.parametrize("entry", [
    {"cron": "0 0 7 * * MON-FRI", "dedicated": 800},
    {"cron": "0 0 7 * * *", "spot": 3},
    {"cron": "0 0 7 * * *"},  # no count: refused by both (a cron alone would silently mean 0 nodes)
    {"cron": "0 0 25 * * *", "dedicated": 1},
    {"cron": "0 0 7 * * *", "dedicated": 100_001},
    {"cron": "0 0 7 * * *", "dedicated": 1.5},
    {"cron": "0 0 7 * * *", "dedicted": 1},
    {"dedicated": 1},
])
def test_families_and_pool_metadata_judge_an_entry_alike(entry: dict) -> None:
    account = ("/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/batch-rg/providers/Microsoft.Batch"
               "/batchAccounts/acct1")
    doc = {"families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": "gal", "imageDefinition": "gpu", "osType": "Linux",
                    "hyperVGeneration": "V2", "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "pools": [{"account": account, "vmSize": "Standard_D4ds_v5", "dedicated": 2, "schedule": [entry]}]}}}
    try:
        metadata = parse_schedule([entry]).entries
    except ScheduleError:
        metadata = None
    try:
        families = families_from_dict(doc).get("gpu").pools[0].schedule  # type: ignore[union-attr]
    except FamilyConfigError:
        families = None
    assert FamiliesEntry is ScheduleEntry
    assert families == metadata
    if families is not None:
        assert families[0].schedule.last_at_or_before(at(2026, 11, 3, 8)) is not None
