"""What a simulation saw: every pool sampled at every step (for the report and the chart) and a timeline of
what happened to pools, images and locks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autopilot.scenario import (
    Scenario,
)


@dataclass
class TimelineEntry:
    time: datetime
    kind: str  # action | alert | stall | pool | image | lock | mark | host
    text: str
    pool: str | None = None  # "account/pool" when the entry is about one pool
    severity: str | None = None
    ok: bool = True



@dataclass
class PoolSeries:
    key: str  # "account/pool"
    account_id: str
    times: list[datetime] = field(default_factory=list)
    current_dedicated: list[int | None] = field(default_factory=list)
    current_spot: list[int | None] = field(default_factory=list)
    target_dedicated: list[int | None] = field(default_factory=list)
    target_spot: list[int | None] = field(default_factory=list)
    desired_dedicated: list[int | None] = field(default_factory=list)
    desired_spot: list[int | None] = field(default_factory=list)
    usable: list[int | None] = field(default_factory=list)  # idle or running nodes (dedicated + Spot)
    first_seen: datetime | None = None
    deleted_at: datetime | None = None
    first_reached: datetime | None = None
    reached_since: datetime | None = None  # start of the current stretch at the desired counts
    last_transition: datetime | None = None
    last_target: tuple[int, int] | None = None
    failures: list[tuple[datetime, str]] = field(default_factory=list)
    # every resize Batch started on the pool, by its number: (when, dedicated, Spot asked for). A resize needs a steady
    # pool, so two never start within one step and sampling each step sees them all.
    resizes: dict[int, tuple[datetime, int, int]] = field(default_factory=dict)
    # rollout steps seen on the pool itself (the image changed in place, held for a drain, retired): (when, label)
    rollout: list[tuple[datetime, str]] = field(default_factory=list)
    last_image: str | None = None
    last_hold: str | None = None


class Recorder:
    """Samples the emulated subscription at every step (in-process reads: nothing shows in the request log)."""

    def __init__(self, local: Any, scenario: Scenario) -> None:
        self.local = local
        self.scenario = scenario
        self.times: list[datetime] = []
        self.pools: dict[str, PoolSeries] = {}
        self.timeline: list[TimelineEntry] = []
        self._images: dict[str, str] = {}  # key -> "managed image"/"gallery image version" + provisioning state
        self._image_ids: dict[str, str] = {}  # key -> the id as Azure spells it
        self._locks: dict[tuple[str, str], Any] = {}

    # --------------------------------------------------------------------------------------
    def sample(self, now: datetime) -> None:
        from shared.watch.pool_policy import PoolIntentError, PoolView, desired_target

        emulator = self.local.emulator
        self.times.append(now)
        seen: set[str] = set()
        for account in list(emulator.batch.accounts.values()):
            for pool in emulator.batch.list_pools(account.name):
                key = f"{account.name}/{pool.id}"
                seen.add(key)
                series = self.pools.get(key)
                if series is None:
                    series = self.pools[key] = PoolSeries(key, account.id)
                    self._pad(series)
                    series.first_seen = now
                    self.add(now, "pool", f"pool {key} created ({pool.spec.vm_size}, target {pool.target['dedicated']} "
                                          "dedicated / "
                                          f"{pool.target['low']} Spot)", pool=key)
                view = PoolView(account_id=account.id, pool_id=pool.id, allocation_state=pool.allocation_state,
                                current_dedicated=pool.current["dedicated"], current_spot=pool.current["low"],
                                target_dedicated=pool.target["dedicated"], target_spot=pool.target["low"],
                                metadata=pool.metadata)
                try:
                    desired = desired_target(view, now)
                except PoolIntentError:
                    desired = None
                series.times.append(now)
                series.current_dedicated.append(pool.current["dedicated"])
                series.current_spot.append(pool.current["low"])
                series.target_dedicated.append(pool.target["dedicated"])
                series.target_spot.append(pool.target["low"])
                series.desired_dedicated.append(desired.dedicated if desired else None)
                series.desired_spot.append(desired.spot if desired else None)
                op = pool.op
                if op is not None and op.number not in series.resizes:
                    series.resizes[op.number] = (op.start, op.target["dedicated"], op.target["low"])
                series.usable.append(sum(row.get("idle", 0) + row.get("running", 0)
                                         for row in emulator.batch.node_counts(pool).values()))
                self._transitions(series, pool, desired, now)
                self._rollout_steps(series, pool, now)
        for key, series in self.pools.items():
            if key not in seen:
                if series.deleted_at is None:
                    series.deleted_at = now
                    series.reached_since = None
                    self.add(now, "pool", f"pool {key} deleted", pool=key)
                series.times.append(now)
                for values in (series.current_dedicated, series.current_spot, series.target_dedicated,
                               series.target_spot,
                               series.desired_dedicated, series.desired_spot, series.usable):
                    values.append(None)
        self.observe_resources(now)

    def observe_resources(self, now: datetime) -> None:
        """Note images and locks that appeared, changed or went since the last look."""
        self._watch_images(now)
        self._watch_locks(now)

    def _pad(self, series: PoolSeries) -> None:
        for t in self.times[:-1]:
            series.times.append(t)
            for values in (series.current_dedicated, series.current_spot, series.target_dedicated, series.target_spot,
                           series.desired_dedicated, series.desired_spot, series.usable):
                values.append(None)

    def _rollout_steps(self, series: PoolSeries, pool: Any, now: datetime) -> None:
        """The image a pool references changing (an in-place rollout's Pool - Update), and the rollout's hold on it."""
        from shared.lifecycle.rollout import HOLD, hold_of

        image = pool.image_id or None
        if series.last_image is not None and image and image.lower() != series.last_image.lower():
            version = image.rstrip("/").rsplit("/", 1)[-1]
            series.rollout.append((now, f"patched → {version}"))
            self.add(now, "pool", f"pool {series.key} image changed in place to {short_id(image)}", pool=series.key)
        series.last_image = image or series.last_image
        hold = hold_of(pool.metadata)
        if hold != series.last_hold and hold is not None:
            label = {"drain": "draining", "retired": "retired"}[hold]
            series.rollout.append((now, label))
            self.add(now, "pool", f"pool {series.key} {label} by the rollout ({HOLD}={hold}): it goes to 0 nodes with "
                                  "taskcompletion", pool=series.key)
        series.last_hold = hold

    def _transitions(self, series: PoolSeries, pool: Any, desired: Any, now: datetime) -> None:
        target = (pool.target["dedicated"], pool.target["low"])
        if series.last_target is not None and target != series.last_target:
            self.add(now, "pool", f"pool {series.key} resizing to {target[0]} dedicated / {target[1]} Spot "
                                  f"(from {pool.current['dedicated']} / {pool.current['low']})", pool=series.key)
        series.last_target = target
        transition = pool.allocation_state_time
        if pool.allocation_state == "steady" and transition is not None:
            if transition != series.last_transition and pool.resize_errors:  # a resize just ended short
                codes = ", ".join(_error_label(e) for e in pool.resize_errors)
                series.failures.append((transition, codes))
                self.add(transition, "pool", f"pool {series.key} resize ended short at {pool.current['dedicated']} / "
                                             f"{pool.current['low']}: "
                                             f"{codes}", pool=series.key, severity="warning")
            series.last_transition = transition
        at = (desired is not None and pool.current["dedicated"] == desired.dedicated
              and pool.current["low"] == desired.spot)
        if at and series.reached_since is None:
            series.reached_since = now
            if series.first_reached is None:
                series.first_reached = now
            if desired.total > 0:
                self.add(now, "pool", f"pool {series.key} at its desired target: {desired.dedicated} dedicated / "
                         f"{desired.spot} Spot", pool=series.key)
        elif not at:
            series.reached_since = None

    def _watch_images(self, now: datetime) -> None:
        compute = self.local.emulator.compute
        current: dict[str, str] = {}
        names: dict[str, str] = {}
        for kind, store in (("managed image", compute.images),
                            ("gallery image version", compute.gallery_image_versions)):
            for key, resource in list(store.items()):
                current[key] = f"{kind}|{resource.provisioning_state}"
                names[key] = resource.id
        for key, value in current.items():
            kind, state = value.split("|")
            before = self._images.get(key)
            if before is None:
                self.add(now, "image",
                         f"{kind} {short_id(names[key])} "
                         f"{'requested' if state in ('Creating', 'Updating') else state.lower()}")
            elif before != value:
                self.add(now, "image", f"{kind} {short_id(names[key])} {state.lower()}",
                         severity="warning" if state == "Failed" else None)
        for key, value in self._images.items():
            if key not in current:
                self.add(now, "image", f"{value.split('|')[0]} {short_id(self._image_ids.get(key, key))} deleted",
                         severity="warning")
        self._images = current
        self._image_ids.update(names)

    def _watch_locks(self, now: datetime) -> None:
        from shared.guard.lock_plan import LOCK_NAME

        current = {(lock.scope.lower(), lock.name.lower()): lock for lock in self.local.emulator.locks.all_locks()}
        for k, lock in current.items():
            if k not in self._locks:
                owner = "the app's" if lock.name.lower() == LOCK_NAME else f"{lock.name!r}"
                self.add(now, "lock", f"{owner} {lock.level} lock placed on {short_id(lock.scope)}")
        for k, lock in self._locks.items():
            if k not in current:
                owner = "the app's" if lock.name.lower() == LOCK_NAME else f"{lock.name!r}"
                self.add(now, "lock", f"{owner} lock on {short_id(lock.scope)} removed")
        self._locks = current

    def add(self, when: datetime, kind: str, text: str, *, pool: str | None = None, severity: str | None = None,
            ok: bool = True) -> None:
        self.timeline.append(TimelineEntry(when, kind, text, pool, severity, ok))


def _error_label(error: Any) -> str:
    reason = next((v for k, v in error.values if k.lower() == "reason"), None)
    return f"{error.code} ({reason})" if reason else error.code


def short_id(resource_id: str) -> str:
    """The readable tail of an ARM id: 'galleries/autopilotGallery/images/gpu-render/versions/1.0.0'."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "providers" in lowered:
        i = len(lowered) - 1 - lowered[::-1].index("providers")
        return "/".join(parts[i + 2:])
    return resource_id

