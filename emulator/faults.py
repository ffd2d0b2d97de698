"""Faults on demand: throttling, server errors, dropped connections and latency, per path and rate."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

# A request the service receives may fail before it acts (throttle, error, drop) or after (acted_*,
# timeout): Azure documents that a timed-out or dropped write may have been applied
# (https://learn.microsoft.com/azure/architecture/best-practices/retry-service-specific#general-rest-and-retry-guidelines).
KINDS = frozenset({"throttle", "error", "drop", "latency", "acted_drop", "acted_error", "timeout"})


@dataclass
class FaultRule:
    """Inject ``kind`` into a share ``rate`` (0..1) of the matching calls.

    kinds: ``throttle`` (429 with Retry-After), ``error`` (``status``, 500 or 503), ``drop`` (the
    connection is closed with no answer), ``latency`` (``latency_s`` seconds of real delay, then the
    normal answer). Ambiguous failures, where the service did the work and the answer was lost:
    ``acted_drop`` (the request takes effect, then the connection is closed with no answer) and
    ``acted_error`` (the request takes effect, then the answer is ``status``, 500 or 503). On the
    Table storage proxy (:mod:`emulator.table_faults`) also ``timeout`` (the request takes effect and
    the answer is held ``latency_s`` seconds, past the client's read timeout, then the connection closes).
    """

    kind: str
    rate: float = 1.0
    path_pattern: str = ".*"
    methods: frozenset[str] = frozenset({"GET", "PUT", "PATCH", "POST", "DELETE"})
    status: int = 503
    retry_after_s: int = 1
    latency_s: float = 0.0
    plane: str | None = None  # arm | batch | eventgrid; None for any
    max_count: int | None = None  # stop after injecting this many
    injected: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: use one of {', '.join(sorted(KINDS))}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")
        self._regex = re.compile(self.path_pattern, re.IGNORECASE)

    def matches(self, method: str, path: str, plane: str | None) -> bool:
        if self.max_count is not None and self.injected >= self.max_count:
            return False
        if self.plane is not None and plane != self.plane:
            return False
        return method in self.methods and bool(self._regex.search(path))


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 0
    retry_after_s: int = 0
    latency_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.status}" if self.status else self.kind


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def decide(self, method: str, path: str, plane: str | None) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, plane) and self._rng.random() < rule.rate:
                    rule.injected += 1
                    if rule.kind == "throttle":
                        return Fault("throttle", 429, retry_after_s=rule.retry_after_s)
                    if rule.kind == "error":
                        return Fault("error", rule.status, retry_after_s=rule.retry_after_s)
                    if rule.kind in ("drop", "acted_drop"):
                        return Fault(rule.kind)
                    if rule.kind == "acted_error":
                        return Fault("acted_error", rule.status, retry_after_s=rule.retry_after_s)
                    return Fault(rule.kind, latency_s=rule.latency_s)
        return None

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(r.injected for r in self.rules)
