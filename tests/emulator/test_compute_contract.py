"""Contract tests of the emulated Microsoft.Compute, through the real azure-mgmt-compute 39 client over HTTPS.

Shapes are compared with copies of the REST spec examples in ``tests/fixtures/azure/compute_*.json``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from emulator.azure import Emulator
from emulator.compute.models import marketplace_image_id
from emulator.core import make_token
from emulator.server import EmulatorServer
from shared.resources.clients import AzureClients
from tests.conftest import SUBSCRIPTION_ID as SUB

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "azure"
RG = "rg-images"
LOCATION = "westeurope"
UBUNTU_24 = marketplace_image_id(SUB, LOCATION, "Canonical", "ubuntu-24_04-lts", "server", "24.04.202510010")
JAMMY_GEN1 = marketplace_image_id(SUB, LOCATION, "Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts",
                                  "22.04.202510010")
NI_UBUNTU = marketplace_image_id(SUB, LOCATION, "ni", "ni-ubuntu", "ni-ubuntu-2204", "1.0.0")
# Fields of GalleryImageVersion the spec examples leave out but the model (and Azure) has.
VERSION_EXTRA_FIELDS = ("type", "tags", "properties.publishingProfile.excludeFromLatest",
                        "properties.publishingProfile.endOfLifeDate")
TOKEN = make_token({"name": "contract-test", "appid": "contract-test"})


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def substitute(value: Any, mapping: dict[str, str]) -> Any:
    """The example with its placeholder ids replaced by real ones (exact string matches)."""
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    return mapping.get(value, value) if isinstance(value, str) else value


def paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON document, list items collapsed to ``[]``."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(f"{prefix}.{k}" if prefix else k)
            out |= paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        for v in value:
            out |= paths(v, f"{prefix}[]")
    return out


def assert_shape_like(ours: dict[str, Any], spec: dict[str, Any], *, not_emulated: tuple[str, ...] = (),
                      extra: tuple[str, ...] = ()) -> None:
    """Every field of the spec example is in our answer (bar features the emulator does not model, ``not_emulated``),
    and every field we answer is in the example or in ``extra`` (fields of the same model the example leaves out)."""
    spec_paths = {p for p in paths(spec) if not p.startswith(not_emulated)}
    ours_paths = paths(ours)
    assert spec_paths - ours_paths == set(), ("fields of the spec example missing from the emulator: "
                                              f"{sorted(spec_paths - ours_paths)}")
    unknown = {p for p in ours_paths - spec_paths if not p.startswith(extra)}
    assert unknown == set(), f"fields the spec example does not have: {sorted(unknown)}"


def group(emulator: Emulator, name: str = RG, location: str = LOCATION) -> None:
    emulator.resources.put_group(SUB, name, location)


def arm(server: EmulatorServer, method: str, path: str, api_version: str | None, body: Any = None,
        token: str | None = TOKEN,
        **params: str) -> requests.Response:
    query = {"api-version": api_version, **params} if api_version else params
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{server.base_url}{path}", params=query, json=body, headers=headers,
                            verify=str(server.ca_cert), timeout=10)


def rid(kind: str, name: str, rg: str = RG) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/{kind}/{name}"


def record_events(emulator: Emulator) -> list[dict[str, Any]]:
    """The events the compute model raises through ``eventgrid.emit_resource_event`` (architecture.md), recorded as they
    are raised. The call is passed on to the Event Grid backend when it has the method (it may still be a
    placeholder)."""
    events: list[dict[str, Any]] = []
    eventgrid = emulator.eventgrid
    original = getattr(eventgrid, "emit_resource_event", None)

    def emit_resource_event(**kwargs: Any) -> Any:
        events.append({"type": kwargs["event_type"], "subject": kwargs["subject"],
                       "operationName": kwargs["operation_name"],
                       "status": kwargs["status"], "claims": kwargs["claims"]})
        return original(**kwargs) if original is not None else None

    eventgrid.emit_resource_event = emit_resource_event  # type: ignore[attr-defined]
    return events


def os_disk_and_snapshot(emulator: Emulator, name: str, image_id: str = UBUNTU_24, rg: str = RG) -> str:
    """Scenario set-up through the backend's plain methods: a disk from a platform image and its snapshot."""
    disk = emulator.compute.create_disk(SUB, rg, f"{name}-disk", location=LOCATION, image_reference_id=image_id)
    return emulator.compute.create_snapshot(SUB, rg, name, source_resource_id=disk.id).id


def data_snapshot(emulator: Emulator, name: str, size_gb: int = 64, rg: str = RG) -> str:
    disk = emulator.compute.create_disk(SUB, rg, f"{name}-disk", location=LOCATION, disk_size_gb=size_gb)
    return emulator.compute.create_snapshot(SUB, rg, name, source_resource_id=disk.id).id


# --------------------------------------------------------------------------------------------
# Disks and snapshots
# --------------------------------------------------------------------------------------------


def test_disk_from_marketplace_image_then_snapshot_copy_keeps_os_and_generation(
        emulator: Emulator, clients: AzureClients) -> None:
    group(emulator)
    compute = clients.compute
    disk = compute.disks.begin_create_or_update(RG, "os-disk", {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "FromImage", "imageReference": {"id": UBUNTU_24}}},
    }).result()
    assert (disk.os_type, disk.hyper_v_generation, disk.disk_size_gb,
            disk.provisioning_state) == ("Linux", "V2", 30, "Succeeded")
    assert disk.creation_data.image_reference.id == UBUNTU_24
    assert disk.purchase_plan is None  # first-party images carry no plan

    snap = compute.snapshots.begin_create_or_update(RG, "os-snap", {
        "location": LOCATION, "tags": {"autopilot": "build"},
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk.id}},
    }).result()
    got = compute.snapshots.get(RG, "os-snap")
    for s in (snap, got):
        assert (s.os_type, s.hyper_v_generation, s.disk_size_gb) == ("Linux", "V2", 30)
        assert s.creation_data.create_option == "Copy"
        assert s.creation_data.source_resource_id == disk.id
        assert s.creation_data.source_unique_id == disk.unique_id
        assert s.provisioning_state == "Succeeded"
        assert s.time_created == emulator.now()
        assert s.tags == {"autopilot": "build"}
        assert s.location == LOCATION
        assert s.disk_state == "Unattached"

    gen1 = compute.disks.begin_create_or_update(RG, "jammy", {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "FromImage", "imageReference": {"id": JAMMY_GEN1}}}}).result()
    assert (gen1.os_type, gen1.hyper_v_generation) == ("Linux", "V1")
    assert [d.name for d in compute.disks.list_by_resource_group(RG)] == ["jammy", "os-disk"]
    assert [s.name for s in compute.snapshots.list_by_resource_group(RG)] == ["os-snap"]

    compute.snapshots.begin_delete(RG, "os-snap").result()
    compute.disks.begin_delete(RG, "jammy").result()
    with pytest.raises(ResourceNotFoundError):
        compute.snapshots.get(RG, "os-snap")
    assert [d.name for d in compute.disks.list_by_resource_group(RG)] == ["os-disk"]


def test_third_party_image_disks_carry_the_purchase_plan_and_unknown_images_404(
        emulator: Emulator, clients: AzureClients) -> None:
    group(emulator)
    compute = clients.compute
    disk = compute.disks.begin_create_or_update(RG, "ni-disk", {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "FromImage", "imageReference": {"id": NI_UBUNTU}}}}).result()
    plan = {"name": disk.purchase_plan.name, "publisher": disk.purchase_plan.publisher,
            "product": disk.purchase_plan.product}
    assert plan == {"name": "ni-ubuntu-2204", "publisher": "ni", "product": "ni-ubuntu"}
    snap = compute.snapshots.begin_create_or_update(RG, "ni-snap", {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk.id}}}).result()
    assert snap.purchase_plan.name == "ni-ubuntu-2204" and snap.purchase_plan.product == "ni-ubuntu"

    unknown = marketplace_image_id(SUB, LOCATION, "Canonical", "no-such-offer", "server", "1.0.0")
    with pytest.raises(ResourceNotFoundError) as info:
        compute.disks.begin_create_or_update(RG, "bad", {
            "location": LOCATION,
            "properties": {"creationData": {"createOption": "FromImage", "imageReference": {"id": unknown}}}}).result()
    assert info.value.error.code == "PlatformImageNotFound"

    # Scenario set-up can extend the catalogue; the HTTP path then accepts the new image.
    emulator.compute.add_marketplace_image("Canonical", "no-such-offer", "server", os_type="Linux",
                                           hyper_v_generation="V2", versions=["1.0.0"])
    assert compute.disks.begin_create_or_update(RG, "bad", {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "FromImage",
                                        "imageReference": {"id": unknown}}}}).result().hyper_v_generation == "V2"

    with pytest.raises(HttpResponseError) as missing_group:
        compute.disks.begin_create_or_update("no-such-rg", "d", {"location": LOCATION, "properties": {
            "creationData": {"createOption": "Empty"}, "diskSizeGB": 8}}).result()
    assert missing_group.value.error.code == "ResourceGroupNotFound"


def test_snapshot_get_matches_the_spec_example_and_tag_patch_is_a_write(emulator: Emulator,
                                                                        emulator_server: EmulatorServer,
                                                                        clients: AzureClients) -> None:
    group(emulator)
    spec = example("compute_Snapshot_Get_2025-01-02")["responses"]["200"]["body"]
    # A Windows Gen1 third-party image with the same plan as the example.
    plan = spec["properties"]["purchasePlan"]
    emulator.compute.add_marketplace_image(plan["publisher"], plan["product"], plan["name"], os_type="Windows",
                                           hyper_v_generation="V1",
                                           versions=["1.0.0"], disk_size_gb=100, plan=plan)
    image_id = marketplace_image_id(SUB, LOCATION, plan["publisher"], plan["product"], plan["name"], "1.0.0")
    disk = emulator.compute.create_disk(SUB, RG, "myDisk", location=LOCATION, image_reference_id=image_id)
    emulator.compute.create_snapshot(SUB, RG, "mySnapshot", source_resource_id=disk.id, tags=spec["tags"])

    for api_version in ("2025-01-02", "2026-03-02"):  # the example's version and the SDK's
        response = arm(emulator_server, "GET", rid("snapshots", "mySnapshot"), api_version)
        assert response.status_code == 200
        ours = response.json()
        assert_shape_like(ours, spec, not_emulated=("properties.encryptionSettingsCollection",
                                                    "properties.supportedCapabilities",
                                                    "properties.supportsHibernation"),
                          extra=("sku", "properties.diskSizeBytes", "properties.diskState", "properties.incremental",
                                 "properties.uniqueId",
                                 "properties.networkAccessPolicy", "properties.publicNetworkAccess"))
        for field in ("osType", "hyperVGeneration", "purchasePlan", "provisioningState"):
            assert ours["properties"][field] == spec["properties"][field]
        assert ours["properties"]["creationData"]["createOption"] == "Copy"
        assert ours["properties"]["creationData"]["sourceResourceId"] == disk.id
        assert ours["properties"]["encryption"] == spec["properties"]["encryption"]
        assert ours["type"] == spec["type"] and ours["tags"] == spec["tags"] and ours["location"] == LOCATION

    updated = clients.compute.snapshots.begin_update(RG, "mySnapshot",
                                                     {"tags": {"autopilot": "build", "department": "Dev"}}).result()
    assert updated.tags == {"autopilot": "build", "department": "Dev"}
    assert clients.compute.snapshots.get(RG, "mySnapshot").tags == {"autopilot": "build", "department": "Dev"}
    [patch] = emulator.log.entries(method="PATCH")
    assert (patch.action, patch.status, patch.caller) == ("Microsoft.Compute/snapshots/write", 200,
                                                          "batch-image-autopilot")


# --------------------------------------------------------------------------------------------
# Managed images
# --------------------------------------------------------------------------------------------


def test_image_from_os_and_data_snapshots_is_a_long_running_operation(emulator: Emulator,
                                                                      emulator_server: EmulatorServer,
                                                                       clients: AzureClients) -> None:
    group(emulator)
    events = record_events(emulator)
    os_snap = os_disk_and_snapshot(emulator, "mySnapshot")
    data_snap = data_snapshot(emulator, "mySnapshot2")
    spec = example("compute_Image_Create_DataDiskFromASnapshotIncluded_2025-04-01")
    request = substitute(spec["parameters"]["parameters"], {
        "subscriptions/{subscription-id}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/snapshots"
        "/mySnapshot": os_snap,
        "subscriptions/{subscriptionId}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/snapshots"
        "/mySnapshot2": data_snap,
    })
    # the snapshot is Gen2: the image must say so (Azure's default is V1)
    request["properties"]["hyperVGeneration"] = "V2"

    poller = clients.compute.images.begin_create_or_update(RG, "myImage", request, polling=False)
    accepted = poller.result()  # no polling: the deserialized 201
    assert accepted.provisioning_state == "Creating"
    assert clients.compute.images.get(RG, "myImage").provisioning_state == "Creating"
    assert not emulator.compute.image_available(rid("images", "myImage"), LOCATION)
    assert events == []  # ARM raises the write event when the operation ends, not when it is accepted

    emulator.clock.advance(timedelta(minutes=5))
    image = clients.compute.images.get(RG, "myImage")
    assert image.provisioning_state == "Succeeded"
    assert image.hyper_v_generation == "V2"
    assert image.storage_profile.os_disk.snapshot.id == os_snap
    assert (image.storage_profile.os_disk.os_type, image.storage_profile.os_disk.os_state) == ("Linux", "Generalized")
    assert [(d.lun, d.snapshot.id) for d in image.storage_profile.data_disks] == [(1, data_snap)]
    assert emulator.compute.image_available(image.id, "West Europe")
    assert emulator.compute.image_hyperv_generation(image.id) == "V2"
    assert [(e["type"], e["subject"], e["operationName"], e["status"]) for e in events if e["subject"] == image.id] == [
        ("Microsoft.Resources.ResourceWriteSuccess", image.id, "Microsoft.Compute/images/write", "Succeeded")]
    assert next(e["claims"] for e in events if e["subject"] == image.id)["name"] == "batch-image-autopilot"

    # The answer has the example's shape (its 201 body) and enum casing.
    ours = arm(emulator_server, "GET", image.id, "2025-04-01").json()
    assert_shape_like(ours, spec["responses"]["201"]["body"], extra=("tags", "properties.hyperVGeneration"))
    assert ours["properties"]["storageProfile"]["osDisk"]["caching"] == "ReadWrite"
    assert ours["properties"]["provisioningState"] == "Succeeded"

    # Every ImageDisk field of the Get example is stored and answered under the same names.
    get_spec = example("compute_Image_Get_2025-04-01")["responses"]["200"]["body"]
    snapshot1 = ("subscriptions/{subscriptionId}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/snapshots"
                 "/mySnapshot1")
    disk1 = ("subscriptions/{subscriptionId}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/disks"
             "/myManagedDisk1")
    snapshot2 = ("subscriptions/{subscriptionId}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/snapshots"
                 "/mySnapshot2")
    disk2 = ("subscriptions/{subscriptionId}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/disks"
             "/myManagedDisk2")
    full = substitute({"location": get_spec["location"],
                       "properties": {"storageProfile": get_spec["properties"]["storageProfile"]}}, {
        snapshot1: os_snap, snapshot2: data_snap, disk1: rid("disks", "mySnapshot-disk"),
        disk2: rid("disks", "mySnapshot2-disk")})
    assert arm(emulator_server, "PUT", rid("images", "full"), "2025-04-01", full).status_code == 201
    emulator.clock.advance(timedelta(minutes=5))
    ours = arm(emulator_server, "GET", rid("images", "full"), "2026-04-01").json()
    assert_shape_like(ours, get_spec,
                      extra=("tags", "properties.hyperVGeneration", "properties.storageProfile.osDisk.caching"))
    assert ours["properties"]["storageProfile"]["osDisk"]["osType"] == "Windows"

    # Without hyperVGeneration Azure makes a V1 image even from a Gen2 snapshot (the pool then cannot boot it).
    plain = substitute(example("compute_Image_CreateFromASnapshot_2025-04-01")["parameters"]["parameters"], {
        "subscriptions/{subscription-id}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/snapshots"
        "/mySnapshot": os_snap})
    emulator.compute.retry_after_seconds = 1  # the real seconds the SDK's poller waits between polls
    # ARMPolling: follows Azure-AsyncOperation
    poller = clients.compute.images.begin_create_or_update(RG, "gen1-by-default", plain)
    emulator.clock.advance(timedelta(minutes=5))
    done = poller.result(timeout=15)  # completes once the virtual time has passed
    assert (done.provisioning_state, done.hyper_v_generation) == ("Succeeded", "V1")
    assert [i.name for i in clients.compute.images.list_by_resource_group(RG)] == ["full", "gen1-by-default", "myImage"]
    assert {e.action
            for e in emulator.log.entries(method="PUT", path_contains="/images/")} == {"Microsoft.Compute/images/write"}


def test_image_lro_headers_and_operation_status_resource(emulator: Emulator, emulator_server: EmulatorServer) -> None:
    group(emulator)
    os_snap = os_disk_and_snapshot(emulator, "snap")
    body = {"location": "West Europe", "properties": {"hyperVGeneration": "V2", "storageProfile": {
        "osDisk": {"osType": "Linux", "osState": "Generalized", "snapshot": {"id": os_snap}}}}}
    put = arm(emulator_server, "PUT", rid("images", "img"), "2026-04-01", body)
    assert put.status_code == 201
    assert put.json()["properties"]["provisioningState"] == "Creating"
    assert put.json()["location"] == LOCATION
    status_url = put.headers["Azure-AsyncOperation"]
    assert f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westeurope/operations/" in status_url
    assert put.headers["Location"].startswith(status_url.split("?")[0]) and int(put.headers["Retry-After"]) >= 1

    headers = {"Authorization": f"Bearer {TOKEN}"}
    polled = requests.get(status_url, headers=headers, verify=str(emulator_server.ca_cert), timeout=10)
    status = polled.json()
    assert int(polled.headers["Retry-After"]) >= 1
    assert (status["status"] == "InProgress" and "endTime" not in status
            and status["startTime"].startswith("2026-11-02T06:00:00"))
    monitor = requests.get(put.headers["Location"], headers=headers, verify=str(emulator_server.ca_cert), timeout=10)
    assert monitor.status_code == 202

    emulator.clock.advance(emulator.compute.image_create_duration)
    status = requests.get(status_url, headers=headers, verify=str(emulator_server.ca_cert), timeout=10).json()
    assert (status["status"], status["name"]) == ("Succeeded", status_url.split("/operations/")[1].split("?")[0])
    assert status["endTime"].startswith("2026-11-02T06:03:00")
    monitor = requests.get(put.headers["Location"], headers=headers, verify=str(emulator_server.ca_cert), timeout=10)
    assert monitor.status_code == 200 and monitor.json()["properties"]["provisioningState"] == "Succeeded"
    assert emulator.log.entries(action="Microsoft.Compute/locations/operations/read")

    # A second PUT while the first one runs is a conflict.
    arm(emulator_server, "PUT", rid("images", "img2"), "2026-04-01", body)
    again = arm(emulator_server, "PUT", rid("images", "img2"), "2026-04-01", body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "Conflict"


def test_image_creation_fails_for_missing_sources_and_bad_bodies(emulator: Emulator, emulator_server: EmulatorServer,
                                                                  clients: AzureClients) -> None:
    group(emulator)
    events = record_events(emulator)
    missing = rid("snapshots", "gone")
    body = {"location": LOCATION, "properties": {"storageProfile": {"osDisk": {"osType": "Linux",
                                                                               "osState": "Generalized",
                                                                               "snapshot": {"id": missing}}}}}
    with pytest.raises(ResourceNotFoundError) as info:
        clients.compute.images.begin_create_or_update(RG, "img", body, polling=False)
    assert info.value.error.code == "NotFound" and missing in info.value.error.message

    # The snapshot disappears while the image is being created: the operation ends Failed.
    os_snap = os_disk_and_snapshot(emulator, "short-lived")
    body["properties"]["storageProfile"]["osDisk"]["snapshot"]["id"] = os_snap
    put = arm(emulator_server, "PUT", rid("images", "img"), "2026-04-01", body)
    assert put.status_code == 201
    emulator.compute.delete_snapshot(SUB, RG, "short-lived")
    emulator.clock.advance(timedelta(minutes=5))
    image = clients.compute.images.get(RG, "img")
    assert image.provisioning_state == "Failed"
    status = requests.get(put.headers["Azure-AsyncOperation"], headers={"Authorization": f"Bearer {TOKEN}"},
                          verify=str(emulator_server.ca_cert), timeout=10).json()
    assert status["status"] == "Failed" and status["error"]["code"] == "NotFound"
    assert [(e["type"], e["status"]) for e in events
            if e["subject"] == image.id] == [("Microsoft.Resources.ResourceWriteFailure", "Failed")]
    assert not emulator.compute.image_available(image.id, LOCATION)

    # Schema validation: osState and lun are required, enums are checked.
    snap = os_disk_and_snapshot(emulator, "snap")
    for bad, code in (
        ({"osDisk": {"osType": "Linux", "snapshot": {"id": snap}}}, "InvalidParameter"),
        ({"osDisk": {"osType": "Solaris", "osState": "Generalized", "snapshot": {"id": snap}}}, "InvalidParameter"),
        ({"osDisk": {"osType": "Linux", "osState": "Generalized", "snapshot": {"id": snap}},
          "dataDisks": [{"snapshot": {"id": snap}}]},
         "InvalidParameter"),
        ({"osDisk": {"osType": "Linux", "osState": "Generalized"}}, "InvalidParameter"),
    ):
        response = arm(emulator_server, "PUT", rid("images", "bad"), "2026-04-01",
                       {"location": LOCATION, "properties": {"storageProfile": bad}})
        assert (response.status_code, response.json()["error"]["code"]) == (400, code), bad
    response = arm(emulator_server, "PUT", rid("images", "bad"), "2026-04-01", {"properties": {}})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "LocationRequired")


def test_image_delete_is_an_lro_the_sdk_completes(emulator: Emulator, emulator_server: EmulatorServer,
                                                  clients: AzureClients) -> None:
    group(emulator)
    snap = os_disk_and_snapshot(emulator, "snap")
    image = emulator.compute.create_image(SUB, RG, "img", os_snapshot_id=snap, hyper_v_generation="V2", instant=True)
    assert emulator.compute.image_available(image.id, LOCATION)
    clients.compute.images.begin_delete(RG, "img").result()
    with pytest.raises(ResourceNotFoundError) as info:
        clients.compute.images.get(RG, "img")
    assert info.value.error.code == "ResourceNotFound"
    assert not emulator.compute.image_available(image.id, LOCATION)
    clients.compute.images.begin_delete(RG, "img").result()  # deleting what is gone is fine (204)

    # The raw answer follows the spec example: 202 with a Location header (and 204 when nothing is there).
    spec = example("compute_Images_Delete_MaximumSet_Gen_2025-04-01")
    emulator.compute.create_image(SUB, RG, "img", os_snapshot_id=snap, instant=True)
    response = arm(emulator_server, "DELETE", rid("images", "img"), spec["parameters"]["api-version"])
    assert (response.status_code == 202
            and set(spec["responses"]["202"]["headers"]) <= {h.lower() for h in response.headers})
    assert arm(emulator_server, "DELETE", rid("images", "img"), "2026-04-01").status_code == 204
    assert [e.status for e in emulator.log.entries(action="Microsoft.Compute/images/delete")] == [202, 204, 202, 204]


# --------------------------------------------------------------------------------------------
# Azure Compute Gallery
# --------------------------------------------------------------------------------------------


def make_gallery(clients: AzureClients, definition: str = "batch-ubuntu", generation: str = "V2",
                 os_state: str = "Generalized") -> None:
    gallery = clients.compute.galleries.begin_create_or_update(
        RG, "autopilot_gallery", {"location": "West Europe"}).result()
    assert gallery.provisioning_state == "Succeeded" and gallery.location == LOCATION
    image_def = clients.compute.gallery_images.begin_create_or_update(RG, "autopilot_gallery", definition, {
        "location": LOCATION, "properties": {"osType": "Linux", "osState": os_state, "hyperVGeneration": generation,
                                             "identifier": {"publisher": "contoso", "offer": "batch",
                                                            "sku": definition}}}).result()
    assert (image_def.os_type, image_def.os_state, image_def.hyper_v_generation, image_def.provisioning_state) == (
        "Linux", os_state, generation, "Succeeded")
    assert image_def.identifier.sku == definition


def test_gallery_version_from_a_managed_image_replicates_then_is_available(emulator: Emulator,
                                                                           emulator_server: EmulatorServer,
                                                                           clients: AzureClients) -> None:
    group(emulator)
    events = record_events(emulator)
    snap = os_disk_and_snapshot(emulator, "snap")
    data = data_snapshot(emulator, "data", 10)
    image = emulator.compute.create_image(SUB, RG, "img", os_snapshot_id=snap, data_snapshot_ids={1: data},
                                          hyper_v_generation="V2",
                                          instant=True)
    make_gallery(clients)
    spec = example("compute_GalleryImageVersion_Create_FromManagedImage_2025-03-03")
    request = substitute(spec["parameters"]["galleryImageVersion"], {
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Compute/images"
        "/{imageName}": image.id,
        "West US": "West Europe", "East US": "North Europe"})
    request["location"] = LOCATION

    poller = clients.compute.gallery_image_versions.begin_create_or_update(RG, "autopilot_gallery", "batch-ubuntu",
                                                                           "1.0.0", request,
                                                                           polling=False)
    assert poller.result().provisioning_state == "Creating"
    version_id = f"{rid('galleries', 'autopilot_gallery')}/images/batch-ubuntu/versions/1.0.0"
    definition_id = version_id.rsplit("/versions/", 1)[0]
    assert not emulator.compute.image_available(version_id, LOCATION)
    assert not emulator.compute.image_available(definition_id, LOCATION)

    # the home region's single replica is done; North Europe (2 replicas, remote) is not
    emulator.clock.advance(timedelta(minutes=5))
    response = arm(emulator_server, "GET", version_id, "2026-03-03", **{"$expand": "ReplicationStatus"})
    status = response.json()["properties"]["replicationStatus"]
    assert status["aggregatedState"] == "InProgress"
    assert {s["region"]: s["state"] for s in status["summary"]} == {"West Europe": "Replicating",
                                                                    "North Europe": "Replicating"}
    assert all(0 <= s["progress"] < 100 for s in status["summary"])
    assert "replicationStatus" not in arm(emulator_server, "GET", version_id, "2026-03-03").json()["properties"]

    emulator.clock.advance(timedelta(minutes=10))
    version = clients.compute.gallery_image_versions.get(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0",
                                                         expand="ReplicationStatus")
    assert version.provisioning_state == "Succeeded"
    assert version.replication_status.aggregated_state == "Completed"
    assert {s.region: (s.state, s.progress) for s in version.replication_status.summary} == {
        "West Europe": ("Completed", 100), "North Europe": ("Completed", 100)}
    assert version.storage_profile.source.id == image.id
    assert [(d.lun, d.size_in_gb) for d in version.storage_profile.data_disk_images] == [(1, 10)]
    assert {t.name: t.regional_replica_count
            for t in version.publishing_profile.target_regions} == {"West Europe": 1, "North Europe": 2}
    for region in ("westeurope", "North Europe"):
        assert emulator.compute.image_available(version_id, region)
        assert emulator.compute.image_available(definition_id, region)
    assert not emulator.compute.image_available(version_id, "eastus")
    assert emulator.compute.image_hyperv_generation(version_id) == "V2"
    assert emulator.compute.image_hyperv_generation(definition_id) == "V2"
    assert [(e["type"], e["operationName"]) for e in events if e["subject"] == version.id] == [
        ("Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Compute/galleries/images/versions/write")]

    ours = arm(emulator_server, "GET", version_id, "2025-03-03").json()
    assert_shape_like(ours, spec["responses"]["201"]["body"],
                      not_emulated=("properties.safetyProfile.policyViolations",),
                      extra=VERSION_EXTRA_FIELDS)
    assert ours["properties"]["safetyProfile"]["blockDeletionBeforeEndOfLife"] is False  # as sent
    assert [v.name
            for v in clients.compute.gallery_image_versions.list_by_gallery_image(RG, "autopilot_gallery",
                                                                                  "batch-ubuntu")] == ["1.0.0"]
    assert emulator.log.entries(action="Microsoft.Compute/galleries/images/versions/write", method="PUT")

    # A PUT on the version updates its regions: removing a replicated one needs allowDeletionOfReplicatedLocations.
    shrink = {"location": LOCATION, "properties": {"storageProfile": {"source": {"id": image.id}},
                                                   "publishingProfile": {"targetRegions": [{"name": "West Europe"}]}}}
    refused = arm(emulator_server, "PUT", version_id, "2026-03-03", shrink)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "OperationNotAllowed")
    grow = {"location": LOCATION,
            "properties": {"storageProfile": {"source": {"id": image.id}}, "publishingProfile": {"targetRegions": [
        {"name": "West Europe"}, {"name": "North Europe", "regionalReplicaCount": 2}, {"name": "UK South"}]}}}
    updating = arm(emulator_server, "PUT", version_id, "2026-03-03", grow)
    assert (updating.status_code, updating.json()["properties"]["provisioningState"]) == (200, "Updating")
    assert "Azure-AsyncOperation" in updating.headers
    assert (emulator.compute.image_available(version_id, LOCATION)
            and not emulator.compute.image_available(version_id, "uksouth"))
    emulator.clock.advance(timedelta(minutes=10))
    assert emulator.compute.image_available(version_id, "uksouth")
    assert [g.name for g in clients.compute.galleries.list_by_resource_group(RG)] == ["autopilot_gallery"]

    # Through a CanNotDelete lock (writes allowed, deletes not): a PATCH with more replicas in a ready region is a
    # long-running update; the region keeps serving meanwhile.
    from azure.mgmt.resource.locks.models import ManagementLockObject

    clients.locks.management_locks.create_or_update_at_resource_level(
        RG, "Microsoft.Compute", "galleries/autopilot_gallery/images/batch-ubuntu", "versions", "1.0.0", "keep",
        ManagementLockObject(level="CanNotDelete"))
    more = {"properties": {"publishingProfile": {"targetRegions": [
        {"name": "West Europe", "regionalReplicaCount": 3}, {"name": "North Europe", "regionalReplicaCount": 2},
        {"name": "UK South"}]}}}
    patched = arm(emulator_server, "PATCH", version_id, "2026-03-03", more)
    assert (patched.status_code, patched.json()["properties"]["provisioningState"]) == (200, "Updating")
    assert emulator.compute.image_available(version_id, LOCATION)
    emulator.clock.advance(timedelta(minutes=10))
    version = clients.compute.gallery_image_versions.get(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0")
    assert version.provisioning_state == "Succeeded"
    assert {t.name: t.regional_replica_count for t in version.publishing_profile.target_regions}["West Europe"] == 3
    deleted = arm(emulator_server, "DELETE", version_id, "2026-03-03")
    assert (deleted.status_code, deleted.json()["error"]["code"]) == (409, "ScopeLocked")
    clients.locks.management_locks.delete_at_resource_level(
        RG, "Microsoft.Compute", "galleries/autopilot_gallery/images/batch-ubuntu", "versions", "1.0.0", "keep")

    # The whole chain goes when its resource group goes.
    emulator.resources.delete_group(SUB, RG)
    assert (not emulator.compute.image_available(version_id, LOCATION)
            and not emulator.compute.image_available(image.id, LOCATION))
    assert emulator.compute.find(snap) is None


def test_gallery_version_from_snapshots_blocks_deletion_before_end_of_life(emulator: Emulator,
                                                                           emulator_server: EmulatorServer,
                                                                           clients: AzureClients) -> None:
    group(emulator)
    os_snap = os_disk_and_snapshot(emulator, "os")
    data_disk = emulator.compute.create_disk(SUB, RG, "dataDisk", location=LOCATION, disk_size_gb=10)
    make_gallery(clients)
    spec = example("compute_GalleryImageVersion_Create_WithSnapshotsAsSource_2025-03-03")
    request = substitute(spec["parameters"]["galleryImageVersion"], {
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Compute/snapshots"
        "/{osSnapshotName}": os_snap,
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Compute/disks"
        "/{dataDiskName}": data_disk.id,
        "West US": "West Europe", "East US": "North Europe"})
    request["location"] = LOCATION
    del request["properties"]["safetyProfile"]  # take the service default of the SDK's api-version 2026-03-03
    versions = clients.compute.gallery_image_versions
    started = versions.begin_create_or_update(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0", request,
                                              polling=False).result()
    assert started.provisioning_state == "Creating"
    assert started.safety_profile.block_deletion_before_end_of_life is True
    eol = started.publishing_profile.end_of_life_date
    assert (eol.year, eol.month, eol.day) == (2027, 5, 2)  # six months after 2026-11-02

    emulator.clock.advance(timedelta(minutes=30))
    version = versions.get(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0")
    assert version.provisioning_state == "Succeeded"
    assert version.storage_profile.os_disk_image.source.id == os_snap
    assert [(d.lun, d.source.id, d.size_in_gb)
            for d in version.storage_profile.data_disk_images] == [(1, data_disk.id, 10)]
    ours = arm(emulator_server, "GET", version.id, "2026-03-03").json()
    assert_shape_like(ours, spec["responses"]["201"]["body"],
                      not_emulated=("properties.safetyProfile.policyViolations",),
                      extra=VERSION_EXTRA_FIELDS)
    assert ours["properties"]["storageProfile"]["osDiskImage"]["hostCaching"] == "ReadOnly"

    with pytest.raises(HttpResponseError) as blocked:
        versions.begin_delete(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0").result()
    assert (blocked.value.status_code, blocked.value.error.code) == (409, "OperationNotAllowed")
    assert emulator.compute.image_available(version.id, LOCATION)

    # Lifting the block (PATCH) makes the version deletable; the SDK's begin_delete then completes.
    patched = versions.begin_update(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0",
                                    {"properties": {"safetyProfile": {"blockDeletionBeforeEndOfLife": False}}}).result()
    assert patched.safety_profile.block_deletion_before_end_of_life is False
    versions.begin_delete(RG, "autopilot_gallery", "batch-ubuntu", "1.0.0").result()
    assert not emulator.compute.image_available(version.id, LOCATION)

    # An older api-version keeps the old default (no block); past the end of life a blocked version can go.
    legacy = arm(emulator_server, "PUT", f"{version.id.rsplit('/', 1)[0]}/1.0.1", "2025-03-03", request)
    assert (legacy.status_code == 201
            and legacy.json()["properties"]["safetyProfile"]["blockDeletionBeforeEndOfLife"] is False)
    blocked_v = emulator.compute.create_gallery_image_version(SUB, RG, "autopilot_gallery", "batch-ubuntu", "1.0.2",
                                                              os_snapshot_id=os_snap,
                                                              block_deletion_before_end_of_life=True,
                                                              end_of_life=emulator.now() + timedelta(days=2),
                                                              instant=True)
    assert arm(emulator_server, "DELETE", blocked_v.id, "2026-03-03").status_code == 409
    emulator.clock.advance(timedelta(days=3))
    assert arm(emulator_server, "DELETE", blocked_v.id, "2026-03-03").status_code == 202


def test_gallery_version_validation_errors(emulator: Emulator, emulator_server: EmulatorServer,
                                           clients: AzureClients) -> None:
    group(emulator)
    snap = os_disk_and_snapshot(emulator, "snap")  # Gen2
    gen1_snap = os_disk_and_snapshot(emulator, "gen1", JAMMY_GEN1)
    specialized = emulator.compute.create_image(SUB, RG, "specialized", os_snapshot_id=snap, os_state="Specialized",
                                                hyper_v_generation="V2",
                                                instant=True)
    make_gallery(clients)
    base = f"{rid('galleries', 'autopilot_gallery')}/images/batch-ubuntu/versions"

    def put(version: str, storage: dict[str, Any], path: str = base) -> requests.Response:
        return arm(emulator_server, "PUT", f"{path}/{version}", "2026-03-03",
                   {"location": LOCATION, "properties": {"storageProfile": storage}})

    cases = [
        (put("1.0", {"osDiskImage": {"source": {"id": snap}}}), 400, "InvalidParameter"),  # not Major.Minor.Patch
        (put("1.0.0", {"osDiskImage": {"source": {"id": rid("snapshots", "nope")}}}), 404, "NotFound"),
        (put("1.0.0", {"source": {"id": rid("images", "nope")}}), 404, "NotFound"),
        # Specialized image, Generalized definition
        (put("1.0.0", {"source": {"id": specialized.id}}), 400, "InvalidParameter"),
        # V1 source, V2 definition
        (put("1.0.0", {"osDiskImage": {"source": {"id": gen1_snap}}}), 400, "InvalidParameter"),
        (put("1.0.0", {}), 400, "InvalidParameter"),
        (put("1.0.0", {"osDiskImage": {"source": {"id": snap}}},
             f"{rid('galleries', 'autopilot_gallery')}/images/nope/versions"),
         404, "ParentResourceNotFound"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert "osState" in cases[3][0].json()["error"]["message"]
    assert not emulator.compute.gallery_image_versions

    bad_gallery = arm(emulator_server, "PUT", rid("galleries", "has-hyphen"), "2026-03-03", {"location": LOCATION})
    assert bad_gallery.status_code == 400
    busy = arm(emulator_server, "DELETE", rid("galleries", "autopilot_gallery"), "2026-03-03")
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "CannotDeleteResource")


def test_image_available_follows_deletes_latest_and_regions(emulator: Emulator, clients: AzureClients) -> None:
    group(emulator)
    compute = emulator.compute
    snap = os_disk_and_snapshot(emulator, "snap")
    make_gallery(clients)
    definition = compute.get_gallery_image(SUB, RG, "autopilot_gallery", "batch-ubuntu")
    v1 = compute.create_gallery_image_version(SUB, RG, "autopilot_gallery", "batch-ubuntu", "1.0.0",
                                              os_snapshot_id=snap, instant=True)
    v2 = compute.create_gallery_image_version(SUB, RG, "autopilot_gallery", "batch-ubuntu", "1.1.0",
                                              os_snapshot_id=snap,
                                              target_regions={"West Europe": 1, "eastus": 1}, instant=True)
    v3 = compute.create_gallery_image_version(SUB, RG, "autopilot_gallery", "batch-ubuntu", "2.0.0",
                                              os_snapshot_id=snap,
                                              exclude_from_latest=True, instant=True)
    assert compute.image_available(definition.id, "East US")  # latest (1.1.0) has an East US replica
    assert compute.image_available(v3.id, LOCATION)  # excluded from latest, but usable by its own id
    assert not compute.image_available(v1.id, "eastus")

    clients.compute.gallery_image_versions.begin_delete(RG, "autopilot_gallery", "batch-ubuntu", "1.1.0").result()
    assert not compute.image_available(v2.id, LOCATION)
    assert not compute.image_available(definition.id, "eastus")  # 1.0.0 is latest now, and it is not in East US
    assert compute.image_available(definition.id, LOCATION)

    # A version still replicating is not available; the one it would replace stays so.
    pending = compute.create_gallery_image_version(SUB, RG, "autopilot_gallery", "batch-ubuntu", "1.2.0",
                                                   os_snapshot_id=snap,
                                                   target_regions={"West Europe": 1, "eastus": 1})
    assert not compute.image_available(pending.id, LOCATION) and compute.image_available(definition.id, LOCATION)
    assert not compute.image_available(definition.id, "eastus")
    emulator.clock.advance(timedelta(minutes=10))
    # 1.2.0 is latest
    assert compute.image_available(pending.id, LOCATION) and compute.image_available(definition.id, "eastus")
    assert v1.name == "1.0.0"

    image = compute.create_image(SUB, RG, "img", os_snapshot_id=snap, instant=True)
    assert compute.image_available(image.id, LOCATION) and compute.image_hyperv_generation(image.id) == "V1"
    assert compute.image_available(image.id.upper(), LOCATION)  # ids compare case-insensitively
    compute.delete_image(SUB, RG, "img")
    assert not compute.image_available(image.id, LOCATION)
    assert not compute.image_available(rid("images", "never"), LOCATION)
    assert compute.image_hyperv_generation(rid("images", "never")) is None
    assert compute.image_hyperv_generation(UBUNTU_24) == "V2"


# --------------------------------------------------------------------------------------------
# ARM front door on compute routes
# --------------------------------------------------------------------------------------------


def test_compute_routes_need_a_token_and_a_known_api_version(
        emulator: Emulator, emulator_server: EmulatorServer) -> None:
    group(emulator)
    path = rid("snapshots", "snap")
    unauthenticated = arm(emulator_server, "GET", path, "2026-03-02", token=None)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "AuthenticationFailed"
    for route, version in ((path, "2019-07-01"), (rid("images", "img"), "2026-03-02"),
                           (rid("galleries", "g"), "2026-04-01")):
        response = arm(emulator_server, "GET", route, version)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "InvalidApiVersionParameter"), route
    assert arm(emulator_server, "GET", path, None).json()["error"]["code"] == "MissingApiVersionParameter"
    assert arm(emulator_server, "GET", path, "2026-03-02").status_code == 404


def test_request_log_records_the_arm_actions(emulator: Emulator, clients: AzureClients) -> None:
    group(emulator)
    compute = clients.compute
    disk = compute.disks.begin_create_or_update(RG, "d", {"location": LOCATION, "properties": {
        "creationData": {"createOption": "FromImage", "imageReference": {"id": UBUNTU_24}}}}).result()
    compute.snapshots.begin_create_or_update(RG, "s", {"location": LOCATION, "properties": {
        "creationData": {"createOption": "Copy", "sourceResourceId": disk.id}}}).result()
    compute.snapshots.get(RG, "s")
    compute.images.begin_create_or_update(RG, "i", {"location": LOCATION, "properties": {"storageProfile": {
        "osDisk": {"osType": "Linux", "osState": "Generalized", "snapshot": {"id": rid("snapshots", "s")}}}}},
                                          polling=False)
    compute.snapshots.begin_delete(RG, "s").result()
    counts = emulator.log.count_by_action()
    for action in ("Microsoft.Compute/disks/write", "Microsoft.Compute/snapshots/write",
                   "Microsoft.Compute/snapshots/read",
                   "Microsoft.Compute/images/write", "Microsoft.Compute/snapshots/delete"):
        assert counts.get(action) == 1, (action, counts)
    assert {e.api_version for e in emulator.log.entries(path_contains="/snapshots/")} == {"2026-03-02"}
    assert {e.api_version for e in emulator.log.entries(path_contains="/images/")} == {"2026-04-01"}
