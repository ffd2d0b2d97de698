"""Node health end to end, through the real SDK clients against the emulator and Azurite: the unhealthy threshold,
replacement within a budget and its stop (one NodesUnhealthy, no loop, no node removed twice), the canary gate, the
image verdict (one ImageUnhealthy), and concurrent instances."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from azure.batch import models as bm

from autopilot.local import SUBSCRIPTION_ID as SUB
from autopilot.local import LocalAzure
from shared.core import pool_metadata
from shared.core.clock import iso
from shared.core.state import safe_key
from shared.resources import batch_accounts, batch_pools
from shared.watch import canary
from shared.watch import tick as watch
from shared.watch.node_watch import IMAGE_UNHEALTHY, NODE_HEALTH, NODES_UNHEALTHY, NodeWatch
from shared.watch.pool_policy import PoolView, desired_target
from tests.e2e.watch_support import (
    ACCOUNT,
    ACCOUNT_ID,
    SKU,
    VM,
    at,
    custom_image,
    fresh_context,
    pool_alerts,
    run_until,
)


def make_pool(la: LocalAzure, pool_id: str, image: str, *, desired: int, target: int, canary_nodes: int = 0,
              version: str = "1.0.0", **spec: Any) -> None:
    metadata = {pool_metadata.MANAGED: "true", pool_metadata.DESIRED_DEDICATED: str(desired),
                pool_metadata.DESIRED_SPOT: "0",
                pool_metadata.IMAGE_ID: image, pool_metadata.FAMILY: "render", pool_metadata.VERSION: version,
                **canary.metadata_for(canary_nodes)}
    la.emulator.batch.create_pool(ACCOUNT, pool_id, image_id=image, vm_size=VM, node_agent_sku_id=SKU,
                                  target_dedicated=target,
                                  resize_timeout=timedelta(minutes=20), metadata=metadata, **spec)


REMOVED: dict[int, list[tuple[str, list[str]]]] = {}


def watch_removals(la: LocalAzure) -> None:
    """Record the node ids of every accepted removenodes (the emulator's request log keeps no bodies)."""
    backend = la.emulator.batch
    original = backend.remove_nodes
    log = REMOVED.setdefault(id(la), [])

    def remove_nodes(account_name: str, pool_id: str, node_ids: list[str], **kwargs: Any) -> Any:
        pool = original(account_name, pool_id, node_ids, **kwargs)
        log.append((pool_id, list(node_ids)))
        return pool

    backend.remove_nodes = remove_nodes  # type: ignore[method-assign]


def removals(la: LocalAzure, pool_id: str) -> list[list[str]]:
    return [ids for p, ids in REMOVED.get(id(la), []) if p == pool_id]


def second_version(la: LocalAzure) -> str:
    compute = la.emulator.compute
    disk = la.add_prepared_disk("render-osdisk-2")
    snapshot = compute.create_snapshot(SUB, "images-rg", "render-os-2", source_resource_id=disk)
    return compute.create_gallery_image_version(SUB, "images-rg", "autopilotGallery", "render", "2.0.0",
                                                os_snapshot_id=snapshot.id,
                                                instant=True).id


def node_states(la: LocalAzure, pool_id: str) -> dict[str, int]:
    pool = la.emulator.batch.find_pool(ACCOUNT, pool_id)
    out: dict[str, int] = {}
    for row in la.emulator.batch.node_counts(pool).values():
        for state, n in row.items():
            if n and state != "total":
                out[state] = out.get(state, 0) + n
    return out


def break_nodes(la: LocalAzure, pool_id: str, count: int) -> list[str]:
    """The world: ``count`` of the pool's nodes land on bad hosts and come up unusable."""
    pool = la.emulator.batch.find_pool(ACCOUNT, pool_id)
    chosen = list(pool.nodes.values())[:count]
    for node in chosen:
        node.fate = "unusable"
    return [n.id for n in chosen]


def test_nodes_unusable_past_the_threshold_are_replaced_and_the_target_restored(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_UNHEALTHY_NODE_MINUTES": "90"})
    image = custom_image(la)
    watch_removals(la)
    make_pool(la, "farm", image, desired=10, target=10)
    run_until(la, at(7, 59))
    broken = break_nodes(la, "farm", 2)  # unusable from boot (08:01)
    run_until(la, at(9, 30))
    # the 09:00 rotation found them (no request of their own before), but 89 minutes is under the 90-minute threshold
    assert node_states(la, "farm") == {"idle": 8, "unusable": 2}
    assert removals(la, "farm") == []
    run_until(la, at(9, 40))
    assert [sorted(r) for r in removals(la, "farm")] == [sorted(broken)]
    run_until(la, at(10, 0))
    pool = la.emulator.batch.find_pool(ACCOUNT, "farm")
    assert pool.target["dedicated"] == 10 and node_states(la, "farm") == {"idle": 10}  # Batch brought fresh nodes
    assert not set(broken) & set(pool.nodes)
    assert la.alerts(NODES_UNHEALTHY) == [] and la.alerts(IMAGE_UNHEALTHY) == []
    row = la.context.state.table(NODE_HEALTH).get(safe_key(ACCOUNT_ID), "farm")
    # the health episode ended (a follow-up look may remain scheduled)
    assert row is None or not row.data.get("started")


def test_the_budget_stops_repairs_with_one_alert_and_no_node_is_removed_twice(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_MAX_NODE_REPLACEMENTS": "3", "AUTOPILOT_NODE_HEALTH_ROTATION_MINUTES": "5"})
    image = custom_image(la)
    watch_removals(la)
    # Every node of this image fails, but two nodes are too few to blame the image (it takes max(3, canaryNodes)).
    la.emulator.batch.set_image_health(image, unusable_share=1.0)
    make_pool(la, "small", image, desired=2, target=2)
    run_until(la, at(11, 0))
    removed = removals(la, "small")
    ids = [i for r in removed for i in r]
    assert len(ids) == 3 and len(set(ids)) == 3  # the budget, and never the same node twice
    alerts = pool_alerts(la, "small", NODES_UNHEALTHY)
    assert len(alerts) == 1
    data = alerts[0]["data"]
    assert (data["unhealthyNodes"] == data["totalNodes"] == 1 and data["replacedNodes"] == 3
            and data["maxReplacements"] == 3)
    assert data["codes"] == ["NodeAgentNotReady"] and "NodeAgentNotReady" in data["diagnosis"]
    assert la.alerts(IMAGE_UNHEALTHY) == []
    run_until(la, at(13, 0))  # no loop: nothing more is removed, no second alert
    assert (len([i for r in removals(la, "small") for i in r]) == 3
            and len(pool_alerts(la, "small", NODES_UNHEALTHY)) == 1)
    assert node_states(la, "small") == {"unusable": 2}

    # The alert's fix, as a person follows it: fix the cause, remove the unhealthy nodes; the autopilot restores the
    # target.
    la.emulator.batch.set_image_health(image, unusable_share=0.0)
    client = la.context.clients.batch_account(batch_accounts.get_account(la.context.clients, ACCOUNT_ID).endpoint)
    bad = [n.id for n in client.list_nodes("small") if n.state == "unusable"]
    client.begin_remove_nodes("small", bm.BatchNodeRemoveOptions(node_ids=bad, node_deallocation_option="requeue"),
                              polling_interval=1)
    run_until(la, at(13, 45))
    assert node_states(la, "small") == {"idle": 2}
    row = la.context.state.table(NODE_HEALTH).get(safe_key(ACCOUNT_ID), "small")
    assert row is None or not row.data.get("started")  # episode over, budget whole again
    assert len(pool_alerts(la, "small", NODES_UNHEALTHY)) == 1


def test_the_canary_gates_growth_and_a_broken_image_is_judged_once(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    good = custom_image(la)
    watch_removals(la)
    broken = second_version(la)
    la.emulator.batch.set_image_health(broken, unusable_share=1.0)
    make_pool(la, "good-1", good, desired=12, target=3, canary_nodes=3)
    make_pool(la, "bad-a", broken, desired=12, target=3, canary_nodes=3, version="2.0.0")
    make_pool(la, "bad-b", broken, desired=12, target=3, canary_nodes=3, version="2.0.0")
    run_until(la, at(8, 0))
    # capped at the canary while it boots
    assert la.emulator.batch.find_pool(ACCOUNT, "good-1").target["dedicated"] == 3
    run_until(la, at(8, 20))
    good_pool = la.emulator.batch.find_pool(ACCOUNT, "good-1")
    assert canary.canary_passed(good_pool.metadata) is True and good_pool.current["dedicated"] == 12
    for pool_id in ("bad-a", "bad-b"):
        pool = la.emulator.batch.find_pool(ACCOUNT, pool_id)
        assert canary.canary_passed(pool.metadata) is False and pool.target["dedicated"] == 3
    verdicts = la.alerts(IMAGE_UNHEALTHY)
    assert len(verdicts) == 1 and verdicts[0]["subject"].lower() == broken.lower()
    details = verdicts[0]["data"]
    assert details["failedNodes"] == 6 and details["usableNodes"] == 0 and details["threshold"] == 3
    assert "generalize" in verdicts[0]["data"]["fix"] and "VM extensions" in verdicts[0]["data"]["fix"]
    run_until(la, at(10, 0))
    assert len(la.alerts(IMAGE_UNHEALTHY)) == 1 and la.alerts(NODES_UNHEALTHY) == []
    for pool_id in ("bad-a", "bad-b"):
        assert la.emulator.batch.find_pool(ACCOUNT, pool_id).target["dedicated"] == 3 and removals(la, pool_id) == []


def test_two_instances_never_remove_the_same_nodes(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_UNHEALTHY_NODE_MINUTES": "15"})
    image = custom_image(la)
    watch_removals(la)
    make_pool(la, "twin", image, desired=6, target=6)
    run_until(la, at(7, 59))
    broken = break_nodes(la, "twin", 2)
    # past the threshold, no tick in between (one 30-minute step)
    la.host.run_for(timedelta(minutes=30), timedelta(minutes=30))
    contexts = [fresh_context(la), fresh_context(la)]
    now = la.emulator.now()
    # an earlier tick booked a look at this pool (as it does for a pool it drove)
    table = contexts[0].state.table(NODE_HEALTH)
    table.save(safe_key(ACCOUNT_ID), "twin", {"canary": False, "lookAt": iso(now - timedelta(minutes=1))},
               expected=table.get(safe_key(ACCOUNT_ID), "twin"))
    watches = [NodeWatch(c, now, full=True) for c in contexts]
    account = batch_accounts.get_account(contexts[0].clients, ACCOUNT_ID)
    for nw, context in zip(watches, contexts, strict=True):
        raw = batch_pools.get_pool(context.clients, account, "twin")
        assert raw is not None
        view = PoolView.from_dict(raw, ACCOUNT_ID)
        desired = desired_target(view, now)
        assert desired is not None
        nw.observe(account, view, desired, driven=False)  # both instances read the same pool and the same record
    assert [nw.report.looked for nw in watches] == [1, 1]
    for nw in watches:
        nw.finish()
    # one instance removed them; the other's claim lost
    assert [sorted(r) for r in removals(la, "twin")] == [sorted(broken)]
    # A redelivered look (another tick right away) removes nothing more: those ids are in the episode already.
    watch.tick(fresh_context(la), full=True)
    assert len(removals(la, "twin")) == 1
    for context in contexts:
        context.clients.close()


def test_two_instances_judge_a_broken_image_once(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    custom_image(la)
    watch_removals(la)
    broken = second_version(la)
    la.emulator.batch.set_image_health(broken, unusable_share=1.0)
    for pool_id in ("bad-a", "bad-b"):
        make_pool(la, pool_id, broken, desired=12, target=3, canary_nodes=3, version="2.0.0")
    la.host.run_for(timedelta(minutes=10), timedelta(minutes=10))  # booted and unusable, no tick in between
    contexts = [fresh_context(la), fresh_context(la)]
    now = la.emulator.now()
    watches = [NodeWatch(c, now, full=True) for c in contexts]
    account = batch_accounts.get_account(contexts[0].clients, ACCOUNT_ID)
    for nw, context in zip(watches, contexts, strict=True):
        for pool_id in ("bad-a", "bad-b"):
            raw = batch_pools.get_pool(context.clients, account, pool_id)
            assert raw is not None
            view = PoolView.from_dict(raw, ACCOUNT_ID)
            desired = desired_target(view, now)
            assert desired is not None
            nw.observe(account, view, nw.gate(view, desired), driven=False)
    for nw in watches:
        nw.finish()
    assert len(la.alerts(IMAGE_UNHEALTHY)) == 1 and la.alerts(NODES_UNHEALTHY) == []
    for pool_id in ("bad-a", "bad-b"):
        pool = la.emulator.batch.find_pool(ACCOUNT, pool_id)
        assert canary.canary_passed(pool.metadata) is False and removals(la, pool_id) == []
    watch.tick(fresh_context(la), full=True)  # a later tick (or a redelivery) judges nothing again
    assert len(la.alerts(IMAGE_UNHEALTHY)) == 1
    for context in contexts:
        context.clients.close()


SUBNET = (f"/subscriptions/{SUB}/resourceGroups/network-rg/providers/Microsoft.Network/virtualNetworks/render-vnet"
          "/subnets/batch")


def test_a_new_version_failing_where_older_pools_on_its_subnet_fail_too_blames_the_network(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    older = custom_image(la)
    watch_removals(la)
    newer = second_version(la)
    # The world: an NSG on the subnet blocks the Batch node agent, so every node there comes up unusable, whatever its
    # image.
    for image in (older, newer):
        la.emulator.batch.set_image_health(image, unusable_share=1.0)
    subnet = {"subnetId": SUBNET}
    make_pool(la, "render-1", older, desired=3, target=3, network_configuration=subnet)
    make_pool(la, "render-2", newer, desired=12, target=3, canary_nodes=3, version="2.0.0",
              network_configuration=subnet)
    run_until(la, at(8, 20))
    assert la.alerts(IMAGE_UNHEALTHY) == []  # the image is not blamed
    [alert] = pool_alerts(la, "render-2", NODES_UNHEALTHY)
    data = alert["data"]
    assert data["reason"] == "network" and data["unhealthyNodes"] == 3 and data["codes"] == ["NodeAgentNotReady"]
    assert ("network" in data["diagnosis"] and "BatchNodeManagement" in data["fix"]
            and data["subnetPools"] == ["render-1"])
    pool = la.emulator.batch.find_pool(ACCOUNT, "render-2")
    # Growth stays at the canary (which has not failed: nothing is wrong with the version), and no node is replaced
    # into a network that would break the fresh ones too.
    assert canary.state(pool.metadata) == canary.PENDING and pool.target["dedicated"] == 3
    assert removals(la, "render-2") == []

    # The fix, as a person follows it: open the subnet to the node agent, then remove the unusable nodes of the pools it
    # names (the alert's own pool and the older ones on the subnet).
    for image in (older, newer):
        la.emulator.batch.set_image_health(image, unusable_share=0.0)
    client = la.context.clients.batch_account(batch_accounts.get_account(la.context.clients, ACCOUNT_ID).endpoint)
    for pool_id in ("render-2", "render-1"):
        assert pool_id in data["fix"]
        bad = [n.id for n in client.list_nodes(pool_id) if n.state == "unusable"]
        assert len(bad) == 3
        client.begin_remove_nodes(pool_id, bm.BatchNodeRemoveOptions(node_ids=bad, node_deallocation_option="requeue"),
                                  polling_interval=1)
    run_until(la, at(9, 5))  # past the 09:00 rotation, which looks at render-1 too
    pool = la.emulator.batch.find_pool(ACCOUNT, "render-2")
    assert canary.canary_passed(pool.metadata) is True and pool.current["dedicated"] == 12
    assert node_states(la, "render-2") == {"idle": 12}
    assert node_states(la, "render-1") == {"idle": 3}
    assert len(pool_alerts(la, "render-2", NODES_UNHEALTHY)) == 1 and la.alerts(IMAGE_UNHEALTHY) == []


def test_nodes_that_never_finish_booting_are_replaced_once_past_the_ready_limit(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_MAX_NODE_REPLACEMENTS": "2"})
    image = custom_image(la)
    watch_removals(la)
    make_pool(la, "farm", image, desired=4, target=4)  # no start task: readiness is judged on reaching idle in time
    run_until(la, at(7, 59))
    pool = la.emulator.batch.find_pool(ACCOUNT, "farm")
    stuck = [n.id for n in list(pool.nodes.values())[:2]]
    for node_id in stuck:
        pool.nodes[node_id].fate = "stuck"  # the world: their boot hangs, Batch keeps them starting
    run_until(la, at(8, 55))
    # The 08:00 rotation came while the pool was still allocating: booting nodes are normal then, nothing is read.
    assert node_states(la, "farm") == {"idle": 2, "starting": 2} and removals(la, "farm") == []
    run_until(la, at(9, 10))
    # The 09:00 rotation finds booting nodes in a pool steady for over the 30-minute ready limit: it lists them, and
    # the two that never finished booting (allocated an hour ago) are replaced; Batch brings fresh nodes.
    assert [sorted(r) for r in removals(la, "farm")] == [sorted(stuck)]
    assert (node_states(la, "farm") == {"idle": 4}
            and la.emulator.batch.find_pool(ACCOUNT, "farm").target["dedicated"] == 4)
    assert la.alerts(NODES_UNHEALTHY) == [] and la.alerts(IMAGE_UNHEALTHY) == []  # within the budget: no alert
