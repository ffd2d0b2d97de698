"""The canary: a new version's pools grow to ``canaryNodes`` first, and to their targets only once those nodes work.

State lives on the pool itself, in its metadata (like the rest of the app's intent), so the watch, the CLI, the rollout
code and a rebuilt state table all see it:

* ``autopilot.canaryNodes``: how many nodes the canary has (the family's ``canaryNodes`` when the pool was created);
* ``autopilot.canary``: ``pending`` (growing to / waiting on the canary), ``passed`` (grows to its target) or
  ``failed`` (the image verdict blamed the version: growth stops at the canary).

A pool without these keys has no canary (created before the feature, or ``canaryNodes: 0``): nothing is capped.
Pure functions; :mod:`shared.watch.node_watch` reads the nodes and writes the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.watch.node_health import NodeSummary
    from shared.watch.pool_policy import DesiredTarget

CANARY = "autopilot.canary"
CANARY_NODES = "autopilot.canaryNodes"
PENDING, PASSED, FAILED = "pending", "passed", "failed"


def metadata_for(canary_nodes: int) -> dict[str, str]:
    """The canary keys a new pool is created with (none when the family turned the canary off)."""
    if canary_nodes <= 0:
        return {}
    return {CANARY: PENDING, CANARY_NODES: str(canary_nodes)}


def first_target(dedicated: int, spot: int, canary_nodes: int) -> tuple[int, int]:
    """The canary's share of a first target: dedicated first, then Spot, as the watch spends a growth step."""
    if canary_nodes <= 0:
        return dedicated, spot
    first_dedicated = min(dedicated, canary_nodes)
    return first_dedicated, min(spot, canary_nodes - first_dedicated)


def state(metadata: Mapping[str, str]) -> str | None:
    value = (metadata.get(CANARY) or "").strip().lower()
    return value if value in (PENDING, PASSED, FAILED) else None


def size(metadata: Mapping[str, str]) -> int:
    try:
        return max(0, int((metadata.get(CANARY_NODES) or "0").strip()))
    except ValueError:
        return 0


def cap(desired: DesiredTarget, metadata: Mapping[str, str]) -> DesiredTarget:
    """The target the watch drives towards while the canary is pending or failed: at most ``canaryNodes`` nodes."""
    if state(metadata) not in (PENDING, FAILED):
        return desired
    nodes = size(metadata)
    dedicated, spot = first_target(desired.dedicated, desired.spot, nodes)
    if (dedicated, spot) == (desired.dedicated, desired.spot):
        return desired
    return replace(desired, dedicated=dedicated, spot=spot)


def passed(summary: NodeSummary, metadata: Mapping[str, str], desired_total: int) -> bool:
    """The canary passes once it has its nodes usable (idle or running) and none failed. A pool desired at 0 nodes
    (a schedule at night) cannot pass: it waits for its next growth."""
    wanted = min(size(metadata), desired_total)
    return wanted > 0 and summary.usable >= wanted and summary.failed == 0


def canary_passed(metadata: Mapping[str, str]) -> bool | None:
    """For the rollout: True once the pool's canary passed (or it has none), False when it failed, None while pending.

    A rollout retires nothing and patches no other pool until this is True for every pool of the new version.
    """
    current = state(metadata)
    if current == PENDING:
        return None
    return current != FAILED
