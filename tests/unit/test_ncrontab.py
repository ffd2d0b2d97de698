"""NCRONTAB parsing and search: examples from the Functions docs, errors a person can act on, and brute-force
properties."""

from __future__ import annotations

import time as wall
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.watch import ncrontab
from shared.watch.ncrontab import NcrontabError, last_at_or_before, matches, next_after, parse

MON_0600 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # a Monday


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestParse:
    def test_every_five_minutes(self) -> None:
        s = parse("0 */5 * * * *")
        assert s.seconds == (0,)
        assert s.minutes == tuple(range(0, 60, 5))
        assert s.hours == tuple(range(24))

    def test_names_lists_ranges_and_steps(self) -> None:
        s = parse("0,30 1-10/3 9-17 1,15 jan,Mar-MAY mon-fri")
        assert s.seconds == (0, 30)
        assert s.minutes == (1, 4, 7, 10)
        assert s.hours == tuple(range(9, 18))
        assert s.days == (1, 15)
        assert s.months == (1, 3, 4, 5)
        assert s.days_of_week == (1, 2, 3, 4, 5)

    def test_value_with_step_runs_to_the_field_maximum(self) -> None:
        assert parse("0 5/20 * * * *").minutes == (5, 25, 45)

    def test_sunday_is_zero(self) -> None:
        assert parse("0 0 0 * * SUN").days_of_week == (0,)
        assert parse("0 0 0 * * SAT").days_of_week == (6,)

    @pytest.mark.parametrize(
        ("expression", "field"),
        [
            ("0 60 * * * *", "minute"),
            ("61 * * * * *", "second"),
            ("0 0 24 * * *", "hour"),
            ("0 0 0 0 * *", "day"),
            ("0 0 0 32 * *", "day"),
            ("0 0 0 * 13 *", "month"),
            ("0 0 0 * FOO *", "month"),
            ("0 0 0 * * 7", "day-of-week"),
            ("0 0 0 * * MONDAYS", "day-of-week"),  # MONDAY is a name (issue 14: NCrontab reads prefixes of names)
            ("0 */0 * * * *", "minute"),
            ("0 10-5 * * * *", "minute"),
            ("0 1,,2 * * * *", "minute"),
            ("0 0 0 30 FEB *", "day"),
        ],
    )
    def test_errors_name_the_field_and_show_an_example(self, expression: str, field: str) -> None:
        with pytest.raises(NcrontabError) as info:
            parse(expression)
        assert info.value.field == field
        assert f"field '{field}'" in str(info.value)
        assert ncrontab.EXAMPLE in str(info.value)

    def test_five_fields_hint_at_the_seconds_field(self) -> None:
        with pytest.raises(NcrontabError, match="add the seconds field"):
            parse("*/5 * * * *")

    def test_not_a_string(self) -> None:
        with pytest.raises(NcrontabError):
            parse(None)  # type: ignore[arg-type]


class TestNextAfter:
    def test_weekday_morning(self) -> None:
        assert next_after("0 0 7 * * MON-FRI", MON_0600) == at(2026, 11, 2, 7, 0)

    def test_strictly_after_a_firing_time(self) -> None:
        assert next_after("0 */5 * * * *", at(2026, 11, 2, 6, 5)) == at(2026, 11, 2, 6, 10)

    def test_sub_second_input(self) -> None:
        assert next_after("* * * * * *",
                          at(2026, 11, 2, 6, 0, 0) + timedelta(microseconds=500)) == at(2026, 11, 2, 6, 0, 1)

    def test_friday_evening_to_monday_morning(self) -> None:
        assert next_after("0 0 7 * * MON-FRI", at(2026, 11, 6, 19, 0)) == at(2026, 11, 9, 7, 0)

    def test_year_end_rollover(self) -> None:
        assert next_after("0 0 0 1 JAN *", at(2026, 12, 31, 23, 59, 59)) == at(2027, 1, 1)

    def test_day_and_weekday_must_both_match(self) -> None:
        # NCrontab semantics (not Vixie cron's OR): Friday the 13th.
        assert next_after("0 0 0 13 * FRI", MON_0600) == at(2026, 11, 13)
        assert next_after("0 0 0 13 * FRI", at(2026, 11, 14)) == at(2027, 8, 13)

    def test_rare_expression_is_found_quickly(self) -> None:
        started = wall.perf_counter()
        assert next_after("0 0 0 29 FEB MON", MON_0600) == at(2044, 2, 29)
        assert wall.perf_counter() - started < 0.5

    def test_other_time_zones_are_converted_to_utc(self) -> None:
        cet = timezone(timedelta(hours=1))
        assert next_after("0 0 7 * * *", datetime(2026, 11, 2, 7, 30, tzinfo=cet)) == at(2026, 11, 2, 7, 0)

    def test_naive_datetimes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="no time zone"):
            next_after("0 0 7 * * *", datetime(2026, 11, 2, 6, 0))

    def test_accepts_a_parsed_schedule(self) -> None:
        assert next_after(parse("0 0 7 * * *"), MON_0600) == at(2026, 11, 2, 7, 0)


class TestLastAtOrBefore:
    def test_inclusive(self) -> None:
        assert last_at_or_before("0 0 7 * * *", at(2026, 11, 2, 7, 0)) == at(2026, 11, 2, 7, 0)

    def test_previous_weekday_evening(self) -> None:
        assert last_at_or_before("0 0 19 * * MON-FRI", MON_0600) == at(2026, 10, 30, 19, 0)

    def test_not_before_bounds_the_search(self) -> None:
        assert last_at_or_before("0 0 0 1 JAN *", MON_0600, not_before=MON_0600 - timedelta(days=8)) is None
        assert last_at_or_before("0 0 0 1 JAN *", MON_0600) == at(2026, 1, 1)

    def test_not_before_on_the_same_day(self) -> None:
        assert last_at_or_before("0 0 5 * * *", MON_0600, not_before=at(2026, 11, 2, 5, 30)) is None
        assert last_at_or_before("0 0 5 * * *", MON_0600, not_before=at(2026, 11, 2, 5, 0)) == at(2026, 11, 2, 5, 0)

    def test_start_of_calendar(self) -> None:
        assert last_at_or_before("0 0 0 2 JAN *", datetime(1, 1, 1, 12, tzinfo=UTC)) is None


def test_matches() -> None:
    assert matches("0 0 7 * * MON-FRI", at(2026, 11, 2, 7, 0, 0))
    assert not matches("0 0 7 * * MON-FRI", at(2026, 11, 1, 7, 0, 0))  # Sunday
    assert not matches("0 0 7 * * MON-FRI", at(2026, 11, 2, 7, 0, 1))


# --------------------------------------------------------------------------------------------
# Properties: the fast search equals a brute-force walk over a small window
# --------------------------------------------------------------------------------------------


def _field(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str) if not names else st.one_of(value.map(str), st.sampled_from(names))
    ranges = st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}")
    return st.one_of(
        st.just("*"),
        single,
        ranges,
        st.integers(1, max(1, (high - low) // 2)).map(lambda n: f"*/{n}"),
        st.tuples(ranges, st.integers(1, 5)).map(lambda r: f"{r[0]}/{r[1]}"),
        st.lists(value, min_size=1, max_size=4).map(lambda xs: ",".join(map(str, xs))),
    )


# Day and month are mostly '*' so that expressions fire within the brute-force window often enough to mean something.
expressions = st.tuples(
    _field(0, 59), _field(0, 59), _field(0, 23),
    st.one_of(st.just("*"), st.just("*"), _field(1, 28)),
    st.one_of(st.just("*"), st.just("*"), st.just("*"), _field(1, 12, ["JAN", "jun", "Dec"])),
    st.one_of(st.just("*"), _field(0, 6, ["MON", "fri", "SUN"])),
).map(" ".join)
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))
WINDOW = timedelta(days=2)


def _brute_next(s: ncrontab.CronSchedule, t: datetime, window: timedelta) -> datetime | None:
    start = t.replace(microsecond=0) + timedelta(seconds=1)
    minute = start.replace(second=0)
    while minute <= t + window:
        d = minute.date()
        if minute.minute in s.minutes and minute.hour in s.hours and d.day in s.days and d.month in s.months \
                and (d.weekday() + 1) % 7 in s.days_of_week:
            for second in s.seconds:
                candidate = minute.replace(second=second)
                if candidate >= start:
                    return candidate
        minute += timedelta(minutes=1)
    return None


def _brute_last(s: ncrontab.CronSchedule, t: datetime, window: timedelta) -> datetime | None:
    end = t.replace(microsecond=0)
    minute = end.replace(second=0)
    start = t - window
    # The minute that holds the window's start counts too: its later seconds are inside the window.
    while minute + timedelta(seconds=59) >= start:
        d = minute.date()
        if minute.minute in s.minutes and minute.hour in s.hours and d.day in s.days and d.month in s.months \
                and (d.weekday() + 1) % 7 in s.days_of_week:
            for second in reversed(s.seconds):
                candidate = minute.replace(second=second)
                if start <= candidate <= end:
                    return candidate
        minute -= timedelta(minutes=1)
    return None


@settings(max_examples=150, deadline=None)
@given(expressions, instants)
def test_next_after_equals_brute_force(expression: str, t: datetime) -> None:
    s = parse(expression)
    found = next_after(s, t)
    assert found > t
    assert s.matches(found)
    expected = _brute_next(s, t, WINDOW)
    if expected is not None:
        assert found == expected
    else:
        assert found > t + WINDOW  # nothing fires inside the window


@settings(max_examples=150, deadline=None)
@given(expressions, instants)
def test_last_at_or_before_equals_brute_force(expression: str, t: datetime) -> None:
    s = parse(expression)
    found = last_at_or_before(s, t)
    expected = _brute_last(s, t, WINDOW)
    if expected is not None:
        assert found == expected
    else:
        assert found is None or found < t - WINDOW
    if found is not None:
        assert found <= t
        assert s.matches(found)
        assert next_after(s, found - timedelta(seconds=1)) == found


@settings(max_examples=100, deadline=None)
@given(expressions, instants)
def test_searches_are_inverse(expression: str, t: datetime) -> None:
    s = parse(expression)
    following = next_after(s, t)
    assert last_at_or_before(s, following) == following
    # Nothing fires strictly between t and the next firing time, so one second earlier the last firing is the one before
    # t.
    assert last_at_or_before(s, following - timedelta(seconds=1)) == last_at_or_before(s, t)


# Names, as NCrontab reads them: any case-insensitive prefix of the English name, the first in calendar order winning.
DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
          "December")


@pytest.mark.parametrize(("expression", "month", "weekdays"), [
    ("0 0 7 * * MON-FRI", None, (1, 2, 3, 4, 5)),
    ("0 0 7 * * Monday-Friday", None, (1, 2, 3, 4, 5)),
    ("0 0 7 * * m-f", None, (1, 2, 3, 4, 5)),  # M is Monday, F Friday
    ("0 0 7 * * S", None, (0,)),  # S: Sunday comes before Saturday
    ("0 0 7 * * T,Th", None, (2, 4)),  # T: Tuesday; Th: Thursday
    ("0 0 7 * Ju *", 6, None),  # Ju: June before July
    ("0 0 7 * J *", 1, None),
    ("0 0 7 * January *", 1, None),
    ("0 0 7 * ma *", 3, None),  # Ma: March before May
    ("0 0 7 * jUL *", 7, None),
])
def test_names_are_case_insensitive_prefixes_first_match_winning(expression: str, month: int | None,
                                                                 weekdays: tuple[int, ...] | None) -> None:
    schedule = parse(expression)
    fired = [t for t in (schedule.next_after(at(2026, 1, 1) + timedelta(days=d)) for d in range(0, 400, 3)) if t]
    assert fired
    if month is not None:
        assert {t.month for t in fired} == {month}
    if weekdays is not None:
        assert {(t.weekday() + 1) % 7 for t in fired} == set(weekdays)


@pytest.mark.parametrize("expression", ["0 0 7 * * Mondays", "0 0 7 * * X", "0 0 7 * Juni *", "0 0 7 * * M0N"])
def test_what_starts_no_name_is_refused(expression: str) -> None:
    with pytest.raises(NcrontabError, match="not a number or a name"):
        parse(expression)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DAYS), st.integers(1, 9), st.booleans())
def test_any_prefix_of_a_day_means_the_first_day_it_starts(name: str, length: int, upper: bool) -> None:
    prefix = name[:length].upper() if upper else name[:length].lower()
    first = next(i for i, d in enumerate(DAYS) if d.lower().startswith(prefix.lower()))
    assert parse(f"0 0 7 * * {prefix}").days_of_week == parse(f"0 0 7 * * {first}").days_of_week == (first,)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(MONTHS), st.integers(1, 9))
def test_any_prefix_of_a_month_means_the_first_month_it_starts(name: str, length: int) -> None:
    prefix = name[:length]
    first = next(i for i, m in enumerate(MONTHS, start=1) if m.lower().startswith(prefix.lower()))
    assert parse(f"0 0 7 * {prefix} *").months == parse(f"0 0 7 * {first} *").months == (first,)


def test_settings_read_schedules_with_the_parser() -> None:
    from shared.config.settings import SettingsError, load_settings

    env = {"AUTOPILOT_SUBSCRIPTION_ID": "00000000-0000-4000-8000-000000000001",
           "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    weekdays = "0 0 7 * * Monday-Friday"
    assert load_settings({**env, "AUTOPILOT_WATCH_SCHEDULE": weekdays}).watch_schedule == weekdays
    with pytest.raises(SettingsError, match="field 'hour'"):
        load_settings({**env, "AUTOPILOT_GUARD_SCHEDULE": "0 0 25 * * *"})  # six fields, but not a schedule
