"""The image guard end to end: the emulator over HTTPS, Azurite, and the local Functions host running the app.

People act through real SDK clients with their own identity (alice), so their calls raise the same
ARM events a person's would; the app reacts to those events and to its timer. Nothing is mocked:
every assertion reads the emulator's state (locks, resources, events on the alerts topic).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resource.locks.models import LockLevel, ManagementLockObject, ManagementLockOwner

from autopilot.local import DEFAULT_REGION, SUBSCRIPTION_ID, LocalAzure
from emulator.server import TlsMaterial
from shared.core import pool_metadata
from shared.core.resource_ids import ResourceId, batch_account_id
from shared.guard.lock_plan import LOCK_NAME, NOTES_LIMIT
from shared.resources.clients import AzureClients, EmulatorCredential

ACCOUNT = "renderweu"
ACCOUNT_ID = batch_account_id(SUBSCRIPTION_ID, "batch-rg", ACCOUNT)
IMAGES_RG = "images-rg"
GALLERY, DEFINITION = "autopilotGallery", "gpu-render"
ALICE = "alice@contoso.com"
APP_ID = "batch-image-autopilot"  # EmulatorCredential's appid: the owner the app records on its locks
NODE_AGENT = "batch.node.ubuntu 24.04"
GUARD_TIMER = "image_guard_reconcile"
GUARD_EVENTS = "image_guard_events"


# ----------------------------------------------------------------------------------------------
# Helpers (also used by test_guard_properties.py)
# ----------------------------------------------------------------------------------------------


def snapshot_id(name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/snapshots/{name}"


def image_id(name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/images/{name}"


def version_id(version: str) -> str:
    return (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/galleries"
            f"/{GALLERY}"
            f"/images/{DEFINITION}/versions/{version}")


def new_local(azurite: str, tls: TlsMaterial, **kwargs: Any) -> LocalAzure:
    local = LocalAzure(azurite_connection=azurite, accounts=[ACCOUNT_ID], tls=tls, **kwargs)
    local.add_batch_account(ACCOUNT)
    compute = local.emulator.compute
    compute.create_gallery(SUBSCRIPTION_ID, IMAGES_RG, GALLERY, location=DEFAULT_REGION)
    compute.create_gallery_image(SUBSCRIPTION_ID, IMAGES_RG, GALLERY, DEFINITION, hyper_v_generation="V2")
    return local


def person(local: LocalAzure, name: str = ALICE, appid: str = "alice") -> AzureClients:
    """SDK clients acting as a person (their own token claims), as the portal or the CLI would."""
    return AzureClients(local.settings, credential=EmulatorCredential(name=name, appid=appid))


def make_snapshot(local: LocalAzure, name: str, *, data_disk: bool = False) -> str:
    """A snapshot a team already has (set up in the emulator directly: no event, nothing for the app to do)."""
    disk = local.add_prepared_disk(f"{name}-disk", data_disk_gb=128 if data_disk else None)
    return local.emulator.compute.create_snapshot(SUBSCRIPTION_ID, IMAGES_RG, name, source_resource_id=disk).id


def make_image(local: LocalAzure, name: str, os_snapshot: str, data_snapshots: dict[int, str] | None = None) -> str:
    return local.emulator.compute.create_image(SUBSCRIPTION_ID, IMAGES_RG, name, os_snapshot_id=os_snapshot,
                                               data_snapshot_ids=data_snapshots,
                                               hyper_v_generation="V2", instant=True).id


def make_version(local: LocalAzure, version: str, *, source_image: str | None = None, os_snapshot: str | None = None,
                 data_snapshots: dict[int, str] | None = None) -> str:
    return local.emulator.compute.create_gallery_image_version(SUBSCRIPTION_ID, IMAGES_RG, GALLERY, DEFINITION, version,
                                                               source_image_id=source_image, os_snapshot_id=os_snapshot,
                                                               data_snapshot_ids=data_snapshots, instant=True).id


def pool_body(image: str, *, managed: bool | None = True, snapshots: tuple[str, ...] = ()) -> dict[str, Any]:
    metadata: dict[str, str] = {}
    if managed is not None:
        metadata[pool_metadata.MANAGED] = "true" if managed else "false"
        metadata[pool_metadata.IMAGE_ID] = image
    if snapshots:
        metadata[pool_metadata.SNAPSHOT_IDS] = ",".join(snapshots)
    return {"properties": {
        "vmSize": "Standard_D4ds_v5",
        "deploymentConfiguration": {"virtualMachineConfiguration": {"imageReference": {"id": image},
                                                                    "nodeAgentSkuId": NODE_AGENT}},
        "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 0}},
        "metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())],
    }}


def create_pool(clients: AzureClients, pool_id: str, image: str, **kwargs: Any) -> None:
    """A pool created through ARM (raises ResourceWriteSuccess, as the portal, CLI or the app's pipeline do)."""
    clients.batch_management.pool.create("batch-rg", ACCOUNT, pool_id, pool_body(image, **kwargs))


def delete_pool(clients: AzureClients, pool_id: str) -> None:
    clients.batch_management.pool.begin_delete("batch-rg", ACCOUNT, pool_id).result()


def delete_resource(clients: AzureClients, resource_id: str) -> None:
    """Delete a snapshot, managed image or gallery image version (raises HttpResponseError when ARM refuses)."""
    rid = ResourceId.parse(resource_id)
    rg = rid.resource_group or ""
    if rid.is_type("Microsoft.Compute/snapshots"):
        clients.compute.snapshots.begin_delete(rg, rid.name).result()
    elif rid.is_type("Microsoft.Compute/images"):
        clients.compute.images.begin_delete(rg, rid.name).result()
    else:
        gallery, definition, version = rid.names
        clients.compute.gallery_image_versions.begin_delete(rg, gallery, definition, version).result()


def exists(local: LocalAzure, resource_id: str) -> bool:
    return local.emulator.compute.find(resource_id) is not None


def _lock_parts(resource_id: str) -> tuple[str, str, str, str, str]:
    rid = ResourceId.parse(resource_id)
    parent = "/".join(f"{t}/{n}" for t, n in zip(rid.types[:-1], rid.names[:-1], strict=True))
    return rid.resource_group or "", rid.namespace or "", parent, rid.types[-1], rid.names[-1]


def remove_lock(clients: AzureClients, resource_id: str, name: str = LOCK_NAME) -> None:
    """A person removes a lock through ARM (raises ResourceDeleteSuccess for the lock)."""
    clients.locks.management_locks.delete_at_resource_level(*_lock_parts(resource_id), name)


def put_foreign_lock(clients: AzureClients, resource_id: str, name: str, notes: str, owner: str | None = None) -> None:
    lock = ManagementLockObject(level=LockLevel.CAN_NOT_DELETE, notes=notes,
                                owners=[ManagementLockOwner(application_id=owner)] if owner else None)
    clients.locks.management_locks.create_or_update_at_resource_level(*_lock_parts(resource_id), name, lock)


def app_lock(local: LocalAzure, resource_id: str) -> Any | None:
    """The app's own lock on the resource (its name and its owner), or None."""
    for lock in local.locks_on(resource_id):
        if lock.name == LOCK_NAME and [o.get("applicationId") for o in lock.owners] == [APP_ID]:
            return lock
    return None


def app_locked(local: LocalAzure) -> set[str]:
    """Lower-cased ids of every resource carrying the app's own lock."""
    return {lock.scope.lower() for lock in local.emulator.locks.all_locks()
            if lock.name == LOCK_NAME and [o.get("applicationId") for o in lock.owners] == [APP_ID]}


def ids(*resource_ids: str) -> set[str]:
    return {r.lower() for r in resource_ids}


def timer_runs(local: LocalAzure) -> int:
    return sum(1 for i in local.host.invocations if i.function == GUARD_TIMER)


def failed_invocations(local: LocalAzure) -> list[str]:
    return [f"{i.function}: {i.detail}" for i in local.host.invocations if not i.ok]


def alerts_data(local: LocalAzure, alert_type: str) -> list[dict[str, Any]]:
    return [e["data"] for e in local.alerts(alert_type)]


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@dataclass
class Chain:
    """Version 1.0.0 <- managed image img-1 <- snapshots os-1 (OS) and data-1 (LUN 0); version 2.0.0 <- os-1
    directly."""

    os_snapshot: str
    data_snapshot: str
    image: str
    version: str
    direct_version: str

    @property
    def all(self) -> set[str]:
        return ids(self.os_snapshot, self.data_snapshot, self.image, self.version, self.direct_version)


@pytest.fixture
def local(azurite: str, tls_material: TlsMaterial) -> Iterator[LocalAzure]:
    with new_local(azurite, tls_material) as la:
        yield la


@pytest.fixture
def chain(local: LocalAzure) -> Chain:
    os_snap = make_snapshot(local, "os-1")
    data_snap = make_snapshot(local, "data-1", data_disk=True)
    image = make_image(local, "img-1", os_snap, {0: data_snap})
    return Chain(os_snap, data_snap, image, make_version(local, "1.0.0", source_image=image),
                 make_version(local, "2.0.0", os_snapshot=os_snap))


@pytest.fixture
def alice(local: LocalAzure) -> Iterator[AzureClients]:
    clients = person(local)
    yield clients
    clients.close()


# ----------------------------------------------------------------------------------------------
# Protect as soon as a pool is created
# ----------------------------------------------------------------------------------------------


def test_pool_creation_locks_version_image_and_snapshots_through_the_graph_at_once(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    # The pool's metadata names only its image: the guard follows version -> managed image -> snapshots itself.
    create_pool(alice, "pool-a", chain.version)
    local.settle()

    assert app_locked(local) == ids(chain.version, chain.image, chain.os_snapshot, chain.data_snapshot)
    for resource in (chain.version, chain.image, chain.os_snapshot, chain.data_snapshot):
        lock = app_lock(local, resource)
        assert lock.level == "CanNotDelete"
        assert "renderweu/pool-a" in lock.notes
    assert timer_runs(local) == 0, "the locks must come from the pool's event, not from the next tick"
    assert failed_invocations(local) == []


def test_deletes_of_a_referenced_version_image_or_snapshot_are_refused_and_alert_naming_caller_and_pools(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "pool-a", chain.version)
    create_pool(alice, "pool-b", chain.version)
    local.settle()

    targets = (chain.version, chain.image, chain.os_snapshot, chain.data_snapshot)
    for resource in targets:
        with pytest.raises(HttpResponseError) as refused:
            delete_resource(alice, resource)
        assert refused.value.status_code == 409
        assert refused.value.error is not None and refused.value.error.code == "ScopeLocked"
        assert exists(local, resource)
    local.settle()

    blocked = alerts_data(local, "DeleteBlocked")
    assert sorted(a["subject"].lower() for a in blocked) == sorted(r.lower() for r in targets)
    for alert in blocked:
        assert alert["severity"] == "warning"
        assert alert["caller"] == ALICE
        assert alert["pools"] == ["renderweu/pool-a", "renderweu/pool-b"]
        assert ALICE in alert["diagnosis"] and "renderweu/pool-a" in alert["diagnosis"]
    assert local.alerts("ImageMissing") == []
    assert all(exists(local, r) for r in chain.all)


def test_gallery_version_used_directly_from_snapshots_is_guarded_with_its_snapshot(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "pool-direct", chain.direct_version)
    local.settle()
    assert app_locked(local) == ids(chain.direct_version, chain.os_snapshot)
    with pytest.raises(HttpResponseError):
        delete_resource(alice, chain.os_snapshot)
    delete_resource(alice, chain.data_snapshot)  # not used by this pool's image: nothing stops it
    local.settle()
    assert not exists(local, chain.data_snapshot)
    assert [a["subject"].lower() for a in alerts_data(local, "DeleteBlocked")] == [chain.os_snapshot.lower()]
    assert local.alerts("ImageMissing") == []


# ----------------------------------------------------------------------------------------------
# Release promptly, and only what a pool alone held
# ----------------------------------------------------------------------------------------------


def test_pool_deletes_release_what_each_alone_held_promptly_and_the_image_can_then_be_deleted(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "pool-a", chain.version)  # 1.0.0 <- img-1 <- os-1, data-1
    create_pool(alice, "pool-b", chain.direct_version)  # 2.0.0 <- os-1
    local.settle()
    assert app_locked(local) == chain.all
    assert "renderweu/pool-a" in app_lock(local, chain.os_snapshot).notes
    assert "renderweu/pool-b" in app_lock(local, chain.os_snapshot).notes

    delete_pool(alice, "pool-a")
    local.settle()
    assert app_locked(local) == ids(chain.direct_version, chain.os_snapshot)
    assert "pool-a" not in app_lock(local, chain.os_snapshot).notes, "the notes are refreshed when a pool goes"
    delete_resource(alice, chain.version)
    delete_resource(alice, chain.image)
    delete_resource(alice, chain.data_snapshot)

    delete_pool(alice, "pool-b")
    local.settle()
    assert app_locked(local) == set()
    delete_resource(alice, chain.direct_version)
    delete_resource(alice, chain.os_snapshot)
    local.settle()

    assert timer_runs(local) == 0, "release must come from the pool-delete event, not from the next tick"
    assert not any(exists(local, r) for r in chain.all)
    assert local.alerts("DeleteBlocked") == [] and local.alerts("ImageMissing") == []
    assert failed_invocations(local) == []


# ----------------------------------------------------------------------------------------------
# Removed locks come back
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["version", "image", "data_snapshot"])
def test_a_removed_lock_is_restored_by_its_own_event(local: LocalAzure, chain: Chain, alice: AzureClients,
                                                     which: str) -> None:
    create_pool(alice, "pool-a", chain.version)
    local.settle()
    resource = getattr(chain, which)
    notes = app_lock(local, resource).notes

    remove_lock(alice, resource)
    assert app_lock(local, resource) is None
    delivered = local.host.delivered
    local.settle()

    assert local.host.delivered - delivered == 1, "one event (the lock's delete) re-locks it"
    assert app_lock(local, resource) is not None and app_lock(local, resource).notes == notes
    with pytest.raises(HttpResponseError):
        delete_resource(alice, resource)
    assert exists(local, resource)
    assert timer_runs(local) == 0


def test_a_lock_removed_without_an_event_is_restored_by_the_next_tick(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "pool-a", chain.version)
    local.settle()
    # The lock disappears and its event is lost (removed behind ARM's back: nothing is raised).
    assert local.emulator.locks.delete_lock(chain.image, LOCK_NAME)
    assert local.host.pending() == 0

    local.run(timedelta(minutes=15))  # AUTOPILOT_GUARD_SCHEDULE: every 15 minutes

    assert timer_runs(local) == 1
    assert app_locked(local) == ids(chain.version, chain.image, chain.os_snapshot, chain.data_snapshot)
    assert failed_invocations(local) == []


def test_a_pool_deleted_through_the_data_plane_is_released_by_the_next_tick(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "pool-a", chain.direct_version)
    local.settle()
    local.emulator.batch.delete_pool(ACCOUNT, "pool-a", plane="batch")  # Batch data-plane calls raise no ARM event
    local.run(timedelta(minutes=14))
    assert app_locked(local) == ids(chain.direct_version, chain.os_snapshot), ("no event, so nothing changes "
                                                                               "before the tick")
    local.run(timedelta(minutes=1))
    assert timer_runs(local) == 1
    assert app_locked(local) == set()


def test_removing_the_last_reference_while_its_lock_is_gone_leaves_nothing_behind(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "pool-a", chain.version)
    local.settle()
    remove_lock(alice, chain.version)
    delete_pool(alice, "pool-a")  # both events are delivered together below
    local.settle()
    assert app_locked(local) == set()
    local.host.fire_timer(GUARD_TIMER)
    assert app_locked(local) == set()


# ----------------------------------------------------------------------------------------------
# Other people's locks and pools
# ----------------------------------------------------------------------------------------------


def test_foreign_locks_are_never_touched_even_on_guarded_resources(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    spare = make_snapshot(local, "spare")
    # another name, on a guarded resource
    put_foreign_lock(alice, chain.version, "keep-me", "finance keeps this version")
    # our name, another owner, unreferenced
    put_foreign_lock(alice, spare, LOCK_NAME, "alice's lock, our name", owner="alice")
    # our name, another owner, referenced
    put_foreign_lock(alice, chain.data_snapshot, LOCK_NAME, "alice got there first", owner="alice")
    foreign = {(lock.scope.lower(), lock.name): (lock.level, lock.notes, list(lock.owners))
               for lock in local.emulator.locks.all_locks()}
    local.settle()

    create_pool(alice, "pool-a", chain.version)
    local.settle()
    local.host.fire_timer(GUARD_TIMER)
    # The app locks what it can; on data-1 its lock name is taken by alice's lock, which it leaves as it is
    # (that lock already blocks deletes).
    assert app_locked(local) == ids(chain.version, chain.image, chain.os_snapshot)
    with pytest.raises(HttpResponseError):
        delete_resource(alice, chain.data_snapshot)

    delete_pool(alice, "pool-a")
    local.settle()
    local.host.fire_timer(GUARD_TIMER)

    assert app_locked(local) == set()
    now = {(lock.scope.lower(), lock.name): (lock.level, lock.notes, list(lock.owners))
           for lock in local.emulator.locks.all_locks()}
    assert now == foreign, "every lock the app did not create is exactly as it was"
    with pytest.raises(HttpResponseError):
        delete_resource(alice, chain.version)  # still held by finance's lock
    local.settle()
    assert local.alerts("DeleteBlocked") == [], "a delete refused for an image no pool uses is not the guard's incident"
    assert failed_invocations(local) == []


def test_pools_the_app_does_not_manage_cause_no_locks(local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    create_pool(alice, "team-pool", chain.version, managed=None)  # no autopilot metadata at all
    create_pool(alice, "opted-out", chain.direct_version, managed=False)
    local.settle()
    local.host.fire_timer(GUARD_TIMER)
    assert app_locked(local) == set()
    assert local.emulator.locks.all_locks() == []
    delete_resource(alice, chain.image)  # unguarded: the app does not stand in a team's way
    local.settle()
    assert local.alerts() == []


def test_notes_name_the_pools_and_stay_within_512_characters_with_many_pools(
        local: LocalAzure, chain: Chain, alice: AzureClients) -> None:
    long_ids = [f"render-farm-nightly-{i:02d}-" + "x" * 40 for i in range(30)]
    for pool_id in long_ids:  # set up without events: the tick must cope with many pools at once
        local.emulator.batch.create_pool(ACCOUNT, pool_id, image_id=chain.version, vm_size="Standard_D4ds_v5",
                                         node_agent_sku_id=NODE_AGENT,
                                         metadata={pool_metadata.MANAGED: "true",
                                                   pool_metadata.IMAGE_ID: chain.version})
    assert local.host.fire_timer(GUARD_TIMER)

    for resource in (chain.version, chain.image, chain.os_snapshot, chain.data_snapshot):
        notes = app_lock(local, resource).notes
        assert len(notes) <= NOTES_LIMIT
        shown = [pool_id for pool_id in long_ids if f"renderweu/{pool_id}" in notes]
        assert shown == sorted(long_ids)[:len(shown)] and len(shown) >= 1
        assert f"and {len(long_ids) - len(shown)} more" in notes

    # A few pools fit whole: every one is named.
    for pool_id in long_ids:
        local.emulator.batch.delete_pool(ACCOUNT, pool_id)
    for pool_id in ("pool-a", "pool-b"):
        create_pool(alice, pool_id, chain.version)
    local.settle()
    notes = app_lock(local, chain.version).notes
    assert "renderweu/pool-a, renderweu/pool-b" in notes and "more" not in notes


# ----------------------------------------------------------------------------------------------
# Deleted anyway
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["version", "image", "os_snapshot"])
def test_a_guarded_resource_deleted_after_its_lock_was_removed_raises_a_critical_image_missing(
        local: LocalAzure, chain: Chain, alice: AzureClients, which: str) -> None:
    create_pool(alice, "pool-a", chain.version)
    create_pool(alice, "pool-b", chain.version)
    local.settle()
    resource = getattr(chain, which)
    # Both calls are answered before any event is delivered: the re-lock cannot win the race.
    remove_lock(alice, resource)
    delete_resource(alice, resource)
    local.settle()

    assert not exists(local, resource)
    missing = alerts_data(local, "ImageMissing")
    assert len(missing) == 1
    assert missing[0]["severity"] == "critical"
    assert missing[0]["subject"].lower() == resource.lower()
    assert missing[0]["pools"] == ["renderweu/pool-a", "renderweu/pool-b"]
    assert missing[0]["caller"] == ALICE
    assert local.alerts("DeleteBlocked") == []
    # What the rest of the chain was built from stays locked: it is what a rebuild needs.
    others = {r for r in ids(chain.version, chain.image, chain.os_snapshot, chain.data_snapshot)} - ids(resource)
    assert others <= app_locked(local)
    local.host.fire_timer(GUARD_TIMER)
    assert others <= app_locked(local)
    assert len(local.alerts("ImageMissing")) == 1, "redeliveries and ticks do not repeat the alert"


def test_the_apps_own_deletes_do_not_alert(local: LocalAzure, chain: Chain) -> None:
    # The pipeline creates pools, then deletes its intermediate managed image: the app's identity, its own operation.
    app = local.context.clients
    create_pool(app, "pool-a", chain.version)
    delete_resource(app, chain.image)
    local.settle()
    assert not exists(local, chain.image)
    assert local.alerts() == []
    assert failed_invocations(local) == []


def test_full_pipeline_run_locks_what_its_pools_use_and_raises_no_guard_alert(
        azurite: str, tls_material: TlsMaterial) -> None:
    families = {"families": {"gpu": {
        "gallery": {"resourceGroup": IMAGES_RG, "name": GALLERY, "imageDefinition": DEFINITION, "osType": "Linux",
                    "osState": "Generalized", "hyperVGeneration": "V2", "location": DEFAULT_REGION},
        "imageResourceGroup": IMAGES_RG,
        "pools": [{"account": ACCOUNT_ID, "vmSize": "Standard_D4ds_v5", "dedicated": 2, "spot": 0}]}}}
    with new_local(azurite, tls_material, families=families) as la:
        snapshots = la.snapshot_set("gpu", "1.0.0", data_luns=(0,))
        la.run(timedelta(minutes=20))
        pools = la.emulator.batch.list_pools(ACCOUNT)
        assert [p.id for p in pools] == ["gpu-1-0-0"]
        assert app_locked(la) == ids(version_id("1.0.0"), *snapshots.values())
        assert [a["eventType"] for a in la.alerts()] == ["BatchImageAutopilot.PoolsCreated"]
        assert failed_invocations(la) == []

        alice = person(la)
        try:
            # Where the API allows, the version also carries deletion protection of its own.
            version = alice.compute.gallery_image_versions.get(IMAGES_RG, GALLERY, DEFINITION, "1.0.0")
            assert version.safety_profile.block_deletion_before_end_of_life is True
            assert version.safety_profile.allow_deletion_of_replicated_locations is False
            delete_pool(alice, "gpu-1-0-0")
            la.settle()
            assert app_locked(la) == set()
            with pytest.raises(HttpResponseError) as refused:
                delete_resource(alice, version_id("1.0.0"))
            assert refused.value.error is not None and refused.value.error.code == "OperationNotAllowed"
            for snapshot in snapshots.values():
                delete_resource(alice, snapshot)  # released: nothing uses them any more
            la.settle()
            assert la.alerts("DeleteBlocked") == [] and la.alerts("ImageMissing") == []
        finally:
            alice.close()


def test_legacy_managed_image_pool_guards_the_image_and_its_snapshots(azurite: str, tls_material: TlsMaterial) -> None:
    # A pool made long ago on a managed image (Batch took managed images up to api-version 2019-08-01): the guard finds
    # it at its reconcile (no event: it predates the app) and locks what it uses.
    with new_local(azurite, tls_material, start=datetime.fromisoformat("2026-03-02T06:00:00+00:00")) as la:
        os_snap = make_snapshot(la, "os-legacy")
        image = make_image(la, "img-legacy", os_snap)
        alice = person(la)
        try:
            la.emulator.batch.create_pool(ACCOUNT, "legacy", image_id=image, vm_size="Standard_D4ds_v5",
                                          node_agent_sku_id=NODE_AGENT,
                                          api_version="2019-08-01",
                                          metadata={pool_metadata.MANAGED: "true", pool_metadata.IMAGE_ID: image})
            la.run(timedelta(minutes=16))
            assert app_locked(la) == ids(image, os_snap)
            with pytest.raises(HttpResponseError):
                delete_resource(alice, os_snap)
            delete_pool(alice, "legacy")
            la.settle()
            assert app_locked(la) == set()
        finally:
            alice.close()
