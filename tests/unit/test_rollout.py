"""The rollout's pure decisions: inPlace (nextZero, drain, maxWait), newPools retirePrevious, pins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.config.families import RolloutPolicy
from shared.lifecycle import rollout
from shared.lifecycle.rollout import PoolFacts, RolloutState, Step, decide_in_place, decide_new_pools, wanted_version
from shared.watch.pool_policy import PoolView, deallocation_option, desired_target

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
IN_PLACE = RolloutPolicy(mode="inPlace", max_wait=timedelta(days=1))
DRAIN = RolloutPolicy(mode="inPlace", apply_when="drain")
RETIRE = RolloutPolicy(retire_previous=True, retire_after=timedelta(hours=2))


def pool(version: str = "1.0.0", nodes: int = 4, *, steady: bool = True, at_target: bool = True, desired: int = 4,
         hold: str | None = None, pool_id: str = "gpu") -> PoolFacts:
    return PoolFacts(pool_id, version, steady, nodes, at_target, desired, hold)


def state(stage: str = rollout.WAITING, *, started: timedelta = timedelta(0), stage_at: timedelta = timedelta(0),
          to: str = "1.1.0",
          blocked: bool = False) -> RolloutState:
    return RolloutState(to, "1.0.0", stage, NOW - started, NOW - stage_at, blocked)


def test_wanted_is_the_newest_ready_version_or_the_pin_if_it_was_built() -> None:
    assert wanted_version(["1.0.0", "1.10.0", "1.9.0"], None) == "1.10.0"
    assert wanted_version(["1.0.0", "1.1.0"], "1.0.0") == "1.0.0"
    assert wanted_version(["1.0.0"], "2.0.0") is None and wanted_version([], None) is None


def test_in_place_next_zero_waits_patches_at_zero_and_completes_at_target() -> None:
    assert decide_in_place(IN_PLACE, pool(), "1.1.0", None, NOW).step == Step.START
    assert decide_in_place(IN_PLACE, pool(), "1.1.0", state(), NOW).step == Step.NOTHING  # never forces a zero
    # still resizing
    assert decide_in_place(IN_PLACE, pool(nodes=0, steady=False), "1.1.0", state(), NOW).step == Step.NOTHING
    assert decide_in_place(IN_PLACE, pool(nodes=0, at_target=True, desired=0), "1.1.0", state(),
                           NOW).step == Step.PATCH_IMAGE
    assert decide_in_place(IN_PLACE, pool("1.1.0", nodes=2, at_target=False), "1.1.0", state(rollout.PATCHED),
                           NOW).step == Step.NOTHING
    assert decide_in_place(IN_PLACE, pool("1.1.0"), "1.1.0", state(rollout.PATCHED), NOW).step == Step.COMPLETE
    assert decide_in_place(IN_PLACE, pool("1.1.0"), "1.1.0", state(rollout.DONE), NOW).step == Step.NOTHING
    # A canary still running does not complete the rollout (a pool at 0 at night is at its target too).
    assert decide_in_place(IN_PLACE, pool("1.1.0", nodes=0, desired=0), "1.1.0", state(rollout.PATCHED), NOW,
                           canary_passed=None).step == Step.NOTHING


def test_in_place_failed_canary_goes_back_to_the_previous_version_at_the_next_zero_and_stays_there() -> None:
    failed = {"canary_passed": False}
    assert decide_in_place(IN_PLACE, pool("1.1.0", nodes=1), "1.1.0", state(rollout.PATCHED), NOW,
                           **failed).step == Step.NOTHING
    assert decide_in_place(DRAIN, pool("1.1.0", nodes=1), "1.1.0", state(rollout.PATCHED), NOW,
                           **failed).step == Step.HOLD_FOR_DRAIN
    back = decide_in_place(IN_PLACE, pool("1.1.0", nodes=0, desired=0), "1.1.0", state(rollout.PATCHED), NOW, **failed)
    assert back.step == Step.ROLL_BACK and "1.0.0" in back.reason
    # Rolled back: 1.1.0 is still the newest version, but it is not tried again.
    assert decide_in_place(IN_PLACE, pool("1.0.0", nodes=0), "1.1.0", state(rollout.ROLLED_BACK),
                           NOW).step == Step.NOTHING
    assert decide_in_place(IN_PLACE, pool("1.0.0", nodes=0), "1.2.0", state(rollout.ROLLED_BACK),
                           NOW).step == Step.START


def test_a_pool_found_back_on_the_previous_version_after_the_patch_gets_its_roll_back_recorded_not_repatched() -> None:
    # PATCHED: the pool ran 1.1.0. Back on 1.0.0, the roll back's update landed but its record did not (a restart):
    # finish the roll back (record, alert), whatever the pool's size, instead of patching 1.1.0 in again.
    for nodes in (0, 4):
        assert decide_in_place(DRAIN, pool("1.0.0", nodes=nodes), "1.1.0", state(rollout.PATCHED),
                               NOW).step == Step.ROLL_BACK
    # Not patched yet (waiting or draining for the zero): the same pool is patched forward.
    assert decide_in_place(DRAIN, pool("1.0.0", nodes=0), "1.1.0", state(rollout.DRAINING),
                           NOW).step == Step.PATCH_IMAGE


def test_in_place_blocked_once_after_max_wait() -> None:
    assert decide_in_place(IN_PLACE, pool(), "1.1.0", state(started=timedelta(hours=23)), NOW).step == Step.NOTHING
    assert decide_in_place(IN_PLACE, pool(), "1.1.0", state(started=timedelta(days=1)), NOW).step == Step.BLOCKED
    assert decide_in_place(IN_PLACE, pool(), "1.1.0", state(started=timedelta(days=2), blocked=True),
                           NOW).step == Step.NOTHING


def test_in_place_drain_holds_then_patches() -> None:
    assert decide_in_place(DRAIN, pool(), "1.1.0", state(rollout.DRAINING), NOW).step == Step.HOLD_FOR_DRAIN
    assert decide_in_place(DRAIN, pool(nodes=2, hold="drain"), "1.1.0", state(rollout.DRAINING),
                           NOW).step == Step.NOTHING
    assert decide_in_place(DRAIN, pool(nodes=0, hold="drain"), "1.1.0", state(rollout.DRAINING),
                           NOW).step == Step.PATCH_IMAGE


def test_a_held_pool_is_driven_to_zero_with_taskcompletion_whatever_its_schedule_says() -> None:
    from shared.watch.pool_policy import WatchPolicy

    metadata = {"autopilot.managed": "true", "autopilot.desiredDedicated": "8",
                "autopilot.nodeDeallocationOption": "requeue",
                "autopilot.schedule": '[{"cron": "0 0 * * * *", "dedicated": 5, "spot": 0}]'}
    view = PoolView("acct", "gpu", "steady", current_dedicated=8, target_dedicated=8, metadata=metadata)
    assert desired_target(view, NOW).total in (5, 8) and deallocation_option(view, WatchPolicy()) == "requeue"
    held = PoolView("acct", "gpu", "steady", current_dedicated=8, target_dedicated=8,
                    metadata={**metadata, rollout.HOLD: "drain"})
    assert desired_target(held, NOW).total == 0 and deallocation_option(held, WatchPolicy()) == "taskcompletion"


def test_new_pools_retire_after_the_new_pool_held_its_target() -> None:
    new, old = pool("1.1.0", pool_id="gpu-1-1-0"), pool("1.0.0", pool_id="gpu-1-0-0")
    assert decide_new_pools(RolloutPolicy(), new, [old], None, NOW)[0].step == Step.NOTHING  # default: nothing retired
    assert decide_new_pools(RETIRE, pool("1.1.0", nodes=1, at_target=False), [old], None, NOW)[0].step == Step.NOTHING
    assert decide_new_pools(RETIRE, new, [old], None, NOW)[0].step == Step.START_HOLDING
    assert decide_new_pools(RETIRE, new, [old], state(rollout.HOLDING, stage_at=timedelta(hours=1)),
                            NOW)[0].step == Step.NOTHING
    decision, about = decide_new_pools(RETIRE, new, [old], state(rollout.HOLDING, stage_at=timedelta(hours=2)), NOW)
    assert decision.step == Step.RETIRE and about == ["gpu-1-0-0"]
    assert decide_new_pools(RETIRE, new, [old], state(rollout.HOLDING, stage_at=timedelta(hours=3)), NOW,
                            canary_passed=False)[0].step == Step.NOTHING
    draining = pool("1.0.0", nodes=2, hold="retired", pool_id="gpu-1-0-0")
    assert decide_new_pools(RETIRE, new, [draining], state(rollout.RETIRING), NOW)[0].step == Step.NOTHING
    empty = pool("1.0.0", nodes=0, hold="retired", pool_id="gpu-1-0-0")
    assert decide_new_pools(RETIRE, new, [empty], state(rollout.RETIRING), NOW)[0].step == Step.COMPLETE


def test_a_retired_pool_is_deleted_only_when_no_active_job_targets_it() -> None:
    policy = RolloutPolicy(retire_previous=True, delete_retired_pools=True)
    new, empty = pool("1.1.0", pool_id="gpu-1-1-0"), pool("1.0.0", nodes=0, hold="retired", pool_id="gpu-1-0-0")
    assert decide_new_pools(policy, new, [empty], state(rollout.RETIRING), NOW, jobs_on=None)[0].step == Step.NOTHING
    assert decide_new_pools(policy, new, [empty], state(rollout.RETIRING), NOW,
                            jobs_on={"gpu-1-0-0": 1})[0].step == Step.NOTHING
    decision, about = decide_new_pools(policy, new, [empty], state(rollout.RETIRING), NOW, jobs_on={"gpu-1-0-0": 0})
    assert decision.step == Step.DELETE_RETIRED and about == ["gpu-1-0-0"]
    assert decide_new_pools(policy, new, [], state(rollout.RETIRING), NOW)[0].step == Step.COMPLETE


def test_new_pools_pin_to_a_retired_version_restores_its_pool_then_retires_the_newer_one() -> None:
    pinned, newer = pool("1.0.0", nodes=0, hold="retired", pool_id="gpu-1-0-0"), pool("1.1.0", pool_id="gpu-1-1-0")
    decision, about = decide_new_pools(RETIRE, pinned, [newer], None, NOW)
    assert decision.step == Step.RESTORE and about == ["gpu-1-0-0"]
    back = pool("1.0.0", pool_id="gpu-1-0-0")  # regrown to its target
    assert decide_new_pools(RETIRE, back, [newer], None, NOW)[1] == ["gpu-1-1-0"]
    assert decide_new_pools(RETIRE, back, [newer], state(rollout.HOLDING, stage_at=timedelta(hours=2), to="1.0.0"),
                            NOW)[0].step == Step.RETIRE
