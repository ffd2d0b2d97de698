"""Contract tests of the emulated Tags API (``{scope}/providers/Microsoft.Resources/tags/default``) and of
CopyStart snapshot copies, through the real azure-mgmt-resource 26 and azure-mgmt-compute 39 clients over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from emulator.azure import Emulator
from emulator.exceptions import AzureError
from emulator.server import EmulatorServer
from shared.resources.clients import AzureClients
from tests.conftest import SUBSCRIPTION_ID as SUB

RG = "rg-tags"
LOCATION = "westeurope"


@pytest.fixture
def resources(clients: AzureClients) -> Iterator[object]:
    from azure.mgmt.resource.resources import ResourceManagementClient

    client = ResourceManagementClient(clients.credential, SUB, **clients._arm_kwargs())
    yield client
    client.close()


@pytest.fixture
def snapshot_id(emulator: Emulator, emulator_server: EmulatorServer) -> str:
    emulator.resources.put_group(SUB, RG, LOCATION)
    disk = emulator.compute.create_disk(SUB, RG, "d1", location=LOCATION, disk_size_gb=8)
    return emulator.compute.create_snapshot(SUB, RG, "s1", source_resource_id=disk.id,
                                            tags={"Owner": "a", "keep": "1"}).id


def _events(emulator: Emulator) -> list[dict]:
    return [e for e in emulator.eventgrid.events("system")
            if e["data"]["operationName"].startswith("Microsoft.Resources/tags/")]


def test_merge_replace_delete_and_delete_all(emulator: Emulator, resources: object, snapshot_id: str) -> None:
    tags = resources.tags  # type: ignore[attr-defined]
    got = tags.get_at_scope(snapshot_id)
    assert got.name == "default" and got.type == "Microsoft.Resources/tags"
    assert got.id.lower() == (snapshot_id + "/providers/Microsoft.Resources/tags/default").lower()
    assert got.properties.tags == {"Owner": "a", "keep": "1"}

    merged = tags.begin_update_at_scope(snapshot_id, {"operation": "Merge",
                                                      "properties": {"tags": {"owner": "b", "x": "1"}}}).result()
    assert merged.properties.tags == {"keep": "1", "owner": "b", "x": "1"}  # names compare case-insensitively
    deleted = tags.begin_update_at_scope(snapshot_id, {"operation": "Delete",
                                                       "properties": {"tags": {"x": "2", "keep": ""}}}).result()
    assert deleted.properties.tags == {"owner": "b", "x": "1"}  # a value must match; an empty value deletes the name
    replaced = tags.begin_create_or_update_at_scope(snapshot_id, {"properties": {"tags": {"only": "this"}}}).result()
    assert replaced.properties.tags == {"only": "this"}
    assert emulator.compute.find(snapshot_id).tags == {"only": "this"}  # the snapshot itself carries them
    tags.begin_delete_at_scope(snapshot_id).result()
    assert emulator.compute.find(snapshot_id).tags == {}

    events = _events(emulator)
    assert [(e["eventType"], e["data"]["operationName"]) for e in events] == [
        ("Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources/tags/write")] * 3 + [
        ("Microsoft.Resources.ResourceDeleteSuccess", "Microsoft.Resources/tags/delete")]
    # The assumed shape: subject and resourceUri name the tagged resource itself.
    assert all(e["subject"].lower() == snapshot_id.lower() == e["data"]["resourceUri"].lower() for e in events)


def test_bad_operation_and_missing_resource(emulator: Emulator, resources: object, snapshot_id: str) -> None:
    tags = resources.tags  # type: ignore[attr-defined]
    with pytest.raises(HttpResponseError) as bad:
        tags.begin_update_at_scope(snapshot_id, {"operation": "Append", "properties": {"tags": {"a": "b"}}}).result()
    assert bad.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        tags.get_at_scope(snapshot_id.replace("/s1", "/nope"))
    assert _events(emulator) == []


def test_a_read_only_lock_blocks_tag_writes(emulator: Emulator, resources: object, snapshot_id: str) -> None:
    emulator.locks.put_lock(snapshot_id, "ro", "ReadOnly")
    with pytest.raises(HttpResponseError) as locked:
        resources.tags.begin_update_at_scope(snapshot_id,
                                             {"operation": "Merge", "properties": {"tags": {"a": "b"}}}).result()  # type: ignore[attr-defined]
    assert locked.value.status_code == 409 and "ScopeLocked" in str(locked.value)


def test_copy_start_reports_succeeded_while_completion_percent_rises(emulator: Emulator, clients: AzureClients,
                                                                     snapshot_id: str) -> None:
    compute = clients.compute
    emulator.compute.copy_start_duration = timedelta(minutes=10)
    body = {"location": "northeurope",
            "properties": {"creationData": {"createOption": "CopyStart", "sourceResourceId": snapshot_id}}}
    with pytest.raises(HttpResponseError) as full:  # only incremental snapshots are copied with CopyStart
        compute.snapshots.begin_create_or_update(RG, "copy", body).result()
    assert full.value.status_code == 400
    inc = compute.snapshots.begin_create_or_update(RG, "inc", {"location": LOCATION, "properties": {
        "incremental": True, "creationData": {"createOption": "Copy", "sourceResourceId": snapshot_id}}}).result()
    body["properties"]["creationData"]["sourceResourceId"] = inc.id
    body["properties"]["incremental"] = True
    copy = compute.snapshots.begin_create_or_update(RG, "copy", body).result()
    assert copy.provisioning_state == "Succeeded" and copy.completion_percent == 0
    emulator.clock.advance(timedelta(minutes=4))
    assert compute.snapshots.get(RG, "copy").completion_percent == 40
    with pytest.raises(AzureError) as copying:  # nothing can be built from it yet
        emulator.compute.create_image(SUB, RG, "img", os_snapshot_id=copy.id, location="northeurope")
    assert copying.value.status == 409
    emulator.clock.advance(timedelta(minutes=7))
    assert compute.snapshots.get(RG, "copy").completion_percent == 100
    assert compute.snapshots.get(RG, "inc").completion_percent is None  # only CopyStart copies report it
