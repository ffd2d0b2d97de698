"""What the pool watch sees of a pool, what the pool should be, and the next resize that gets it there.

Pure functions over plain frozen dataclasses; time is always passed in. The handler builds a
:class:`PoolView` from ``BatchPool.as_dict()`` (data plane) or a management-plane pool, reads the
target in force with :func:`desired_target`, and asks :mod:`shared.watch.episodes` what to do.

Batch facts this module stands on:

* A pool can be resized only while its ``allocationState`` is steady (a resize of a resizing pool,
  or of an autoscale pool, is refused with 409).
* ``resizeErrors`` appear only once the pool is steady again and stay until the next resize, so a
  steady pool with errors may be showing an *old* failure. Comparing ``allocationStateTransitionTime``
  with the time of our own last resize request (as ga4gh-tes does) tells a fresh outcome from a
  view that predates our request, so one failure is never acted on twice.
* With a custom image, Batch's guidance is that pools past 300 nodes may take several resizes, and
  the Compute Gallery guidance asks for at least 15 minutes of resize timeout per 1,000 VMs; the
  resize guidance sets 20-30 minutes for fixed-size custom-image pools.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.config.settings import DEFAULTS
from shared.core import pool_metadata
from shared.core.durations import format_iso_duration as format_duration
from shared.core.durations import parse_iso_duration
from shared.watch.backoff import ExponentialBackoff
from shared.watch.resize_errors import ResizeError, parse_errors
from shared.watch.schedules import DEFAULT_LOOKBACK, ScheduleError, parse_schedule, target_in_force

if TYPE_CHECKING:
    from shared.config.settings import Settings

STEADY = "steady"
RESIZING = "resizing"
STOPPING = "stopping"

# Data-plane spellings (the management plane uses PascalCase: Requeue, TaskCompletion, ...).
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")

# -- defaults and why --------------------------------------------------------------------------
# The values of those that are settings live once, in shared/config/settings.py (DEFAULTS); the reasons live here.

# Batch's custom-image guidance: "pools past 300 nodes may take several resizes", and one resize
# is granted at most about 300 nodes in practice (also what the emulator's capacity model grants).
# Growing 300 at a time turns one long, likely-to-time-out resize into steps that each succeed.
DEFAULT_GROWTH_STEP = DEFAULTS.growth_step_nodes  # 300
# Lower edge of the 20-30 minute resizeTimeout band Batch recommends for fixed-size custom-image
# pools (the service default of 15 minutes is too short for custom images).
DEFAULT_RESIZE_TIMEOUT_FLOOR = timedelta(minutes=20)
# Compute Gallery guidance: "at least 15 minutes of resize timeout per 1,000 VMs". It is a minimum,
# so a single step of more than 2,000 nodes gets more than the 30-minute top of the band.
DEFAULT_RESIZE_TIMEOUT_PER_1000 = timedelta(minutes=15)
# Batch flips a pool to "resizing" as it accepts a resize (the 202), so within a scan or two the
# pool shows either resizing or a transition newer than our request. A pool still steady with an
# older transition 10 minutes (two 5-minute scans) later never got the request: stop waiting for it.
DEFAULT_REQUEST_GRACE = timedelta(minutes=10)
# Twelve failed attempts: with backoff 5 → 10 → 20 → 30 min and 20-30 minute resize timeouts this is
# roughly nine hours of trying, plenty for a regional capacity dip; beyond that a person must look.
DEFAULT_MAX_RESIZE_ATTEMPTS = DEFAULTS.max_resize_attempts  # 12
# One day per failure episode: the same horizon Event Grid gives its own retries. A quota increase
# can take two business days, but that needs a person anyway, so retrying longer only hides it.
DEFAULT_MAX_EPISODE = timedelta(hours=DEFAULTS.max_episode_hours)  # 24 h
# One alert of a kind per pool per hour at most: enough to notice, too few to be muted.
DEFAULT_ALERT_COOLDOWN = timedelta(minutes=DEFAULTS.alert_cooldown_minutes)  # 60 min
# Scheduled shrinks let running tasks finish: "requeue" (Batch's default) would throw away the
# work of every running task on the removed nodes. Overridden per pool by autopilot.nodeDeallocationOption.
DEFAULT_DEALLOCATION = "taskcompletion"
# Batch refuses a resizeTimeout below 5 minutes with 400.
BATCH_MIN_RESIZE_TIMEOUT = timedelta(minutes=5)


class PoolIntentError(ValueError):
    """The pool's autopilot metadata cannot be read; the message names the pool, the key and the fix."""

    def __init__(self, pool_id: str, key: str, problem: str, example: str) -> None:
        super().__init__(f"Pool {pool_id!r}: metadata {key} {problem}; for example {key}={example}. "
                         "The autopilot leaves the pool alone until the metadata is fixed.")
        self.pool_id = pool_id
        self.key = key


@dataclass(frozen=True)
class WatchPolicy:
    """The pool watch's knobs, from settings. Defaults are the named constants above."""

    backoff: ExponentialBackoff = field(default_factory=ExponentialBackoff)
    max_resize_attempts: int = DEFAULT_MAX_RESIZE_ATTEMPTS
    max_episode: timedelta = DEFAULT_MAX_EPISODE
    growth_step_nodes: int = DEFAULT_GROWTH_STEP
    alert_cooldown: timedelta = DEFAULT_ALERT_COOLDOWN
    resize_timeout_floor: timedelta = DEFAULT_RESIZE_TIMEOUT_FLOOR
    resize_timeout_per_1000_nodes: timedelta = DEFAULT_RESIZE_TIMEOUT_PER_1000
    request_grace: timedelta = DEFAULT_REQUEST_GRACE
    schedule_lookback: timedelta = DEFAULT_LOOKBACK
    default_deallocation: str = DEFAULT_DEALLOCATION

    def __post_init__(self) -> None:
        if self.max_resize_attempts < 1:
            raise ValueError(f"max_resize_attempts must be at least 1, got {self.max_resize_attempts}")
        if self.growth_step_nodes < 1:
            raise ValueError(f"growth_step_nodes must be at least 1, got {self.growth_step_nodes}")
        if self.default_deallocation not in DEALLOCATION_OPTIONS:
            raise ValueError(f"default_deallocation must be one of {', '.join(DEALLOCATION_OPTIONS)}, got "
                             f"{self.default_deallocation!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchPolicy:
        return cls(
            backoff=ExponentialBackoff.from_settings(settings),
            max_resize_attempts=settings.max_resize_attempts,
            max_episode=timedelta(hours=settings.max_episode_hours),
            growth_step_nodes=settings.growth_step_nodes,
            alert_cooldown=timedelta(minutes=settings.alert_cooldown_minutes),
        )


@dataclass(frozen=True, slots=True)  # one object per pool per tick, not two (no __dict__)
class PoolView:
    """The parts of a Batch pool the watch reads. ``allocation_state`` is lower-case whatever the plane said."""

    account_id: str
    pool_id: str
    allocation_state: str
    allocation_state_transition_time: datetime | None = None
    current_dedicated: int = 0
    current_spot: int = 0
    target_dedicated: int = 0
    target_spot: int = 0
    resize_errors: tuple[ResizeError, ...] = ()
    enable_auto_scale: bool = False
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    vm_size: str | None = None
    # the custom image (gallery image version / definition) id; None for a Marketplace image
    image_id: str | None = None
    resize_timeout: timedelta | None = None
    inbound_nat: bool = False  # the pool has inbound NAT pools (they lower the managed-image node cap)

    def __post_init__(self) -> None:
        state = self.allocation_state
        if type(state) is not str or not state.islower():  # the list pages' "steady" / "resizing" are already lower
            object.__setattr__(self, "allocation_state", _enum_text(state).lower())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], account_id: str = "") -> PoolView:
        """From the data-plane JSON shape (``BatchPool.as_dict()``), or a management-plane pool (``{"name",
        "properties": {...}}``)."""
        if isinstance(data.get("properties"), Mapping):
            return cls._from_management(data, account_id)
        vm = data.get("virtualMachineConfiguration") or {}
        return cls(
            account_id=account_id,
            pool_id=_str(data.get("id")) or "",
            allocation_state=_enum_text(data.get("allocationState")) or "",
            allocation_state_transition_time=parse_datetime(data.get("allocationStateTransitionTime")),
            current_dedicated=_int(data.get("currentDedicatedNodes")),
            current_spot=_int(data.get("currentLowPriorityNodes")),
            target_dedicated=_int(data.get("targetDedicatedNodes")),
            target_spot=_int(data.get("targetLowPriorityNodes")),
            resize_errors=parse_errors(data.get("resizeErrors")),
            enable_auto_scale=bool(data.get("enableAutoScale")),
            etag=_str(data.get("eTag") or data.get("etag")),
            metadata=pool_metadata.as_dict(data.get("metadata")),
            vm_size=_str(data.get("vmSize")),
            image_id=_image_id(vm.get("imageReference") if isinstance(vm, Mapping) else None),
            resize_timeout=parse_duration(data.get("resizeTimeout")),
            inbound_nat=_has_nat(data.get("networkConfiguration")),
        )

    @classmethod
    def from_list_item(cls, data: Mapping[str, Any], account_id: str) -> PoolView:
        """One pool of a data-plane list page as ``json.loads`` gives it: the watch's hot path, once per pool per tick.

        The same view as :meth:`from_dict` for that input (``tests/e2e/test_pool_pages.py`` compares them on every
        field), with the generic conversions skipped where the JSON types are already the right ones.
        """
        get = data.get
        vm = get("virtualMachineConfiguration")
        errors = get("resizeErrors")
        timeout = get("resizeTimeout")
        state = get("allocationState")
        return cls(
            account_id,
            _str(get("id")) or "",
            state if type(state) is str else (_enum_text(state) or ""),
            parse_datetime(get("allocationStateTransitionTime")),
            _json_int(get("currentDedicatedNodes")),
            _json_int(get("currentLowPriorityNodes")),
            _json_int(get("targetDedicatedNodes")),
            _json_int(get("targetLowPriorityNodes")),
            parse_errors(errors) if errors else (),
            bool(get("enableAutoScale")),
            _str(get("eTag") or get("etag")),
            pool_metadata.as_dict(get("metadata")),
            _str(get("vmSize")),
            _image_id(vm.get("imageReference")) if type(vm) is dict else None,
            parse_duration(timeout) if timeout is not None else None,
            _has_nat(get("networkConfiguration")),
        )

    @classmethod
    def _from_management(cls, data: Mapping[str, Any], account_id: str) -> PoolView:
        p = data["properties"]
        scale = p.get("scaleSettings") or {}
        fixed = scale.get("fixedScale") or {}
        status = p.get("resizeOperationStatus") or {}
        vm = (p.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {}
        return cls(
            account_id=account_id,
            pool_id=_str(data.get("name")) or "",
            allocation_state=_enum_text(p.get("allocationState")) or "",
            allocation_state_transition_time=parse_datetime(p.get("allocationStateTransitionTime")),
            current_dedicated=_int(p.get("currentDedicatedNodes")),
            current_spot=_int(p.get("currentLowPriorityNodes")),
            target_dedicated=_int(fixed.get("targetDedicatedNodes", status.get("targetDedicatedNodes"))),
            target_spot=_int(fixed.get("targetLowPriorityNodes", status.get("targetLowPriorityNodes"))),
            resize_errors=parse_errors(status.get("errors")),
            enable_auto_scale=bool(scale.get("autoScale")),
            etag=_str(data.get("etag")),
            metadata=pool_metadata.as_dict(p.get("metadata")),
            vm_size=_str(p.get("vmSize")),
            image_id=_image_id(vm.get("imageReference")),
            resize_timeout=parse_duration(fixed.get("resizeTimeout") or status.get("resizeTimeout")),
            inbound_nat=_has_nat(p.get("networkConfiguration")),
        )

    @property
    def is_steady(self) -> bool:
        return self.allocation_state == STEADY

    @property
    def is_managed(self) -> bool:
        return pool_metadata.is_managed(dict(self.metadata))

    @property
    def current_total(self) -> int:
        return self.current_dedicated + self.current_spot


@dataclass(frozen=True)
class DesiredTarget:
    """The node counts the watch drives a pool towards, and where they came from."""

    dedicated: int
    spot: int
    source: str = "metadata"  # "metadata" | "schedule"
    fired_at: datetime | None = None  # for a schedule: when the entry in force fired

    @property
    def total(self) -> int:
        return self.dedicated + self.spot


@dataclass(frozen=True)
class ResizeStep:
    """One resize request. ``node_deallocation_option`` (data-plane spelling) is set only when a count shrinks."""

    target_dedicated: int
    target_spot: int
    resize_timeout: timedelta
    node_deallocation_option: str | None = None

    @property
    def resize_timeout_iso(self) -> str:
        return format_duration(self.resize_timeout)


# --------------------------------------------------------------------------------------------
# Intent: what the pool should be
# --------------------------------------------------------------------------------------------


def desired_target(pool: PoolView, now: datetime, lookback: timedelta = DEFAULT_LOOKBACK) -> DesiredTarget | None:
    """The target in force for a managed pool: its schedule's entry in force, else its desired metadata; None when
    unmanaged.

    A pool is managed only if the app created it or a team opted it in (``autopilot.managed=true``).
    A managed pool with neither a schedule entry in force nor desired values has no target: None.
    When only one of ``desiredDedicated`` / ``desiredSpot`` is set, the other count is left as the
    pool's own target (the autopilot does not manage it). Raises :class:`PoolIntentError` for
    metadata that cannot be read, so that a typo never silently resizes a pool.
    """
    if not pool.is_managed:
        return None
    if _rollout_hold(pool):
        # A rollout holds the pool at 0 (drained for an in-place image change, or retired by a newer version's pool):
        # the hold wins over schedule and desired values, which stay on the pool for when the hold is lifted
        # (shared/lifecycle/rollout.py).
        return DesiredTarget(0, 0, "rollout")
    raw_schedule = pool.metadata.get(pool_metadata.SCHEDULE, "").strip()
    if raw_schedule:
        try:
            schedule = parse_schedule(raw_schedule)
        except ScheduleError as exc:
            raise PoolIntentError(pool.pool_id, pool_metadata.SCHEDULE, f"is invalid: {exc.problem}",
                                  '[{"cron": "0 0 7 * * MON-FRI", "dedicated": 800, "spot": 0}]') from None
        in_force = target_in_force(schedule, now, lookback)
        if in_force is not None:
            return DesiredTarget(in_force.dedicated, in_force.spot, "schedule", in_force.fired_at)
    dedicated = _metadata_count(pool, pool_metadata.DESIRED_DEDICATED)
    spot = _metadata_count(pool, pool_metadata.DESIRED_SPOT)
    if dedicated is None and spot is None:
        return None
    return DesiredTarget(pool.target_dedicated if dedicated is None else dedicated,
                         pool.target_spot if spot is None else spot)


def deallocation_option(pool: PoolView, policy: WatchPolicy) -> str:
    if _rollout_hold(pool):
        # a rollout empties the pool for good or for an image change: running tasks finish first
        return "taskcompletion"
    raw = pool.metadata.get(pool_metadata.DEALLOCATION, "").strip()
    if not raw:
        return policy.default_deallocation
    option = raw.lower()
    if option not in DEALLOCATION_OPTIONS:
        raise PoolIntentError(pool.pool_id, pool_metadata.DEALLOCATION,
                              f"is {raw!r}, not one of {', '.join(DEALLOCATION_OPTIONS)}", "taskcompletion")
    return option


# --------------------------------------------------------------------------------------------
# Observation: where the pool is
# --------------------------------------------------------------------------------------------


def at_target(pool: PoolView, desired: DesiredTarget) -> bool:
    return pool.current_dedicated == desired.dedicated and pool.current_spot == desired.spot


def below_target(pool: PoolView, desired: DesiredTarget) -> bool:
    return pool.current_dedicated < desired.dedicated or pool.current_spot < desired.spot


def request_answered(pool: PoolView, last_request_time: datetime | None) -> bool:
    """Batch has finished with our last request: the pool went steady after we asked (ga4gh-tes's test)."""
    if last_request_time is None:
        return True
    t = pool.allocation_state_transition_time
    return pool.is_steady and t is not None and t > last_request_time


def awaiting_request(pool: PoolView, last_request_time: datetime | None, now: datetime,
                     grace: timedelta = DEFAULT_REQUEST_GRACE) -> bool:
    """Our last request is still in Batch's hands: the pool is resizing for it, or still shows the steady state from
    before it.

    After ``grace`` a steady pool that never moved means the request was lost: stop waiting.
    """
    if last_request_time is None or request_answered(pool, last_request_time):
        return False
    if not pool.is_steady:
        return True
    return now - last_request_time < grace


def is_stalled(
    pool: PoolView, desired: DesiredTarget | None, last_request_time: datetime | None, now: datetime,
    grace: timedelta = DEFAULT_REQUEST_GRACE
) -> bool:
    """Steady, below the desired target, and either reporting resize errors or steady since our last request was
    answered.

    A steady view older than our last request (within ``grace``) is stale, never a stall: Batch has
    not got to the request yet, and re-issuing would act on one failure twice.
    """
    if desired is None or pool.enable_auto_scale or not pool.is_steady or not below_target(pool, desired):
        return False
    if awaiting_request(pool, last_request_time, now, grace):
        return False
    return bool(pool.resize_errors) or last_request_time is not None


# --------------------------------------------------------------------------------------------
# Action: the next resize
# --------------------------------------------------------------------------------------------


def resize_timeout_for(nodes: int, policy: WatchPolicy | None = None) -> timedelta:
    """Resize timeout for a resize that allocates ``nodes`` nodes: the band floor, or 15 min per 1,000 nodes if more.

    Rounded up to whole minutes. 300 nodes → 20 min; 2,000 → 30 min; 2,500 → 38 min.
    """
    policy = policy or WatchPolicy()
    per_node = policy.resize_timeout_per_1000_nodes.total_seconds() / 1000
    seconds = max(policy.resize_timeout_floor.total_seconds(), per_node * max(nodes, 0),
                  BATCH_MIN_RESIZE_TIMEOUT.total_seconds())
    return timedelta(minutes=math.ceil(seconds / 60 - 1e-9))


def configured_resize_timeout(pool: PoolView) -> timedelta | None:
    """The pool's own resize timeout (``autopilot.resizeTimeoutMinutes``: the family's value, recorded at creation, or a
    team's override); None when the pool has none. Raises :class:`PoolIntentError` for a value Batch would refuse."""
    raw = pool.metadata.get(pool_metadata.RESIZE_TIMEOUT, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 5 <= int(raw) <= 1440:
        raise PoolIntentError(pool.pool_id, pool_metadata.RESIZE_TIMEOUT,
                              f"is {raw!r}, not whole minutes within 5-1440 "
                              "(Batch refuses less than 5)", "25")
    return timedelta(minutes=int(raw))


def nodes_within(timeout: timedelta, policy: WatchPolicy | None = None) -> int:
    """The most nodes one resize can be expected to allocate within ``timeout`` (15 minutes per 1,000 nodes)."""
    policy = policy or WatchPolicy()
    return max(1, int(timeout.total_seconds() * 1000 // policy.resize_timeout_per_1000_nodes.total_seconds()))


def next_resize(pool: PoolView, desired: DesiredTarget, policy: WatchPolicy | None = None) -> ResizeStep | None:
    """The next resize towards ``desired``; None when the pool is already there and asks for nothing else.

    Growth is staged for custom-image pools: at most ``growth_step_nodes`` nodes are added per
    resize, counted from the nodes the pool really has (so a partly failed step is not skipped),
    dedicated first (the nodes a workload can rely on; Spot can be taken back at any time).
    Shrinking is one step, with the pool's node-deallocation option.
    """
    policy = policy or WatchPolicy()
    configured = configured_resize_timeout(pool)
    grow_dedicated = max(0, desired.dedicated - pool.current_dedicated)
    grow_spot = max(0, desired.spot - pool.current_spot)
    if pool.image_id is not None or configured is not None:  # custom image: staged growth
        # A step that could not finish within the pool's own timeout is made smaller; its timeout is never cut short.
        budget = min(policy.growth_step_nodes,
                     nodes_within(configured, policy)) if configured else policy.growth_step_nodes
        grow_dedicated = min(grow_dedicated, budget)
        grow_spot = min(grow_spot, budget - grow_dedicated)
    target_dedicated = (pool.current_dedicated
                        + grow_dedicated if desired.dedicated > pool.current_dedicated else desired.dedicated)
    target_spot = pool.current_spot + grow_spot if desired.spot > pool.current_spot else desired.spot
    if ((target_dedicated, target_spot) == (pool.current_dedicated, pool.current_spot)
        == (pool.target_dedicated, pool.target_spot)):
        return None
    shrinks = target_dedicated < pool.current_dedicated or target_spot < pool.current_spot
    added = max(0, target_dedicated - pool.current_dedicated) + max(0, target_spot - pool.current_spot)
    return ResizeStep(
        target_dedicated=target_dedicated,
        target_spot=target_spot,
        resize_timeout=configured if configured is not None else resize_timeout_for(added, policy),
        node_deallocation_option=deallocation_option(pool, policy) if shrinks else None,
    )


# --------------------------------------------------------------------------------------------
# Parsing helpers (the wire's datetimes and ISO 8601 durations)
# --------------------------------------------------------------------------------------------

def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from a datetime or an ISO 8601 string ('Z' and 7-digit fractions accepted); None if absent or
    unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


def parse_duration(value: Any) -> timedelta | None:
    """An ISO 8601 duration as Batch writes it ("PT15M", "PT15M00S", "P1DT2H") or a timedelta; None if absent or
    unreadable."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        return None
    return _parse_duration_text(value)


# a handful of distinct resizeTimeouts across thousands of pools: parse each once per instance
@functools.lru_cache(maxsize=256)
def _parse_duration_text(value: str) -> timedelta | None:
    try:
        return parse_iso_duration(value)
    except ValueError:
        return None


def _rollout_hold(pool: PoolView) -> bool:
    return pool_metadata.hold_of(pool.metadata) is not None


def _metadata_count(pool: PoolView, key: str) -> int | None:
    raw = pool.metadata.get(key)
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isdigit():
        raise PoolIntentError(pool.pool_id, key, f"is {raw!r}, not a whole number of nodes", "100")
    return int(text)


def _has_nat(network: Any) -> bool:
    if network is None:
        return False  # most pools: no network configuration in the list page
    endpoint = network.get("endpointConfiguration") if isinstance(network, Mapping) else None
    if not isinstance(endpoint, Mapping):
        return False
    return bool(endpoint.get("inboundNATPools") or endpoint.get("inboundNatPools"))


def _image_id(reference: Any) -> str | None:
    if type(reference) is not dict and not isinstance(reference, Mapping):  # dict first: an ABC check costs more
        return None
    for key in ("virtualMachineImageId", "id", "sharedGalleryImageId", "communityGalleryImageId"):
        value = reference.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _enum_text(value: Any) -> str:
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_int(value: Any) -> int:
    return value if type(value) is int else _int(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
