"""Microsoft.Compute: managed disks, snapshots, managed images and the Azure Compute Gallery.

State and behaviour only (HTTP lives in ``responses.py``). Shapes and rules follow the REST specs
(ComputeRP 2025-04-01 images, DiskRP 2025-01-02 disks/snapshots, GalleryRP 2025-03-03) and what
azure-mgmt-compute 39 sends (images 2026-04-01, disks/snapshots 2026-03-02, galleries 2026-03-03):

* disks and snapshots are created synchronously (200, provisioningState ``Succeeded``);
* images and gallery image versions are long-running operations: accepted as ``Creating`` and
  finished by :attr:`Emulator.scheduler` after a virtual duration, with an operation-status
  resource (``.../locations/{loc}/operations/{id}``) and the Event Grid write event raised at the end;
* galleries and gallery image definitions finish at once by default (configurable durations).

The backend is composed of one mixin per resource (``disks``, ``images``, ``galleries``, ``gallery_versions``,
``marketplace``; shared plumbing in ``base`` and request validation in ``params``).

Every public method used by the HTTP layer is also the one scenarios call to set things up, so
there is one code path per behaviour (see the ``create_*`` convenience wrappers at the bottom).
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.compute.base import ComputeCore, Operation
from emulator.compute.disks import Disk, DisksMixin, Snapshot
from emulator.compute.galleries import GalleriesMixin, Gallery, GalleryImage
from emulator.compute.gallery_versions import GalleryImageVersion, GalleryVersionsMixin, TargetRegion
from emulator.compute.images import Image, ImagesMixin
from emulator.compute.marketplace import DEFAULT_MARKETPLACE, MarketplaceImage, MarketplaceMixin, marketplace_image_id
from emulator.compute.params import iso, normalize_region
from emulator.exceptions import AzureError
from emulator.ids import key

if TYPE_CHECKING:
    from emulator.azure import Emulator

__all__ = [
    "ComputeBackend", "Disk", "Gallery", "GalleryImage", "GalleryImageVersion", "Image", "MarketplaceImage",
    "Operation",
    "Snapshot", "TargetRegion", "marketplace_image_id", "normalize_region",
]


class ComputeBackend(DisksMixin, ImagesMixin, GalleriesMixin, GalleryVersionsMixin, MarketplaceMixin, ComputeCore):
    """The Compute resource provider of one emulated tenant."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._lock = threading.RLock()
        self._rng = random.Random(f"compute-{getattr(emulator, 'seed', 0)}")
        self.disks: dict[str, Disk] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.images: dict[str, Image] = {}
        self.galleries: dict[str, Gallery] = {}
        self.gallery_images: dict[str, GalleryImage] = {}
        self.gallery_image_versions: dict[str, GalleryImageVersion] = {}
        self.operations: dict[str, Operation] = {}
        self.marketplace: dict[tuple[str, str, str], MarketplaceImage] = {}
        for entry in DEFAULT_MARKETPLACE:
            self.marketplace[entry.catalogue_key()] = entry
        # Virtual durations of the long-running operations (set them in scenarios and tests).
        self.image_create_duration = timedelta(minutes=3)
        self.gallery_create_duration = timedelta(0)
        self.gallery_image_create_duration = timedelta(0)
        self.version_base_duration = timedelta(minutes=5)
        self.version_per_extra_replica = timedelta(minutes=1)
        self.version_per_remote_region = timedelta(minutes=3)
        # Virtual time a CopyStart snapshot copy takes to reach completionPercent 100.
        self.copy_start_duration = timedelta(minutes=12)
        # Real seconds an SDK poller waits between polls (the Retry-After header of LRO answers).
        self.retry_after_seconds = 2
        # resource key -> (code, message): the next operation on that resource fails this way.
        self._forced_failures: dict[str, tuple[str, str]] = {}
        resources = getattr(emulator, "resources", None)
        if resources is not None:
            resources.group_delete_hooks.append(self._drop_group)

    # ---------------------------------------------------------------------------------------
    # Cross-service interface (architecture.md): what Batch asks about a pool's image
    def _latest_version(self, definition_key: str, region: str | None) -> GalleryImageVersion | None:
        candidates = []
        for v in self.gallery_image_versions.values():
            if v.definition_key != definition_key or v.exclude_from_latest:
                continue
            if region is not None:
                target = next((t for t in v.target_regions if t.region == region), None)
                if (target is None or target.exclude_from_latest or region not in v.ready_regions
                    or v.provisioning_state == "Failed"):
                    continue
            elif v.provisioning_state != "Succeeded":
                continue
            candidates.append(v)
        return max(candidates, key=lambda v: v.version_tuple, default=None)

    def image_available(self, image_id: str, region: str) -> bool:
        """True when a pool in ``region`` can boot ``image_id`` now: a managed image that is Succeeded, or a gallery
        image version (a definition id means its latest version not excluded from latest) with a complete replica in
        ``region``."""
        k, wanted = key(image_id), normalize_region(region)
        with self._lock:
            image = self.images.get(k)
            if image is not None:
                return image.provisioning_state == "Succeeded"
            version = self.gallery_image_versions.get(k)
            if version is not None:
                return version.provisioning_state != "Failed" and wanted in version.ready_regions
            if k in self.gallery_images:
                return self._latest_version(k, wanted) is not None
            return False

    def image_hyperv_generation(self, image_id: str) -> str | None:
        """"V1" | "V2" for a managed image, gallery definition/version or catalogue platform image; None if unknown."""
        k = key(image_id)
        with self._lock:
            if k in self.images:
                return self.images[k].hyper_v_generation
            if k in self.gallery_image_versions:
                definition = self.gallery_images.get(self.gallery_image_versions[k].definition_key)
                return definition.hyper_v_generation if definition else None
            if k in self.gallery_images:
                return self.gallery_images[k].hyper_v_generation
        try:
            return self.marketplace_image(image_id)[0].hyper_v_generation
        except AzureError:
            return None

    # ---------------------------------------------------------------------------------------
    # Scenario set-up: keyword wrappers over the same model code the HTTP layer calls
    def create_disk(self, subscription_id: str, resource_group: str, name: str, *, location: str,
                    image_reference_id: str | None = None,
                    disk_size_gb: int | None = None, source_resource_id: str | None = None,
                    tags: dict[str, str] | None = None) -> Disk:
        """A disk from a platform image id (see :func:`marketplace_image_id`), a copy of a disk/snapshot, or empty."""
        creation: dict[str, Any]
        if image_reference_id:
            creation = {"createOption": "FromImage", "imageReference": {"id": image_reference_id}}
        elif source_resource_id:
            creation = {"createOption": "Copy", "sourceResourceId": source_resource_id}
        else:
            creation = {"createOption": "Empty"}
        props: dict[str, Any] = {"creationData": creation}
        if disk_size_gb is not None:
            props["diskSizeGB"] = disk_size_gb
        return self.put_disk(subscription_id, resource_group, name,
                             {"location": location, "tags": tags or {}, "properties": props})[0]

    def create_snapshot(self, subscription_id: str, resource_group: str, name: str, *, source_resource_id: str,
                        location: str | None = None, tags: dict[str, str] | None = None) -> Snapshot:
        """A full snapshot copying a disk (or snapshot); location defaults to the source's."""
        location = location or self._disk_source(source_resource_id).location
        body = {"location": location, "tags": tags or {},
                "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source_resource_id}}}
        return self.put_snapshot(subscription_id, resource_group, name, body)[0]

    def create_image(self, subscription_id: str, resource_group: str, name: str, *, os_snapshot_id: str,
                     data_snapshot_ids: dict[int, str] | None = None, os_state: str = "Generalized",
                     os_type: str | None = None,
                     hyper_v_generation: str | None = None, location: str | None = None,
                     instant: bool = False) -> Image:
        """A managed image from an OS snapshot (+ data snapshots by LUN). osType defaults to the snapshot's;
        hyperVGeneration is sent only when given (Azure then defaults to V1). ``instant`` finishes the operation now,
        without an event."""
        snap = self._disk_source(os_snapshot_id)
        os_disk = {"osType": os_type or snap.os_type or "Linux", "osState": os_state,
                   "snapshot": {"id": os_snapshot_id}}
        props: dict[str, Any] = {"storageProfile": {"osDisk": os_disk, "dataDisks": [
            {"lun": lun, "snapshot": {"id": sid}} for lun, sid in sorted((data_snapshot_ids or {}).items())]}}
        if hyper_v_generation:
            props["hyperVGeneration"] = hyper_v_generation
        body = {"location": location or snap.location, "properties": props}
        return self.put_image(subscription_id, resource_group, name, body,
                              duration=timedelta(0) if instant else None)[0]

    def create_gallery(self, subscription_id: str, resource_group: str, name: str, *, location: str) -> Gallery:
        return self.put_gallery(subscription_id, resource_group, name, {"location": location})[0]

    def create_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str, *,
                             location: str | None = None,
                             os_type: str = "Linux", os_state: str = "Generalized", hyper_v_generation: str = "V1",
                             publisher: str = "autopilot", offer: str = "batch",
                             sku: str | None = None) -> GalleryImage:
        location = location or self.get_gallery(subscription_id, resource_group, gallery).location
        body = {"location": location, "properties": {"osType": os_type, "osState": os_state,
                                                     "hyperVGeneration": hyper_v_generation,
                                                     "identifier": {"publisher": publisher, "offer": offer,
                                                                    "sku": sku or name}}}
        return self.put_gallery_image(subscription_id, resource_group, gallery, name, body)[0]

    def create_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str,
                                     name: str, *,
                                     source_image_id: str | None = None, os_snapshot_id: str | None = None,
                                     data_snapshot_ids: dict[int, str] | None = None,
                                     target_regions: dict[str, int] | None = None,
                                     block_deletion_before_end_of_life: bool = False,
                                     end_of_life: datetime | None = None,
                                     exclude_from_latest: bool = False, instant: bool = False) -> GalleryImageVersion:
        """A version from a managed image or from snapshots; ``target_regions`` maps region -> replica count.
        ``instant`` replicates now (no event); otherwise the scheduler finishes it as for an HTTP PUT."""
        definition = self.get_gallery_image(subscription_id, resource_group, gallery, image)
        if source_image_id:
            storage: dict[str, Any] = {"source": {"id": source_image_id}}
        elif os_snapshot_id:
            storage = {"osDiskImage": {"source": {"id": os_snapshot_id}},
                       "dataDiskImages": [{"lun": lun, "source": {"id": sid}}
                                          for lun, sid in sorted((data_snapshot_ids or {}).items())]}
        else:
            raise ValueError("give source_image_id or os_snapshot_id")
        publishing: dict[str, Any] = {"excludeFromLatest": exclude_from_latest,
                                      "targetRegions": [{"name": r, "regionalReplicaCount": n}
                                                        for r, n in (target_regions
                                                                     or {definition.location: 1}).items()]}
        if end_of_life is not None:
            publishing["endOfLifeDate"] = iso(end_of_life)
        body = {"location": definition.location, "properties": {
            "publishingProfile": publishing, "storageProfile": storage,
            "safetyProfile": {"blockDeletionBeforeEndOfLife": block_deletion_before_end_of_life}}}
        return self.put_gallery_image_version(subscription_id, resource_group, gallery, image, name, body,
                                              duration=timedelta(0) if instant else None)[0]
