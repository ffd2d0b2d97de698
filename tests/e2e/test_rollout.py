# ruff: noqa: F811  (make_azure, the fixture of test_pipeline.py, is imported and then requested by name)
"""Rolling new image versions into a family's pools, end to end: the emulator over HTTPS, Azurite, the local Functions
host running the real functions, operators acting through real SDK clients. Nothing of the app is mocked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from autopilot.local import LocalAzure
from shared.core import pool_metadata
from shared.lifecycle import rollout
from shared.lifecycle.rollout_runner import ROLLOUTS
from tests.e2e.test_pipeline import (  # noqa: F401  (make_azure is a fixture)
    ACCOUNT,
    families,
    make_azure,
    pool_spec,
    version_id,
)


def pool_version(la: LocalAzure, pool_id: str) -> tuple[str, str]:
    """(the image the pool references, its autopilot.version) as the management plane shows them."""
    pool = la.operator.batch_management.pool.get("batch-rg", ACCOUNT, pool_id).as_dict()["properties"]
    image = pool["deploymentConfiguration"]["virtualMachineConfiguration"]["imageReference"]["id"]
    return image, pool_metadata.as_dict(pool["metadata"]).get(pool_metadata.VERSION, "")


def set_desired(la: LocalAzure, pool_id: str, dedicated: int) -> None:
    """An operator changes the pool's desired target in its metadata (any size: Pool - Update of metadata)."""
    pool = la.operator.batch_management.pool.get("batch-rg", ACCOUNT, pool_id)
    metadata = {m.name: m.value for m in pool.metadata}
    metadata[pool_metadata.DESIRED_DEDICATED] = str(dedicated)
    la.operator.batch_management.pool.update("batch-rg", ACCOUNT, pool_id,
                                  {"properties": {"metadata": [{"name": k, "value": v} for k, v in metadata.items()]}})


def gpu_in_place(**rollout_cfg: Any) -> dict[str, Any]:
    return families(pools=[pool_spec(dedicated=4, pool_id="{family}")], rollout={"mode": "inPlace", **rollout_cfg})


def locked(la: LocalAzure, resource_id: str) -> bool:
    return bool(la.locks_on(resource_id))


def test_in_place_next_zero_patches_the_image_at_the_next_zero_and_locks_follow(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(gpu_in_place())
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.0.0"), "1.0.0")
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4

    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    # Built, but the pool has nodes: the image waits for the next zero (nextZero never forces one).
    assert la.alerts("RolloutStarted") and not la.alerts("RolloutCompleted")
    assert pool_version(la, "gpu")[1] == "1.0.0" and la.pool(ACCOUNT, "gpu").current["dedicated"] == 4

    set_desired(la, "gpu", 0)  # the team's own zero (a nightly schedule does the same)
    la.run(timedelta(minutes=10))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")
    # The guard's locks follow the image: the new version is locked, the old one released.
    assert locked(la, version_id("gpu", "1.1.0")) and not locked(la, version_id("gpu", "1.0.0"))

    set_desired(la, "gpu", 4)
    la.run(timedelta(minutes=15))
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4
    completed = la.alerts("RolloutCompleted")
    assert len(completed) == 1 and completed[0]["data"]["to"] == "1.1.0"
    assert la.context.state.table(ROLLOUTS).query("gpu").__next__().data["stage"] == rollout.DONE
    assert len(la.alerts("RolloutStarted")) == 1


def test_an_in_place_version_creates_no_pool_so_raises_no_pools_created_but_a_rollout_started(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(gpu_in_place(applyWhen="drain"))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    # the first version creates it
    assert [a["data"]["pools"] for a in la.alerts("PoolsCreated")] == [[f"{ACCOUNT}/gpu"]]
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=30))
    # 1.1.0 is built, but the pool keeps its id: nothing was created, so no PoolsCreated; the rollout says it instead.
    assert pool_version(la, "gpu")[1] == "1.1.0" and len(la.alerts("PoolsCreated")) == 1
    assert [a["data"]["to"] for a in la.alerts("RolloutStarted")] == ["1.1.0"]
    # A slot added to the family is created with the next version: PoolsCreated names it, and says the other moves.
    doc = gpu_in_place(applyWhen="drain")
    doc["families"]["gpu"]["pools"].append(pool_spec(dedicated=1, pool_id="{family}-batch"))
    la.set_families(doc)
    la.snapshot_set("gpu", "1.2.0")
    la.run(timedelta(minutes=30))
    created = la.alerts("PoolsCreated")
    assert len(created) == 2 and created[1]["data"]["pools"] == [f"{ACCOUNT}/gpu-batch"]
    assert f"{ACCOUNT}/gpu keep their id and move to 1.2.0 in place" in created[1]["data"]["diagnosis"]
    assert pool_version(la, "gpu")[1] == "1.2.0" and pool_version(la, "gpu-batch")[1] == "1.2.0"


def test_in_place_drain_empties_the_pool_patches_and_regrows(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(gpu_in_place(applyWhen="drain"))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=30))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")
    pool = la.pool(ACCOUNT, "gpu")
    assert pool.current["dedicated"] == 4  # regrown to its desired target on the new image
    assert rollout.HOLD not in {m["name"] for m in pool.spec.metadata}
    assert len(la.alerts("RolloutCompleted")) == 1


def test_blocked_in_place_rollout_alerts_and_its_fix_works(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(gpu_in_place(maxWait="30m"))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=60))
    blocked = la.alerts("RolloutBlocked")
    assert len(blocked) == 1 and pool_version(la, "gpu")[1] == "1.0.0"
    assert '"applyWhen": "drain"' in blocked[0]["data"]["fix"]
    # Follow the fix: switch the family to drain.
    la.set_families(gpu_in_place(maxWait="30m", applyWhen="drain"))
    la.run(timedelta(minutes=30))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4
    assert len(la.alerts("RolloutBlocked")) == 1


def test_without_rollout_settings_a_new_version_gets_new_pools_and_nothing_else(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(pools=[pool_spec(dedicated=2)]))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=60))
    assert pool_version(la, "gpu-1-0-0")[1] == "1.0.0" and pool_version(la, "gpu-1-1-0")[1] == "1.1.0"
    assert (la.pool(ACCOUNT, "gpu-1-0-0").current["dedicated"] == 2
            and la.pool(ACCOUNT, "gpu-1-1-0").current["dedicated"] == 2)
    assert not [a for a in la.alerts() if a["eventType"].split(".")[-1].startswith("Rollout")]
    assert list(la.context.state.table(ROLLOUTS).query()) == []


def test_new_pools_retire_previous_moves_the_target_then_deletes_the_old_pool_once_no_job_needs_it(
        make_azure: Callable[..., LocalAzure]) -> None:
    from azure.batch import models as bm
    from azure.batch.models._models import BatchJobTerminateOptions  # published by the SDK only in its private module

    la = make_azure(families(pools=[pool_spec(dedicated=3)],
                             rollout={"mode": "newPools", "retirePrevious": True, "retireAfter": "30m",
                                      "deleteRetiredPools": True}))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    set_desired(la, "gpu-1-0-0", 5)  # the team changed the old pool's target: it moves to the new pool
    endpoint = la.operator.batch_management.batch_account.get("batch-rg", ACCOUNT).account_endpoint
    data = la.operator.batch_account(endpoint)
    data.create_job(bm.BatchJobCreateOptions(id="render-job", pool_info=bm.BatchPoolInfo(pool_id="gpu-1-0-0")))
    la.run(timedelta(minutes=10))

    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    assert (la.pool(ACCOUNT, "gpu-1-1-0").current["dedicated"] == 3
            and la.pool(ACCOUNT, "gpu-1-0-0").current["dedicated"] == 5)
    assert len(la.alerts("RolloutStarted")) == 1
    la.run(timedelta(minutes=40))  # past retireAfter
    old, new = la.pool(ACCOUNT, "gpu-1-0-0"), la.pool(ACCOUNT, "gpu-1-1-0")
    assert old.current["dedicated"] == 0 and new.current["dedicated"] == 5  # the target moved with the work
    # An active job still targets the old pool: it stays (its queued tasks would be stranded), empty.
    assert (la.emulator.batch.list_pools(ACCOUNT)
            and any(p.id == "gpu-1-0-0" for p in la.emulator.batch.list_pools(ACCOUNT)))
    assert not la.alerts("RolloutCompleted")

    data.begin_terminate_job("render-job", BatchJobTerminateOptions(termination_reason="UserTerminate"),
                             polling_interval=0).result()
    la.run(timedelta(minutes=15))
    assert not any(p.id == "gpu-1-0-0" for p in la.emulator.batch.list_pools(ACCOUNT))
    assert len(la.alerts("RolloutCompleted")) == 1
    # Its locks are released; the new version's stay.
    assert not locked(la, version_id("gpu", "1.0.0")) and locked(la, version_id("gpu", "1.1.0"))


def test_pin_rolls_back_in_place_and_a_pin_the_app_never_built_moves_nothing(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(gpu_in_place(applyWhen="drain"))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=30))
    assert pool_version(la, "gpu")[1] == "1.1.0"

    doc = gpu_in_place(applyWhen="drain")
    doc["families"]["gpu"]["pinVersion"] = "9.9.9"  # never built: nothing moves
    la.set_families(doc)
    la.run(timedelta(minutes=15))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")

    doc["families"]["gpu"]["pinVersion"] = "1.0.0"  # the roll back
    la.set_families(doc)
    la.run(timedelta(minutes=30))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.0.0"), "1.0.0")
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4
    assert [a["data"]["to"] for a in la.alerts("RolloutCompleted")] == ["1.1.0", "1.0.0"]


def test_redelivered_ticks_and_a_second_instance_patch_once_and_never_to_a_missing_version(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.lifecycle import rollout_runner
    from shared.resources import batch_accounts, batch_pools

    la = make_azure(gpu_in_place())
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    set_desired(la, "gpu", 0)
    la.run(timedelta(minutes=2))
    account = batch_accounts.get_account(la.context.clients, la.context.settings.batch_accounts[0])
    # Step by step: each listing is handed to two instances (a redelivered tick, or two hosts), the second with the
    # stale copy.
    for _ in range(10):
        la.emulator.clock.advance(timedelta(minutes=1))
        listing = batch_pools.list_pools(la.context.clients, account)
        rollout_runner.run_account(la.context, account, listing)
        rollout_runner.run_account(la.context, account, listing)
    # Pool - Update on the management plane changes the image; the data plane's PATCH is the canary's metadata mark.
    app_patches = [e for e in la.emulator.log.entries(method="PATCH", path_contains="/pools/gpu")
                   if 200 <= e.status < 300 and e.caller == "batch-image-autopilot" and e.plane == "arm"]
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")
    assert len(app_patches) == 1, [(e.time, e.path) for e in app_patches]  # the image changed once
    assert len(la.alerts("RolloutStarted")) == 1

    # A version that is gone is never referenced: pin 1.0.0, then delete it before the pool reaches its next zero.
    doc = gpu_in_place()
    doc["families"]["gpu"]["pinVersion"] = "1.0.0"
    la.set_families(doc)
    la.emulator.compute.gallery_image_versions.pop(
        next(k for k in la.emulator.compute.gallery_image_versions if k.endswith("/1.0.0")))
    la.run(timedelta(minutes=15))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")


def test_in_place_canary_failure_goes_back_to_the_previous_version_and_alerts(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.watch import canary

    la = make_azure(gpu_in_place(applyWhen="drain"))  # the family's canary: 3 nodes (the default)
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4
    # 1.1.0's nodes never come up usable
    la.emulator.batch.set_image_health(version_id("gpu", "1.1.0"), unusable_share=1.0)
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=45))
    pool = la.pool(ACCOUNT, "gpu")
    # The first regrow on 1.1.0 stopped at the canary; its failure took the pool back to 1.0.0 at the next zero.
    assert pool_version(la, "gpu") == (version_id("gpu", "1.0.0"), "1.0.0")
    assert canary.state(pool.metadata) is None and pool.current["dedicated"] == 4
    back = la.alerts("RolloutRolledBack")
    assert len(back) == 1 and back[0]["data"]["to"] == "1.0.0" and "pinVersion" in back[0]["data"]["fix"]
    assert not la.alerts("RolloutCompleted") and len(la.alerts("ImageUnhealthy")) == 1
    assert locked(la, version_id("gpu", "1.0.0"))
    # 1.1.0 is still the newest version, but it is not tried again.
    la.run(timedelta(minutes=20))
    assert pool_version(la, "gpu")[1] == "1.0.0" and len(la.alerts("RolloutStarted")) == 1
    # Follow the fix: the image is fixed and published as a newer version; it rolls out, canary first, and completes.
    assert "publish it as a newer version" in back[0]["data"]["fix"]
    la.snapshot_set("gpu", "1.2.0")
    la.run(timedelta(minutes=40))
    assert pool_version(la, "gpu") == (version_id("gpu", "1.2.0"), "1.2.0")
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4
    assert [a["data"]["to"] for a in la.alerts("RolloutCompleted")] == ["1.2.0"]


def _blue_green_past_retirement(make_azure: Callable[..., LocalAzure], *, retire_after: str,
                                settle: timedelta) -> tuple[LocalAzure, Callable[..., dict[str, Any]]]:
    """A newPools family with retirePrevious: 1.0.0 built, then 1.1.0, and ``settle`` later (the retirement)."""
    def doc(**extra: Any) -> dict[str, Any]:
        return families(pools=[pool_spec(dedicated=2)],
                        rollout={"mode": "newPools", "retirePrevious": True, "retireAfter": retire_after}, **extra)

    la = make_azure(doc())
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(settle)
    return la, doc


def test_new_pools_pin_rolls_back_to_the_retired_pool_and_retires_the_newer_one(
        make_azure: Callable[..., LocalAzure]) -> None:
    la, doc = _blue_green_past_retirement(make_azure, retire_after="20m", settle=timedelta(minutes=60))
    assert la.pool(ACCOUNT, "gpu-1-0-0").current["dedicated"] == 0 and len(la.alerts("RolloutCompleted")) == 1

    la.set_families(doc(pinVersion="1.0.0"))  # the roll back
    la.run(timedelta(minutes=60))
    old, new = la.pool(ACCOUNT, "gpu-1-0-0"), la.pool(ACCOUNT, "gpu-1-1-0")
    assert old.current["dedicated"] == 2 and rollout.HOLD not in old.metadata
    assert new.current["dedicated"] == 0 and new.metadata[rollout.HOLD] == rollout.HOLD_RETIRED
    assert [a["data"]["to"] for a in la.alerts("RolloutCompleted")] == ["1.1.0", "1.0.0"]
    assert locked(la, version_id("gpu", "1.0.0"))  # the pinned version is in use again, so guarded


def test_a_drain_lets_running_tasks_finish_and_counts_them_from_the_node_list(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.lifecycle import rollout_runner
    from shared.resources import batch_accounts, batch_pools

    la = make_azure(gpu_in_place(applyWhen="drain"))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    assert la.emulator.batch.run_tasks(ACCOUNT, "gpu", 2, timedelta(minutes=40)) == 2  # work on two of the four nodes
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    # Held at 0 with taskcompletion: the idle nodes went at once, the two running a task stay until it ends.
    pool = la.pool(ACCOUNT, "gpu")
    assert (pool.current["dedicated"] == 2 and pool.allocation_state == "resizing"
            and pool_version(la, "gpu")[1] == "1.0.0")
    account = batch_accounts.get_account(la.context.clients, la.context.settings.batch_accounts[0])
    report = rollout_runner.run_account(la.context, account, batch_pools.list_pools(la.context.clients, account),
                                        dry_run=True)
    row = report.pending[f"{account.id}/pools/gpu"]
    assert row["stage"] == rollout.DRAINING and row["runningTasks"] == 2
    assert any("2 task(s) still running" in a and "stay queued" in a for a in report.actions)

    la.run(timedelta(minutes=30))  # the tasks ended at +40m: the nodes left, the image changed, the pool regrew
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4


def test_a_retirement_survives_a_restart_mid_rollout_and_a_second_instance_acts_once(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.lifecycle import rollout_runner
    from shared.resources import batch_accounts, batch_pools

    la = make_azure(families(pools=[pool_spec(dedicated=2)],
                             rollout={"mode": "newPools", "retirePrevious": True, "retireAfter": "10m"}))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    assert len(la.alerts("RolloutStarted")) == 1 and la.pool(ACCOUNT, "gpu-1-0-0").current["dedicated"] == 2  # holding
    la.reconfigure()  # the app restarts mid-rollout: only the Rollouts row and the pools' metadata carry it on
    account = batch_accounts.get_account(la.context.clients, la.context.settings.batch_accounts[0])
    # each listing handed to two instances (or a redelivered tick), the second acting on the stale copy
    for _ in range(12):
        la.emulator.clock.advance(timedelta(minutes=1))
        listing = batch_pools.list_pools(la.context.clients, account)
        rollout_runner.run_account(la.context, account, listing)
        rollout_runner.run_account(la.context, account, listing)
    la.run(timedelta(minutes=15))
    old = la.pool(ACCOUNT, "gpu-1-0-0")
    assert old.current["dedicated"] == 0 and old.metadata[rollout.HOLD] == rollout.HOLD_RETIRED
    assert la.pool(ACCOUNT, "gpu-1-1-0").current["dedicated"] == 2
    holds = [e for e in la.emulator.log.entries(method="PATCH", path_contains="/pools/gpu-1-0-0")
             if 200 <= e.status < 300 and e.caller == "batch-image-autopilot" and e.plane == "arm"]
    assert len(holds) == 1  # retired once
    assert len(la.alerts("RolloutStarted")) == 1 and len(la.alerts("RolloutCompleted")) == 1


def together(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[str]]:
    """Run the calls at the same moment (a barrier releases the threads together); their results, and the errors that
    escaped them as the Functions host would record them."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(len(calls))
    errors: list[str] = []

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        try:
            return call()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return None

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls)), errors


def _instances(la: LocalAzure) -> list[Any]:
    """Two instances of the Function App: own SDK clients, the same settings, tables and Azure."""
    from shared.core.context import AppContext

    return [AppContext.from_settings(la.settings, clock=la.emulator.clock) for _ in range(2)]


def _watch_minute(la: LocalAzure, instances: list[Any], escaped: list[str]) -> None:
    """A minute of Azure's time; then every instance's pool watch timer fires at the same moment, and every
    PoolResizeStalled they published is handled by every instance at once (Event Grid redelivers copies)."""
    from shared.watch import tick as watch

    la.emulator.clock.advance(timedelta(minutes=1))
    seen = len(la.stall_events())
    escaped.extend(together([lambda c=c: watch.tick(c) for c in instances])[1])
    stalls = la.stall_events()[seen:]
    if stalls:
        escaped.extend(together([lambda c=c, e=e: watch.handle_stall(c, e["data"]["accountId"], e["data"]["poolId"],
                                                                      observed_etag=e["data"].get("eTag"))
                                  for e in stalls for c in instances])[1])


def test_two_watch_instances_at_once_drain_patch_and_complete_an_in_place_rollout_once_across_a_restart(
        make_azure: Callable[..., LocalAzure]) -> None:
    pinned = gpu_in_place(applyWhen="drain")
    pinned["families"]["gpu"]["pinVersion"] = "1.0.0"  # 1.1.0 is built while the pin holds the pool: nothing moves yet
    la = make_azure(pinned)
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    assert pool_version(la, "gpu")[1] == "1.0.0" and not la.alerts("RolloutStarted")
    assert la.emulator.batch.run_tasks(ACCOUNT, "gpu", 2, timedelta(minutes=8)) == 2  # the drain waits for them
    la.set_families(gpu_in_place(applyWhen="drain"))  # the pin goes: from here only the two instances below act

    escaped: list[str] = []
    instances = _instances(la)
    try:
        for _ in range(4):
            _watch_minute(la, instances, escaped)
        # Held for the drain, two tasks still running: the app restarts (both instances) mid-rollout.
        pool = la.pool(ACCOUNT, "gpu")
        assert pool.metadata.get(rollout.HOLD) == rollout.HOLD_DRAIN and pool.current["dedicated"] == 2
        for context in instances:
            context.clients.close()
        instances = _instances(la)
        for _ in range(18):
            _watch_minute(la, instances, escaped)
    finally:
        for context in instances:
            context.clients.close()
    assert all(e.startswith("ConcurrencyConflict") for e in escaped), escaped
    assert pool_version(la, "gpu") == (version_id("gpu", "1.1.0"), "1.1.0")
    assert la.pool(ACCOUNT, "gpu").current["dedicated"] == 4
    # Two management-plane Pool - Updates were accepted: the hold, then the image with the hold lifted. A second
    # instance's copy of either got 412 (ETag) or found it done.
    updates = [e.status for e in la.emulator.log.entries(method="PATCH", path_contains="/pools/gpu")
               if e.caller == "batch-image-autopilot" and e.plane == "arm"]
    assert [s for s in updates if 200 <= s < 300] == [200, 200], updates
    assert len(la.alerts("RolloutStarted")) == 1 and len(la.alerts("RolloutCompleted")) == 1
    assert la.context.state.table(ROLLOUTS).query("gpu").__next__().data["stage"] == rollout.DONE


def test_two_watch_instances_at_once_retire_and_delete_the_previous_pool_once(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(pools=[pool_spec(dedicated=2)]))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    set_desired(la, "gpu-1-0-0", 3)  # the team's target for the slot: it moves to the new pool
    la.emulator.batch.timings.pool_delete = timedelta(minutes=4)  # Batch takes minutes to delete a pool
    # Both versions' pools at target; then the team turns retirement on: from here only the two instances below act.
    la.set_families(families(pools=[pool_spec(dedicated=2)], rollout={"mode": "newPools", "retirePrevious": True,
                                                                      "retireAfter": "5m", "deleteRetiredPools": True}))
    escaped: list[str] = []
    instances = _instances(la)
    try:
        for _ in range(20):
            _watch_minute(la, instances, escaped)
    finally:
        for context in instances:
            context.clients.close()
    assert all(e.startswith("ConcurrencyConflict") for e in escaped), escaped
    assert not any(p.id == "gpu-1-0-0" for p in la.emulator.batch.list_pools(ACCOUNT))
    assert la.pool(ACCOUNT, "gpu-1-1-0").current["dedicated"] == 3

    def answers(method: str, pool_id: str) -> list[int]:
        return [e.status for e in la.emulator.log.entries(method=method, path_contains=f"/pools/{pool_id}")
                if e.caller == "batch-image-autopilot" and e.plane == "arm" and e.path.lower().endswith(pool_id)]

    # The new pool took the target in one Pool - Update and the old one was retired in one (the other instance's copy:
    # 412, or found it done). Its deletion was asked for in one minute, not again on every tick while Batch deleted it.
    assert [s for s in answers("PATCH", "gpu-1-1-0") if s < 300] == [200]
    assert [s for s in answers("PATCH", "gpu-1-0-0") if s < 300] == [200]
    deletes = [e.time for e in la.emulator.log.entries(method="DELETE", path_contains="/pools/gpu-1-0-0")
               if e.caller == "batch-image-autopilot"]
    assert deletes and len(set(deletes)) == 1 and len(deletes) <= 2, deletes  # at most one per instance
    assert len(la.alerts("RolloutStarted")) == 1 and len(la.alerts("RolloutCompleted")) == 1


def test_two_watch_instances_at_once_block_an_in_place_rollout_once(make_azure: Callable[..., LocalAzure]) -> None:
    pinned = gpu_in_place(maxWait="5m")
    pinned["families"]["gpu"]["pinVersion"] = "1.0.0"
    la = make_azure(pinned)
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.snapshot_set("gpu", "1.1.0")
    la.run(timedelta(minutes=20))
    la.set_families(gpu_in_place(maxWait="5m"))  # the pin goes: the pool (4 nodes, nextZero) never reaches 0
    escaped: list[str] = []
    instances = _instances(la)
    try:
        for _ in range(8):
            _watch_minute(la, instances, escaped)
    finally:
        for context in instances:
            context.clients.close()
    assert all(e.startswith("ConcurrencyConflict") for e in escaped), escaped
    assert len(la.alerts("RolloutStarted")) == 1 and len(la.alerts("RolloutBlocked")) == 1
    assert pool_version(la, "gpu")[1] == "1.0.0" and la.pool(ACCOUNT, "gpu").current["dedicated"] == 4


def _arm_writes(la: LocalAzure, pool_id: str, since: int = 0) -> list[int]:
    """The status of every management-plane Pool - Update the app sent to the pool (after the first ``since`` of them);
    a write whose answer was lost after Batch applied it counts with the status Batch had answered."""
    return [e.served_status or e.status
            for e in la.emulator.log.entries(method="PATCH", path_contains=f"/pools/{pool_id}")
            if e.caller == "batch-image-autopilot" and e.plane == "arm" and e.path.lower().endswith(pool_id)][since:]


@pytest.mark.parametrize("lost_answer", [False, True], ids=["restart-while-draining", "restart-after-the-patch"])
def test_two_watch_instances_at_once_roll_a_failed_canary_back_once_across_a_restart_mid_step(
        make_azure: Callable[..., LocalAzure], lost_answer: bool) -> None:
    from emulator.faults import FaultRule
    from shared.watch import canary

    la = make_azure(gpu_in_place(applyWhen="drain"))
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))
    la.emulator.batch.set_image_health(version_id("gpu", "1.1.0"), unusable_share=1.0)  # 1.1.0's nodes never work
    la.snapshot_set("gpu", "1.1.0")
    for _ in range(30):  # the host builds 1.1.0, patches it in and grows the canary, until the canary fails
        la.run(timedelta(minutes=1))
        if canary.state(la.pool(ACCOUNT, "gpu").metadata) == canary.FAILED:
            break
    assert canary.state(la.pool(ACCOUNT, "gpu").metadata) == canary.FAILED
    assert pool_version(la, "gpu")[1] == "1.1.0" and not la.alerts("RolloutRolledBack")
    seen = len(_arm_writes(la, "gpu"))
    held = la.pool(ACCOUNT, "gpu").metadata.get(rollout.HOLD) == rollout.HOLD_DRAIN  # the host may have held it
    escaped: list[str] = []
    instances = _instances(la)  # from here only these act: the host is not run again
    acting, lost = instances, None
    try:
        for _ in range(8):
            if la.pool(ACCOUNT, "gpu").metadata.get(rollout.HOLD) == rollout.HOLD_DRAIN:
                if not lost_answer:
                    break  # held for the drain back to 1.0.0: restart while it drains
                if lost is None:
                    # The next Pool - Update is the roll back's. Batch applies it but its answer is lost, and the one
                    # instance that sent it dies before recording the step.
                    lost = la.emulator.faults.add(FaultRule("acted_drop", path_pattern=r"/pools/gpu$", plane="arm",
                                                            methods=frozenset({"PATCH"}), max_count=1))
                    acting = instances[:1]
            _watch_minute(la, acting, escaped)
            if lost is not None and lost.injected:
                break
        la.emulator.faults.clear()
        if lost_answer:
            assert lost is not None and lost.injected == 1
            assert pool_version(la, "gpu")[1] == "1.0.0" and not la.alerts("RolloutRolledBack")
        else:
            assert pool_version(la, "gpu")[1] == "1.1.0"
        for context in instances:
            context.clients.close()
        instances = _instances(la)  # the restart: fresh instances carry on from the pool and the Rollouts row
        for _ in range(10):
            _watch_minute(la, instances, escaped)
    finally:
        for context in instances:
            context.clients.close()
    assert all(e.startswith("ConcurrencyConflict") for e in escaped), escaped
    pool = la.pool(ACCOUNT, "gpu")
    assert pool_version(la, "gpu") == (version_id("gpu", "1.0.0"), "1.0.0")
    assert canary.state(pool.metadata) is None and pool.current["dedicated"] == 4
    # The hold for the drain (unless the host had already written it), then the image back with the hold lifted: one
    # Pool - Update each. The failed version was never patched in again.
    writes = [s for s in _arm_writes(la, "gpu", seen) if 200 <= s < 300]
    assert writes == [200] * (1 if held else 2), _arm_writes(la, "gpu", seen)
    back = la.alerts("RolloutRolledBack")
    assert len(back) == 1 and back[0]["data"]["to"] == "1.0.0"
    assert not la.alerts("RolloutCompleted") and len(la.alerts("RolloutStarted")) == 1
    assert la.context.state.table(ROLLOUTS).query("gpu").__next__().data["stage"] == rollout.ROLLED_BACK
    assert locked(la, version_id("gpu", "1.0.0"))


def test_two_watch_instances_at_once_restore_a_pinned_retired_pool_once_across_a_restart(
        make_azure: Callable[..., LocalAzure]) -> None:
    la, doc = _blue_green_past_retirement(make_azure, retire_after="5m", settle=timedelta(minutes=40))
    old = la.pool(ACCOUNT, "gpu-1-0-0")
    assert old.current["dedicated"] == 0 and old.metadata[rollout.HOLD] == rollout.HOLD_RETIRED
    assert len(la.alerts("RolloutCompleted")) == 1
    seen_old, seen_new = len(_arm_writes(la, "gpu-1-0-0")), len(_arm_writes(la, "gpu-1-1-0"))
    la.set_families(doc(pinVersion="1.0.0"))  # the roll back: from here only the two instances below act
    escaped: list[str] = []
    instances = _instances(la)
    try:
        _watch_minute(la, instances, escaped)  # both un-retire 1.0.0's pool at the same moment
        assert rollout.HOLD not in la.pool(ACCOUNT, "gpu-1-0-0").metadata
        for context in instances:  # the app restarts while the restored pool regrows
            context.clients.close()
        instances = _instances(la)
        for _ in range(20):
            _watch_minute(la, instances, escaped)
    finally:
        for context in instances:
            context.clients.close()
    assert all(e.startswith("ConcurrencyConflict") for e in escaped), escaped
    old, new = la.pool(ACCOUNT, "gpu-1-0-0"), la.pool(ACCOUNT, "gpu-1-1-0")
    assert old.current["dedicated"] == 2 and rollout.HOLD not in old.metadata and rollout.RETIRED_BY not in old.metadata
    assert new.current["dedicated"] == 0 and new.metadata[rollout.HOLD] == rollout.HOLD_RETIRED
    # One Pool - Update un-retired the pinned pool (its target was already its own); one retired the newer pool.
    assert [s for s in _arm_writes(la, "gpu-1-0-0", seen_old) if s < 300] == [200], _arm_writes(la, "gpu-1-0-0")
    assert [s for s in _arm_writes(la, "gpu-1-1-0", seen_new) if s < 300] == [200], _arm_writes(la, "gpu-1-1-0")
    assert [a["data"]["to"] for a in la.alerts("RolloutStarted")] == ["1.1.0", "1.0.0"]
    assert [a["data"]["to"] for a in la.alerts("RolloutCompleted")] == ["1.1.0", "1.0.0"]
    assert locked(la, version_id("gpu", "1.0.0"))
