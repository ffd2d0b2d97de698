"""Virtual time for the emulator, and a scheduler that runs what falls due as time moves.

Simulations and tests advance the clock by hand (minutes of Azure time in milliseconds of wall
time); the standalone server can instead follow the wall clock, optionally faster.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # a Monday morning


class VirtualClock:
    """A UTC clock that moves only when told to (or, with ``follow_wall``, with real time × speed)."""

    def __init__(self, start: datetime | None = None, *, follow_wall: bool = False, speed: float = 1.0) -> None:
        start = start or DEFAULT_START
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time (UTC)")
        self._lock = threading.RLock()
        self._base = start.astimezone(UTC)
        self._offset = timedelta(0)
        self._follow_wall = follow_wall
        self._speed = speed
        self._wall_start = time.monotonic()
        self._scheduler: Scheduler | None = None

    def now(self) -> datetime:
        with self._lock:
            wall = timedelta(seconds=(time.monotonic() - self._wall_start)
                             * self._speed) if self._follow_wall else timedelta(0)
            return self._base + self._offset + wall

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward, running every scheduled task that falls due, in time order.

        The clock's lock is never held while a task runs: tasks call into service backends, whose
        request threads read the clock while holding their own locks.
        """
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        with self._lock:
            target = self.now() + delta
        while self._scheduler is not None and (due := self._scheduler.next_due()) is not None and due <= target:
            with self._lock:
                self._offset += max(due - self.now(), timedelta(0))
                moment = self.now()
            self._scheduler.run_due(moment)  # tasks observe the clock at their own moment
        with self._lock:
            self._offset += max(target - self.now(), timedelta(0))
            moment = self.now()
        if self._scheduler is not None:
            self._scheduler.run_due(moment)
        return moment

    def advance_to(self, when: datetime) -> datetime:
        return self.advance(max(when - self.now(), timedelta(0)))

    def attach(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler


class Scheduler:
    """Callbacks keyed by virtual time. Run by the clock as it advances, and before each request."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._heap: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        clock.attach(self)

    def at(self, when: datetime, callback: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._heap, (when, next(self._seq), callback))

    def after(self, delay: timedelta, callback: Callable[[], None]) -> None:
        self.at(self._clock.now() + delay, callback)

    def next_due(self) -> datetime | None:
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def run_due(self, now: datetime | None = None) -> int:
        now = now or self._clock.now()
        ran = 0
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return ran
                _, _, callback = heapq.heappop(self._heap)
            callback()
            ran += 1
