# ruff: noqa: F811  (make_azure, the fixture of test_pipeline.py, is imported and then requested by name)
"""Snapshot sets follow the tags as they are now, and every fix the app tells a person works.

End to end, as tests/e2e/test_pipeline.py: the emulator over HTTPS, Azurite, the local Functions host running the
real functions, and an operator acting through the real SDK clients - snapshots through azure-mgmt-compute, tags
through the Tags API (azure-mgmt-resource, as the portal's Tags blade and ``az tag update`` do), and the app's
settings changed the way an operator changes them (the host restarts the app with the new families).

Every refusal and conflict test reads the alert's ``fix``, does what it says, and ends with the version built
exactly once, from the right disks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from shared.core import pool_metadata
from shared.core.resource_ids import batch_account_id, normalize
from shared.core.state import SNAPSHOT_SETS
from tests.e2e.test_pipeline import (  # noqa: F401  (make_azure is a fixture)
    ACCOUNT,
    BUILD_ACTIONS,
    DEFINITION_WRITE,
    IMAGE_WRITE,
    IMAGES_RG,
    POOL_WRITE,
    VERSION_WRITE,
    alerts_of,
    built,
    families,
    image_id,
    make_azure,
    no_failed_invocations,
    pipeline_stage,
    pool_spec,
    prepared_disks,
    tags,
    version_id,
)

TAGS_WRITE = "Microsoft.Resources/tags/write"
AUTOPILOT_TAGS = {"autopilot.family": "", "autopilot.version": "", "autopilot.disk": "", "autopilot.diskCount": ""}
ALMA = "almalinux:almalinux-x86_64:9-gen2"  # a verified, supported Gen2 first-party image besides Ubuntu 24.04
JAMMY_GEN1 = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts"


def snapshot_id(name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/snapshots/{name}"


def untag(la: LocalAzure, resource_id: str) -> None:
    """``az tag update --operation delete``: remove the autopilot.* tags, keep the others."""
    la.tag_resource(resource_id, AUTOPILOT_TAGS, "Delete")


def retag(la: LocalAzure, resource_id: str, *, via: str = "tags") -> None:
    """What the README calls "re-tag one snapshot of the set": write its tags again, through the Tags API (Merge of the
    same tags, ``via="tags"``) or as a write of the snapshot itself (``az snapshot update``, ``via="snapshot"``)."""
    name = resource_id.rsplit("/", 1)[-1]
    current = la.operator.compute.snapshots.get(IMAGES_RG, name).tags or {}
    if via == "snapshot":
        la.operator.compute.snapshots.begin_update(IMAGES_RG, name, {"tags": dict(current)}).result()
        return
    la.tag_resource(resource_id, {k: v for k, v in current.items() if k.lower().startswith("autopilot.")}, "Merge")


def built_once_from(la: LocalAzure, version: str, snapshot_ids: list[str], *, family: str = "gpu", pools: int = 1,
                    node_agent: str | None = "batch.node.ubuntu 24.04", ignore: set[str] | None = None) -> None:
    """The version is built exactly once, its pools use it, and they were built from exactly these snapshots."""
    no_failed_invocations(la)
    assert pipeline_stage(la, family, version) == "done"
    assert built(la) == {IMAGE_WRITE: 1, DEFINITION_WRITE: 1, VERSION_WRITE: 1, POOL_WRITE: pools}
    assert len(alerts_of(la, "PoolsCreated")) == 1
    listed = [p for p in la.emulator.batch.list_pools(ACCOUNT) if p.id not in (ignore or set())]
    assert len(listed) == pools
    for pool in listed:
        metadata = pool.metadata
        assert normalize(pool.image_id or "") == normalize(version_id(family, version))
        assert {normalize(s)
                for s in metadata[pool_metadata.SNAPSHOT_IDS].split(",")} == {normalize(s) for s in snapshot_ids}
        if node_agent is not None:
            assert pool.spec.node_agent_sku_id == node_agent


def stored_candidates(la: LocalAzure, family: str, version: str) -> set[str]:
    record = la.context.state.table(SNAPSHOT_SETS).get(family, version)
    return set((record.data.get("candidateIds") or "").split(",")) - {""} if record else set()


def refusal_fix(la: LocalAzure, code: str) -> str:
    matching = [a["data"] for a in alerts_of(la, "ImageRefused") if code in a["data"].get("codes", [])]
    assert matching, [a["data"]["title"] for a in la.alerts()]
    return matching[-1]["fix"]


# --------------------------------------------------------------------------------------------
# Both ways of tagging
# --------------------------------------------------------------------------------------------


def test_tags_written_through_the_tags_api_start_the_build(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "api", [0])
    os_id = la.snapshot("api-os", disks["os"], {"owner": "render-team"})
    data_id = la.snapshot("api-data0", disks["0"])
    la.settle()
    assert not list(la.context.state.table(SNAPSHOT_SETS).query())

    # the portal's Tags blade / az tag update --operation merge
    la.tag_resource(os_id, tags("gpu", "1.0.0", "os", 2), "Merge")
    # The same write, delivered in the tags-resource form as well (the app accepts both shapes).
    event = [e for e in la.emulator.eventgrid.events("system") if e["data"]["operationName"] == TAGS_WRITE][-1]
    scoped = copy.deepcopy(event)
    scoped["subject"] = scoped["data"]["resourceUri"] = event["subject"] + "/providers/Microsoft.Resources/tags/default"
    scoped["id"] = "scoped-" + event["id"]
    la.host.publish("system", scoped)
    la.settle()
    assert stored_candidates(la, "gpu", "1.0.0") == {normalize(os_id)}
    la.tag_resource(data_id, tags("gpu", "1.0.0", "0", 2), "Replace")
    la.run(timedelta(minutes=20))

    built_once_from(la, "1.0.0", [os_id, data_id])
    assert la.operator.compute.snapshots.get(IMAGES_RG, "api-os").tags["owner"] == "render-team"  # Merge kept it


def test_other_resources_tag_writes_never_invoke_the_app(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disk = la.add_prepared_disk("plain-osdisk")
    la.settle()
    before = len(la.host.invocations)
    la.tag_resource(disk, {"owner": "x"}, "Merge")  # a disk: the subject filter keeps it out
    la.settle()
    assert len(la.host.invocations) == before
    assert [e for e in la.emulator.eventgrid.events("system") if e["data"]["operationName"] == TAGS_WRITE]


def test_untagging_moving_and_deleting_change_membership(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(), settings={"AUTOPILOT_SET_ASSEMBLY_TIMEOUT_MINUTES": "600"})
    disks = prepared_disks(la, "mv", [0, 1])
    os_id = la.snapshot("mv-os", disks["os"], tags("gpu", "2.0.0", "os", 3))
    d0 = la.snapshot("mv-data0", disks["0"], tags("gpu", "2.0.0", "0", 3))
    la.settle()
    assert stored_candidates(la, "gpu", "2.0.0") == {normalize(os_id), normalize(d0)}

    # Removing all tags (az tag delete --resource-id) arrives as a delete event: the snapshot leaves the set.
    la.tag_resource(d0, None, "DeleteAll")
    la.settle()
    assert stored_candidates(la, "gpu", "2.0.0") == {normalize(os_id)}
    # Re-tagged for another version, it joins that one; moved back, it returns.
    la.tag_resource(d0, tags("gpu", "2.1.0", "0", 2), "Replace")
    la.settle()
    assert stored_candidates(la, "gpu", "2.1.0") == {normalize(d0)}
    la.tag_resource(d0, tags("gpu", "2.0.0", "0", 3), "Replace")
    la.settle()
    assert stored_candidates(la, "gpu", "2.0.0") == {normalize(os_id), normalize(d0)}
    assert la.context.state.table(SNAPSHOT_SETS).get("gpu", "2.1.0") is None  # nothing claims it any more
    # A member deleted without its event reaching the app: the next sweep drops it, and says so.
    la.emulator.compute.delete_snapshot(SUBSCRIPTION_ID, IMAGES_RG, "mv-data0")  # no event
    la.run(timedelta(minutes=6))
    assert stored_candidates(la, "gpu", "2.0.0") == {normalize(os_id)}
    deleted = alerts_of(la, "ImageRefused")
    assert [a["data"]["codes"] for a in deleted] == [["SNAPSHOT_DELETED"]]
    assert "re-create the snapshot" in deleted[0]["data"]["fix"]
    # The alert's fix: re-create it and tag it again. With the last disk, the version is built once, from these three.
    d0 = la.snapshot("mv-data0", disks["0"], tags("gpu", "2.0.0", "0", 3))
    d1 = la.snapshot("mv-data1", disks["1"], tags("gpu", "2.0.0", "1", 3))
    la.run(timedelta(minutes=25))
    built_once_from(la, "2.0.0", [os_id, d0, d1])
    assert len(alerts_of(la, "ImageRefused")) == 1


def test_a_built_version_keeps_its_members_and_reports_later_changes(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    ids = la.snapshot_set("gpu", "3.0.0")
    la.run(timedelta(minutes=20))
    built_once_from(la, "3.0.0", [ids["os"]])

    la.tag_resource(ids["os"], tags("gpu", "3.1.0", "os", 1), "Replace")  # moved to another version after the build
    la.run(timedelta(minutes=6))
    changed = alerts_of(la, "SnapshotSetChanged")
    assert len(changed) == 1 and normalize(changed[0]["subject"]) == normalize(ids["os"])
    assert "new autopilot.version" in changed[0]["data"]["fix"]
    assert stored_candidates(la, "gpu", "3.0.0") == {normalize(ids["os"])}  # the built set is unchanged
    # It now also claims 3.1.0, which is built from it (a new version from the same disk, as the person asked).
    la.run(timedelta(minutes=25))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "3.1.0") == "done"
    assert built(la)[VERSION_WRITE] == 2 and pipeline_stage(la, "gpu", "3.0.0") == "done"


# --------------------------------------------------------------------------------------------
# Snapshots that are not ready yet, and the copy fix for SNAPSHOT_REGION
# --------------------------------------------------------------------------------------------


def test_snapshot_region_fix_copy_start_and_move_the_tags(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.compute.copy_start_duration = timedelta(minutes=15)
    disks = prepared_disks(la, "ne", [], location="northeurope")
    original = la.snapshot("ne-os", disks["os"], tags("gpu", "4.0.0", "os", 1), location="northeurope",
                           incremental=True)
    la.run(timedelta(minutes=6))
    fix = refusal_fix(la, "SNAPSHOT_REGION")
    assert "--copy-start" in fix and "move the autopilot.* tags to the copies" in fix

    # The fix, as written: copy to westeurope with CopyStart, tag the copy, remove the tags from the original.
    copy_id = la.snapshot_copy("we-os", original, location="westeurope", tags=tags("gpu", "4.0.0", "os", 1))
    la.settle()
    clash = [a["data"] for a in alerts_of(la, "ImageRefused") if a["data"]["title"].startswith("Conflicting")]
    assert len(clash) == 1 and "remove the autopilot.* tags from the wrong snapshot" in clash[0]["fix"]
    untag(la, original)
    la.settle()
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)  # the copy is at a few percent: not ready
    assert normalize(copy_id) in stored_candidates(la, "gpu", "4.0.0")
    la.run(timedelta(minutes=30))  # the sweep sees the copy reach 100% and builds from it

    built_once_from(la, "4.0.0", [copy_id])


def test_a_snapshot_still_creating_is_remembered_and_rechecked(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.compute.copy_start_duration = timedelta(minutes=8)
    disks = prepared_disks(la, "cp", [0])
    source = la.snapshot("cp-src", disks["os"], incremental=True)
    copy_id = la.snapshot_copy("cp-os", source, location="westeurope", tags=tags("gpu", "5.0.0", "os", 2))
    data_id = la.snapshot("cp-data0", disks["0"], tags("gpu", "5.0.0", "0", 2))
    la.settle()
    assert pipeline_stage(la, "gpu", "5.0.0") is None and built(la, attempts=True)[IMAGE_WRITE] == 0
    la.run(timedelta(minutes=30))  # no event says the copy finished; the sweep looks again
    built_once_from(la, "5.0.0", [copy_id, data_id])


def test_a_long_copy_past_the_timeout_alerts_once_and_still_builds(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(), settings={"AUTOPILOT_SET_ASSEMBLY_TIMEOUT_MINUTES": "10"})
    la.emulator.compute.copy_start_duration = timedelta(minutes=45)
    disk = la.add_prepared_disk("slow-osdisk")
    source = la.snapshot("slow-src", disk, incremental=True)
    copy_id = la.snapshot_copy("slow-os", source, location="westeurope", tags=tags("gpu", "5.1.0", "os", 1))
    la.run(timedelta(minutes=35))  # several sweeps past the timeout while the copy progresses
    incomplete = alerts_of(la, "SnapshotSetIncomplete")
    assert len(incomplete) == 1, [a["data"]["missing"] for a in incomplete]
    assert ("still copying" in incomplete[0]["data"]["missing"]
            and "joins the set by itself" in incomplete[0]["data"]["fix"])
    assert built(la, attempts=True)[IMAGE_WRITE] == 0
    la.run(timedelta(minutes=40))  # the copy completes: the next sweep builds, no one had to act
    built_once_from(la, "5.1.0", [copy_id])
    assert len(alerts_of(la, "SnapshotSetIncomplete")) == 1


# --------------------------------------------------------------------------------------------
# Conflicts, each fixed as its alert says
# --------------------------------------------------------------------------------------------


def test_lun_clash_with_the_wrong_snapshot_first_builds_from_the_right_one(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "clash", [0, 1])
    wrong_disk = la.add_prepared_disk("clash-wrong", data_disk_gb=32)
    os_id = la.snapshot("clash-os", disks["os"], tags("gpu", "6.0.0", "os", 3))
    wrong = la.snapshot("clash-wrong0", wrong_disk, tags("gpu", "6.0.0", "0", 3))  # the wrong one arrives first
    la.settle()
    right = la.snapshot("clash-data0", disks["0"], tags("gpu", "6.0.0", "0", 3))
    la.settle()
    conflicts = alerts_of(la, "ImageRefused")
    assert len(conflicts) == 1 and conflicts[0]["data"]["codes"] == ["DISK_CLAIMED_TWICE"]
    assert (normalize(wrong) in normalize(conflicts[0]["data"]["diagnosis"])
            and normalize(right) in normalize(conflicts[0]["data"]["diagnosis"]))
    assert "remove the autopilot.* tags from the wrong snapshot" in conflicts[0]["data"]["fix"]
    d1 = la.snapshot("clash-data1", disks["1"], tags("gpu", "6.0.0", "1", 3))  # complete, but blocked by the clash
    la.run(timedelta(minutes=6))
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)
    # A third claimant is a changed situation: a new alert, not swallowed by the first one's de-duplication.
    third_disk = la.add_prepared_disk("clash-third", data_disk_gb=32)
    third = la.snapshot("clash-third0", third_disk, tags("gpu", "6.0.0", "0", 3))
    la.settle()
    assert len(alerts_of(la, "ImageRefused")) == 2
    la.operator.compute.snapshots.begin_delete(IMAGES_RG, "clash-third0").result()
    del third

    untag(la, wrong)  # the fix: remove the autopilot.* tags from the wrong one
    la.run(timedelta(minutes=25))

    built_once_from(la, "6.0.0", [os_id, right, d1])
    assert not la.locks_on(wrong)  # the wrong disk never got the app's lock


def test_disk_count_disagreement_fixed_by_correcting_the_tag(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "cnt", [0])
    os_id = la.snapshot("cnt-os", disks["os"], tags("gpu", "7.0.0", "os", 2))
    d0 = la.snapshot("cnt-data0", disks["0"], tags("gpu", "7.0.0", "0", 3))
    la.run(timedelta(minutes=6))
    conflict = alerts_of(la, "ImageRefused")
    assert len(conflict) == 1 and conflict[0]["data"]["codes"] == ["DISK_COUNT_MISMATCH"]
    assert "correct the autopilot.diskCount tag" in conflict[0]["data"]["fix"]
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)

    la.tag_resource(d0, {"autopilot.diskCount": "2"}, "Merge")
    la.run(timedelta(minutes=25))
    built_once_from(la, "7.0.0", [os_id, d0])


def test_too_many_disks_fixed_by_untagging_the_stray_one(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disks = prepared_disks(la, "many", [0, 5])
    d5 = la.snapshot("many-data5", disks["5"], tags("gpu", "7.1.0", "5", 2))
    d0 = la.snapshot("many-data0", disks["0"], tags("gpu", "7.1.0", "0", 2))
    la.settle()
    conflict = alerts_of(la, "ImageRefused")
    assert len(conflict) == 1 and conflict[0]["data"]["codes"] == ["TOO_MANY_DISKS"]
    assert "remove the autopilot.* tags from the snapshot that does not belong" in conflict[0]["data"]["fix"]
    os_id = la.snapshot("many-os", disks["os"], tags("gpu", "7.1.0", "os", 2))
    la.run(timedelta(minutes=6))
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)

    untag(la, d5)
    la.run(timedelta(minutes=25))
    built_once_from(la, "7.1.0", [os_id, d0])


def test_unknown_family_fixed_by_adding_the_family(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families("cpu"))
    ids = la.snapshot_set("gpu", "8.0.0")
    la.run(timedelta(minutes=6))
    refused = alerts_of(la, "ImageRefused")
    assert len(refused) == 1 and "Unknown image family" in refused[0]["data"]["title"]
    assert "add the family to the families configuration" in refused[0]["data"]["fix"]
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)

    doc = families("cpu")
    doc["families"].update(families("gpu")["families"])
    la.set_families(doc)  # the operator adds the family; nothing else
    la.run(timedelta(minutes=30))
    built_once_from(la, "8.0.0", [ids["os"]])


def test_unknown_family_fixed_by_correcting_the_tag(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disk = la.add_prepared_disk("typo-osdisk")
    os_id = la.snapshot("typo-os", disk, tags("gpuu", "8.1.0", "os", 1))
    la.settle()
    assert "Unknown image family" in alerts_of(la, "ImageRefused")[0]["data"]["title"]
    la.tag_resource(os_id, {"autopilot.family": "gpu"}, "Merge")
    la.run(timedelta(minutes=25))
    built_once_from(la, "8.1.0", [os_id])
    assert la.context.state.table(SNAPSHOT_SETS).get("gpuu", "8.1.0") is None


def test_bad_tags_fixed_by_correcting_the_tag(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    disk = la.add_prepared_disk("bad-osdisk")
    os_id = la.snapshot("bad-os", disk, {**tags("gpu", "9.0.0", "os", 1), "autopilot.version": "9.0"})
    la.settle()
    refused = alerts_of(la, "ImageRefused")
    assert len(refused) == 1 and "autopilot.version" in refused[0]["data"]["title"]
    fix = refused[0]["data"]["fix"]
    assert "autopilot.version=1.4.0" in fix
    la.tag_resource(os_id, {"autopilot.version": "9.0.0"}, "Merge")
    la.run(timedelta(minutes=25))
    built_once_from(la, "9.0.0", [os_id])


# --------------------------------------------------------------------------------------------
# Every refusal code in the README's table: the fix, followed, builds the version exactly once
# --------------------------------------------------------------------------------------------

OTHER_SUB = "22222222-3333-4444-8555-666666666666"


def _with_gallery(doc: dict[str, Any], **gallery: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["families"]["gpu"]["gallery"].update(gallery)
    return out


def _rebuild_vm(la: LocalAzure, ids: dict[str, str], image: str, version: str) -> dict[str, str]:
    """The fix "rebuild the VM from a supported image, snapshot it again and move the tags": returns the new ids."""
    disk = la.add_prepared_disk("rebuilt-osdisk", image=image)
    new_os = la.snapshot("rebuilt-os", disk)
    untag(la, ids["os"])
    la.tag_resource(new_os, tags("gpu", version, "os", 1), "Merge")
    return {"os": new_os}


def _foreign_account(la: LocalAzure) -> None:
    la.emulator.resources.put_group(OTHER_SUB, "batch-rg", "westeurope")
    la.emulator.batch.create_account(OTHER_SUB, "batch-rg", "renderother", "westeurope")


def _unverified(la: LocalAzure) -> None:
    la.emulator.batch.remove_supported_image("canonical", "ubuntu-24_04-lts", "server")
    la.emulator.batch.add_supported_image("canonical", "ubuntu-24_04-lts", "server", "batch.node.ubuntu 24.04",
                                          verified=False)


def _end_of_life(la: LocalAzure) -> None:
    la.emulator.batch.remove_supported_image("canonical", "ubuntu-24_04-lts", "server")
    la.emulator.batch.add_supported_image("canonical", "ubuntu-24_04-lts", "server", "batch.node.ubuntu 24.04",
                                          end_of_life="2020-01-01T00:00:00Z")


def _gallery_based_vm(la: LocalAzure) -> dict[str, str]:
    """A VM built from a gallery image (someone's earlier custom image), not from the Marketplace."""
    compute = la.emulator.compute
    base_disk = la.add_prepared_disk("base-osdisk")
    base = compute.create_snapshot(SUBSCRIPTION_ID, IMAGES_RG, "base-os", source_resource_id=base_disk)
    compute.create_gallery_image(SUBSCRIPTION_ID, IMAGES_RG, "autopilotGallery", "team-base", location="westeurope",
                                 hyper_v_generation="V2")
    version = compute.create_gallery_image_version(SUBSCRIPTION_ID, IMAGES_RG, "autopilotGallery", "team-base", "1.0.0",
                                                   os_snapshot_id=base.id, instant=True)
    disk, _ = compute.put_disk(SUBSCRIPTION_ID, IMAGES_RG, "custom-osdisk", {"location": "westeurope", "properties": {
        "creationData": {"createOption": "FromImage", "galleryImageReference": {"id": version.id}}}})
    return {"os": la.snapshot("custom-os", disk.id, tags("gpu", "10.0.0", "os", 1))}


def _windows_family() -> dict[str, Any]:
    return _with_gallery(families(), osType="Windows")


# code -> (families at first, preparation, snapshot image, the fix (returns the ids the version must be built from),
#          words the fix text must contain, node agent the pools end with)
CASES: dict[str, tuple[Any, ...]] = {
    "SNAPSHOT_SUBSCRIPTION": (
        families(pools=[pool_spec(), pool_spec(account=batch_account_id(OTHER_SUB, "batch-rg", "renderother"),
                                               pool_id="{family}-{version}-o")]),
        _foreign_account, None,
        lambda la, ids, v: (la.set_families(families()), retag(la, ids["os"]), ids)[-1],
        "remove this account from the family's pools", "batch.node.ubuntu 24.04"),
    "GALLERY_SUBSCRIPTION": (
        _with_gallery(families(), subscription=OTHER_SUB), None, None,
        lambda la, ids, v: (la.set_families(families()), retag(la, ids["os"]), ids)[-1],
        "remove gallery.subscription", "batch.node.ubuntu 24.04"),
    "BASE_IMAGE_NOT_SUPPORTED": (
        families(), lambda la: la.emulator.batch.remove_supported_image("canonical", "ubuntu-24_04-lts", "server"),
        None,
        lambda la, ids, v: _rebuild_vm(la, ids, ALMA, v), "move the autopilot.* tags", "batch.node.el 9"),
    "BASE_IMAGE_UNKNOWN": (
        families(generation="V1"), None, "empty",
        lambda la, ids, v: (la.set_families(families(generation="V1",
                                                     pools=[pool_spec(nodeAgentSkuId="batch.node.ubuntu 24.04")])),
                            retag(la, ids["os"]), ids)[-1],
        "set nodeAgentSkuId on the family's pools", "batch.node.ubuntu 24.04"),
    "NOT_MARKETPLACE_IMAGE": (
        families(), None, "gallery", lambda la, ids, v: _rebuild_vm(la, ids, ALMA, v), "move the autopilot.* tags",
        "batch.node.el 9"),
    "THIRD_PARTY_PURCHASE_PLAN": (
        families(generation="V1"), None, "ni:ni-ubuntu:ni-ubuntu-2204",
        lambda la, ids, v: _rebuild_vm(la, ids, JAMMY_GEN1, v), "move the autopilot.* tags", "batch.node.ubuntu 22.04"),
    "UNVERIFIED_IMAGE": (
        families(), _unverified, None, lambda la, ids, v: _rebuild_vm(la, ids, ALMA, v), "move the autopilot.* tags",
        "batch.node.el 9"),
    "IMAGE_END_OF_LIFE": (
        families(), _end_of_life, None, lambda la, ids, v: _rebuild_vm(la, ids, ALMA, v), "move the autopilot.* tags",
        "batch.node.el 9"),
    "OS_TYPE_MISMATCH": (
        _windows_family(), None, None,
        lambda la, ids, v: (la.set_families(families()), retag(la, ids["os"], via="snapshot"), ids)[-1],
        "correct gallery.osType", "batch.node.ubuntu 24.04"),
    "HYPERV_GENERATION_MISMATCH": (
        families(generation="V1"), None, None,
        lambda la, ids, v: (la.set_families(families(generation="V2")), retag(la, ids["os"]), ids)[-1],
        "set gallery.hyperVGeneration to V2", "batch.node.ubuntu 24.04"),
    "GEN2_IMAGE_ON_GEN1_SIZE": (
        families(pools=[pool_spec(vmSize="Standard_A2_v2")]), None, None,
        lambda la, ids, v: (la.set_families(families()), retag(la, ids["os"]), ids)[-1],
        "choose a VM size that supports generation 2", "batch.node.ubuntu 24.04"),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_every_refusal_fix_followed_builds_the_version_once(make_azure: Callable[..., LocalAzure], code: str) -> None:
    doc, prepare, image, fix, words, agent = CASES[code]
    la = make_azure(doc)
    version = "10.0.0"
    if callable(prepare):
        prepare(la)
    if image == "gallery":
        ids = _gallery_based_vm(la)
    elif image == "empty":  # an OS snapshot whose source disk has no imageReference: the base image cannot be read
        disk = la.add_prepared_disk("noref-osdisk", data_disk_gb=30)
        ids = {"os": la.snapshot("noref-os", disk, tags("gpu", version, "os", 1))}
    elif image is not None:
        ids = la.snapshot_set("gpu", version, image=image)
    else:
        ids = la.snapshot_set("gpu", version)
    la.run(timedelta(minutes=12))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", version) == "refused"
    text = refusal_fix(la, code)
    assert words in text, text
    assert built(la, attempts=True)[IMAGE_WRITE] == 0

    la.run(timedelta(minutes=3))
    right = fix(la, ids, version)
    la.run(timedelta(minutes=30))

    built_once_from(la, version, list(right.values()), node_agent=agent)


@pytest.mark.parametrize("failing", ["image", "version"])
def test_a_failed_build_retried_by_re_tagging_as_the_alert_says(
        make_azure: Callable[..., LocalAzure], failing: str) -> None:
    la = make_azure(families())
    la.emulator.compute.fail_next_operation(
        image_id("gpu", "12.0.0") if failing == "image" else version_id("gpu", "12.0.0"))
    ids = la.snapshot_set("gpu", "12.0.0")
    la.run(timedelta(minutes=20))
    no_failed_invocations(la)
    failed = alerts_of(la, "ImageBuildFailed")
    assert len(failed) == 1 and "re-tag one snapshot of the set" in failed[0]["data"]["fix"]
    assert pipeline_stage(la, "gpu", "12.0.0") == "failed"
    la.run(timedelta(minutes=10))
    assert pipeline_stage(la, "gpu", "12.0.0") == "failed"  # the sweep alone does not retry a failure

    retag(la, ids["os"])  # the fix: the cause was transient, so re-tag one snapshot of the set
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "12.0.0") == "done"
    assert len(alerts_of(la, "PoolsCreated")) == 1 and len(alerts_of(la, "ImageBuildFailed")) == 1
    assert built(la)[POOL_WRITE] == 1 and built(la)[VERSION_WRITE] == (1 if failing == "image" else 2)
    assert [p.id for p in la.emulator.batch.list_pools(ACCOUNT)] == ["gpu-12-0-0"]


def test_the_same_refusal_again_is_not_repeated_within_the_hour_but_a_new_one_is_sent(
        make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families(generation="V1"))
    ids = la.snapshot_set("gpu", "11.0.0")
    la.run(timedelta(minutes=6))
    assert len(alerts_of(la, "ImageRefused")) == 1
    retag(la, ids["os"])  # re-tagged without a fix: the checks run again, the same alert is not repeated
    la.run(timedelta(minutes=6))
    assert len(alerts_of(la, "ImageRefused")) == 1
    la.run(timedelta(minutes=60))
    retag(la, ids["os"])  # an hour later it may be said again
    la.run(timedelta(minutes=3))
    assert len(alerts_of(la, "ImageRefused")) == 2
    # A different situation (the generation fixed, a Gen1-only VM size chosen) is a new alert at once.
    la.set_families(families(pools=[pool_spec(vmSize="Standard_A2_v2")]))
    retag(la, ids["os"])
    la.run(timedelta(minutes=3))
    codes = [a["data"]["codes"] for a in alerts_of(la, "ImageRefused")]
    assert set(codes[-1]) == {"GEN2_IMAGE_ON_GEN1_SIZE"} and len(codes) == 3
    assert built(la, attempts=True) == dict.fromkeys(BUILD_ACTIONS, 0)



def test_a_gallery_in_another_subscription_is_refused_by_default_and_built_there_once_the_setting_allows_it(
        make_azure: Callable[..., LocalAzure]) -> None:
    """GALLERY_SUBSCRIPTION's other fix: AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY=true. The version is built in the
    gallery's subscription through a Compute client bound to it, the pool uses it, and the guard locks it there."""
    from shared.pipeline.naming import gallery_image_version_id

    la = make_azure(_with_gallery(families(), subscription=OTHER_SUB))
    la.emulator.resources.put_group(OTHER_SUB, IMAGES_RG, "westeurope")
    la.emulator.compute.create_gallery(OTHER_SUB, IMAGES_RG, "autopilotGallery", location="westeurope")
    ids = la.snapshot_set("gpu", "10.0.0")
    la.run(timedelta(minutes=12))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "10.0.0") == "refused"
    assert "AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY=true" in refusal_fix(la, "GALLERY_SUBSCRIPTION")

    la.reconfigure(AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY="true")
    retag(la, ids["os"])
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert pipeline_stage(la, "gpu", "10.0.0") == "done"
    theirs = gallery_image_version_id(OTHER_SUB, IMAGES_RG, "autopilotGallery", "gpu-def", "10.0.0")
    [pool] = la.emulator.batch.list_pools(ACCOUNT)
    assert normalize(pool.image_id or "") == normalize(theirs)
    assert la.locks_on(theirs)  # the guard's lock, put through a lock client bound to the gallery's subscription
    # The guard lists the locks of the gallery's subscription too: once no pool uses the version, its lock goes.
    la.emulator.batch.delete_pool(ACCOUNT, pool.id)
    la.run(timedelta(minutes=16))
    no_failed_invocations(la)
    assert la.locks_on(theirs) == []
