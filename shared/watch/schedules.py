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

import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.watch import ncrontab

EXAMPLE = ('[{"cron": "0 0 7 * * MON-FRI", "dedicated": 800, "spot": 0}, {"cron": "0 0 19 * * MON-FRI", "dedicated": '
           '50, "spot": 0}]')

# How far back to look for the entry in force. Schedules are in practice daily or weekly, and a
# weekly entry fires once in any 7 days; the 8th day covers a week plus a late run. Past this the
# pool falls back to its plain desired targets (autopilot.desiredDedicated / desiredSpot).
DEFAULT_LOOKBACK = timedelta(days=8)
# A sanity bound on one pool's size (configured or scheduled), not an Azure number: a target above this is a typo.
# Gallery pools have no node cap, and the account's core quota (checked by the pool watch at run time) is the real
# ceiling. The families configuration holds pool sizes to the same bound (shared/pipeline/image_rules.MAX_POOL_NODES).
MAX_TARGET = 100_000

_KEYS = ("cron", "dedicated", "spot")
_ALIASES = ("lowPriority",)  # Batch's former name for Spot, accepted in pool metadata written by hand


class ScheduleError(ValueError):
    """``autopilot.schedule`` is not a valid schedule; the message says which entry and field, and shows an example."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"autopilot.schedule is invalid: {problem}. For example: {EXAMPLE}")
        self.problem = problem


@dataclass(frozen=True)
class ScheduleEntry:
    """One entry, from the families configuration or ``autopilot.schedule``, both checked by :func:`check_entry`."""

    cron: str  # six-field NCRONTAB, as Functions timers use
    dedicated: int
    spot: int

    @functools.cached_property
    def schedule(self) -> ncrontab.CronSchedule:
        return ncrontab.parse(self.cron)


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


def target_in_force(schedule: TargetSchedule, now: datetime,
                    lookback: timedelta = DEFAULT_LOOKBACK) -> ScheduledTarget | None:
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
    entry, problems = check_entry(item, aliases=True)
    if problems:
        raise ScheduleError(where + problems[0][1])
    assert entry is not None
    return entry


def check_entry(item: Any, *, aliases: bool = False) -> tuple[ScheduleEntry | None, list[tuple[str, str]]]:
    """The one check of a schedule entry: the entry, or every problem as (field, text); field "" is the entry.

    Each text follows the entry's name ("entry 2" + text): ``": NCRONTAB expression ..."``, ``" needs 'cron' ..."``.

    ``aliases`` accepts ``lowPriority`` for ``spot`` (pool metadata written by hand); the families configuration does
    not. Stricter of the two former checks, kept for both: an entry names at least one count (a cron alone would
    silently mean "0 nodes"), counts are whole numbers from 0 to MAX_TARGET.
    """
    if not isinstance(item, Mapping):
        return None, [("", f" must be an object like {{\"cron\": ..., \"dedicated\": ..., \"spot\": ...}}, "
                           f"not {type(item).__name__}")]
    problems: list[tuple[str, str]] = []
    allowed = _KEYS + (_ALIASES if aliases else ())
    for key in item:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the keys are 'cron', 'dedicated' and 'spot'"
            problems.append((str(key), f" has unknown key(s) {str(key)!r}; {hint}"))
    cron = item.get("cron")
    parsed: ncrontab.CronSchedule | None = None
    if not isinstance(cron, str) or not cron.strip():
        problems.append(("cron", " needs 'cron', an NCRONTAB expression such as \"0 0 7 * * MON-FRI\""))
    else:
        try:
            parsed = ncrontab.parse(cron)
        except ncrontab.NcrontabError as exc:
            problems.append(("cron", f": {exc}"))
    if "spot" in item and "lowPriority" in item and aliases:
        problems.append(("", " has both 'spot' and 'lowPriority', which are the same thing: keep 'spot'"))
    counts = {key: _count(key, item[key]) for key in ("dedicated", "spot", "lowPriority") if key in item
              and key in allowed}
    problems += [(key, why) for key, (_, why) in counts.items() if why]
    if not counts and not problems:  # judged last: an entry with a broken field already says what to fix
        problems.append(("", " needs 'dedicated' and/or 'spot' (node counts)"))
    if problems or parsed is None:
        return None, problems
    spot = counts.get("spot", counts.get("lowPriority", (0, None)))[0]
    entry = ScheduleEntry(cron.strip(), counts.get("dedicated", (0, None))[0], spot)
    entry.__dict__["schedule"] = parsed  # already parsed: seed the cached property
    return entry, []


def _count(key: str, value: Any) -> tuple[int, str | None]:
    if (isinstance(value, bool) or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())):
        return 0, f": '{key}' must be a whole number of nodes, not {value!r}"
    number = int(value)
    if not 0 <= number <= MAX_TARGET:
        return 0, f": '{key}' is {number}; it must be between 0 and {MAX_TARGET}"
    return number, None
