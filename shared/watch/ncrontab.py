"""NCRONTAB expressions, as Azure Functions timer triggers read them.

Six fields, separated by spaces: ``second minute hour day month day-of-week``. Each field takes
``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from ``a`` to the field's
maximum), and comma-separated lists of those. Months and days of the week also take names, as NCrontab
reads them: any prefix of the English name, in any case, the first name in calendar order that it
starts winning (``M`` is Monday, ``Ju`` June, ``J`` January; ``MON-FRI``, ``Monday-Friday``,
``January``). Sunday is 0. Examples from the Functions docs:
``0 */5 * * * *`` (every five minutes), ``0 0 7 * * MON-FRI`` (07:00 on weekdays).

Two choices follow the NCrontab library the Functions host uses, and differ from Vixie cron:
when both ``day`` and ``day-of-week`` are restricted a time must match **both** (cron matches
either), and day-of-week runs 0-6 (7 is not Sunday).

Everything works on timezone-aware datetimes and answers in UTC. The Functions host evaluates
schedules in UTC unless ``WEBSITE_TIME_ZONE`` is set; the app never sets it, so that the same
expression means the same instant on the emulator, in Azure, and in pool metadata.

Searches step through calendar days and then pick the first or last matching second of a day from
sorted value lists, so a yearly expression costs a few hundred day checks, never a scan second by
second.
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

EXAMPLE = "0 0 7 * * MON-FRI"

# The Gregorian calendar repeats every 400 years, so a day/month/weekday combination that exists
# at all occurs within any 400-year window; searching further could never find anything new.
_SEARCH_YEARS = 400

# Names in calendar order: a name is looked up by prefix, the first match winning (NCrontab's rule): order matters.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
# The longest each month can be (February in a leap year), to reject "30 2" at parse time.
_MONTH_MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] | None = None  # value of names[i] is low + i
    hint: str = ""


_FIELDS = (
    _Field("second", 0, 59, hint="0-59"),
    _Field("minute", 0, 59, hint="0-59"),
    _Field("hour", 0, 23, hint="0-23"),
    _Field("day", 1, 31, hint="1-31"),
    _Field("month", 1, 12, _MONTHS, "1-12 or JAN-DEC"),
    _Field("day-of-week", 0, 6, _WEEKDAYS, "0-6 (Sunday is 0) or SUN-SAT"),
)


class NcrontabError(ValueError):
    """An NCRONTAB expression is malformed. ``field`` names the faulty field (None: the whole expression)."""

    def __init__(self, expression: str, problem: str, field: str | None = None) -> None:
        self.expression = expression
        self.field = field
        where = f"field '{field}' " if field else ""
        super().__init__(
            f"NCRONTAB expression {expression!r}: {where}{problem}. An NCRONTAB expression has six fields "
            f"(second minute hour day month day-of-week), for example {EXAMPLE!r} (07:00:00 UTC on weekdays)"
        )


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression: the allowed values of each field, sorted."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]

    def matches(self, t: datetime) -> bool:
        """Whether the expression fires at the whole second ``t`` falls in."""
        t = _utc(t)
        return (
            t.second in self.seconds
            and t.minute in self.minutes
            and t.hour in self.hours
            and self._day_matches(t.date())
        )

    def _day_matches(self, d: date) -> bool:
        return d.month in self.months and d.day in self.days and _cron_weekday(d) in self.days_of_week

    def next_after(self, t: datetime) -> datetime:
        """The first firing time strictly after ``t`` (UTC)."""
        start = _utc(t).replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        earliest = start.time()
        for d in self._days_from(day):
            found = self._first_time_at_or_after(earliest if d == day else time(0, 0, 0))
            if found is not None:
                return datetime.combine(d, found, UTC)
        raise NcrontabError(self.expression,
                            f"it never fires after {t.isoformat()} (the search ran past year {datetime.max.year})")

    def last_at_or_before(self, t: datetime, not_before: datetime | None = None) -> datetime | None:
        """The latest firing time at or before ``t`` (UTC); None if there is none at or after ``not_before``."""
        end = _utc(t).replace(microsecond=0)
        floor = _utc(not_before) if not_before is not None else None
        day = end.date()
        latest = end.time()
        for d in self._days_back_from(day, floor.date() if floor else None):
            found = self._last_time_at_or_before(latest if d == day else time(23, 59, 59))
            if found is not None:
                fired = datetime.combine(d, found, UTC)
                return fired if floor is None or fired >= floor else None
        return None

    # -- day iteration: whole months and days that cannot match are skipped without a check ----

    def _days_from(self, first: date) -> Iterator[date]:
        for year in range(first.year, min(first.year + _SEARCH_YEARS, datetime.max.year) + 1):
            for month in self.months:
                if (year, month) < (first.year, first.month):
                    continue
                last_day = calendar.monthrange(year, month)[1]
                for day in self.days:
                    if day > last_day:
                        break
                    d = date(year, month, day)
                    if d >= first and _cron_weekday(d) in self.days_of_week:
                        yield d

    def _days_back_from(self, last: date, floor: date | None) -> Iterator[date]:
        lowest_year = max(last.year - _SEARCH_YEARS, datetime.min.year)
        if floor is not None:
            lowest_year = max(lowest_year, floor.year)
        for year in range(last.year, lowest_year - 1, -1):
            for month in reversed(self.months):
                if (year, month) > (last.year, last.month):
                    continue
                if floor is not None and (year, month) < (floor.year, floor.month):
                    return
                last_day = calendar.monthrange(year, month)[1]
                for day in reversed(self.days):
                    if day > last_day:
                        continue
                    d = date(year, month, day)
                    if floor is not None and d < floor:
                        return
                    if d <= last and _cron_weekday(d) in self.days_of_week:
                        yield d

    # -- the time of day: bisect the sorted lists ----------------------------------------------

    def _first_time_at_or_after(self, lower: time) -> time | None:
        for hour in self.hours[bisect.bisect_left(self.hours, lower.hour):]:
            same_hour = hour == lower.hour
            for minute in self.minutes[bisect.bisect_left(self.minutes, lower.minute) if same_hour else 0:]:
                same_minute = same_hour and minute == lower.minute
                i = bisect.bisect_left(self.seconds, lower.second) if same_minute else 0
                if i < len(self.seconds):
                    return time(hour, minute, self.seconds[i])
        return None

    def _last_time_at_or_before(self, upper: time) -> time | None:
        for hour in reversed(self.hours[: bisect.bisect_right(self.hours, upper.hour)]):
            same_hour = hour == upper.hour
            for minute in reversed(self.minutes[: bisect.bisect_right(self.minutes, upper.minute) if same_hour
                                                else len(self.minutes)]):
                same_minute = same_hour and minute == upper.minute
                i = bisect.bisect_right(self.seconds, upper.second) if same_minute else len(self.seconds)
                if i > 0:
                    return time(hour, minute, self.seconds[i - 1])
        return None


def parse(expression: str) -> CronSchedule:
    """Parse an NCRONTAB expression, or raise :class:`NcrontabError` naming the faulty field."""
    if not isinstance(expression, str):
        raise NcrontabError(repr(expression), "it must be a string")
    parts = expression.split()
    if len(parts) != 6:
        hint = (" (five fields is classic cron: add the seconds field in front, e.g. '0 ' + your expression)"
                if len(parts) == 5 else "")
        raise NcrontabError(expression, f"it has {len(parts)} field(s), not 6{hint}")
    values = [_parse_field(expression, spec, text) for spec, text in zip(_FIELDS, parts, strict=True)]
    seconds, minutes, hours, days, months, weekdays = values
    if not any(day <= _MONTH_MAX_DAYS[m] for m in months for day in days):
        raise NcrontabError(expression, f"day {parts[3]!r} never occurs in month {parts[4]!r}, so the expression "
                            "never fires", "day")
    return CronSchedule(expression, seconds, minutes, hours, days, months, weekdays)


def next_after(expression: str | CronSchedule, t: datetime) -> datetime:
    """The first time strictly after ``t`` at which ``expression`` fires (aware UTC datetime)."""
    return _schedule(expression).next_after(t)


def last_at_or_before(expression: str | CronSchedule, t: datetime,
                      not_before: datetime | None = None) -> datetime | None:
    """The latest time at or before ``t`` at which ``expression`` fires; None if none since ``not_before``."""
    return _schedule(expression).last_at_or_before(t, not_before)


def matches(expression: str | CronSchedule, t: datetime) -> bool:
    return _schedule(expression).matches(t)


# --------------------------------------------------------------------------------------------


def _schedule(expression: str | CronSchedule) -> CronSchedule:
    return expression if isinstance(expression, CronSchedule) else parse(expression)


def _utc(t: datetime) -> datetime:
    if not isinstance(t, datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone: pass an aware datetime, e.g. datetime.now(UTC)")
    return t.astimezone(UTC)


def _cron_weekday(d: date) -> int:
    return (d.weekday() + 1) % 7  # Python: Monday=0; cron: Sunday=0


def _parse_field(expression: str, spec: _Field, text: str) -> tuple[int, ...]:
    def fail(problem: str) -> NcrontabError:
        return NcrontabError(expression, f"{text!r} {problem}; use {spec.hint}, '*', a-b, */n, a-b/n or lists a,b",
                             spec.name)

    def value(token: str) -> int:
        if spec.names and token.isalpha():
            folded = token.casefold()
            for i, name in enumerate(spec.names):
                if name.casefold().startswith(folded):
                    return spec.low + i
        if not token.isdigit():
            raise fail(f"has {token!r}, which is not a number" + (" or a name" if spec.names else ""))
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise fail(f"has {number}, outside {spec.low}-{spec.high}")
        return number

    chosen: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail("has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise fail(f"has step {step_text!r}; a step must be a whole number of at least 1")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = value(first), value(last)
            if low > high:
                raise fail(f"has the range {base!r}, which runs backwards")
        else:
            low = value(base)
            high = spec.high if slash else low  # "a/n": from a to the field's maximum, as NCrontab reads it
        chosen.update(range(low, high + 1, step))
    return tuple(sorted(chosen))
