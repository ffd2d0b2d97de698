"""Timer-driven targets: a pool's desired size can follow a schedule kept in its metadata.

``autopilot.schedule`` holds a JSON list of entries, each an NCRONTAB expression (UTC, six fields,
as the Functions timer trigger reads them) and the target that applies from that moment on::

    [{"cron": "0 0 7 * * MON-FRI", "dedicated": 800, "spot": 0},
     {"cron": "0 0 19 * * MON-FRI", "dedicated": 50, "spot": 0}]

The target in force at a moment is the entry that fired most recently at or before it, so the
schedule is a step function and a watch run that was late (or missed) still lands on the right
target. Metadata values are limited to a few kilobytes, so schedules stay short.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import ncrontab

EXAMPLE = '[{"cron": "0 0 7 * * MON-FRI", "dedicated": 800, "spot": 0}, {"cron": "0 0 19 * * MON-FRI", "dedicated": 50, "spot": 0}]'

# How far back to look for the entry in force. Schedules are in practice daily or weekly, and a
# weekly entry fires once in any 7 days; the 8th day covers a week plus a late run. Past this the
# pool falls back to its plain desired targets (autopilot.desiredDedicated / desiredSpot).
DEFAULT_LOOKBACK = timedelta(days=8)
# A target above this is a typo (a managed-image pool is capped at 2,000 dedicated and 1,000 Spot
# nodes; other pools at the account's quota), not an intent.
MAX_TARGET = 100_000

_KEYS = {"cron", "dedicated", "spot", "lowPriority"}


class ScheduleError(ValueError):
    """``autopilot.schedule`` is not a valid schedule; the message says which entry and field, and shows an example."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"autopilot.schedule is invalid: {problem}. For example: {EXAMPLE}")
        self.problem = problem


@dataclass(frozen=True)
class ScheduleEntry:
    cron: str
    dedicated: int
    spot: int
    schedule: ncrontab.CronSchedule = field(compare=False, repr=False)


@dataclass(frozen=True)
class TargetSchedule:
    entries: tuple[ScheduleEntry, ...]


@dataclass(frozen=True)
class ScheduledTarget:
    """The entry in force and when it last fired."""

    entry: ScheduleEntry
    fired_at: datetime

    @property
    def dedicated(self) -> int:
        return self.entry.dedicated

    @property
    def spot(self) -> int:
        return self.entry.spot


def parse_schedule(value: str | list[Any]) -> TargetSchedule:
    """Parse the JSON from pool metadata (or an already-decoded list)."""
    if isinstance(value, str):
        try:
            document = json.loads(value)
        except ValueError as exc:
            raise ScheduleError(f"it is not valid JSON ({exc.msg} at character {exc.pos})") from None
    else:
        document = value
    if isinstance(document, Mapping) and "entries" in document:
        document = document["entries"]
    if not isinstance(document, list):
        raise ScheduleError(f"it must be a JSON list of entries, not {type(document).__name__}")
    return TargetSchedule(tuple(_entry(i, item) for i, item in enumerate(document)))


def target_in_force(schedule: TargetSchedule, now: datetime, lookback: timedelta = DEFAULT_LOOKBACK) -> ScheduledTarget | None:
    """The entry with the latest firing time at or before ``now`` within ``lookback``; None if none fired.

    When two entries fire at the same moment, the later one in the list wins (the list reads top to
    bottom, like a config file's later lines overriding earlier ones).
    """
    best: ScheduledTarget | None = None
    floor = now - lookback
    for entry in schedule.entries:
        fired = entry.schedule.last_at_or_before(now, not_before=floor)
        if fired is not None and (best is None or fired >= best.fired_at):
            best = ScheduledTarget(entry, fired)
    return best


def _entry(index: int, item: Any) -> ScheduleEntry:
    where = f"entry {index + 1}"
    if not isinstance(item, Mapping):
        raise ScheduleError(f"{where} must be an object like {{\"cron\": ..., \"dedicated\": ..., \"spot\": ...}}, not {type(item).__name__}")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ScheduleError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; the keys are 'cron', 'dedicated' and 'spot'")
    cron = item.get("cron")
    if not isinstance(cron, str) or not cron.strip():
        raise ScheduleError(f"{where} needs 'cron', an NCRONTAB expression such as \"0 0 7 * * MON-FRI\"")
    try:
        parsed = ncrontab.parse(cron)
    except ncrontab.NcrontabError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    if "dedicated" not in item and "spot" not in item and "lowPriority" not in item:
        raise ScheduleError(f"{where} needs 'dedicated' and/or 'spot' (node counts)")
    if "spot" in item and "lowPriority" in item:
        raise ScheduleError(f"{where} has both 'spot' and 'lowPriority', which are the same thing: keep 'spot'")
    dedicated = _count(where, "dedicated", item.get("dedicated", 0))
    spot = _count(where, "spot", item.get("spot", item.get("lowPriority", 0)))
    return ScheduleEntry(cron.strip(), dedicated, spot, parsed)


def _count(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and not value.is_integer()):
        raise ScheduleError(f"{where}: '{key}' must be a whole number of nodes, not {value!r}")
    number = int(value)
    if not 0 <= number <= MAX_TARGET:
        raise ScheduleError(f"{where}: '{key}' is {number}; it must be between 0 and {MAX_TARGET}")
    return number
