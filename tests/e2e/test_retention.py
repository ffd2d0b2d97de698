# ruff: noqa: F811  (make_azure, the fixture of test_pipeline.py, is imported and then requested by name)
"""Retention end to end: old gallery image versions nothing uses are deleted, and every refusal holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from autopilot.local import LocalAzure
from shared.lifecycle import version_retention as retention
from tests.e2e.test_pipeline import (  # noqa: F401  (make_azure is a fixture)
    GALLERY,
    IMAGES_RG,
    families,
    make_azure,
    pool_spec,
    version_id,
)
from tests.e2e.test_rollout import locked, pool_version, together


def exists(la: LocalAzure, version: str) -> bool:
    return any(v.name == version
               for v in la.operator.compute.gallery_image_versions.list_by_gallery_image(IMAGES_RG, GALLERY, "gpu-def"))


def in_place(keep: int, **extra: Any) -> dict[str, Any]:
    return families(pools=[pool_spec(dedicated=2, pool_id="{family}")],
                    rollout={"mode": "inPlace", "applyWhen": "drain"},
                    retention={"keepVersions": keep, **extra})


def build(la: LocalAzure, *versions: str, minutes: int = 30) -> None:
    for version in versions:
        la.snapshot_set("gpu", version)
        la.run(timedelta(minutes=minutes))


def test_in_place_keeps_the_newest_versions_and_deletes_the_oldest_with_its_snapshots(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(in_place(2, deleteSnapshots=True))
    build(la, "1.0.0", "1.1.0")
    # A dry run (what `autopilot plan` shows) deletes nothing.
    from shared.pipeline.stages import families_of

    gpu = families_of(la.context).get("gpu")
    assert gpu is not None
    assert [v.version for v in retention.run(la.context, gpu, dry_run=True).to_delete] == []
    build(la, "1.2.0")
    assert pool_version(la, "gpu") == (version_id("gpu", "1.2.0"), "1.2.0")
    la.run(timedelta(minutes=10))
    assert not exists(la, "1.0.0") and exists(la, "1.1.0") and exists(la, "1.2.0")
    deleted = la.alerts("VersionDeleted")
    assert [a["data"]["version"] for a in deleted] == ["1.0.0"] and deleted[0]["data"]["snapshots"]
    assert not any(s.name.startswith("gpu-1-0-0")
                   for s in la.operator.compute.snapshots.list_by_resource_group(IMAGES_RG))
    assert any(s.name.startswith("gpu-1-1-0") for s in la.operator.compute.snapshots.list_by_resource_group(IMAGES_RG))


def test_retention_refuses_referenced_pinned_foreign_locked_and_foreign_versions(
        make_azure: Callable[..., LocalAzure]) -> None:
    # newPools without retirement: every version keeps a pool, so nothing referenced may go.
    la = make_azure(families(pools=[pool_spec(dedicated=1)], retention={"keepVersions": 1}))
    build(la, "1.0.0", "1.1.0", "1.2.0", minutes=20)
    from shared.pipeline.stages import families_of

    gpu = families_of(la.context).get("gpu")
    assert gpu is not None
    verdicts = {v.version: v for v in retention.run(la.context, gpu, dry_run=True).verdicts}
    assert not verdicts["1.0.0"].delete and "a pool references it" in verdicts["1.0.0"].reason
    assert exists(la, "1.0.0") and exists(la, "1.1.0")

    # 1.1.0 carries someone else's lock; 1.0.0 is pinned. Then the teams delete the pools of 1.0.0 and 1.1.0.
    from azure.mgmt.resource.locks.models import ManagementLockObject

    rg, name = IMAGES_RG, "keep-for-audit"
    la.operator.locks.management_locks.create_or_update_at_resource_level(
        rg, "Microsoft.Compute", f"galleries/{GALLERY}/images/gpu-def", "versions", "1.1.0", name,
        ManagementLockObject(level="CanNotDelete", notes="audit"))
    doc = families(pools=[pool_spec(dedicated=1)], retention={"keepVersions": 1}, pinVersion="1.0.0")
    la.set_families(doc)
    for pool_id in ("gpu-1-0-0", "gpu-1-1-0"):
        la.operator.batch_management.pool.begin_delete("batch-rg", "renderweu", pool_id, polling=False)
    la.run(timedelta(minutes=5))
    gpu = families_of(la.context).get("gpu")
    assert gpu is not None
    verdicts = {v.version: v for v in retention.run(la.context, gpu, dry_run=True).verdicts}
    assert "pinVersion" in verdicts["1.0.0"].reason and "lock the app did not put" in verdicts["1.1.0"].reason
    # `autopilot plan` shows the same verdicts, and planning deletes nothing.
    from jsonschema import Draft202012Validator

    from autopilot.status import PLAN_SCHEMA, plan

    planned = plan(la.context)
    assert not list(Draft202012Validator(PLAN_SCHEMA).iter_errors(planned))
    shown = {r["version"]: r for r in planned["retention"]}
    assert (shown["1.0.0"]["delete"] is False and "pinVersion" in shown["1.0.0"]["reason"]
            and shown["1.2.0"]["delete"] is False)
    assert exists(la, "1.0.0") and exists(la, "1.1.0")
    la.run(timedelta(minutes=10))
    assert exists(la, "1.0.0") and exists(la, "1.1.0") and not la.alerts("VersionDeleted")

    # A version someone else put in the family's definition (no app tags) is never deleted, even unpinned and unlocked.
    la.set_families(families(pools=[pool_spec(dedicated=1)], retention={"keepVersions": 1}))
    la.operator.locks.management_locks.delete_at_resource_level(rg, "Microsoft.Compute",
                                                                f"galleries/{GALLERY}/images/gpu-def",
                                                                 "versions", "1.1.0", name)
    snapshot = la.operator.compute.snapshots.get(IMAGES_RG, "gpu-1-2-0-os")
    body = {"location": snapshot.location, "properties": {
        "storageProfile": {"osDiskImage": {"source": {"id": snapshot.id}}},
        "publishingProfile": {"targetRegions": [{"name": snapshot.location}]}}}
    la.operator.compute.gallery_image_versions.begin_create_or_update(IMAGES_RG, GALLERY, "gpu-def", "0.9.0", body,
                                                                      polling=False)
    la.run(timedelta(minutes=10))
    assert exists(la, "0.9.0") and exists(la, "1.2.0")
    assert not exists(la, "1.0.0") and not exists(la, "1.1.0")
    assert sorted(a["data"]["version"] for a in la.alerts("VersionDeleted")) == ["1.0.0", "1.1.0"]
    assert locked(la, version_id("gpu", "1.2.0"))


def test_two_instances_running_retention_at_once_delete_the_unused_version_once_and_nothing_referenced(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.core.context import AppContext
    from shared.pipeline.stages import families_of

    # Three versions, each with its pool (newPools), the guard's locks on each. Retention is not configured yet.
    la = make_azure(families(pools=[pool_spec(dedicated=1)]))
    build(la, "1.0.0", "1.1.0", "1.2.0", minutes=20)
    assert locked(la, version_id("gpu", "1.0.0"))
    # The team deletes 1.0.0's pool; only Azure's clock moves (no tick, no sweep): the app's lock is still on 1.0.0.
    la.operator.batch_management.pool.begin_delete("batch-rg", "renderweu", "gpu-1-0-0", polling=False)
    la.emulator.clock.advance(timedelta(minutes=10))
    assert not any(p.id == "gpu-1-0-0" for p in la.emulator.batch.list_pools("renderweu"))
    la.set_families(families(pools=[pool_spec(dedicated=1)], retention={"keepVersions": 1, "deleteSnapshots": True}))
    # Two instances of the Function App (own SDK clients, same tables and Azure) run the sweep's retention together.
    instances = [AppContext.from_settings(la.settings, clock=la.emulator.clock) for _ in range(2)]
    try:
        gpu = [families_of(c).get("gpu") for c in instances]
        assert gpu[0] is not None and gpu[1] is not None
        plans, errors = together([lambda c=c, f=f: retention.run(c, f, dry_run=True)
                                   for c, f in zip(instances, gpu, strict=True)])
        assert not errors
        # Both see the same deletable version; 1.1.0 (its pool lives) and 1.2.0 (newest) stay.
        assert [[v.version for v in p.to_delete] for p in plans] == [["1.0.0"], ["1.0.0"]]
        applied, errors = together([lambda c=c, f=f, p=p: retention.apply(c, f, p.to_delete[0])
                                     for c, f, p in zip(instances, gpu, plans, strict=True)])
        assert not errors, errors
        # A redelivered sweep on both: nothing left to delete, nothing fails.
        again, errors = together([lambda c=c, f=f: retention.run(c, f) for c, f in zip(instances, gpu, strict=True)])
        assert not errors and all(not r.to_delete and not r.failed for r in again)
    finally:
        for context in instances:
            context.clients.close()
    # Exactly one DELETE removed the version (a second one answers 204: nothing to delete); one instance says so.
    deletes = [e.status for e in la.emulator.log.entries(action="Microsoft.Compute/galleries/images/versions/delete")]
    assert [s for s in deletes if s != 204] == [202], deletes
    assert sorted(applied) == [False, True]
    la.run(timedelta(minutes=10))
    assert [a["data"]["version"] for a in la.alerts("VersionDeleted")] == ["1.0.0"]
    assert not exists(la, "1.0.0") and exists(la, "1.1.0") and exists(la, "1.2.0")
    snapshots = {s.name for s in la.operator.compute.snapshots.list_by_resource_group(IMAGES_RG)}
    assert not any(s.startswith("gpu-1-0-0") for s in snapshots)
    assert any(s.startswith("gpu-1-1-0") for s in snapshots) and any(s.startswith("gpu-1-2-0") for s in snapshots)
    # Every pool still references a version that exists, and it is locked.
    for pool_id, version in (("gpu-1-1-0", "1.1.0"), ("gpu-1-2-0", "1.2.0")):
        assert pool_version(la, pool_id) == (version_id("gpu", version), version)
        assert locked(la, version_id("gpu", version))
