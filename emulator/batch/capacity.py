"""The capacity model behind Batch resizes: how many nodes a region gives a VM size, how fast, and how often it fails.

Everything here is deterministic: randomness comes from :func:`draw`, seeded by the emulator seed, the
pool, the resize number, the minute of the resize and the node kind, never from a shared generator, so
an outcome does not depend on how often (or whether) anything read the pool in between. The resize
engine (``resize.ResizeMixin`` of ``models.BatchBackend``) advances each resize minute by minute on the
emulator's scheduler, in virtual-time order, so shared resources (regional capacity, account quotas) are
consumed in a well-defined order too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta

DEDICATED = "dedicated"
LOW_PRIORITY = "low"  # Spot since March 2026; the API still says "low priority"
KINDS = (DEDICATED, LOW_PRIORITY)


@dataclass(frozen=True)
class CapacityConfig:
    """Capacity of one (region, VM size). Defaults make capacity non-binding but not instant.

    * ``*_available`` - nodes the region can hold for this size across all pools (allocated nodes
      use it up; released nodes give it back). When a growing resize finds none left it ends with
      ``AllocationFailed`` / insufficient capacity.
    * ``*_per_minute`` - nodes one resize is granted per virtual minute (before jitter).
    * ``max_nodes_per_resize`` - the most nodes one resize can add of each kind; a bigger target
      stays short and the resize ends with ``AllocationTimedout`` when ``resizeTimeout`` passes, so
      big pools need several resizes, as in Azure.
    * ``*_failure_rate`` - per-minute chance that a growing resize ends early with a transient
      ``AllocationFailed``; ``internal_error_share`` of those say "internal error", the rest
      "insufficient capacity".
    * ``rate_jitter`` - each minute's grant is ``per_minute * (1 - rate_jitter * u)``, u in [0, 1).
    """

    dedicated_available: int = 100_000
    low_priority_available: int = 50_000
    dedicated_per_minute: int = 50
    low_priority_per_minute: int = 30
    max_nodes_per_resize: int = 300
    dedicated_failure_rate: float = 0.002
    low_priority_failure_rate: float = 0.005
    internal_error_share: float = 0.5
    rate_jitter: float = 0.25

    def available(self, kind: str) -> int:
        return self.dedicated_available if kind == DEDICATED else self.low_priority_available

    def per_minute(self, kind: str) -> int:
        return self.dedicated_per_minute if kind == DEDICATED else self.low_priority_per_minute

    def failure_rate(self, kind: str) -> float:
        return self.dedicated_failure_rate if kind == DEDICATED else self.low_priority_failure_rate

    def validated(self) -> CapacityConfig:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"capacity {f.name} must be >= 0, got {value}")
        for name in ("dedicated_failure_rate", "low_priority_failure_rate", "internal_error_share", "rate_jitter"):
            if getattr(self, name) > 1:
                raise ValueError(f"capacity {name} must be within 0..1, got {getattr(self, name)}")
        return self


@dataclass
class Timings:
    """How long the quick transitions take, in virtual time."""

    shrink: timedelta = timedelta(seconds=30)  # a resize that only removes nodes (or changes nothing)
    stop: timedelta = timedelta(seconds=30)  # stopping -> steady after stopResize
    pool_delete: timedelta = timedelta(0)  # deleting -> gone; 0 = done before the next request is answered


@dataclass
class Limits:
    """Service limits that are not capacity."""

    # "Compute nodes in pool created with a managed image resource": 2,000 dedicated / 1,000 Spot (Batch quotas and
    # limits page, Pool size limits), across the pools on the same managed image or managed images of the same
    # snapshots.
    custom_image_dedicated_nodes: int = 2_000
    custom_image_low_priority_nodes: int = 1_000
    min_resize_timeout: timedelta = timedelta(minutes=5)
    default_resize_timeout: timedelta = timedelta(minutes=15)
    max_target_nodes: int = 100_000


@dataclass
class CapacityModel:
    """Per (region, VM size) configuration and usage. Lookups fall back to the defaults."""

    default: CapacityConfig = field(default_factory=CapacityConfig)
    overrides: dict[tuple[str, str], CapacityConfig] = field(default_factory=dict)
    region_defaults: dict[str, CapacityConfig] = field(default_factory=dict)
    usage: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (region, size, kind) -> nodes

    @staticmethod
    def _norm(region: str, vm_size: str) -> tuple[str, str]:
        return region.replace(" ", "").lower(), vm_size.lower()

    def config(self, region: str, vm_size: str) -> CapacityConfig:
        r, s = self._norm(region, vm_size)
        return self.overrides.get((r, s)) or self.region_defaults.get(r) or self.default

    def configure(self, region: str | None, vm_size: str | None, **changes: float | int) -> CapacityConfig:
        """Change the capacity of one (region, size), a whole region (``vm_size=None``) or the default (both None)."""
        unknown = set(changes) - {f.name for f in fields(CapacityConfig)}
        if unknown:
            raise ValueError(
                f"unknown capacity settings {sorted(unknown)}; known: {[f.name for f in fields(CapacityConfig)]}")
        changes = {k: v for k, v in changes.items() if v is not None}
        if region is None and vm_size is None:
            self.default = replace(self.default, **changes).validated()  # type: ignore[arg-type]
            return self.default
        if region is None:
            raise ValueError("give a region to configure a VM size")
        r = region.replace(" ", "").lower()
        if vm_size is None:
            self.region_defaults[r] = replace(self.region_defaults.get(r, self.default), **changes).validated()  # type: ignore[arg-type]
            return self.region_defaults[r]
        key = self._norm(region, vm_size)
        self.overrides[key] = replace(self.config(region, vm_size), **changes).validated()  # type: ignore[arg-type]
        return self.overrides[key]

    def used(self, region: str, vm_size: str, kind: str) -> int:
        r, s = self._norm(region, vm_size)
        return self.usage.get((r, s, kind), 0)

    def add_usage(self, region: str, vm_size: str, kind: str, delta: int) -> None:
        r, s = self._norm(region, vm_size)
        self.usage[(r, s, kind)] = self.usage.get((r, s, kind), 0) + delta

    def free(self, region: str, vm_size: str, kind: str) -> int:
        return self.config(region, vm_size).available(kind) - self.used(region, vm_size, kind)


def draw(seed: int, pool_key: str, resize_number: int, minute: int, kind: str) -> random.Random:
    """The random source for one (pool, resize, minute, node kind): same inputs, same numbers."""
    return random.Random(f"batch:{seed}:{pool_key}:{resize_number}:{minute}:{kind}")
