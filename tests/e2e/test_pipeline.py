"""The image pipeline end to end: the emulator over HTTPS, Azurite, and the local Functions host driving
the real ``image_pipeline`` and ``pipeline_sweep`` functions, with operators acting through real SDK clients.

Nothing of the app is mocked. Tests set up the subscription (prepared disks, a gallery, a Batch account),
act as an operator (snapshots and tags through ARM), shape Event Grid delivery only through the host's
public ``publish`` (copies of recorded system events, reordered, duplicated, re-cased, as CloudEvents) or
Azure-side faults, then read the outcome from the emulator (resources, the request log) and the app's
alert topic. Table state is read only to assert on it.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from emulator.batch.capacity import DEDICATED, LOW_PRIORITY
from emulator.eventgrid.models import to_cloud_event
from emulator.faults import FaultRule
from emulator.server import TlsMaterial
from shared.config.settings import load_settings
from shared.core import pool_metadata
from shared.core.context import AppContext, install_context
from shared.core.resource_ids import batch_account_id, normalize
from shared.core.state import PIPELINE, SNAPSHOT_SETS
from shared.pipeline import image_rules
from shared.resources import batch_accounts

APP = "batch-image-autopilot"  # the caller name the emulator logs for the app's own calls
OPERATOR = "operator@contoso.com"
ACCOUNT = "renderweu"
ACCOUNT_ID = batch_account_id(SUBSCRIPTION_ID, "batch-rg", ACCOUNT)
GALLERY = "autopilotGallery"
IMAGES_RG = "images-rg"
VM_SIZE = "Standard_D4ds_v5"
UBUNTU = "Canonical:ubuntu-24_04-lts:server"
WRITE_METHODS = {"PUT", "PATCH", "POST", "DELETE"}
SNAPSHOT_WRITE = "Microsoft.Compute/snapshots/write"
IMAGE_WRITE = "Microsoft.Compute/images/write"
VERSION_WRITE = "Microsoft.Compute/galleries/images/versions/write"
DEFINITION_WRITE = "Microsoft.Compute/galleries/images/write"
POOL_WRITE = "Microsoft.Batch/batchAccounts/pools/write"
BUILD_ACTIONS = (IMAGE_WRITE, DEFINITION_WRITE, VERSION_WRITE, POOL_WRITE)


# --------------------------------------------------------------------------------------------
# Configuration and set-up helpers
# --------------------------------------------------------------------------------------------


def pool_spec(*, dedicated: int = 10, spot: int = 0, pool_id: str | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"account": ACCOUNT_ID, "vmSize": VM_SIZE, "dedicated": dedicated, "spot": spot}
    if pool_id is not None:
        spec["poolId"] = pool_id
    spec.update(extra)
    return spec


def families(name: str = "gpu", *, pools: Sequence[Mapping[str, Any]] | None = None, generation: str = "V2",
             location: str = "westeurope", **extra: Any) -> dict[str, Any]:
    family: dict[str, Any] = {
        "gallery": {"resourceGroup": IMAGES_RG, "name": GALLERY, "imageDefinition": f"{name}-def", "osType": "Linux",
                    "osState": "Generalized", "hyperVGeneration": generation, "location": location},
        "imageResourceGroup": IMAGES_RG,
        "pools": [dict(p) for p in (pools or [pool_spec()])],
    }
    family.update(extra)
    return {"families": {name: family}}


def tags(family: str, version: str, disk: str, count: int) -> dict[str, str]:
    return {"autopilot.family": family, "autopilot.version": version, "autopilot.disk": disk,
            "autopilot.diskCount": str(count)}


@pytest.fixture
def make_azure(azurite: str, tls_material: TlsMaterial) -> Iterator[Callable[..., LocalAzure]]:
    """A fresh LocalAzure per call (own emulator, own table prefix) sharing the session's Azurite."""
    made: list[LocalAzure] = []

    def make(family_doc: Mapping[str, Any], *, settings: Mapping[str, str] | None = None,
             max_delivery_attempts: int = 30) -> LocalAzure:
        # shared/resources/batch_accounts caches accounts per process (endpoint, location) for an hour, keyed
        # by ARM endpoint + account id; LocalAzure never resets it. A later emulator that happens to get a
        # stopped one's port would be answered from the cache, so each test starts from an empty one.
        batch_accounts.forget_accounts()
        la = LocalAzure(azurite_connection=azurite, families=family_doc, accounts=[ACCOUNT_ID], settings=settings,
                        tls=tls_material,
                        max_delivery_attempts=max_delivery_attempts)
        made.append(la)
        la.add_batch_account(ACCOUNT, location="westeurope")
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, IMAGES_RG, GALLERY, location="westeurope")
        return la

    yield make
    for la in made:
        la.close()
    batch_accounts.forget_accounts()


def app_calls(la: LocalAzure, *, methods: set[str] | None = None, action: str | None = None) -> list[Any]:
    return [e for e in la.emulator.log.entries(action=action) if e.caller == APP
            and (methods is None or e.method in methods)]


def app_writes(la: LocalAzure) -> list[Any]:
    return app_calls(la, methods=WRITE_METHODS)


def built(la: LocalAzure, *, attempts: bool = False) -> dict[str, int]:
    """How many creates the app made per build action (images, definitions, versions, pools) that Azure
    accepted - or, with ``attempts``, that it sent at all (refused, faulted and conflicting ones too)."""
    return {action: len([e for e in app_calls(la, methods={"PUT"}, action=action) if attempts
                         or (200 <= e.status < 300 and not e.fault)])
            for action in BUILD_ACTIONS}


def nothing_built(la: LocalAzure) -> None:
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)
    assert not la.emulator.compute.images
    assert not la.emulator.compute.gallery_image_versions
    assert la.emulator.batch.list_pools(ACCOUNT) == []


PIPELINE_FUNCTIONS = ("image_pipeline", "pipeline_sweep")


def no_failed_invocations(la: LocalAzure) -> None:
    """The pipeline's functions never failed (other features' timers run too; their own tests judge them)."""
    failed = [(i.function, i.detail) for i in la.host.invocations if not i.ok and i.function in PIPELINE_FUNCTIONS]
    assert failed == []
    assert la.host.dead_letters == []
    assert la.emulator.eventgrid.delivery_errors == []


def recorded(la: LocalAzure, operation: str, subject: str | None = None) -> list[dict[str, Any]]:
    """System events raised so far for ``operation`` (optionally about ``subject``), oldest first."""
    return [e for e in la.emulator.eventgrid.events("system") if e["data"].get("operationName") == operation
            and e["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
            and (subject is None or normalize(e["subject"]) == normalize(subject))]


def redeliver(la: LocalAzure, event: Mapping[str, Any], *, cloud: bool = False) -> None:
    """Event Grid delivers the same event again (same id), in either schema."""
    copied = copy.deepcopy(dict(event))
    la.host.publish("system", to_cloud_event(copied) if cloud else copied)


def recased(event: Mapping[str, Any]) -> dict[str, Any]:
    """The same event with the resource id in another casing, as ARM sometimes writes it."""
    out = copy.deepcopy(dict(event))
    subject = out["subject"].replace("resourceGroups", "resourcegroups").replace("/snapshots/", "/SNAPSHOTS/")
    head, name = subject.rsplit("/", 1)
    subject = f"{head}/{name.upper()}"
    out["subject"] = subject
    out["data"]["resourceUri"] = subject
    return out


def prepared_disks(la: LocalAzure, prefix: str, luns: Sequence[int], *, image: str = UBUNTU,
                   location: str = "westeurope") -> dict[str, str]:
    disks = {"os": la.add_prepared_disk(f"{prefix}-osdisk", image=image, location=location)}
    for lun in luns:
        disks[str(lun)] = la.add_prepared_disk(f"{prefix}-data{lun}", data_disk_gb=64, location=location)
    return disks


def alerts_of(la: LocalAzure, kind: str) -> list[dict[str, Any]]:
    return la.alerts(kind)


def the_refusal(la: LocalAzure) -> dict[str, Any]:
    refused = alerts_of(la, "ImageRefused")
    assert len(refused) == 1, [a["data"]["title"] for a in la.alerts()]
    return refused[0]["data"]


def pipeline_stage(la: LocalAzure, family: str, version: str) -> str | None:
    row = la.context.state.table(PIPELINE).get(family, version)
    return row.data.get("stage") if row else None


def version_id(family: str, version: str) -> str:
    return (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/galleries"
            f"/{GALLERY}"
            f"/images/{family}-def/versions/{version}")


def image_id(family: str, version: str) -> str:
    return (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/images"
            f"/{family}-{version}")


def assert_pool(la: LocalAzure, pool_id: str, *, family: str, version: str, snapshot_ids: Sequence[str], dedicated: int,
                spot: int) -> None:
    pool = la.pool(ACCOUNT, pool_id)
    metadata = pool.metadata
    assert pool.image_id is not None and normalize(pool.image_id) == normalize(version_id(family, version))
    assert pool.spec.node_agent_sku_id == "batch.node.ubuntu 24.04"  # derived from the base image via supportedimages
    assert pool.spec.vm_size == VM_SIZE
    assert metadata[pool_metadata.MANAGED] == "true"
    assert metadata[pool_metadata.FAMILY] == family
    assert metadata[pool_metadata.VERSION] == version
    assert normalize(metadata[pool_metadata.IMAGE_ID]) == normalize(version_id(family, version))
    assert {normalize(s)
            for s in metadata[pool_metadata.SNAPSHOT_IDS].split(",")} == {normalize(s) for s in snapshot_ids}
    assert metadata[pool_metadata.DESIRED_DEDICATED] == str(dedicated)
    assert metadata[pool_metadata.DESIRED_SPOT] == str(spot)


def assert_built_exactly_once(la: LocalAzure, *, pools: int) -> None:
    assert built(la) == {IMAGE_WRITE: 1, DEFINITION_WRITE: 1, VERSION_WRITE: 1, POOL_WRITE: pools}
    assert len(la.emulator.compute.gallery_image_versions) == 1
    assert len(la.emulator.batch.list_pools(ACCOUNT)) == pools
    assert len(alerts_of(la, "PoolsCreated")) == 1
    assert alerts_of(la, "ImageRefused") == [] and alerts_of(la, "ImageBuildFailed") == []


def never_waited_on_operations(la: LocalAzure) -> None:
    """Long-running work is started, never polled inside an invocation (the events or the timer pick it up)."""
    polls = [e.path for e in app_calls(la, methods={"GET"}) if "/operations/" in e.path.lower()]
    assert polls == []


# --------------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------------


def test_os_only_set_builds_one_image_one_version_one_pool(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    ids = la.snapshot_set("gpu", "1.0.0")

    la.run(timedelta(minutes=20))

    no_failed_invocations(la)
    assert_built_exactly_once(la, pools=1)
    never_waited_on_operations(la)
    assert pipeline_stage(la, "gpu", "1.0.0") == "done"
    assert "outbox" not in la.context.state.table(PIPELINE).get("gpu", "1.0.0").data  # its alert went out at once
    version = la.operator.compute.gallery_image_versions.get(IMAGES_RG, GALLERY, "gpu-def", "1.0.0").as_dict()
    props = version["properties"]
    assert normalize(props["storageProfile"]["source"]["id"]) == normalize(image_id("gpu", "1.0.0"))
    assert props["storageProfile"].get("dataDiskImages") in (None, [])
    assert props["publishingProfile"]["replicaCount"] == 1
    assert [r["regionalReplicaCount"] for r in props["publishingProfile"]["targetRegions"]] == [1]
    assert props["safetyProfile"]["blockDeletionBeforeEndOfLife"] is True
    assert props["safetyProfile"]["allowDeletionOfReplicatedLocations"] is False
    assert version["tags"]["autopilot.family"] == "gpu" and version["tags"]["autopilot.version"] == "1.0.0"
    assert_pool(la, "gpu-1-0-0", family="gpu", version="1.0.0", snapshot_ids=[ids["os"]], dedicated=10, spot=0)
    # The intermediate managed image is deleted once the gallery version (an independent copy) exists.
    assert not la.emulator.compute.images
    done = alerts_of(la, "PoolsCreated")[0]["data"]
    assert done["pools"] == [f"{ACCOUNT}/gpu-1-0-0"]

    # A later tag write on the snapshot raises another write event: read, recognised, nothing more.
    writes = len(app_writes(la))
    snapshot = la.operator.compute.snapshots.get(IMAGES_RG, "gpu-1-0-0-os")
    la.operator.compute.snapshots.begin_update(IMAGES_RG, "gpu-1-0-0-os",
                                               {"tags": {**snapshot.tags, "owner": "render-team"}}).result()
    la.settle()
    no_failed_invocations(la)
    assert len(app_writes(la)) == writes
    assert_built_exactly_once(la, pools=1)


def test_data_disks_delivered_shuffled_duplicated_recased_build_exactly_once(make_azure: Callable[..., LocalAzure],
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="autopilot.pipeline")
    # Two pools of one family: 250 dedicated + 150 Spot planned nodes -> ceil(400 / 300) = 2 replicas,
    # and a warning that the pools share one image.
    la = make_azure(families(pools=[pool_spec(dedicated=250, pool_id="{family}-{version}-a"),
                                    pool_spec(dedicated=0, spot=150, pool_id="{family}-{version}-b")]))
    la.emulator.eventgrid.duplicate_writes = True  # every write event is preceded by a temporary-deployment copy
    disks = prepared_disks(la, "gpu2", [0, 1])
    snapshot_ids: dict[str, str] = {}

    def take(role: str) -> None:
        snapshot_ids[role] = la.snapshot(f"gpu2-{role}", disks[role], tags("gpu", "2.0.0", role, 3))

    # The operator snapshots the disks out of order; before anything is delivered Event Grid also
    # redelivers copies (same ids), one in another casing and one as a CloudEvent, interleaved.
    take("1")
    first = recorded(la, SNAPSHOT_WRITE)
    take("os")
    redeliver(la, recased(first[-1]))
    take("0")
    everything = recorded(la, SNAPSHOT_WRITE)
    for event in reversed(everything):
        redeliver(la, event)
    redeliver(la, everything[0], cloud=True)
    assert la.host.pending() == 2 * 3 + 1 + 6 + 1  # (temporary + real) per snapshot, and the copies

    la.settle()
    assert pipeline_stage(la, "gpu", "2.0.0") == "image-requested"
    la.run(timedelta(minutes=4))  # the image finishes; its event starts the gallery version
    images_written = recorded(la, IMAGE_WRITE)
    assert images_written, "the managed image's write event"
    for event in [*images_written, *everything]:  # late and repeated deliveries while the version replicates
        redeliver(la, event)
    la.run(timedelta(minutes=20))
    for event in [*recorded(la, VERSION_WRITE), *images_written, *everything]:  # and again once everything is done
        redeliver(la, event, cloud=True)
    la.settle()

    no_failed_invocations(la)
    assert_built_exactly_once(la, pools=2)
    assert built(la, attempts=True) == built(la)  # not even a redundant (refused) create was sent
    never_waited_on_operations(la)
    sets = list(la.context.state.table(SNAPSHOT_SETS).query())
    assert len(sets) == 1  # re-cased and duplicated deliveries never became extra members or sets

    # The managed image held the OS disk and both data disks by LUN.
    version = la.operator.compute.gallery_image_versions.get(IMAGES_RG, GALLERY, "gpu-def", "2.0.0").as_dict()
    props = version["properties"]
    assert sorted(d["lun"] for d in props["storageProfile"]["dataDiskImages"]) == [0, 1]
    assert props["publishingProfile"]["replicaCount"] == math.ceil(400 / 300) == 2
    assert [r["regionalReplicaCount"] for r in props["publishingProfile"]["targetRegions"]] == [2]
    assert props["safetyProfile"]["blockDeletionBeforeEndOfLife"] is True
    all_ids = list(snapshot_ids.values())
    assert_pool(la, "gpu-2-0-0-a", family="gpu", version="2.0.0", snapshot_ids=all_ids, dedicated=250, spot=0)
    assert_pool(la, "gpu-2-0-0-b", family="gpu", version="2.0.0", snapshot_ids=all_ids, dedicated=0, spot=150)
    assert any("share" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_cloud_events_delivery(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "ce", [0])
    # Snapshots are taken untagged (their events are delivered and ignored) ...
    os_id = la.snapshot("ce-os", disks["os"])
    data_id = la.snapshot("ce-data0", disks["0"])
    la.settle()
    assert not list(la.context.state.table(SNAPSHOT_SETS).query())
    # ... then tagged where no event reaches the app; the creation events arrive again, as CloudEvents.
    la.emulator.compute.update_snapshot(SUBSCRIPTION_ID, IMAGES_RG, "ce-os", {"tags": tags("gpu", "3.0.0", "os", 2)})
    la.emulator.compute.update_snapshot(SUBSCRIPTION_ID, IMAGES_RG, "ce-data0", {"tags": tags("gpu", "3.0.0", "0", 2)})
    for event in recorded(la, SNAPSHOT_WRITE):
        cloud = to_cloud_event(event)
        assert cloud["specversion"] == "1.0" and "eventType" not in cloud
        la.host.publish("system", cloud)

    la.run(timedelta(minutes=20))

    no_failed_invocations(la)
    assert_built_exactly_once(la, pools=1)
    assert_pool(la, "gpu-3-0-0", family="gpu", version="3.0.0", snapshot_ids=[os_id, data_id], dedicated=10, spot=0)


# --------------------------------------------------------------------------------------------
# Ignored and hostile events
# --------------------------------------------------------------------------------------------


def test_untagged_snapshots_are_read_once_and_never_written(make_azure: Callable[..., LocalAzure],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="autopilot")
    la = make_azure(families())
    disk = la.add_prepared_disk("plain-osdisk")
    plain = la.snapshot("plain", disk)
    other = la.snapshot("other-tags", disk, {"owner": "render-team", "cost-center": "42"})
    la.emulator.log.clear()
    caplog.clear()

    la.settle()

    no_failed_invocations(la)
    assert [i.function for i in la.host.invocations] == ["image_pipeline", "image_pipeline"]
    assert app_writes(la) == []
    reads = app_calls(la)
    assert sorted((e.method, normalize(e.path)) for e in reads) == sorted(("GET", normalize(s)) for s in (plain, other))
    assert not list(la.context.state.table(SNAPSHOT_SETS).query())
    assert la.alerts() == []
    lines = [r for r in caplog.records if r.name.startswith("autopilot.handlers.image_pipeline")]
    assert len(
        lines) == 2 and all(r.levelno == logging.DEBUG for r in lines), [(r.levelname, r.getMessage()) for r in lines]


def _event(subject: str, /, *, data: Mapping[str, Any] | None = None, **envelope: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "evt-" + str(abs(hash((subject, repr(data), repr(envelope))))),
        "topic": f"/subscriptions/{SUBSCRIPTION_ID}",
        "subject": subject,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": "2026-04-01T10:00:00.1234567Z",
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {"operationName": SNAPSHOT_WRITE, "resourceUri": subject, "subscriptionId": SUBSCRIPTION_ID,
                 "status": "Succeeded",
                 "claims": {"name": OPERATOR}} if data is None else dict(data),
    }
    body.update(envelope)
    return body


def test_malformed_and_foreign_events_never_crash_or_write(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    # A complete, tagged OS-only set exists, created where no event reached the app: any event the app
    # wrongly believed would start a build.
    disk = la.add_prepared_disk("quiet-osdisk")
    la.emulator.compute.create_snapshot(SUBSCRIPTION_ID, IMAGES_RG, "quiet-os", source_resource_id=disk,
                                        tags=tags("gpu", "4.0.0", "os", 1))
    real = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/snapshots/quiet-os"
    foreign_sub = "11111111-2222-4333-8444-555555555555"
    foreign = real.replace(SUBSCRIPTION_ID, foreign_sub)
    other = real.replace("quiet-os", "someone-elses")
    disk_id = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/disks"
               "/quiet-osdisk")
    base = _event(real)["data"]
    bad: list[dict[str, Any]] = [
        # another subscription (a mis-wired event subscription), consistent in itself
        _event(foreign, data={**base, "resourceUri": foreign, "subscriptionId": foreign_sub},
               topic=f"/subscriptions/{foreign_sub}"),
        # subject and data.resourceUri disagree
        _event(other, data={**base, "resourceUri": real}),
        _event(real, data={**base, "resourceUri": other}),
        # data.subscriptionId disagrees with the subject
        _event(real, data={**base, "subscriptionId": foreign_sub}),
        # subject outside the event's topic
        _event(real, topic=f"/subscriptions/{foreign_sub}"),
        # garbage in every field the app reads
        _event("not-an-arm-id", data={**base, "resourceUri": None}),
        _event(real + "/../../snapshots/x", data={**base, "resourceUri": None}),
        _event(real, data={**base, "claims": "{not json"}),
        _event(real, data={**base, "httpRequest": ["GET"]}),
        _event(real, data={**base, "resourceUri": 42}),
        _event(real, id=None),
        _event(real, id={"nested": True}),
        _event("", data={**base, "resourceUri": None}),
        _event(real, subject=real + "\x00"),
        _event("/subscriptions/" + "x" * 5000, data={**base, "resourceUri": None}),
        # a different resource type under the snapshot write operation
        _event(disk_id, data={**base, "resourceUri": disk_id}),
        # the temporary deployment Azure may name first
        _event(f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{IMAGES_RG}/providers/Microsoft.Resources"
               "/deployments/tmp-1",
               data={**base, "resourceUri": None}),
    ]
    cloud = [to_cloud_event(e) for e in bad[:6]]
    cloud.append({"specversion": "1.0", "id": "c1", "source": 17, "type": "Microsoft.Resources.ResourceWriteSuccess",
                  "subject": real,
                  "data": {"operationName": SNAPSHOT_WRITE, "resourceUri": other}})
    for event in [*bad, *cloud]:
        la.host.publish("system", event)
    delivered = la.host.pending()
    assert delivered == len(bad) + len(cloud)

    la.settle()

    no_failed_invocations(la)
    assert len(la.host.invocations) == delivered
    assert app_calls(la) == []  # nothing was even read: every event was refused before acting
    la.run(timedelta(minutes=6))  # the timers run too (the sweep finds nothing to do)
    assert any(i.function == "pipeline_sweep" for i in la.host.invocations)
    no_failed_invocations(la)
    assert app_writes(la) == []
    assert [e.path for e in app_calls(la) if "microsoft.compute" in e.path.lower()] == []
    nothing_built(la)
    assert not list(la.context.state.table(SNAPSHOT_SETS).query())

    # The control: the same snapshot's genuine event (a tag write through ARM) does start the build.
    la.operator.compute.snapshots.begin_update(IMAGES_RG, "quiet-os", {"tags": tags("gpu", "4.0.0", "os", 1)}).result()
    la.settle()
    assert pipeline_stage(la, "gpu", "4.0.0") == "image-requested"


# --------------------------------------------------------------------------------------------
# Refusals: each with an ImageRefused alert and nothing created
# --------------------------------------------------------------------------------------------


def test_snapshot_in_another_region_than_the_account_is_refused(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    ids = la.snapshot_set("gpu", "5.0.0", location="northeurope")
    la.run(timedelta(minutes=15))

    no_failed_invocations(la)
    refusal = the_refusal(la)
    assert "SNAPSHOT_REGION" in refusal["codes"]
    assert "northeurope" in refusal["diagnosis"] and "westeurope" in refusal["diagnosis"]
    assert refusal["fix"]
    assert pipeline_stage(la, "gpu", "5.0.0") == "refused"
    nothing_built(la)
    # Redelivery does not refuse (or alert) twice.
    for event in recorded(la, SNAPSHOT_WRITE, ids["os"]):
        redeliver(la, event)
    la.run(timedelta(minutes=10))
    assert len(alerts_of(la, "ImageRefused")) == 1
    nothing_built(la)


def test_base_image_batch_does_not_support_is_refused(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    assert la.emulator.batch.remove_supported_image("canonical", "ubuntu-24_04-lts", "server") == 1
    la.snapshot_set("gpu", "6.0.0")
    la.run(timedelta(minutes=15))

    no_failed_invocations(la)
    refusal = the_refusal(la)
    assert refusal["codes"] == ["BASE_IMAGE_NOT_SUPPORTED"]
    assert "ubuntu-24_04-lts" in refusal["diagnosis"]
    nothing_built(la)


def test_third_party_image_with_purchase_plan_is_refused(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(generation="V1"))
    la.snapshot_set("gpu", "7.0.0", image="ni:ni-ubuntu:ni-ubuntu-2204")
    la.run(timedelta(minutes=15))

    no_failed_invocations(la)
    refusal = the_refusal(la)
    assert "THIRD_PARTY_PURCHASE_PLAN" in refusal["codes"]
    assert "purchase plan" in refusal["diagnosis"] and "ni" in refusal["diagnosis"]
    nothing_built(la)


@pytest.mark.parametrize(("generation", "vm_size", "code"), [
    ("V1", VM_SIZE, "HYPERV_GENERATION_MISMATCH"),  # a Gen2 snapshot (Ubuntu 24.04) into a V1 image definition
    ("V2", "Standard_A2_v2", "GEN2_IMAGE_ON_GEN1_SIZE"),  # a Gen2 image on a size that only boots Gen1
])
def test_hyper_v_generation_mismatches_are_refused(make_azure: Callable[..., LocalAzure], generation: str, vm_size: str,
                                                   code: str) -> None:
    la = make_azure(families(generation=generation, pools=[pool_spec(vmSize=vm_size)]))
    la.snapshot_set("gpu", "7.5.0")
    la.run(timedelta(minutes=10))

    no_failed_invocations(la)
    assert code in the_refusal(la)["codes"]
    nothing_built(la)


def test_gallery_pools_sharing_a_snapshot_with_another_pool_have_no_node_cap(
        make_azure: Callable[..., LocalAzure]) -> None:
    """Batch caps pools created with a managed image resource only; the gallery doc lets gallery pools grow larger."""
    la = make_azure(families(pools=[pool_spec(dedicated=1000)]))
    ids = la.snapshot_set("gpu", "8.0.0")
    # A pool another version left behind was built from the same snapshot and is meant to hold 2,000 nodes: 3,000 in
    # all, past the managed-image cap, and still nothing to refuse, since both are gallery (or Marketplace) pools.
    la.emulator.batch.create_pool(ACCOUNT, "gpu-legacy", vm_size=VM_SIZE, node_agent_sku_id="batch.node.ubuntu 24.04",
                                  image_reference={"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                                   "sku": "server", "version": "latest"},
                                  metadata={pool_metadata.MANAGED: "true",
                                            pool_metadata.SNAPSHOT_IDS: ids["os"].upper(),
                                            pool_metadata.DESIRED_DEDICATED: "2000", pool_metadata.DESIRED_SPOT: "0"})
    la.run(timedelta(minutes=15))

    no_failed_invocations(la)
    assert alerts_of(la, "ImageRefused") == []
    assert built(la)[POOL_WRITE] == 1
    assert sorted(p.id for p in la.emulator.batch.list_pools(ACCOUNT)) == ["gpu-8-0-0", "gpu-legacy"]


def test_snapshot_deleted_before_the_set_completes_is_refused(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "del", [0])
    os_id = la.snapshot("del-os", disks["os"], tags("gpu", "9.0.0", "os", 2))
    la.settle()
    la.snapshot("del-data0", disks["0"], tags("gpu", "9.0.0", "0", 2))
    la.operator.compute.snapshots.begin_delete(IMAGES_RG, "del-os").result()  # before the last snapshot's event arrives
    la.run(timedelta(minutes=15))

    no_failed_invocations(la)
    refusal = the_refusal(la)
    assert refusal["codes"] == ["SNAPSHOT_DELETED"]
    assert normalize(os_id) in normalize(refusal["diagnosis"])
    nothing_built(la)


def test_snapshot_deleted_while_the_image_builds_leaves_nothing_half_built(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.snapshot_set("gpu", "9.1.0", data_luns=(0,))
    la.settle()
    assert pipeline_stage(la, "gpu", "9.1.0") == "image-requested"
    data_disk = la.emulator.compute.snapshots[normalize(
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/snapshots"
        "/gpu-9-1-0-data0")].creation_data
    la.operator.compute.snapshots.begin_delete(IMAGES_RG, "gpu-9-1-0-data0").result()
    la.run(timedelta(minutes=20))

    no_failed_invocations(la)
    failed = alerts_of(la, "ImageBuildFailed")
    assert len(failed) == 1
    assert normalize(failed[0]["subject"]) == normalize(image_id("gpu", "9.1.0"))
    assert "deleted" in failed[0]["data"]["fix"]
    assert pipeline_stage(la, "gpu", "9.1.0") == "failed"
    assert built(la)[VERSION_WRITE] == 0 and built(la)[POOL_WRITE] == 0
    assert not la.emulator.compute.images  # the Failed intermediate image was removed
    assert not la.emulator.compute.gallery_image_versions
    assert la.emulator.batch.list_pools(ACCOUNT) == []
    assert alerts_of(la, "PoolsCreated") == []

    # Re-creating the snapshot (same name, so the same id) is a new attempt: the version is built once.
    la.snapshot("gpu-9-1-0-data0", data_disk["sourceResourceId"], tags("gpu", "9.1.0", "0", 2))
    la.run(timedelta(minutes=25))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "9.1.0") == "done"
    assert built(la) == {IMAGE_WRITE: 2, DEFINITION_WRITE: 1, VERSION_WRITE: 1, POOL_WRITE: 1}
    assert len(alerts_of(la, "ImageBuildFailed")) == 1 and len(alerts_of(la, "PoolsCreated")) == 1


# --------------------------------------------------------------------------------------------
# The timer: overdue sets and lost events
# --------------------------------------------------------------------------------------------


def test_incomplete_set_past_the_timeout_alerts_naming_the_missing_lun(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(), settings={"AUTOPILOT_SET_ASSEMBLY_TIMEOUT_MINUTES": "10"})
    disks = prepared_disks(la, "inc", [0, 1])
    la.snapshot("inc-os", disks["os"], tags("gpu", "10.0.0", "os", 3))
    la.snapshot("inc-data0", disks["0"], tags("gpu", "10.0.0", "0", 3))

    la.run(timedelta(minutes=9))
    assert alerts_of(la, "SnapshotSetIncomplete") == []  # not overdue yet
    la.run(timedelta(minutes=20))  # several sweeps past the timeout: one alert

    no_failed_invocations(la)
    incomplete = alerts_of(la, "SnapshotSetIncomplete")
    assert len(incomplete) == 1
    data = incomplete[0]["data"]
    assert data["missing"] == "data disk LUN 1"
    assert "data disk LUN 1" in data["diagnosis"]
    nothing_built(la)

    # A set whose OS disk never comes: the alert names it.
    la.snapshot("inc2-data0", disks["0"], tags("gpu", "10.1.0", "0", 2))
    la.run(timedelta(minutes=20))
    missing_os = [a["data"] for a in alerts_of(la, "SnapshotSetIncomplete")
                  if a["data"]["title"].endswith("10.1.0 is incomplete")]
    assert len(missing_os) == 1 and missing_os[0]["missing"] == "the OS disk"
    nothing_built(la)


def test_sweep_finishes_a_version_whose_image_and_version_events_were_lost(
        make_azure: Callable[..., LocalAzure]) -> None:
    # Event Grid gives up after one failed delivery here; the app's reads of the image (then of the version)
    # fail while their completion events are delivered, so both events end dead-lettered: lost to the app.
    la = make_azure(families(), settings={"AUTOPILOT_HTTP_RETRY_TOTAL": "0"}, max_delivery_attempts=1)
    la.snapshot_set("gpu", "11.0.0", data_luns=(0,))
    la.settle()
    assert pipeline_stage(la, "gpu", "11.0.0") == "image-requested"

    la.emulator.faults.add(FaultRule("error", path_pattern=r"/providers/Microsoft\.Compute/images/",
                                     methods=frozenset({"GET"})))
    la.run(timedelta(minutes=4))  # the image finishes at +3 min; its event's delivery fails once and is dead-lettered
    la.emulator.faults.clear()
    lost = [d.event["data"]["operationName"] for d in la.host.dead_letters]
    assert lost == [IMAGE_WRITE]
    assert pipeline_stage(la, "gpu", "11.0.0") == "image-requested"

    for _ in range(10):  # the sweep (every 5 minutes, at :30) notices the image and starts the version
        la.run(timedelta(minutes=1))
        if la.emulator.compute.gallery_image_versions:
            break
    assert pipeline_stage(la, "gpu", "11.0.0") == "version-requested"
    la.emulator.faults.add(FaultRule("error", path_pattern=r"/images/gpu-def/versions/", methods=frozenset({"GET"})))
    before = len(la.host.dead_letters)
    for _ in range(15):
        la.run(timedelta(minutes=1))
        if len(la.host.dead_letters) > before:
            break
    la.emulator.faults.clear()
    lost = [d.event["data"]["operationName"] for d in la.host.dead_letters]
    assert lost == [IMAGE_WRITE, VERSION_WRITE]
    assert pipeline_stage(la, "gpu", "11.0.0") == "version-requested"

    la.run(timedelta(minutes=6))  # the next sweep finds the version built and creates the pool

    assert pipeline_stage(la, "gpu", "11.0.0") == "done"
    assert_built_exactly_once(la, pools=1)
    sweeps = [i for i in la.host.invocations if i.function == "pipeline_sweep"]
    assert sweeps and sweeps[-1].ok


# --------------------------------------------------------------------------------------------
# Failures on the way: retried deliveries and re-created snapshots finish the version once
# --------------------------------------------------------------------------------------------


def test_a_failed_image_request_is_retried_by_redelivery(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(), settings={"AUTOPILOT_HTTP_RETRY_TOTAL": "0"})
    # The first PUT of the managed image fails (a 503 from ARM): the invocation fails and Event Grid redelivers.
    la.emulator.faults.add(FaultRule("error", path_pattern=r"/providers/Microsoft\.Compute/images/",
                                     methods=frozenset({"PUT"}), max_count=1))
    la.snapshot_set("gpu", "12.0.0")
    la.run(timedelta(minutes=25))

    assert ([i.detail for i in la.host.invocations if not i.ok and i.function == "image_pipeline"]
            and la.host.retried >= 1)
    assert la.host.dead_letters == []
    assert pipeline_stage(la, "gpu", "12.0.0") == "done"
    assert_built_exactly_once(la, pools=1)
    assert built(la, attempts=True)[IMAGE_WRITE] == 2  # the refused one, then the one Event Grid's redelivery sent


def test_a_failed_version_request_is_retried(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(), settings={"AUTOPILOT_HTTP_RETRY_TOTAL": "0"})
    la.emulator.faults.add(FaultRule("error", path_pattern=r"/images/gpu-def/versions/", methods=frozenset({"PUT"}),
                                     max_count=1))
    la.snapshot_set("gpu", "12.1.0")
    la.run(timedelta(minutes=25))

    assert la.host.dead_letters == []
    assert pipeline_stage(la, "gpu", "12.1.0") == "done"
    assert_built_exactly_once(la, pools=1)
    assert built(la, attempts=True)[VERSION_WRITE] == 2


def test_recreating_a_deleted_snapshot_as_the_alert_says_builds_the_version(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "again", [0])
    la.snapshot("again-os", disks["os"], tags("gpu", "13.0.0", "os", 2))
    la.settle()
    la.snapshot("again-data0", disks["0"], tags("gpu", "13.0.0", "0", 2))
    la.operator.compute.snapshots.begin_delete(IMAGES_RG, "again-os").result()
    la.settle()
    assert the_refusal(la)["codes"] == ["SNAPSHOT_DELETED"]

    la.run(timedelta(minutes=2))
    la.snapshot("again-os", disks["os"], tags("gpu", "13.0.0", "os", 2))  # the alert's fix: re-create and tag it
    la.run(timedelta(minutes=25))

    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "13.0.0") == "done"
    assert built(la, attempts=True) == {IMAGE_WRITE: 1, DEFINITION_WRITE: 1, VERSION_WRITE: 1, POOL_WRITE: 1}
    assert len(alerts_of(la, "ImageRefused")) == 1 and len(alerts_of(la, "PoolsCreated")) == 1


def test_a_pool_batch_refuses_to_create_is_not_reported_as_existing(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.batch.set_account_quotas(ACCOUNT, pool_quota=0)  # Batch answers 409 PoolQuotaReached
    la.snapshot_set("gpu", "14.0.0")
    la.run(timedelta(minutes=25))

    no_failed_invocations(la)
    assert la.emulator.batch.list_pools(ACCOUNT) == []
    assert pipeline_stage(la, "gpu", "14.0.0") == "version-requested"
    assert alerts_of(la, "PoolsCreated") == []
    failed = alerts_of(la, "ImageBuildFailed")
    assert len(failed) == 1 and normalize(failed[0]["subject"]) == normalize(f"{ACCOUNT_ID}/pools/gpu-14-0-0")

    la.emulator.batch.set_account_quotas(ACCOUNT, pool_quota=10)  # the quota is raised: the sweep finishes the version
    la.run(timedelta(minutes=6))
    assert pipeline_stage(la, "gpu", "14.0.0") == "done"
    assert [p.id for p in la.emulator.batch.list_pools(ACCOUNT)] == ["gpu-14-0-0"]
    assert len(alerts_of(la, "PoolsCreated")) == 1 and len(alerts_of(la, "ImageBuildFailed")) == 1


def test_pools_created_alert_survives_a_failed_publish(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(), settings={"AUTOPILOT_HTTP_RETRY_TOTAL": "0"})
    la.snapshot_set("gpu", "15.0.0")
    la.settle()
    la.emulator.faults.add(FaultRule("error", path_pattern=r"^/eventgrid/autopilot/", methods=frozenset({"POST"}),
                                     max_count=1))
    la.run(timedelta(minutes=30))

    assert la.emulator.faults.injected == 1
    assert pipeline_stage(la, "gpu", "15.0.0") == "done"
    assert len(alerts_of(la, "PoolsCreated")) == 1  # sent by a later sweep, once
    assert "outbox" not in la.context.state.table(PIPELINE).get("gpu", "15.0.0").data
    assert built(la) == {IMAGE_WRITE: 1, DEFINITION_WRITE: 1, VERSION_WRITE: 1, POOL_WRITE: 1}


def test_a_slow_gallery_image_definition_never_blocks_an_invocation(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    # the definition is itself a long-running operation
    la.emulator.compute.gallery_image_create_duration = timedelta(minutes=2)
    la.snapshot_set("gpu", "17.0.0")
    la.run(timedelta(minutes=25))

    no_failed_invocations(la)
    never_waited_on_operations(la)
    assert max(i.duration_s for i in la.host.invocations if i.function in PIPELINE_FUNCTIONS) < 10
    assert pipeline_stage(la, "gpu", "17.0.0") == "done"
    assert_built_exactly_once(la, pools=1)


def test_account_in_another_subscription_is_refused(make_azure: Callable[..., LocalAzure]) -> None:
    other_sub = "22222222-3333-4444-8555-666666666666"
    foreign_account = batch_account_id(other_sub, "batch-rg", "renderother")
    la = make_azure(
        families(pools=[pool_spec(), pool_spec(account=foreign_account, pool_id="{family}-{version}-other")]))
    la.emulator.resources.put_group(other_sub, "batch-rg", "westeurope")
    la.emulator.batch.create_account(other_sub, "batch-rg", "renderother", "westeurope")
    la.snapshot_set("gpu", "18.0.0")
    la.run(timedelta(minutes=10))

    no_failed_invocations(la)
    refusal = the_refusal(la)
    assert "SNAPSHOT_SUBSCRIPTION" in refusal["codes"]
    assert other_sub in refusal["diagnosis"]
    nothing_built(la)


def test_a_pool_with_inbound_nat_pools_is_created_with_ranges_batch_accepts(
        make_azure: Callable[..., LocalAzure]) -> None:
    configured = [{"name": "web", "backendPort": 8080, "frontendPortRangeStart": 1000, "frontendPortRangeEnd": 1099}]
    la = make_azure(families(pools=[pool_spec(dedicated=60, inboundNatPools=True),
                                    pool_spec(dedicated=30, pool_id="{family}-{version}-web",
                                              inboundNatPools=configured)]))
    la.snapshot_set("gpu", "19.0.0")
    la.run(timedelta(minutes=40))

    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "19.0.0") == "done"
    assert built(la, attempts=True)[POOL_WRITE] == 2  # never refused by Batch, never retried
    chosen = la.pool(ACCOUNT, "gpu-19-0-0").spec.network_configuration["natPools"]
    assert [(n["backendPort"], n["frontendPortRangeStart"], n["frontendPortRangeEnd"])
            for n in chosen] == [(22, 40000, 40059)]
    web = la.pool(ACCOUNT, "gpu-19-0-0-web").spec.network_configuration["natPools"]
    assert [(n["name"], n["frontendPortRangeStart"], n["frontendPortRangeEnd"]) for n in web] == [("web", 1000, 1099)]
    # one frontend port per node: the range holds the pool
    assert la.pool(ACCOUNT, "gpu-19-0-0").current[DEDICATED] == 60


def test_a_gallery_family_of_3000_dedicated_and_1200_spot_builds_and_reaches_its_targets(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(pools=[pool_spec(dedicated=3000, spot=1200, resizeTimeoutMinutes=25)]))
    la.emulator.batch.configure_capacity(dedicated_failure_rate=0, low_priority_failure_rate=0)
    la.snapshot_set("gpu", "20.0.0")
    timeouts: set[timedelta] = set()

    def record_timeouts(_now: Any) -> None:
        pools = la.emulator.batch.list_pools(ACCOUNT)
        timeouts.update(p.op.timeout for p in pools if p.op is not None)

    la.host.run_for(timedelta(hours=4), timedelta(minutes=1), on_step=record_timeouts)

    no_failed_invocations(la)
    assert alerts_of(la, "ImageRefused") == []
    version = la.operator.compute.gallery_image_versions.get(IMAGES_RG, GALLERY, "gpu-def", "20.0.0").as_dict()
    # replicas follow the version's nodes
    assert version["properties"]["publishingProfile"]["replicaCount"] == math.ceil(4200 / 300)
    pool = la.pool(ACCOUNT, "gpu-20-0-0")
    assert pool.current == {DEDICATED: 3000, LOW_PRIORITY: 1200}
    # The family's resizeTimeoutMinutes is recorded on the pool and used by every resize, the pipeline's and the
    # watch's.
    assert pool.metadata[pool_metadata.RESIZE_TIMEOUT] == "25" and timeouts == {timedelta(minutes=25)}


def test_a_pool_batch_refuses_outright_is_reported_once_with_its_code_and_not_retried(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(pools=[pool_spec(vmSize="Standard_Imaginary_v9")]))  # a size Batch does not offer: 400
    la.snapshot_set("gpu", "21.0.0")
    la.run(timedelta(hours=2))  # many sweeps

    no_failed_invocations(la)
    assert built(la, attempts=True)[POOL_WRITE] == 1  # asked once: a 400 is not retried by redelivery or sweeps
    [failed] = alerts_of(la, "ImageBuildFailed")
    data = failed["data"]
    assert data["codes"] == ["InvalidPropertyValue"] and "Standard_Imaginary_v9" in data["diagnosis"]
    assert "InvalidPropertyValue" in data["title"]
    assert pipeline_stage(la, "gpu", "21.0.0") == "failed"

    # The fix, as the alert says: correct the family's configuration, then re-create the set's snapshot.
    la.env["AUTOPILOT_FAMILIES"] = json.dumps(families())
    la.settings = load_settings(la.env)
    la.context = AppContext.from_settings(la.settings, clock=la.emulator.clock)
    install_context(la.context)
    la.host.env["AUTOPILOT_FAMILIES"] = la.env["AUTOPILOT_FAMILIES"]
    disk = la.add_prepared_disk("again-21-osdisk")
    la.operator.compute.snapshots.begin_delete(IMAGES_RG, "gpu-21-0-0-os").result()
    la.snapshot("gpu-21-0-0-os", disk, tags("gpu", "21.0.0", "os", 1))
    la.run(timedelta(minutes=30))
    assert pipeline_stage(la, "gpu", "21.0.0") == "done"
    assert [p.id for p in la.emulator.batch.list_pools(ACCOUNT)] == ["gpu-21-0-0"]
    assert len(alerts_of(la, "ImageBuildFailed")) == 1


def test_a_gallery_in_another_region_replicates_the_version_to_every_account_region(
        make_azure: Callable[..., LocalAzure]) -> None:
    doc = families(location="northeurope", pools=[pool_spec(dedicated=400)])
    doc["families"]["gpu"]["gallery"]["name"] = "galleryNeu"
    la = make_azure(doc)
    la.emulator.compute.create_gallery(SUBSCRIPTION_ID, IMAGES_RG, "galleryNeu", location="northeurope")
    # the image is built beside the snapshots, in the gallery's region
    la.snapshot_set("gpu", "22.0.0", location="northeurope")
    la.run(timedelta(minutes=60))

    no_failed_invocations(la)
    assert alerts_of(la, "ImageRefused") == []
    version = la.operator.compute.gallery_image_versions.get(IMAGES_RG, "galleryNeu", "gpu-def", "22.0.0").as_dict()
    regions = {image_rules.normalize_region(r["name"]): r["regionalReplicaCount"]
               for r in version["properties"]["publishingProfile"]["targetRegions"]}
    assert regions == {"northeurope": 1, "westeurope": 2}  # the account's region: one replica per 300 of its 400 nodes
    assert la.pool(ACCOUNT, "gpu-22-0-0").current[DEDICATED] == 400  # Batch in westeurope boots the replica there


def test_replicas_follow_a_raised_pool_target_through_the_apps_lock(make_azure: Callable[..., LocalAzure]) -> None:
    """A gallery pool's target is raised after its version was built: the watch's full scan raises the version's
    regional replica count (a PATCH through the app's CanNotDelete lock), the pool grows, and a steady pool costs no
    request about the version."""
    la = make_azure(families(pools=[pool_spec(dedicated=2)], replicas={"nodesPerReplica": 2}))
    la.snapshot_set("gpu", "22.0.0")
    la.run(timedelta(minutes=30))
    assert pipeline_stage(la, "gpu", "22.0.0") == "done"
    versions = la.operator.compute.gallery_image_versions

    def regional() -> dict[str, int]:
        version = versions.get(IMAGES_RG, GALLERY, "gpu-def", "22.0.0").as_dict()
        targets = version["properties"]["publishingProfile"]["targetRegions"]
        return {image_rules.normalize_region(t["name"]): t["regionalReplicaCount"] for t in targets}

    assert regional() == {"westeurope": 1}
    assert la.locks_on(version_id("gpu", "22.0.0"))

    # A person raises the pool's desired target through ARM, past what one replica serves at this family's ratio.
    pool = la.operator.batch_management.pool.get("batch-rg", ACCOUNT, "gpu-22-0-0")
    metadata = [{"name": m.name, "value": "5" if m.name == pool_metadata.DESIRED_DEDICATED else m.value}
                for m in pool.metadata]
    la.operator.batch_management.pool.update("batch-rg", ACCOUNT, "gpu-22-0-0", {"properties": {"metadata": metadata}})
    la.run(timedelta(minutes=20))
    no_failed_invocations(la)
    assert regional() == {"westeurope": 3}  # ceil(5 / 2): raised through the lock, which stays
    assert la.locks_on(version_id("gpu", "22.0.0"))
    assert la.pool(ACCOUNT, "gpu-22-0-0").current[DEDICATED] == 5
    patches = la.emulator.log.entries(method="PATCH", path_contains="/versions/22.0.0")
    assert len(patches) == 1

    # Steady: a full scan of the watch makes no request about the version.
    from shared.watch import tick as watch

    before = len(la.emulator.log.entries(path_contains="/versions/22.0.0"))
    report = watch.tick(la.context, full=True)
    assert report.managed == 1 and not report.replicas.raised and not report.replicas.failed
    assert la.emulator.log.entries(path_contains="/versions/22.0.0")[before:] == []

    # The version's pool is deleted: the next full scan forgets the version's replica row (the Watch table follows
    # the versions in use, not every version ever built).
    from shared.core.state import WATCH
    from shared.watch.replicas import PARTITION

    assert len(list(la.context.state.table(WATCH).query(PARTITION))) == 1
    la.operator.batch_management.pool.begin_delete("batch-rg", ACCOUNT, "gpu-22-0-0").result()
    report = watch.tick(la.context, full=True)
    assert report.managed == 0 and not report.replicas.failed
    assert list(la.context.state.table(WATCH).query(PARTITION)) == []
