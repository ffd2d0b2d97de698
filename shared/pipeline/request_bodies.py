"""The request bodies the pipeline sends to Compute: the managed image and the gallery image version, with the app's
ownership tags and the replicas each region needs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.config.families import FamilyConfig
from shared.core import ownership
from shared.core.clock import iso
from shared.core.context import AppContext
from shared.pipeline import image_rules
from shared.pipeline.snapshot_sets import SnapshotSet
from shared.resources import batch_accounts

GALLERY_VERSION_LIFETIME = timedelta(days=180)  # the 2026-03-03 API's default end of life: six months


def ownership_tags(snapshot_set: SnapshotSet, sources: Any = None) -> dict[str, str]:
    """The app's ownership tags (shared/core/ownership.py): the app, the set's key and what it is built from."""
    return ownership.app_tags(snapshot_set.key.family, snapshot_set.key.version,
                              snapshot_set.snapshot_ids if sources is None else sources)


def version_sources(snapshot_set: SnapshotSet, image_id: str | None) -> list[str]:
    """What the gallery version is built from: the intermediate managed image, or the snapshots themselves."""
    return [image_id] if image_id is not None else list(snapshot_set.snapshot_ids)


def image_body(family: FamilyConfig, snapshot_set: SnapshotSet) -> dict[str, Any]:
    os_member = snapshot_set.os_member
    assert os_member is not None  # validated: the set has its OS disk
    return {
        "location": os_member.region,
        "tags": ownership_tags(snapshot_set),
        "properties": {
            # Match the snapshot's generation: a mismatch makes every allocation fail later.
            "hyperVGeneration": os_member.hyper_v_generation or family.gallery.hyper_v_generation,
            "storageProfile": {
                "osDisk": {"osType": family.gallery.os_type, "osState": "Generalized",
                           "snapshot": {"id": os_member.snapshot_id}},
                "dataDisks": [{"lun": m.lun, "snapshot": {"id": m.snapshot_id}} for m in snapshot_set.data_members],
                "zoneResilient": False,
            },
        },
    }


def target_regions(context: AppContext, family: FamilyConfig) -> list[tuple[str, int]]:
    """(region, replicas) for the version: the gallery's own region, and every region with a target Batch account, each
    with one replica per ``nodesPerReplica`` of the pools there (Batch's gallery doc: a gallery image can be used from
    another region once it has replicas in the Batch account's region; at least one replica per 600 VMs, the app plans
    one per 300)."""
    nodes: dict[str, int] = {image_rules.normalize_region(family.gallery.location): 0}
    for spec in family.pools:
        region = image_rules.normalize_region(batch_accounts.get_account(context.clients, spec.account).location
                                              or family.gallery.location)
        nodes[region] = nodes.get(region, 0) + spec.peak_dedicated + spec.peak_spot
    return [(region, image_rules.replica_count(count, family.replicas.nodes_per_replica, family.replicas.minimum))
            for region, count in nodes.items()]


def gallery_version_body(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet,
                         image_id: str | None) -> dict[str, Any]:
    regions = target_regions(context, family)
    replicas = regions[0][1]  # the gallery's own region (the default for regions without a count)
    if image_id is not None:
        storage: dict[str, Any] = {"source": {"id": image_id}}
    else:
        os_member = snapshot_set.os_member
        assert os_member is not None
        storage = {
            "osDiskImage": {"source": {"id": os_member.snapshot_id}, "hostCaching": "ReadOnly"},
            "dataDiskImages": [{"lun": m.lun, "source": {"id": m.snapshot_id}, "hostCaching": "ReadOnly"}
                               for m in snapshot_set.data_members],
        }
    end_of_life = context.clock.now() + GALLERY_VERSION_LIFETIME
    return {
        "location": family.gallery.location,
        "tags": ownership_tags(snapshot_set, version_sources(snapshot_set, image_id)),
        "properties": {
            "publishingProfile": {
                # Plan one replica per 300 VMs (Batch's 2026 guidance for gallery images).
                "targetRegions": [{"name": family.gallery.location if i == 0 else region, "regionalReplicaCount": count,
                                   "storageAccountType": family.replicas.storage_account_type}
                                  for i, (region, count) in enumerate(regions)],
                "replicaCount": replicas,
                "excludeFromLatest": False,
                "endOfLifeDate": iso(end_of_life),
            },
            "storageProfile": storage,
            # Deletion protection where the API offers it; the guard's lock covers the rest.
            "safetyProfile": {"allowDeletionOfReplicatedLocations": False, "blockDeletionBeforeEndOfLife": True},
        },
    }
