"""The local Functions host: loads an app as the worker does, routes events, retries, dead-letters, fires timers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from emulator.azure import Emulator
from emulator.functions_host import FunctionsHost
from tests.fixtures import trivial_app

SUB = "00000000-0000-4000-8000-000000000001"


def snapshot_write_event(name: str) -> dict:
    rid = f"/subscriptions/{SUB}/resourcegroups/rg/providers/Microsoft.Compute/snapshots/{name}"
    return {"id": f"evt-{name}", "subject": rid, "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "eventTime": "2026-11-02T06:00:00.0000000Z",
            "dataVersion": "2", "metadataVersion": "1", "topic": f"/subscriptions/{SUB}",
            "data": {"resourceUri": rid, "operationName": "Microsoft.Compute/snapshots/write", "subscriptionId": SUB,
                     "status": "Succeeded"}}


@pytest.fixture
def host() -> FunctionsHost:
    trivial_app.received.clear()
    trivial_app.ticks.clear()
    trivial_app.fail_next[0] = 0
    return FunctionsHost(Emulator(seed=3), {"TRIVIAL_SCHEDULE": "0 */10 * * * *"},
                         app_module="tests.fixtures.trivial_app",
                         max_delivery_attempts=3)


def test_host_indexes_the_app_as_the_worker_does(host: FunctionsHost) -> None:
    assert set(host.event_functions) == {"image_pipeline", "image_guard_events", "resize_stalled"}
    assert set(host.timer_functions) == {"pool_watch"}
    assert host.timer_functions["pool_watch"].schedule == "0 */10 * * * *"  # %SETTING% resolved


def test_system_events_are_routed_by_the_subscription_filters_and_decoded_by_the_worker_converter(
        host: FunctionsHost) -> None:
    host.publish("system", snapshot_write_event("a"))
    disk = f"/subscriptions/{SUB}/resourcegroups/rg/providers/Microsoft.Compute/disks/b"
    tag_write = (snapshot_write_event("b")
                 | {"subject": disk, "data": {"operationName": "Microsoft.Resources/tags/write", "resourceUri": disk}})
    # a disk's tag write: filtered out by the subject filter, as the infra's subscription does
    host.publish("system", tag_write)
    lock_write = snapshot_write_event("l") | {"data": {"operationName": "Microsoft.Authorization/locks/write"}}
    host.publish("system", lock_write)  # filtered out by data.operationName
    host.pump()
    assert [r["id"] for r in trivial_app.received] == ["evt-a"]
    assert trivial_app.received[0]["data"]["operationName"] == "Microsoft.Compute/snapshots/write"
    # A snapshot's tag write (either subject form) reaches the pipeline through its own subscription, once.
    snapshot_tags = snapshot_write_event("c") | {"data": {"operationName": "Microsoft.Resources/tags/write"}}
    host.publish("system", snapshot_tags)
    scoped = snapshot_write_event("d")
    scoped["subject"] += "/providers/Microsoft.Resources/tags/default"
    scoped["data"] = {"operationName": "Microsoft.Resources/tags/write", "resourceUri": scoped["subject"]}
    host.publish("system", scoped)
    host.pump()
    assert [r["id"] for r in trivial_app.received] == ["evt-a", "evt-c", "evt-d"]


def test_cloud_events_are_delivered_as_cloud_events(host: FunctionsHost) -> None:
    from emulator.eventgrid.models import to_cloud_event

    host.publish("system", to_cloud_event(snapshot_write_event("c")))
    host.pump()
    assert trivial_app.received[0]["type"] == "Microsoft.Resources.ResourceWriteSuccess"


def test_a_failing_delivery_is_retried_on_event_grids_schedule(host: FunctionsHost) -> None:
    trivial_app.fail_next[0] = 2
    host.publish("system", snapshot_write_event("d"))
    host.pump()
    assert trivial_app.received == [] and host.retried == 1
    host.run_for(timedelta(seconds=10))
    assert trivial_app.received == [] and host.retried == 2  # second attempt after 10 s failed too
    host.run_for(timedelta(seconds=30))
    assert [r["id"] for r in trivial_app.received] == ["evt-d"]  # third attempt after 30 more seconds
    assert host.dead_letters == []


def test_a_delivery_that_keeps_failing_is_dead_lettered(host: FunctionsHost) -> None:
    trivial_app.fail_next[0] = 99
    host.publish("system", snapshot_write_event("e"))
    host.run_for(timedelta(minutes=5))
    assert len(host.dead_letters) == 1 and host.dead_letters[0].attempts == 3
    assert all(not inv.ok for inv in host.invocations if inv.function == "image_pipeline")


def test_custom_topic_events_reach_their_subscription_only(host: FunctionsHost) -> None:
    host.publish("custom", {"id": "s1", "subject": "/pools/p", "eventType": "BatchImageAutopilot.PoolResizeStalled",
                            "eventTime": "2026-11-02T06:00:00Z", "dataVersion": "1.0", "data": {}})
    host.publish("custom", {"id": "x1", "subject": "/x", "eventType": "Other.Event",
                            "eventTime": "2026-11-02T06:00:00Z",
                            "dataVersion": "1.0", "data": {}})
    host.pump()
    assert trivial_app.received == [{"id": "s1", "custom": True}]


def test_events_raised_by_the_emulator_reach_the_host(host: FunctionsHost) -> None:
    # Published on the emulator's custom topic -> subscription -> function.
    host.emulator.eventgrid.publish("autopilot", [{"id": "s2", "subject": "/pools/p",
                                                   "eventType": "BatchImageAutopilot.PoolResizeStalled",
                                                   "eventTime": "2026-11-02T06:00:00Z", "dataVersion": "1.0",
                                                   "data": {}}])
    host.pump()
    assert trivial_app.received == [{"id": "s2", "custom": True}]


def test_timers_fire_on_their_ncrontab_schedule_in_virtual_time(host: FunctionsHost) -> None:
    host.run_for(timedelta(hours=1))
    assert len(trivial_app.ticks) == 6  # every 10 minutes
    assert not any(trivial_app.ticks)  # none past due
