"""The pure node-health policy and the canary: thresholds, the budget and its stop, the image verdict, the gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.config.families import StartTask, families_from_dict
from shared.watch import canary
from shared.watch.node_health import (
    HealthPolicy,
    HealthRecord,
    NodeInfo,
    decide_repair,
    image_suspect,
    is_unhealthy,
    network_suspect,
    summarize,
    verdict_threshold,
)
from shared.watch.pool_policy import DesiredTarget

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
POLICY = HealthPolicy(unhealthy_after=timedelta(minutes=15), max_replacements=3, ready_within=timedelta(minutes=30))


def node(node_id: str, state: str, minutes_ago: float = 20, *, allocated_ago: float | None = None,
         errors: tuple[tuple[str, str], ...] = ()) -> NodeInfo:
    return NodeInfo(node_id, state.lower(), NOW - timedelta(minutes=minutes_ago),
                    NOW - timedelta(minutes=allocated_ago if allocated_ago is not None else minutes_ago + 2), True,
                    errors)


def test_a_node_is_unhealthy_only_past_the_threshold() -> None:
    assert not is_unhealthy(node("a", "unusable", 14.9), NOW, POLICY, has_start_task=False)
    assert is_unhealthy(node("a", "unusable", 15), NOW, POLICY, has_start_task=False)
    assert is_unhealthy(node("b", "startTaskFailed", 16), NOW, POLICY, has_start_task=True)
    assert not is_unhealthy(node("c", "idle", 600), NOW, POLICY, has_start_task=False)
    # never ready: only judged without a start task (with one, waitingForStartTask is the start task's business)
    assert is_unhealthy(node("d", "starting", 31, allocated_ago=31), NOW, POLICY, has_start_task=False)
    assert not is_unhealthy(node("d", "starting", 29, allocated_ago=29), NOW, POLICY, has_start_task=False)
    assert not is_unhealthy(node("d", "starting", 31, allocated_ago=31), NOW, POLICY, has_start_task=True)
    # errors[] on a node that is not usable count as failed
    assert is_unhealthy(node("e", "offline", 20, errors=(("DiskFull", "no space"),)), NOW, POLICY, has_start_task=False)


def test_a_booting_node_books_a_look_for_when_it_is_due() -> None:
    nodes = [node("a", "idle"), node("b", "starting", 10, allocated_ago=10)]
    repair = decide_repair(nodes, None, NOW, POLICY, steady=True, has_start_task=False)
    assert repair.record is None and repair.remove == () and repair.next_look == NOW + timedelta(minutes=20)
    # with a start task, a booting node is the start task's business: no look is booked for it
    assert decide_repair(nodes, None, NOW, POLICY, steady=True, has_start_task=True).next_look is None


def test_node_info_reads_errors_and_the_start_task_failure() -> None:
    info = NodeInfo.from_dict({"id": "n1", "state": "startTaskFailed", "stateTransitionTime": "2026-05-04T08:30:00Z",
                               "allocationTime": "2026-05-04T08:27:00Z", "isDedicated": False,
                               "startTaskInfo": {"failureInfo": {"code": "FailureExitCode", "message": "exit 1"}}})
    assert (info.state == "starttaskfailed" and info.failed and not info.dedicated
            and info.errors == (("FailureExitCode", "exit 1"),))
    summary = summarize([info, node("ok", "idle"), node("boot", "starting", 1)])
    assert (summary.usable, summary.failed, summary.booting, summary.total) == (1, 1, 1, 3)
    assert summary.errors == {"FailureExitCode": "exit 1"}


def test_replacement_spends_the_budget_then_alerts_once_and_stops() -> None:
    nodes = [node("a", "unusable"), node("b", "unusable"), node("c", "idle")]
    first = decide_repair(nodes, None, NOW, POLICY, steady=True, has_start_task=False)
    assert (first.remove == ("a", "b") and not first.alert and first.record is not None
            and first.record.replaced == ("a", "b"))
    # the removed nodes may still be listed (leaving): never removed twice
    again = decide_repair(nodes, first.record, NOW, POLICY, steady=True, has_start_task=False)
    assert again.remove == () and not again.alert
    fresh = [node("d", "unusable"), node("e", "unusable"), node("c", "idle")]
    second = decide_repair(fresh, first.record, NOW, POLICY, steady=True, has_start_task=False)
    # what is left of the budget
    assert second.remove == ("d",) and second.record is not None and len(second.record.replaced) == 3
    third = decide_repair(fresh, second.record, NOW, POLICY, steady=True, has_start_task=False)
    assert third.alert and third.remove == () and third.record is not None and third.record.stopped
    fourth = decide_repair(fresh, third.record, NOW, POLICY, steady=True, has_start_task=False)
    assert not fourth.alert and fourth.remove == () and fourth.record == third.record  # no second alert, no loop


def test_nothing_is_removed_while_resizing_or_when_the_image_is_suspect() -> None:
    nodes = [node("a", "unusable")]
    resizing = decide_repair(nodes, None, NOW, POLICY, steady=False, has_start_task=False)
    assert resizing.remove == () and not resizing.alert
    suspect = decide_repair(nodes, None, NOW, POLICY, steady=True, has_start_task=False, image_suspect=True)
    assert suspect.remove == () and not suspect.alert and suspect.record is None


def test_the_episode_lasts_while_replacements_boot_and_ends_when_the_pool_is_healthy() -> None:
    record = HealthRecord(started=NOW - timedelta(minutes=30), replaced=("a",))
    booting = decide_repair([node("x", "starting", 1), node("c", "idle")], record, NOW, POLICY, steady=True,
                            has_start_task=False)
    assert booting.record == record
    empty = decide_repair([], record, NOW, POLICY, steady=True, has_start_task=False)
    assert empty.record == record
    healthy = decide_repair([node("x", "idle"), node("c", "idle")], record, NOW, POLICY, steady=True,
                            has_start_task=False)
    assert healthy.record is None
    waiting = decide_repair([node("y", "unusable", 5)], None, NOW, POLICY, steady=True, has_start_task=False)
    assert waiting.remove == () and waiting.next_look == NOW + timedelta(minutes=10)


def test_health_record_round_trips() -> None:
    record = HealthRecord(started=NOW, replaced=("a", "b"), stopped=True)
    assert HealthRecord.from_dict(record.to_dict()) == record
    with pytest.raises(ValueError):
        HealthRecord.from_dict({"replaced": "a"})


def test_the_image_verdict_needs_the_share_and_max_3_canary_nodes() -> None:
    policy = HealthPolicy(image_unhealthy_share=0.5)
    two_failed = summarize([node("a", "unusable"), node("b", "unusable")])
    assert not image_suspect([two_failed], policy, canary_nodes=3)  # 2 < max(3, 3)
    three = summarize([node("a", "unusable"), node("b", "unusable"), node("c", "unusable"), node("d", "idle")])
    assert image_suspect([three], policy, canary_nodes=3)
    assert not image_suspect([three], policy, canary_nodes=5)  # canaryNodes raises the bar
    assert verdict_threshold(0) == 3 and verdict_threshold(5) == 5
    mostly_fine = summarize([node(f"u{i}", "unusable") for i in range(3)] + [node(f"i{i}", "idle") for i in range(4)])
    assert not image_suspect([mostly_fine], policy, canary_nodes=3)  # 3 of 7 is under half
    booting_only = summarize([node(f"s{i}", "starting", 1) for i in range(5)])
    assert not image_suspect([booting_only], policy, canary_nodes=3)
    # several pools of the version add up
    assert image_suspect([two_failed, summarize([node("z", "unusable")])], policy, canary_nodes=3)


def test_the_network_is_blamed_when_older_pools_on_the_subnet_fail_too() -> None:
    policy = HealthPolicy()
    assert network_suspect([summarize([node("a", "unusable"), node("b", "idle")])], policy)
    assert not network_suspect([summarize([node("a", "idle"), node("b", "idle")])], policy)
    assert not network_suspect([], policy)


def test_the_canary_caps_growth_until_it_passes() -> None:
    pending = canary.metadata_for(3)
    assert pending == {canary.CANARY: "pending", canary.CANARY_NODES: "3"} and canary.metadata_for(0) == {}
    desired = DesiredTarget(dedicated=20, spot=5)
    assert canary.cap(desired, pending) == DesiredTarget(dedicated=3, spot=0)
    assert canary.cap(DesiredTarget(dedicated=1, spot=5), pending) == DesiredTarget(dedicated=1, spot=2)
    assert canary.cap(desired, {**pending, canary.CANARY: "failed"}) == DesiredTarget(dedicated=3, spot=0)
    assert canary.cap(desired, {**pending, canary.CANARY: "passed"}) == desired
    assert canary.cap(desired, {}) == desired
    assert canary.first_target(300, 0, 3) == (3, 0) and canary.first_target(300, 0, 0) == (300, 0)
    ok = summarize([node("a", "idle"), node("b", "idle"), node("c", "idle")])
    assert canary.passed(ok, pending, 20)
    assert not canary.passed(summarize([node("a", "idle"), node("b", "idle")]), pending, 20)
    assert not canary.passed(summarize([node("a", "idle"), node("b", "idle"), node("c", "unusable")]), pending, 20)
    assert canary.passed(summarize([node("a", "idle")]), pending, 1)  # a one-node pool needs one node
    assert not canary.passed(summarize([]), pending, 0)  # a pool scheduled to zero waits for its next growth
    assert canary.canary_passed(pending) is None
    assert canary.canary_passed({canary.CANARY: "passed"}) is True
    assert canary.canary_passed({canary.CANARY: "failed"}) is False
    assert canary.canary_passed({}) is True  # no canary: nothing to wait for


def test_family_canary_nodes_and_start_task_are_parsed_and_validated() -> None:
    base = {"gallery": {"resourceGroup": "images-rg", "name": "g", "imageDefinition": "sim", "osType": "Linux",
                        "hyperVGeneration": "V2",
                        "location": "westeurope"}, "source": "snapshots", "snapshotResourceGroups": ["images-rg"],
            "pools": []}
    family = families_from_dict({"families": {"sim": base}}).get("sim")
    assert family is not None and family.canary_nodes == 3 and family.start_task is None
    configured = families_from_dict({"families": {"sim": {**base, "canaryNodes": 0, "startTask": {
        "commandLine": "/bin/sh -c 'nvidia-smi'",
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}}}}}).get("sim")
    assert configured is not None and configured.canary_nodes == 0
    assert configured.start_task == StartTask("/bin/sh -c 'nvidia-smi'", True, "Pool", "Admin")
    assert configured.start_task.to_body() == {"commandLine": "/bin/sh -c 'nvidia-smi'", "waitForSuccess": True,
                                               "userIdentity": {
                                                   "autoUser": {"scope": "Pool", "elevationLevel": "Admin"}}}
    with pytest.raises(ValueError) as err:
        families_from_dict({"families": {"sim": {**base, "canaryNodes": -1, "startTask": {"waitForSuccess": "yes"}}}})
    text = str(err.value)
    assert "canaryNodes" in text and "startTask.commandLine: is required" in text and "startTask.waitForSuccess" in text
