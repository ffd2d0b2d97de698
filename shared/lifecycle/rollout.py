"""Rolling a family's new image version into its pools: pure decisions over plain values, time passed in.

Two modes (families.md, README "Rolling out a new version"):

* ``inPlace``: the pool keeps its id. The image is changed with Batch management Pool - Update, which
  Batch accepts only while the pool is steady with zero dedicated and zero Spot nodes (Learn "Update
  Batch pool properties"). ``nextZero`` waits for a zero that comes anyway (a nightly schedule);
  ``drain`` makes one: the pool is held at 0 (``autopilot.rolloutHold=drain``, shrunk with
  ``taskcompletion`` so running tasks finish), patched, and the hold is lifted so the watch regrows it.
* ``newPools`` with ``retirePrevious``: once the new version's pool of a slot has held its target for
  ``retireAfter``, the previous version's pool of the same slot is held at 0 (``retired``) and its
  desired target and schedule move to the new pool.

The hold lives in the pool's own metadata, written in the same Pool - Update as the rest, so the pool
watch (which reads only the pool) shrinks a held pool and never regrows it, whichever instance looks.
The adapter (:mod:`shared.lifecycle.rollout_runner`) reads pools and Table state, asks these functions, and acts
with ETags; every decision here is a function of what it is given, so a redelivered event or a second
instance decides the same thing and the ETag lets only one of them act.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.config.family_parts import RolloutPolicy
from shared.core.durations import format_short
from shared.core.pool_metadata import HOLD, HOLD_DRAIN, HOLD_RETIRED, hold_of  # noqa: F401 (rollout's vocabulary)
from shared.pipeline.snapshot_tags import version_problem

# Pool metadata the rollout adds (beside shared/core/pool_metadata.py's keys).
RETIRED_BY = "autopilot.retiredBy"  # the version whose pool took over this one's work

# Rollout stages (Table state and `autopilot status`).
WAITING = "waitingForZero"  # inPlace nextZero: the pool has nodes; the patch waits for its next zero
DRAINING = "draining"  # inPlace drain: held at 0, running tasks finishing
PATCHED = "patched"  # inPlace: the pool references the new version; regrowing
HOLDING = "holding"  # newPools: the new pool must hold its target for retireAfter
RETIRING = "retiring"  # newPools: the old pool is held at 0
DONE = "done"
ROLLED_BACK = "rolledBack"  # inPlace: the new version's canary failed; the pool went back to the previous version
FINISHED = (DONE, ROLLED_BACK)
BLOCKED = "blocked"  # (a flag on WAITING/DRAINING) the zero did not come within maxWait


def version_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


def wanted_version(ready_versions: list[str], pin: str | None) -> str | None:
    """The version the family's pools should run: the pin if set (a roll back), else the newest ready one.

    A pin that is not (or no longer) a ready version gives None: nothing moves, and the adapter says why.
    """
    valid = [v for v in ready_versions if not version_problem(v)]
    if pin is not None:
        return pin if pin in valid else None
    return max(valid, key=version_key) if valid else None


class Step(enum.Enum):
    NOTHING = "nothing"
    START = "start"  # record the rollout (RolloutStarted)
    PATCH_IMAGE = "patchImage"  # Pool - Update: image + autopilot.version/imageId, hold lifted, in one update
    # metadata: autopilot.rolloutHold=drain (the watch shrinks the pool with taskcompletion)
    HOLD_FOR_DRAIN = "holdForDrain"
    BLOCKED = "blocked"  # RolloutBlocked: no zero within maxWait
    COMPLETE = "complete"  # RolloutCompleted
    ROLL_BACK = "rollBack"  # inPlace: the canary failed; Pool - Update back to the previous version at zero nodes
    START_HOLDING = "startHolding"  # newPools: the new pool reached its target; the retireAfter clock starts
    RETIRE = "retire"  # newPools: move desired/schedule to the new pool, hold the old one at 0
    RESTORE = "restore"  # newPools + pinVersion: the pinned version's pool was retired; lift its hold so it regrows
    # newPools + deleteRetiredPools: the retired pool is empty and no active job targets it
    DELETE_RETIRED = "deleteRetired"


@dataclass(frozen=True)
class PoolFacts:
    """What a rollout decision reads of one pool (from PoolView and its desired target)."""

    pool_id: str
    version: str | None  # autopilot.version
    steady: bool
    current_nodes: int  # dedicated + Spot
    at_target: bool  # current == desired (desired read with the rollout hold ignored)
    desired_nodes: int
    hold: str | None = None


@dataclass(frozen=True)
class RolloutState:
    """The Table record of one slot's rollout (partition: family, row: the slot)."""

    to_version: str
    from_version: str | None
    stage: str
    started_at: datetime
    stage_at: datetime
    blocked: bool = False


@dataclass(frozen=True)
class Decision:
    step: Step
    reason: str


def decide_in_place(policy: RolloutPolicy, pool: PoolFacts, wanted: str, state: RolloutState | None, now: datetime,
                    *, canary_passed: bool | None = True) -> Decision:
    """The next step for an ``inPlace`` pool that should run ``wanted``."""
    if pool.version == wanted:
        rolling = state is not None and state.to_version == wanted and state.stage not in FINISHED
        if rolling and canary_passed is False:
            assert state is not None
            failed, previous = f"the canary of {wanted} failed", state.from_version
            if not previous:
                return Decision(Step.NOTHING, f"{failed} and the previous version is not known: nothing to go back to")
            if pool.steady and pool.current_nodes == 0:
                return Decision(Step.ROLL_BACK, f"{failed}: back to {previous} while the pool is at 0 nodes")
            if policy.apply_when == "drain" and pool.hold != HOLD_DRAIN:
                return Decision(Step.HOLD_FOR_DRAIN, f"{failed}: take the pool to 0 to go back to {previous}")
            return Decision(Step.NOTHING, f"{failed}: back to {previous} at the pool's next zero")
        if pool.hold == HOLD_DRAIN:
            # Patched by an earlier step whose lift of the hold did not land (cannot happen in one update, but a
            # person may have added it): lifting it is a metadata change, safe at any size.
            return Decision(Step.PATCH_IMAGE, "the pool runs the new version but is still held at 0: lift the hold")
        if state is None or not rolling:
            return Decision(Step.NOTHING, f"the pool runs {wanted}")
        if canary_passed is None:
            return Decision(Step.NOTHING, f"the pool runs {wanted}; its canary has not passed yet")
        if pool.steady and pool.at_target:
            return Decision(Step.COMPLETE, f"the pool runs {wanted} and is at its target")
        return Decision(Step.NOTHING, f"the pool runs {wanted}; regrowing to its target")
    if state is not None and state.to_version == wanted and state.stage == ROLLED_BACK:
        return Decision(Step.NOTHING,
                        f"{wanted} failed its canary and was rolled back: a newer version (or a pin) moves the pool")
    if (state is not None and state.to_version == wanted and state.stage == PATCHED and state.from_version
            and pool.version == state.from_version):
        # PATCHED means the pool ran ``wanted``; back on the previous version, the roll back's Pool - Update landed
        # but its record and alert did not (a restart, or Batch applied it and the answer was lost). Finish that step
        # (the patch finds it done) rather than take the pool to the version whose canary failed again.
        return Decision(Step.ROLL_BACK, f"the pool is back on {state.from_version}: record the roll back")
    if state is None or state.to_version != wanted:
        return Decision(Step.START, f"the pool runs {pool.version or 'an unknown version'}; {wanted} is wanted")
    if pool.steady and pool.current_nodes == 0:
        return Decision(Step.PATCH_IMAGE,
                        f"the pool is steady at 0 nodes: Batch accepts the image change to {wanted} now")
    if policy.apply_when == "drain" and pool.hold != HOLD_DRAIN:
        return Decision(Step.HOLD_FOR_DRAIN,
                        "applyWhen drain: take the pool to 0 with taskcompletion so running tasks finish")
    if not state.blocked and now - state.started_at >= policy.max_wait:
        return Decision(Step.BLOCKED,
                        f"the pool has not reached 0 nodes within maxWait ({format_short(policy.max_wait)})")
    return Decision(Step.NOTHING, f"waiting for the pool to reach 0 nodes ({pool.current_nodes} now)")


def decide_new_pools(policy: RolloutPolicy, new_pool: PoolFacts | None, old_pools: list[PoolFacts],
                     state: RolloutState | None,
                     now: datetime, *, canary_passed: bool | None = True,
                     jobs_on: Mapping[str, int] | None = None) -> tuple[Decision, list[str]]:
    """The next step for one slot of a ``newPools`` family with ``retirePrevious``; returns the decision and the old
    pool ids it is about.

    ``jobs_on``: active jobs per old pool id (only needed for a delete; missing means not known, so no delete).
    """
    if not policy.retire_previous:
        return Decision(Step.NOTHING, "retirePrevious is off: old pools stay"), []
    live_old = [p for p in old_pools if p.hold != HOLD_RETIRED]
    retired = [p for p in old_pools if p.hold == HOLD_RETIRED]
    if new_pool is None:
        return Decision(Step.NOTHING, "the new version's pool does not exist yet (or, for a pin, no longer exists)"), []
    if new_pool.hold == HOLD_RETIRED:
        # A roll back (pinVersion) to a version whose pool an earlier rollout retired: it comes back first, and
        # the pools of the newer versions retire once it has held its target for retireAfter, as in any rollout.
        restore = Decision(Step.RESTORE, f"{new_pool.pool_id} runs the wanted version but was retired: lift its hold")
        return restore, [new_pool.pool_id]
    if live_old:
        if state is None or state.stage not in (HOLDING, RETIRING):
            if new_pool.steady and new_pool.at_target and new_pool.desired_nodes > 0:
                return Decision(Step.START_HOLDING,
                                f"{new_pool.pool_id} reached its target; retiring the previous pool after "
                                f"{format_short(policy.retire_after)}"), [p.pool_id for p in live_old]
            return Decision(Step.NOTHING, f"waiting for {new_pool.pool_id} to reach its target"), []
        if not (new_pool.steady and new_pool.at_target):
            return Decision(Step.NOTHING, f"{new_pool.pool_id} left its target; the retireAfter clock waits"), []
        if canary_passed is False:
            return Decision(Step.NOTHING, f"the canary of {new_pool.pool_id} failed: nothing is retired"), []
        if now - state.stage_at < policy.retire_after:
            return Decision(Step.NOTHING,
                            f"{new_pool.pool_id} holds its target; retiring at "
                            f"{state.stage_at + policy.retire_after}"), []
        return (Decision(Step.RETIRE, f"{new_pool.pool_id} held its target for {format_short(policy.retire_after)}"),
                [p.pool_id for p in live_old])
    empty = [p for p in retired if p.steady and p.current_nodes == 0]
    if policy.delete_retired_pools and jobs_on is not None:
        deletable = [p.pool_id for p in empty if jobs_on.get(p.pool_id, 0) == 0]
        if deletable:
            return Decision(Step.DELETE_RETIRED, "the retired pool is empty and no active job targets it"), deletable
    # With deleteRetiredPools the rollout completes once they are gone; a pool an active job still targets stays (its
    # queued tasks would be stranded) and keeps the rollout open, which `autopilot status` shows.
    finished = not retired if policy.delete_retired_pools else len(empty) == len(retired)
    if state is not None and state.stage != DONE and finished:
        return Decision(Step.COMPLETE, "every previous pool of the slot is "
                        + ("deleted" if policy.delete_retired_pools else "empty")), []
    if len(empty) < len(retired):
        return Decision(Step.NOTHING, "retired pools are draining (running tasks finish)"), []
    return Decision(Step.NOTHING,
                    "waiting for active jobs to leave the retired pools" if retired else "nothing to retire"), []


