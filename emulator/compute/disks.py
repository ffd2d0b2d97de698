"""Microsoft.Compute: managed disks and snapshots (DiskRP), created synchronously (provisioningState Succeeded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from emulator.compute.base import ComputeCore, _Tracked
from emulator.compute.exceptions import BadRequest, InvalidParameter, NotFound
from emulator.compute.params import (
    _NAME,
    DISK_SKUS,
    HYPERV_GENERATIONS,
    OS_TYPES,
    SNAPSHOT_SKUS,
    _arm_id,
    _bool,
    _check_name,
    _enum,
    _int,
    _location,
    _obj,
    _sku_tier,
    _tags,
    iso,
)
from emulator.ids import key


@dataclass
class _DiskLike(_Tracked):
    """What disks and snapshots share (DiskRP): where the bytes came from and what they boot as."""

    sku: str = "Standard_LRS"
    creation_data: dict[str, Any] = field(default_factory=dict)
    disk_size_gb: int = 0
    os_type: str | None = None
    hyper_v_generation: str | None = None
    purchase_plan: dict[str, str] | None = None
    unique_id: str = ""
    time_created: datetime | None = None
    # CopyStart only: when the background copy started and how long it takes on the virtual clock.
    copy_started_at: datetime | None = None
    copy_duration: timedelta | None = None
    clock: Callable[[], datetime] | None = field(default=None, repr=False, compare=False)

    collection: ClassVar[str] = ""

    def completion_percent(self) -> float | None:
        """The background copy's progress (None unless created with CopyStart).

        azure-mgmt-compute ``Snapshot.completion_percent``: "Percentage complete for the background copy
        when a resource is created via the CopyStart operation." It rises on the virtual clock.
        """
        if self.copy_started_at is None or self.copy_duration is None or self.clock is None:
            return None
        if self.copy_duration <= timedelta(0):
            return 100.0
        done = (self.clock() - self.copy_started_at) / self.copy_duration
        return float(min(100, max(0, int(done * 100))))

    @property
    def copying(self) -> bool:
        percent = self.completion_percent()
        return percent is not None and percent < 100

    @property
    def id(self) -> str:
        return _arm_id(self.subscription_id, self.resource_group, self.collection, self.name)

    def _properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        if self.os_type:
            props["osType"] = self.os_type
        if self.hyper_v_generation:
            props["hyperVGeneration"] = self.hyper_v_generation
        if self.purchase_plan:
            props["purchasePlan"] = dict(self.purchase_plan)
        props.update({
            "creationData": dict(self.creation_data),
            "diskSizeGB": self.disk_size_gb,
            "diskSizeBytes": self.disk_size_gb * 1024**3,
            "uniqueId": self.unique_id,
            "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            "networkAccessPolicy": "AllowAll",
            "publicNetworkAccess": "Enabled",
            "timeCreated": iso(self.time_created) if self.time_created else None,
            # A CopyStart copy reports Succeeded while its bytes are still copying; only completionPercent tells
            # (azure-mgmt-compute Snapshot model doc; the less convenient reading, see the precisions).
            "provisioningState": "Succeeded",
            "diskState": "Unattached",
        })
        percent = self.completion_percent()
        if percent is not None:
            props["completionPercent"] = percent
        return props

    def to_json(self) -> dict[str, Any]:
        body = self.envelope(self._properties())
        body["sku"] = {"name": self.sku, "tier": _sku_tier(self.sku)}
        return body


@dataclass
class Disk(_DiskLike):
    resource_type: ClassVar[str] = "Microsoft.Compute/disks"
    collection: ClassVar[str] = "disks"


@dataclass
class Snapshot(_DiskLike):
    incremental: bool = False

    resource_type: ClassVar[str] = "Microsoft.Compute/snapshots"
    collection: ClassVar[str] = "snapshots"

    def _properties(self) -> dict[str, Any]:
        props = super()._properties()
        props["incremental"] = self.incremental
        return props


class DisksMixin(ComputeCore):
    """Disks and snapshots: PUT, GET, PATCH (snapshots), DELETE and list."""

    # ---------------------------------------------------------------------------------------
    # Disks and snapshots (DiskRP): synchronous, provisioningState Succeeded at once
    def _disk_source(self, source_id: str) -> _DiskLike:
        k = key(source_id)
        source = self.snapshots.get(k) or self.disks.get(k)
        if source is None:
            raise NotFound(f"Resource '{source_id}' was not found. A copy needs an existing disk or snapshot.")
        return source

    def _build_disk_like(self, cls: type[_DiskLike], subscription_id: str, resource_group: str, name: str,
                         body: dict[str, Any]) -> _DiskLike:
        kind = "snapshot" if cls is Snapshot else "disk"
        _check_name(name, _NAME, kind, "Use 1-80 letters, digits, '_', '.', '-', starting with a letter or digit.")
        location = _location(body)
        props = _obj(body.get("properties"), "properties")
        creation = _obj(props.get("creationData"), "properties.creationData")
        if not creation:
            raise InvalidParameter.missing("properties.creationData")
        # DiskRP DiskCreateOption: snapshots are Copy (same region) or CopyStart (a background deep copy, the way an
        # incremental snapshot is copied to another region: Learn "Copy an incremental snapshot to a new region").
        options = ("Copy", "CopyStart") if cls is Snapshot else ("Empty", "FromImage", "Copy")
        create_option = _enum(creation.get("createOption"), options, "properties.creationData.createOption",
                              required=True)
        sku = _enum(_obj(body.get("sku"), "sku").get("name"), SNAPSHOT_SKUS if cls is Snapshot else DISK_SKUS,
                    "sku.name",
                    default="Standard_LRS")
        size = _int(props.get("diskSizeGB"), "properties.diskSizeGB", minimum=1)
        os_type = _enum(props.get("osType"), OS_TYPES, "properties.osType")
        generation = _enum(props.get("hyperVGeneration"), HYPERV_GENERATIONS, "properties.hyperVGeneration")
        plan: dict[str, str] | None = None
        creation_data: dict[str, Any] = {"createOption": create_option}
        if create_option == "Empty":
            if size is None:
                raise InvalidParameter.missing("properties.diskSizeGB")
        elif create_option == "FromImage":
            image_ref = _obj(creation.get("imageReference"), "properties.creationData.imageReference")
            gallery_ref = _obj(creation.get("galleryImageReference"), "properties.creationData.galleryImageReference")
            if image_ref.get("id"):
                entry, _version = self.marketplace_image(str(image_ref["id"]))
                os_type, generation, plan = (entry.os_type, entry.hyper_v_generation,
                                             dict(entry.plan) if entry.plan else None)
                if size is not None and size < entry.disk_size_gb:
                    raise InvalidParameter(f"The specified disk size {size} GB is smaller than the size "
                                           f"{entry.disk_size_gb} GB of the image '{entry.urn}'.")
                size = size or entry.disk_size_gb
                creation_data["imageReference"] = {"id": image_ref["id"]}
            elif gallery_ref.get("id"):
                version = self.gallery_image_versions.get(key(str(gallery_ref["id"])))
                if version is None or version.provisioning_state not in ("Succeeded", "Updating"):
                    raise NotFound(f"Gallery image version '{gallery_ref['id']}' was not found or is not ready.")
                definition = self.gallery_images[version.definition_key]
                os_type, generation = definition.os_type, definition.hyper_v_generation
                size = size or (version.storage_profile.get("osDiskImage") or {}).get("sizeInGB") or 30
                creation_data["galleryImageReference"] = {"id": gallery_ref["id"]}
            else:
                raise InvalidParameter.missing("properties.creationData.imageReference.id")
        else:  # Copy
            source_id = creation.get("sourceResourceId")
            if not isinstance(source_id, str) or not source_id:
                raise InvalidParameter.missing("properties.creationData.sourceResourceId")
            source = self._disk_source(source_id)
            os_type = source.os_type if os_type is None else os_type
            generation = source.hyper_v_generation if generation is None else generation
            plan = dict(source.purchase_plan) if source.purchase_plan else None
            if size is not None and size < source.disk_size_gb:
                raise InvalidParameter(f"Disk size {size} GB is smaller than the source's size {source.disk_size_gb} "
                                       "GB.")
            size = size or source.disk_size_gb
            creation_data.update({"sourceResourceId": source_id, "sourceUniqueId": source.unique_id})
            if create_option == "CopyStart" and not (isinstance(source, Snapshot) and source.incremental):
                # Learn, "Copy an incremental snapshot to a new region": CopyStart copies incremental snapshots only.
                raise BadRequest("CopyStart copies an incremental snapshot: the source must be a snapshot created with "
                                 "'properties.incremental': true.")
        record = cls(subscription_id, resource_group, name, location, _tags(body.get("tags")),
                     sku=sku or "Standard_LRS",
                     creation_data=creation_data, disk_size_gb=size or 0, os_type=os_type,
                     hyper_v_generation=generation,
                     purchase_plan=plan, unique_id=self._uuid(), time_created=self._now())
        if isinstance(record, Snapshot):
            record.incremental = _bool(props.get("incremental"), "properties.incremental", False)
            if create_option == "CopyStart":
                record.copy_started_at, record.copy_duration, record.clock = (self._now(), self.copy_start_duration,
                                                                              self._now)
        return record

    def _put_disk_like(self, store: dict[str, Any], cls: type[_DiskLike], subscription_id: str, resource_group: str,
                       name: str,
                       body: dict[str, Any]) -> tuple[Any, bool]:
        self._require_group(subscription_id, resource_group)
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, cls.collection, name))
            existing = store.get(k)
            if existing is not None:
                # A PUT on an existing disk/snapshot updates what may change; the bytes stay.
                _location(body)
                props = _obj(body.get("properties"), "properties")
                if "tags" in body:
                    existing.tags = _tags(body.get("tags"))
                size = _int(props.get("diskSizeGB"), "properties.diskSizeGB", minimum=1)
                if size is not None:
                    if size < existing.disk_size_gb:
                        raise BadRequest(f"Disk size cannot be reduced from {existing.disk_size_gb} GB to {size} GB.")
                    existing.disk_size_gb = size
                return existing, False
            record = self._build_disk_like(cls, subscription_id, resource_group, name, body)
            store[k] = record
            return record, True

    def put_disk(self, subscription_id: str, resource_group: str, name: str, body: dict[str, Any]) -> tuple[Disk, bool]:
        """Create (createOption FromImage | Empty | Copy) or update a managed disk. Returns (disk, created)."""
        return self._put_disk_like(self.disks, Disk, subscription_id, resource_group, name, body)

    def put_snapshot(self, subscription_id: str, resource_group: str, name: str,
                     body: dict[str, Any]) -> tuple[Snapshot, bool]:
        """Create (createOption Copy from a disk or snapshot) or update a snapshot. Returns (snapshot, created)."""
        return self._put_disk_like(self.snapshots, Snapshot, subscription_id, resource_group, name, body)

    def get_disk(self, subscription_id: str, resource_group: str, name: str) -> Disk:
        return self._get(self.disks, subscription_id, resource_group, "disks", "disks", name)

    def get_snapshot(self, subscription_id: str, resource_group: str, name: str) -> Snapshot:
        return self._get(self.snapshots, subscription_id, resource_group, "snapshots", "snapshots", name)

    def update_snapshot(self, subscription_id: str, resource_group: str, name: str, patch: dict[str, Any]) -> Snapshot:
        """PATCH (SnapshotUpdate): ``tags`` replace the whole set; ``properties``
        osType/diskSizeGB/supportsHibernation."""
        with self._lock:
            snap = self.get_snapshot(subscription_id, resource_group, name)
            props = _obj(patch.get("properties"), "properties")
            tags = _tags(patch.get("tags")) if "tags" in patch else None
            os_type = _enum(props.get("osType"), OS_TYPES, "properties.osType")
            size = _int(props.get("diskSizeGB"), "properties.diskSizeGB", minimum=1)
            sku = _enum(_obj(patch.get("sku"), "sku").get("name"), SNAPSHOT_SKUS, "sku.name")
            if size is not None and size < snap.disk_size_gb:
                raise BadRequest(f"Disk size cannot be reduced from {snap.disk_size_gb} GB to {size} GB.")
            if tags is not None:
                snap.tags = tags
            if os_type is not None:
                snap.os_type = os_type
            if size is not None:
                snap.disk_size_gb = size
            if sku is not None:
                snap.sku = sku
            return snap

    def delete_disk(self, subscription_id: str, resource_group: str, name: str) -> bool:
        with self._lock:
            return self.disks.pop(key(_arm_id(subscription_id, resource_group, "disks", name)), None) is not None

    def delete_snapshot(self, subscription_id: str, resource_group: str, name: str) -> bool:
        with self._lock:
            return self.snapshots.pop(key(_arm_id(subscription_id, resource_group, "snapshots", name)),
                                      None) is not None

    def list_disks(self, subscription_id: str, resource_group: str | None = None) -> list[Disk]:
        return (self._in_group(self.disks, subscription_id, resource_group) if resource_group
                else self._in_subscription(self.disks, subscription_id))

    def list_snapshots(self, subscription_id: str, resource_group: str | None = None) -> list[Snapshot]:
        if resource_group:
            return self._in_group(self.snapshots, subscription_id, resource_group)
        return self._in_subscription(self.snapshots, subscription_id)
