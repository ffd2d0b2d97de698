"""Opt-in scope end to end: snapshots outside a family's resource groups, writers it does not allow, unreadable
snapshots of other teams (403), and pool metadata naming foreign resources - through the real SDK clients."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from autopilot.status import collect_status
from shared.core import pool_metadata
from shared.pipeline import stages as pipeline
from shared.resources.clients import AzureClients, EmulatorCredential
from tests.e2e.test_pipeline import (
    ACCOUNT,
    GALLERY,
    IMAGES_RG,
    alerts_of,
    families,
    no_failed_invocations,
    pipeline_stage,
    tags,
    version_id,
)
from tests.e2e.test_pipeline import make_azure as _make_azure_fixture

make_azure = _make_azure_fixture
APP = "batch-image-autopilot"
RELEASE_TEAM = "4f1c2f7e-1111-4222-8333-944444444444"  # an application id allowed to opt snapshots in


def refusal_codes(la: LocalAzure) -> list[str]:
    return [c for a in alerts_of(la, "ImageRefused") for c in a["data"].get("codes", [])]


def test_a_tagged_snapshot_outside_the_familys_groups_is_refused_and_an_unreadable_one_elsewhere_is_ignored(
        make_azure: Callable[..., LocalAzure]) -> None:
    doc = families()
    # team-rg is cpu's, not gpu's
    doc["families"].update(families("cpu", snapshotResourceGroups=["team-rg"])["families"])
    la = make_azure(doc)
    la.emulator.resources.put_group(SUBSCRIPTION_ID, "backups-rg", "westeurope")
    la.emulator.resources.put_group(SUBSCRIPTION_ID, "team-rg", "westeurope")
    # Another team's backups: the app has no role there (403 on read), and their snapshots are none of its business.
    la.emulator.authorization.deny("Microsoft.Compute/snapshots/read",
                                   f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/backups-rg",
                                   principal=APP)
    disk = la.add_prepared_disk("backup-disk", resource_group="backups-rg")
    for i in range(3):
        la.snapshot(f"nightly-{i}", disk, resource_group="backups-rg")
    # Someone tags a snapshot for gpu in cpu's group: outside gpu's snapshotResourceGroups.
    team_disk = la.add_prepared_disk("team-disk", resource_group="team-rg")
    la.snapshot("gpu-os", team_disk, tags("gpu", "1.0.0", "os", 1), resource_group="team-rg")
    la.run(timedelta(minutes=20))

    no_failed_invocations(la)  # no 403 poison: no failed invocation, no dead letter
    assert refusal_codes(la) == ["SNAPSHOT_OUT_OF_SCOPE"]
    assert "snapshotResourceGroups" in alerts_of(la, "ImageRefused")[0]["data"]["fix"]
    assert alerts_of(la, "PermissionDenied") == []
    assert not la.emulator.compute.images and pipeline_stage(la, "gpu", "1.0.0") is None
    reads = [e for e in la.emulator.log.entries(action="Microsoft.Compute/snapshots/read") if e.caller == APP
             and "backups-rg" in e.path]
    assert reads == []  # never read
    # The event subscription is filtered to the families' groups (as infra filters it): backups never reach the app ...
    assert "out-of-scope" not in collect_status(la.context)["ignoredEvents"]
    # ... and should one arrive anyway (a subscription deployed without the filter), the app ignores it before reading
    # it.
    backup = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/backups-rg/providers/Microsoft.Compute/snapshots"
              "/nightly-0")
    assert pipeline.on_snapshot_written(la.context, backup, {"appid": "backup-service"}).stage == "ignored"
    assert reads == [e for e in la.emulator.log.entries(action="Microsoft.Compute/snapshots/read") if e.caller == APP
                     and "backups-rg" in e.path]
    status = collect_status(la.context)
    assert status["ignoredEvents"]["out-of-scope"] == 1
    assert any("ignored" in w for w in status["warnings"])

    # The refusal's fix: take the snapshot in one of the family's snapshotResourceGroups.
    la.snapshot("gpu-os-in-scope", team_disk, tags("gpu", "1.0.0", "os", 1), resource_group="images-rg")
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "1.0.0") == "done"


def test_a_denied_read_inside_the_scope_raises_permission_denied_then_builds_once_granted(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.authorization.deny("Microsoft.Compute/snapshots/read", principal=APP)
    la.snapshot_set("gpu", "2.0.0")
    la.run(timedelta(minutes=5))
    [alert] = alerts_of(la, "PermissionDenied")
    assert alert["data"]["action"] == "Microsoft.Compute/snapshots/read"
    la.emulator.authorization.clear()
    la.run(timedelta(minutes=60))  # Event Grid redelivers the event: the snapshot is read and the version built
    assert pipeline_stage(la, "gpu", "2.0.0") == "done"
    assert la.host.dead_letters == []


def test_only_allowed_principals_opt_snapshots_in(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(allowedPrincipals=[RELEASE_TEAM]))
    la.snapshot_set("gpu", "3.0.0")  # written by the operator (appid operator-cli): not allowed
    la.run(timedelta(minutes=20))
    assert refusal_codes(la) == ["PRINCIPAL_NOT_ALLOWED"]
    assert "allowedPrincipals" in alerts_of(la, "ImageRefused")[0]["data"]["fix"]
    assert pipeline_stage(la, "gpu", "3.0.0") is None

    # The fix: the release team writes the snapshot.
    release = AzureClients(la.settings, credential=EmulatorCredential(name="release pipeline", appid=RELEASE_TEAM))
    try:
        disk = la.add_prepared_disk("rel-osdisk")
        body = {"location": "westeurope", "tags": tags("gpu", "3.0.1", "os", 1),
                "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk}}}
        snapshot_id = release.compute.snapshots.begin_create_or_update("images-rg", "rel-os", body).result().id
    finally:
        release.close()
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "3.0.1") == "done"
    # Found again without an event (no claims): admitted by the earlier one. An unadmitted one is refused.
    assert pipeline.on_snapshot_written(la.context, snapshot_id).stage != "refused"
    other = la.snapshot("late-os", la.add_prepared_disk("late-osdisk"), tags("gpu", "3.0.2", "os", 1))
    la.settle()
    assert pipeline.on_snapshot_written(la.context, other).stage == "refused"


def test_pool_metadata_cannot_point_the_guard_at_another_teams_snapshot(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.resources.put_group(SUBSCRIPTION_ID, "team-rg", "westeurope")
    theirs = la.snapshot("precious", la.add_prepared_disk("precious-disk", resource_group="team-rg"),
                         resource_group="team-rg")
    mine = la.snapshot_set("gpu", "4.0.0")["os"]
    la.run(timedelta(minutes=30))
    assert pipeline_stage(la, "gpu", "4.0.0") == "done"
    # Someone edits the app's pool metadata to name the other team's snapshot.
    pool = la.pool(ACCOUNT, "gpu-4-0-0")
    from azure.mgmt.batch.models import MetadataItem, Pool

    metadata = {**pool.metadata, pool_metadata.SNAPSHOT_IDS: f"{mine},{theirs}"}
    la.operator.batch_management.pool.update("batch-rg", ACCOUNT, "gpu-4-0-0",
                                             Pool(
                                                 metadata=[MetadataItem(name=k, value=v) for k, v in metadata.items()]))
    la.run(timedelta(minutes=20))

    assert la.locks_on(theirs) == []  # its owner can still delete it
    assert la.locks_on(mine)  # the app's own source stays protected
    status = collect_status(la.context)
    assert [k.lower() for k in status["untrustedReferences"]] == [theirs.lower()]
    assert any("does not follow" in w for w in status["warnings"])
    la.operator.compute.snapshots.begin_delete("team-rg", "precious").result()  # its owner deletes it: not refused


def test_max_live_versions_is_off_by_default_and_refuses_past_the_cap_until_a_version_is_retired(
        make_azure: Callable[..., LocalAzure]) -> None:
    assert families()["families"]["gpu"].get("maxLiveVersions") is None
    la = make_azure(families(maxLiveVersions=1))
    la.snapshot_set("gpu", "5.0.0")
    la.run(timedelta(minutes=30))
    assert pipeline_stage(la, "gpu", "5.0.0") == "done"
    ids = la.snapshot_set("gpu", "5.0.1")
    la.run(timedelta(minutes=10))
    assert pipeline_stage(la, "gpu", "5.0.1") == "refused"
    assert refusal_codes(la) == ["MAX_LIVE_VERSIONS"]
    fix = alerts_of(la, "ImageRefused")[0]["data"]["fix"]
    assert fix.startswith("retire one") and "maxLiveVersions" in fix

    # A person follows the fix by hand: the pool that uses 5.0.0 is deleted, the app drops its lock, the deletion block
    # is lifted and the version deleted; then one snapshot of 5.0.1 is re-tagged. 5.0.0 is retired: 5.0.1 is built.
    assert "delete or move the pools that use it" in fix and "blockDeletionBeforeEndOfLife" in fix
    la.operator.batch_management.pool.begin_delete("batch-rg", ACCOUNT, "gpu-5-0-0", polling=False)
    la.run(timedelta(minutes=5))
    assert la.locks_on(version_id("gpu", "5.0.0")) == []
    versions = la.operator.compute.gallery_image_versions
    versions.begin_update(IMAGES_RG, GALLERY, "gpu-def", "5.0.0",
                          {"properties": {"safetyProfile": {"blockDeletionBeforeEndOfLife": False}}}).result()
    versions.begin_delete(IMAGES_RG, GALLERY, "gpu-def", "5.0.0").result()
    snap = la.operator.compute.snapshots.get(IMAGES_RG, ids["os"].rsplit("/", 1)[-1])
    la.operator.compute.snapshots.begin_update(IMAGES_RG, snap.name,
                                               {"tags": {**snap.tags, "note": "retired 5.0.0"}}).result()
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "5.0.1") == "done"
