"""Node health: which nodes of a pool are unusable, what to repair within a budget, and when an image is to blame.

Pure functions over frozen dataclasses; time is passed in. :mod:`shared.watch.node_watch` reads the nodes (Batch data
plane, ``GET /pools/{id}/nodes``) and carries out what is decided here.

Batch facts this module stands on (azure-batch 15.1.0 ``BatchNodeState`` docstrings, Batch's "node error checking"
page):

* ``unusable``: "The Compute Node cannot be used for Task execution due to errors"; ``startTaskFailed``: "The StartTask
  has failed on the Compute Node (and exhausted all retries), and waitForSuccess is set". Neither heals on its own, so a
  node that stays in one of them is removed (with ``requeue``) and the pool's target restored: Batch brings a fresh
  node.
* ``startTaskFailed`` exists only for pools with a start task that waits for success. Without one, health is judged on
  ``unusable``, on the node's ``errors[]``, and on nodes that never reach ``idle`` within a time limit.
* Remove-nodes lowers the pool's target by the nodes removed, and runs only while the pool is steady.
* An image with VM extensions, without the default temporary disk, or not generalized brings up nodes that fail on first
  boot (the seed doc's checklist). When most of a version's nodes fail that way, replacing them only burns the budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core.clock import iso, parse_iso

if TYPE_CHECKING:
    from shared.config.settings import Settings

# -- defaults and why --------------------------------------------------------------------------
# A node can be briefly unusable while Batch retries its agent; a quarter hour is well past that (issue 16's default).
DEFAULT_UNHEALTHY_MINUTES = 15.0
# A budget small enough that a broken image or network cannot churn a pool for hours, large enough for a few bad hosts.
DEFAULT_MAX_REPLACEMENTS = 10
# A node that is neither idle nor failed after this long never came up (pools without a start task). Custom-image
# nodes boot in minutes; half an hour is generous.
DEFAULT_READY_MINUTES = 30.0
# At least half of a version's nodes failing on first boot, and at least max(3, canaryNodes) of them: the image.
DEFAULT_IMAGE_UNHEALTHY_SHARE = 0.5
MIN_VERDICT_NODES = 3
# Steady healthy pools are looked at once per this period, spread over the period by a hash of the pool.
DEFAULT_ROTATION_MINUTES = 60.0
# Batch refuses a removenodes with more than 100 node ids.
REMOVE_NODES_MAX = 100

USABLE = frozenset({"idle", "running"})
FAILED = frozenset({"unusable", "starttaskfailed"})
BOOTING = frozenset({"creating", "starting", "waitingforstarttask", "unknown"})


@dataclass(frozen=True)
class HealthPolicy:
    unhealthy_after: timedelta = timedelta(minutes=DEFAULT_UNHEALTHY_MINUTES)
    max_replacements: int = DEFAULT_MAX_REPLACEMENTS
    ready_within: timedelta = timedelta(minutes=DEFAULT_READY_MINUTES)
    image_unhealthy_share: float = DEFAULT_IMAGE_UNHEALTHY_SHARE
    rotation: timedelta = timedelta(minutes=DEFAULT_ROTATION_MINUTES)

    def __post_init__(self) -> None:
        if self.max_replacements < 0:
            raise ValueError(f"max_replacements must be at least 0, got {self.max_replacements}")
        if not 0.0 < self.image_unhealthy_share <= 1.0:
            raise ValueError(f"image_unhealthy_share must be in (0, 1], got {self.image_unhealthy_share}")

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        return cls(
            unhealthy_after=timedelta(minutes=getattr(settings, "unhealthy_node_minutes", DEFAULT_UNHEALTHY_MINUTES)),
            max_replacements=getattr(settings, "max_node_replacements", DEFAULT_MAX_REPLACEMENTS),
            ready_within=timedelta(minutes=getattr(settings, "node_ready_minutes", DEFAULT_READY_MINUTES)),
            image_unhealthy_share=getattr(settings, "image_unhealthy_share", DEFAULT_IMAGE_UNHEALTHY_SHARE),
            rotation=timedelta(minutes=getattr(settings, "node_health_rotation_minutes", DEFAULT_ROTATION_MINUTES)),
        )


@dataclass(frozen=True)
class NodeInfo:
    """What the health check reads of one compute node (``BatchNode.as_dict()``)."""

    id: str
    state: str  # lower-case
    state_since: datetime | None = None
    allocated: datetime | None = None
    dedicated: bool = True
    errors: tuple[tuple[str, str], ...] = ()  # (code, message): node errors[] and a failed start task's failureInfo

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeInfo:
        errors: list[tuple[str, str]] = []
        for error in data.get("errors") or []:
            errors.append((str(error.get("code") or ""), str(error.get("message") or "")))
        failure = (data.get("startTaskInfo") or {}).get("failureInfo") or {}
        if failure:
            errors.append((str(failure.get("code") or ""), str(failure.get("message") or "")))
        return cls(id=str(data.get("id") or ""), state=str(data.get("state") or "unknown").lower(),
                   state_since=_when(data.get("stateTransitionTime")), allocated=_when(data.get("allocationTime")),
                   dedicated=bool(data.get("isDedicated", True)), errors=tuple(errors))

    @property
    def usable(self) -> bool:
        return self.state in USABLE

    @property
    def failed(self) -> bool:
        """Failed as Batch reports it: unusable or start task failed, or errors on a node that is not usable."""
        return self.state in FAILED or (bool(self.errors) and self.state not in USABLE and self.state != "leavingpool")


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return parse_iso(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class NodeSummary:
    """Counts a person reads: usable vs unhealthy, by state, and the distinct error codes with a sample message."""

    usable: int = 0
    failed: int = 0
    booting: int = 0
    total: int = 0
    by_state: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)  # code -> first message

    def to_dict(self) -> dict[str, Any]:
        return {"usable": self.usable, "unhealthy": self.failed, "booting": self.booting, "total": self.total,
                "states": dict(self.by_state), "errors": dict(self.errors)}


def summarize(nodes: Iterable[NodeInfo]) -> NodeSummary:
    by_state: dict[str, int] = {}
    errors: dict[str, str] = {}
    usable = failed = booting = total = 0
    for node in nodes:
        total += 1
        by_state[node.state] = by_state.get(node.state, 0) + 1
        if node.usable:
            usable += 1
        elif node.failed:
            failed += 1
            for code, message in node.errors:
                errors.setdefault(code or "(no code)", message)
        elif node.state in BOOTING:
            booting += 1
    return NodeSummary(usable, failed, booting, total, by_state, errors)


def is_unhealthy(node: NodeInfo, now: datetime, policy: HealthPolicy, *, has_start_task: bool) -> bool:
    """Unhealthy long enough to replace: failed for ``unhealthy_after``; without a start task also never ready in
    time."""
    if node.failed:
        since = node.state_since or node.allocated
        return since is not None and now - since >= policy.unhealthy_after
    if not has_start_task and node.state in BOOTING and node.allocated is not None:
        return now - node.allocated >= policy.ready_within
    return False


# ---------------------------------------------------------------------------------------------
# Repair within a budget
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthRecord:
    """One pool's health episode: from the first unhealthy node to a pool with none. Stored per pool."""

    started: datetime
    replaced: tuple[str, ...] = ()  # node ids removed in this episode (never removed twice)
    stopped: bool = False  # the budget ran out: NodesUnhealthy went out and repairs stopped

    def to_dict(self) -> dict[str, Any]:
        return {"started": iso(self.started), "replaced": ",".join(self.replaced), "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthRecord:
        started = parse_iso(data.get("started"))
        if started is None:
            raise ValueError("node health record without a start time")
        replaced = tuple(r for r in str(data.get("replaced") or "").split(",") if r)
        return cls(started=started, replaced=replaced, stopped=bool(data.get("stopped")))


@dataclass(frozen=True)
class Repair:
    remove: tuple[str, ...] = ()
    alert: bool = False  # raise NodesUnhealthy (budget spent)
    record: HealthRecord | None = None  # None: no episode (closed or never opened)
    reason: str = ""
    next_look: datetime | None = None  # when a failed node not yet due for replacement becomes due


def decide_repair(nodes: list[NodeInfo], record: HealthRecord | None, now: datetime, policy: HealthPolicy, *,
                  steady: bool, has_start_task: bool, image_suspect: bool = False) -> Repair:
    """What to do about a pool's unhealthy nodes.

    * No unhealthy node (counting those already removed but still leaving): the episode, if any, closes.
    * The image is suspect: nothing is replaced (fresh nodes would fail the same way); the image verdict speaks.
    * Budget left: remove unhealthy nodes not removed before, at most the budget and 100 per call, only while steady.
    * Budget spent with unhealthy nodes left: alert once and stop; the episode stays open (and stopped) until the
      pool is healthy again, so no loop and no second alert.
    """
    candidates = [n for n in nodes if is_unhealthy(n, now, policy, has_start_task=has_start_task)]
    # Booting nodes of a pool without a start task become due when they are not ready in time: one more look then.
    booting = [n.allocated + policy.ready_within for n in nodes
               if not has_start_task and n.state in BOOTING and n.allocated is not None and n not in candidates]
    if not any(n.failed or n.id in (c.id for c in candidates) for n in nodes):
        if record is not None and (not nodes or any(n.state in BOOTING or n.state == "leavingpool" for n in nodes)):
            # Replacements still on their way (removed, or booting): the episode and its budget go on.
            return Repair(record=record, reason="replacement nodes are not up yet",
                          next_look=min(booting, default=None))
        return Repair(record=None, reason="no unhealthy node" + ("; the health episode ends" if record else ""),
                      next_look=min(booting, default=None))
    waiting = booting + [(n.state_since or n.allocated) + policy.unhealthy_after for n in nodes
                         if n.failed and n not in candidates and (n.state_since or n.allocated) is not None]
    next_look = min(waiting) if waiting else None
    fresh = [n for n in candidates if record is None or n.id not in record.replaced]
    if not fresh:
        return Repair(record=record, reason="unhealthy nodes are not due for replacement yet, or were removed already",
                      next_look=next_look)
    if image_suspect:
        return Repair(record=record, reason="the image is suspect: replacing its nodes would not help")
    record = record or HealthRecord(started=now)
    if record.stopped:
        return Repair(record=record, reason="the replacement budget is spent; repairs stopped")
    remaining = policy.max_replacements - len(record.replaced)
    if remaining <= 0:
        return Repair(alert=True, record=replace(record, stopped=True),
                      reason=f"{len(fresh)} unhealthy node(s) and the budget of {policy.max_replacements} "
                             "replacement(s) is spent")
    if not steady:
        return Repair(record=record, reason="waiting for the pool to be steady before removing nodes",
                      next_look=next_look)
    chosen = tuple(n.id for n in fresh[:min(remaining, REMOVE_NODES_MAX)])
    return Repair(remove=chosen, record=replace(record, replaced=record.replaced + chosen), next_look=next_look,
                  reason=f"removing {len(chosen)} unhealthy node(s) ({len(record.replaced) + len(chosen)} of "
                         f"{policy.max_replacements})")


# ---------------------------------------------------------------------------------------------
# The image verdict
# ---------------------------------------------------------------------------------------------


def verdict_threshold(canary_nodes: int) -> int:
    return max(MIN_VERDICT_NODES, canary_nodes)


def image_suspect(summaries: Iterable[NodeSummary], policy: HealthPolicy, canary_nodes: int) -> bool:
    """At least ``image_unhealthy_share`` of a version's settled nodes (usable or failed), and at least
    max(3, canaryNodes) nodes, failed: the version is suspect."""
    failed = usable = 0
    for summary in summaries:
        failed += summary.failed
        usable += summary.usable
    settled = failed + usable
    return (failed >= verdict_threshold(canary_nodes) and settled > 0
            and failed / settled >= policy.image_unhealthy_share)


def network_suspect(older: Iterable[NodeSummary], policy: HealthPolicy) -> bool:
    """Pools on the same subnet and VM size running an older version are failing too: the network, not the image."""
    failed = usable = 0
    for summary in older:
        failed += summary.failed
        usable += summary.usable
    return failed > 0 and failed / (failed + usable) >= policy.image_unhealthy_share

