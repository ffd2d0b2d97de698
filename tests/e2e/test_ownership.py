"""The app acts only on what it built: resources at derived names that are not its own are never adopted, locked or
deleted.

Each test puts a resource another team made at the name the pipeline derives (a managed image, a pool id), checks the
set is refused with NAME_TAKEN while the resource stays untouched, then follows the alert's fix as a person would and
ends with the version built.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from autopilot.local import LocalAzure
from shared.core.resource_ids import normalize
from tests.e2e.test_pipeline import (
    ACCOUNT,
    ACCOUNT_ID,
    IMAGES_RG,
    alerts_of,
    families,
    image_id,
    no_failed_invocations,
    pipeline_stage,
    version_id,
)
from tests.e2e.test_pipeline import make_azure as _make_azure_fixture

make_azure = _make_azure_fixture  # the same fixture, used here


def name_taken(la: LocalAzure) -> list[dict]:
    return [a["data"] for a in alerts_of(la, "ImageRefused") if a["data"].get("codes") == ["NAME_TAKEN"]]


def foreign_image(la: LocalAzure, name: str, *, tags: dict[str, str] | None = None) -> str:
    """Another team's managed image, made from their own snapshot, created through ARM by a person."""
    disk = la.add_prepared_disk(f"{name}-theirs-disk")
    snapshot = la.snapshot(f"{name}-theirs", disk)
    body = {"location": "westeurope", "tags": dict(tags or {}), "properties": {
        "hyperVGeneration": "V2",
        "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "snapshot": {"id": snapshot}}}}}
    la.operator.compute.images.begin_create_or_update(IMAGES_RG, name, body, polling=False)
    la.run(timedelta(minutes=5))  # the image finishes (its write event reaches the app, which ignores it)
    return la.operator.compute.images.get(IMAGES_RG, name).id


def test_an_image_at_the_derived_name_is_never_adopted_or_deleted_and_the_fix_builds_the_version(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    theirs = foreign_image(la, "gpu-1.0.0")
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=20))

    no_failed_invocations(la)
    [alert] = name_taken(la)
    assert normalize(alert["subject"]) == normalize(theirs)
    assert theirs in alert["fix"] and "delete or move" in alert["fix"] and "autopilot.version" in alert["fix"]
    assert "autopilot.managedBy" in alert["diagnosis"]
    assert la.operator.compute.images.get(IMAGES_RG, "gpu-1.0.0").id == theirs  # not deleted, not rewritten
    assert la.locks_on(theirs) == []  # not locked
    assert not la.emulator.compute.gallery_image_versions  # nothing built from it
    assert alerts_of(la, "PoolsCreated") == []

    # The fix: the other team does not need it, so it is deleted; the app builds the version at its next sweep.
    la.operator.compute.images.begin_delete(IMAGES_RG, "gpu-1.0.0", polling=False)
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "1.0.0") == "done"
    assert la.emulator.batch.get_pool(ACCOUNT, "gpu-1-0-0") is not None
    version = la.operator.compute.gallery_image_versions.get(
        IMAGES_RG, "autopilotGallery", "gpu-def", "1.0.0").as_dict()
    assert version["tags"]["autopilot.managedBy"] == "batch-image-autopilot"
    assert len(version["tags"]["autopilot.sources"]) == 32
    assert len(name_taken(la)) == 1  # one alert, not one per sweep


def test_forged_app_tags_do_not_make_an_image_the_apps(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    forged = {"autopilot.family": "gpu", "autopilot.version": "2.0.0", "autopilot.managedBy": "batch-image-autopilot"}
    theirs = foreign_image(la, "gpu-2.0.0", tags=forged)
    la.snapshot_set("gpu", "2.0.0")
    la.run(timedelta(minutes=20))

    [alert] = name_taken(la)
    assert "was built from" in alert["diagnosis"]
    assert la.operator.compute.images.get(IMAGES_RG, "gpu-2.0.0").id == theirs
    assert not la.emulator.compute.gallery_image_versions

    # The other fix: the same disks, tagged as another version, build that version.
    for snap in la.operator.compute.snapshots.list_by_resource_group(IMAGES_RG):
        if (snap.tags or {}).get("autopilot.version") == "2.0.0":
            la.operator.compute.snapshots.begin_update(IMAGES_RG, snap.name,
                                                       {"tags": {**snap.tags, "autopilot.version": "2.0.1"}}).result()
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "2.0.1") == "done"
    assert la.operator.compute.images.get(IMAGES_RG, "gpu-2.0.0").id == theirs
    assert normalize(image_id("gpu", "2.0.0")) == normalize(theirs)


def test_a_pool_at_the_derived_id_is_not_taken_over_and_the_version_is_not_reported_done(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.batch.create_pool(ACCOUNT, "gpu-3-0-0", vm_size="Standard_D4ds_v5",
                                  node_agent_sku_id="batch.node.ubuntu 24.04",
                                  image_reference={"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                                   "sku": "server", "version": "latest"},
                                  metadata={"team": "render"})
    la.snapshot_set("gpu", "3.0.0")
    la.run(timedelta(minutes=25))

    no_failed_invocations(la)
    [alert] = name_taken(la)
    assert normalize(alert["subject"]) == normalize(f"{ACCOUNT_ID}/pools/gpu-3-0-0")
    assert "poolId" in alert["fix"]
    assert pipeline_stage(la, "gpu", "3.0.0") == "version-requested"
    assert alerts_of(la, "PoolsCreated") == []
    assert la.locks_on(version_id("gpu", "3.0.0")) == []  # no pool of the app's uses it yet

    # The fix: the stray pool is deleted; the sweep creates the app's pool and finishes the version.
    la.emulator.batch.delete_pool(ACCOUNT, "gpu-3-0-0")
    la.run(timedelta(minutes=40))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "3.0.0") == "done"
    pool = la.pool(ACCOUNT, "gpu-3-0-0")
    assert pool.metadata["autopilot.family"] == "gpu"
    assert len(alerts_of(la, "PoolsCreated")) == 1


def test_finished_state_expires_with_a_tombstone_so_an_old_set_is_never_rebuilt(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.core.state import PIPELINE, SNAPSHOT_SETS

    la = make_azure(families(), settings={"AUTOPILOT_STATE_RETENTION_DAYS": "1"})
    ids = la.snapshot_set("gpu", "5.0.0")
    la.run(timedelta(minutes=30))
    assert pipeline_stage(la, "gpu", "5.0.0") == "done"
    # The sweep reads open work only: the finished row is stored but the Table service does not return it to the
    # sweep's query; an incomplete set (one disk of two) is returned.
    from shared.pipeline.stages import open_sets

    disk = la.add_prepared_disk("gpu-6-0-0-osdisk")
    la.snapshot("gpu-6-0-0-os", disk, {"autopilot.family": "gpu", "autopilot.version": "6.0.0", "autopilot.disk": "os",
                                       "autopilot.diskCount": "2"})
    la.run(timedelta(minutes=10))
    assert sorted(r.row for r in la.context.state.table(SNAPSHOT_SETS).query()) == ["5.0.0", "6.0.0"]
    assert [r.row for r in open_sets(la.context)] == ["6.0.0"]
    la.run(timedelta(days=1, hours=1), step=timedelta(minutes=30))  # past the retention: the sweep expires the rows
    assert la.context.state.table(PIPELINE).get("gpu", "5.0.0") is None
    assert la.context.state.table(SNAPSHOT_SETS).get("gpu", "5.0.0") is None
    images_built = len(
        [e for e in la.emulator.log.entries(action="Microsoft.Compute/images/write") if e.method == "PUT"])

    # The old set is re-tagged (a tag write raises the snapshot's write event): recognised as built, nothing rebuilt.
    snap = la.operator.compute.snapshots.get(IMAGES_RG, ids["os"].rsplit("/", 1)[-1])
    la.operator.compute.snapshots.begin_update(IMAGES_RG, snap.name, {"tags": {**snap.tags, "note": "again"}}).result()
    la.run(timedelta(minutes=20))
    no_failed_invocations(la)
    assert (len([e for e in la.emulator.log.entries(action="Microsoft.Compute/images/write") if e.method == "PUT"])
            == images_built)
    assert len(alerts_of(la, "PoolsCreated")) == 1
    # the re-tagged set, recognised as built, is closed again
    assert [r.row for r in open_sets(la.context)] == ["6.0.0"]

    # A row written before the open column existed is given it by the first sweep of the new version of the app.
    from shared.core.state import WATCH

    sets = la.context.state.table(SNAPSHOT_SETS)
    old = sets.get("gpu", "6.0.0")
    assert old is not None
    sets.replace(old, {k: v for k, v in old.data.items() if k not in ("open", "Timestamp", "etag")})
    marker = la.context.state.table(WATCH).get("pipeline", "setsOpenMarked")
    assert marker is not None
    la.context.state.table(WATCH).delete(marker)
    assert list(sets.query_filter("open eq @open", {"open": True})) == []
    assert [r.row for r in open_sets(la.context)] == ["6.0.0"]


def test_without_its_client_id_the_app_removes_no_lock_and_says_so_and_with_it_removes_only_its_own(
        make_azure: Callable[..., LocalAzure]) -> None:
    """Production is decided by AUTOPILOT_CREDENTIAL (not "emulator"): there the app's own id is AZURE_CLIENT_ID only.
    The app's context is rebuilt as in production (same endpoints; the credential object stays the local one, since a
    managed identity cannot sign in to the emulator)."""
    from dataclasses import replace

    from shared.core.context import AppContext
    from shared.guard import reconcile as guard
    from shared.guard.lock_plan import LOCK_NAME
    from shared.resources.clients import AzureClients, EmulatorCredential
    from tests.e2e.test_pipeline import pool_spec

    def production(client_id: str | None) -> AppContext:
        settings = replace(la.settings, credential="default", identity_client_id=client_id)
        assert not settings.is_emulator
        return AppContext(settings, AzureClients(settings, credential=EmulatorCredential()), la.emulator.clock)

    def reconcile(client_id: str | None) -> guard.GuardReport:
        context = production(client_id)
        try:
            return guard.reconcile(context)
        finally:
            context.clients.close()

    la = make_azure(families(pools=[pool_spec(dedicated=1)]))
    ids = la.snapshot_set("gpu", "7.0.0")
    la.run(timedelta(minutes=30))
    assert pipeline_stage(la, "gpu", "7.0.0") == "done"
    version, snapshot = version_id("gpu", "7.0.0"), ids["os"]
    snapshot_name = snapshot.rsplit("/", 1)[-1]
    # The app's lock on the version names its owner (the app's id). The snapshot's is placed by the app running without
    # AZURE_CLIENT_ID (no event reaches the app meanwhile): that lock carries no owner.
    la.operator.locks.management_locks.delete_at_resource_level(IMAGES_RG, "Microsoft.Compute", "", "snapshots",
                                                                snapshot_name, LOCK_NAME)
    reconcile(None)
    assert [lock.owners for lock in la.locks_on(snapshot)] == [[]]
    assert [[o["applicationId"] for o in lock.owners] for lock in la.locks_on(version)] == [["batch-image-autopilot"]]

    # The pool is deleted: nothing uses the version or the snapshot any more. Without its client id the app removes no
    # lock, and says so.
    la.emulator.batch.delete_pool(ACCOUNT, "gpu-7-0-0")
    report = reconcile(None)
    assert [normalize(r) for r in report.not_removed] == [normalize(snapshot)]
    assert "AZURE_CLIENT_ID" in report.not_removed[next(iter(report.not_removed))]
    assert la.locks_on(version) and la.locks_on(snapshot)
    [alert] = alerts_of(la, "PermissionDenied")
    assert (alert["data"]["code"] == "AppClientIdUnknown"
            and [normalize(r) for r in alert["data"]["locks"]] == [normalize(snapshot)])
    reconcile(None)
    assert len(alerts_of(la, "PermissionDenied")) == 1  # once a day, not once a pass

    # The fix, as a person follows it: AZURE_CLIENT_ID is set. The app removes the lock whose owner is the app; the
    # ownerless one is not provably its own and stays, until the person removes it by hand as the fix says.
    report = reconcile("batch-image-autopilot")  # the emulator credential's appid, which the app wrote as the owner
    assert not report.not_removed and not report.failed
    assert la.locks_on(version) == [] and la.locks_on(snapshot)
    la.operator.locks.management_locks.delete_at_resource_level(IMAGES_RG, "Microsoft.Compute", "", "snapshots",
                                                                snapshot_name, LOCK_NAME)
    la.operator.compute.snapshots.begin_delete(IMAGES_RG, snapshot_name).result()
