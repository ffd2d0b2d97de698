"""Contract tests for the emulated Batch compute nodes through azure-batch 15.1.0: node states on the virtual clock,
paged node counts, the node list with errors and start task info, removenodes (target lowered, pool resizing)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from emulator.azure import Emulator
from tests.emulator import test_batch_contract as contract
from tests.emulator.test_batch_contract import ACCOUNT, advance, create_pool, image_version, until_steady

# the contract module's fixtures, shared
account, data, images, mgmt, quiet = contract.account, contract.data, contract.images, contract.mgmt, contract.quiet

START_TASK = {"commandLine": "/bin/sh -c 'test -d /mnt/batch'", "waitForSuccess": True,
              "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}}}


def states(data: Any, pool_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in data.list_nodes(pool_id):
        out[node.state] = out.get(node.state, 0) + 1
    return out


def test_nodes_start_then_become_idle_and_node_counts_page_at_ten(
        emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    for i in range(12):
        create_pool(mgmt, f"p{i:02d}", (1 if i == 0 else 0, 0))
    advance(emulator, 1)
    assert states(data, "p00") == {"starting": 1}
    advance(emulator, 2)
    assert states(data, "p00") == {"idle": 1}
    pages = list(data.list_pool_node_counts().by_page())
    assert [len(list(p)) for p in pages] == [10, 2]  # the older spec's page size of 10, whatever is asked
    counts = {c.pool_id: c for p in data.list_pool_node_counts().by_page() for c in p}
    assert counts["p00"].dedicated.idle == 1 and counts["p00"].dedicated.total == 1


def test_image_health_unusable_and_start_task_failed(emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    broken = image_version("2.0.0")
    emulator.batch.set_image_health(broken, start_task_failed_share=0.5, unusable_share=0.5)
    create_pool(mgmt, "plain", (10, 0), image=broken)
    create_pool(mgmt, "checked", (10, 0), image=broken, startTask=START_TASK)
    until_steady(emulator, data, "plain")
    until_steady(emulator, data, "checked")
    advance(emulator, 2.5)
    plain, checked = states(data, "plain"), states(data, "checked")
    # without a start task, only unusableShare applies; the rest is idle
    assert set(plain) <= {"unusable", "idle"} and plain.get("unusable", 0) >= 1
    assert set(checked) <= {"unusable", "idle", "startTaskFailed", "waitingForStartTask"}
    advance(emulator, 1)
    checked = states(data, "checked")
    assert checked.get("startTaskFailed", 0) >= 1 and "waitingForStartTask" not in checked
    unusable = next(n for n in data.list_nodes("plain") if n.state == "unusable")
    assert unusable.errors and unusable.errors[0].code and unusable.errors[0].message
    failed = next(n for n in data.list_nodes("checked") if n.state == "startTaskFailed")
    assert failed.start_task_info.failure_info.code == "FailureExitCode" and failed.start_task_info.exit_code == 1
    assert failed.start_task.wait_for_success is True
    filtered = list(data.list_nodes("plain", filter="state eq 'unusable'"))
    assert filtered and all(n.state == "unusable" for n in filtered)
    # a good image is unaffected
    create_pool(mgmt, "good", (5, 0), image=image_version("1.0.0"))
    until_steady(emulator, data, "good")
    advance(emulator, 3)
    assert states(data, "good") == {"idle": 5}


def test_remove_nodes_lowers_the_target_and_resizes(emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "rm", (6, 0))
    until_steady(emulator, data, "rm")
    ids = [n.id for n in data.list_nodes("rm")][:2]
    data.begin_remove_nodes("rm", bm.BatchNodeRemoveOptions(node_ids=ids, node_deallocation_option="requeue"),
                            polling_interval=1)
    pool = data.get_pool("rm")
    assert pool.allocation_state == "resizing" and pool.target_dedicated_nodes == 4
    assert {n.id: n.state for n in data.list_nodes("rm")}[ids[0]] == "leavingPool"
    with pytest.raises(ResourceExistsError) as err:  # only while steady
        data.begin_remove_nodes("rm", bm.BatchNodeRemoveOptions(node_ids=ids[:1]), polling_interval=1)
    assert err.value.error.code == "PoolBeingResized"
    pool = until_steady(emulator, data, "rm", step=0.5)
    assert pool.current_dedicated_nodes == 4 and pool.target_dedicated_nodes == 4
    assert not set(ids) & {n.id for n in data.list_nodes("rm")}
    with pytest.raises(HttpResponseError) as too_many:
        data.begin_remove_nodes("rm", bm.BatchNodeRemoveOptions(node_ids=[f"n{i}" for i in range(101)]),
                                polling_interval=1)
    assert too_many.value.status_code == 400
    assert emulator.batch.find_pool(ACCOUNT, "rm").target["dedicated"] == 4


def test_set_image_health_refuses_shares_outside_zero_to_one(emulator: Emulator) -> None:
    with pytest.raises(ValueError):
        emulator.batch.set_image_health(image_version(), unusable_share=1.5)


def test_a_taskcompletion_shrink_removes_nodes_running_tasks_only_once_their_tasks_end(emulator: Emulator, mgmt: Any,
                                                                                       data: Any,
                                                                                      quiet: None) -> None:
    from datetime import timedelta

    for pool_id in ("finish", "requeue"):
        create_pool(mgmt, pool_id, (4, 0))
        until_steady(emulator, data, pool_id)
    advance(emulator, 3)
    for pool_id in ("finish", "requeue"):
        assert emulator.batch.run_tasks(ACCOUNT, pool_id, 2, timedelta(minutes=20)) == 2
        assert states(data, pool_id) == {"idle": 2, "running": 2}
    running = [n for n in data.list_nodes("finish") if n.state == "running"]
    assert [n.running_tasks_count for n in running] == [1, 1]
    data.begin_resize_pool("finish", bm.BatchPoolResizeOptions(target_dedicated_nodes=0,
                                                               node_deallocation_option="taskcompletion"),
                           polling_interval=1)
    data.begin_resize_pool("requeue",
                           bm.BatchPoolResizeOptions(target_dedicated_nodes=0, node_deallocation_option="requeue"),
                           polling_interval=1)
    advance(emulator, 5)
    # tasks stopped, nodes gone
    assert states(data, "requeue") == {} and data.get_pool("requeue").allocation_state == "steady"
    # taskcompletion: the idle nodes went at once; the running ones stay, and the pool keeps resizing, until their tasks
    # end.
    assert states(data, "finish") == {"running": 2} and data.get_pool("finish").allocation_state == "resizing"
    advance(emulator, 15)
    assert states(data, "finish") == {} and data.get_pool("finish").allocation_state == "steady"
