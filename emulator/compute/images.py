"""Microsoft.Compute: managed images (ComputeRP), created by a long-running operation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from emulator.compute.base import ComputeCore, Operation, _Tracked
from emulator.compute.exceptions import Conflict, InvalidParameter, NotFound, OperationNotAllowed
from emulator.compute.params import (
    _NAME,
    CACHING_TYPES,
    DISK_SKUS,
    HYPERV_GENERATIONS,
    OS_STATES,
    OS_TYPES,
    _arm_id,
    _bool,
    _check_name,
    _enum,
    _int,
    _location,
    _obj,
    _ref_id,
    _tags,
)
from emulator.exceptions import AzureError
from emulator.ids import key


@dataclass
class Image(_Tracked):
    storage_profile: dict[str, Any] = field(default_factory=dict)
    hyper_v_generation: str = "V1"
    source_virtual_machine: str | None = None
    provisioning_state: str = "Creating"
    operation: Operation | None = None

    resource_type: ClassVar[str] = "Microsoft.Compute/images"

    @property
    def id(self) -> str:
        return _arm_id(self.subscription_id, self.resource_group, "images", self.name)

    def source_ids(self) -> list[tuple[str, str]]:
        """(store, id) of every managed source the image reads: ("snapshots"|"disks", id)."""
        disks = [self.storage_profile.get("osDisk") or {}, *(self.storage_profile.get("dataDisks") or [])]
        out = []
        for disk in disks:
            if disk.get("snapshot"):
                out.append(("snapshots", disk["snapshot"]["id"]))
            if disk.get("managedDisk"):
                out.append(("disks", disk["managedDisk"]["id"]))
        return out

    def to_json(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        if self.source_virtual_machine:
            props["sourceVirtualMachine"] = {"id": self.source_virtual_machine}
        props.update({"storageProfile": self.storage_profile, "provisioningState": self.provisioning_state,
                      "hyperVGeneration": self.hyper_v_generation})
        return self.envelope(props)


class ImagesMixin(ComputeCore):
    """Managed images: PUT (long-running), GET, PATCH tags, DELETE and list."""

    # ---------------------------------------------------------------------------------------
    # Managed images (ComputeRP): PUT is a long-running operation
    def _image_disk(self, disk: Any, path: str, *, os_disk: bool) -> dict[str, Any]:
        disk = _obj(disk, path)
        out: dict[str, Any] = {}
        if os_disk:
            out["osType"] = _enum(disk.get("osType"), OS_TYPES, f"{path}.osType", required=True)
            out["osState"] = _enum(disk.get("osState"), OS_STATES, f"{path}.osState", required=True)
        else:
            out["lun"] = _int(disk.get("lun"), f"{path}.lun", required=True, minimum=0)
        for field_name in ("snapshot", "managedDisk", "diskEncryptionSet"):
            ref = _ref_id(disk.get(field_name), f"{path}.{field_name}")
            if ref is not None:
                out[field_name] = {"id": ref}
        if disk.get("blobUri") is not None:
            if not isinstance(disk["blobUri"], str):
                raise InvalidParameter(f"The value of parameter '{path}.blobUri' must be a string.")
            out["blobUri"] = disk["blobUri"]
        if not any(f in out for f in ("snapshot", "managedDisk", "blobUri")):
            raise InvalidParameter(f"At least one of '{path}.snapshot', '{path}.managedDisk' or '{path}.blobUri' is "
                                   "required.")
        caching = _enum(disk.get("caching"), CACHING_TYPES, f"{path}.caching", default="ReadWrite" if os_disk else None)
        if caching is not None:
            out["caching"] = caching
        size = _int(disk.get("diskSizeGB"), f"{path}.diskSizeGB", minimum=1)
        if size is not None:
            out["diskSizeGB"] = size
        account = _enum(disk.get("storageAccountType"), DISK_SKUS, f"{path}.storageAccountType")
        if account is not None:
            out["storageAccountType"] = account
        return out

    def _missing_sources(self, refs: Iterable[tuple[str, str]]) -> AzureError | None:
        for store_name, ref in refs:
            store = self.snapshots if store_name == "snapshots" else self.disks
            if key(ref) not in store:
                kind = "Snapshot" if store_name == "snapshots" else "Disk"
                return NotFound(f"{kind} '{ref}' was not found. Every snapshot and managed disk an image "
                                "references must exist until the image is created.")
            source = store[key(ref)]
            if source.copying:
                # A snapshot whose CopyStart copy is below completionPercent 100 cannot be read yet (the exact error is
                # not documented; the emulator refuses, the less convenient choice).
                return OperationNotAllowed(f"Snapshot '{ref}' is still being copied (completionPercent "
                                           f"{source.completion_percent():.0f}); wait until the copy completes.")
        return None

    def put_image(self, subscription_id: str, resource_group: str, name: str, body: dict[str, Any], *,
                  api_version: str | None = None, caller: dict[str, str] | None = None,
                  duration: timedelta | None = None) -> tuple[Image, bool, Operation]:
        """Start creating (or updating) a managed image. Returns (image, created, operation).

        The image is ``Creating`` until the operation finishes after ``duration`` (default
        :attr:`image_create_duration`) of virtual time; then ``Succeeded`` (or ``Failed`` when a source
        snapshot/disk disappeared meanwhile) and the ``Microsoft.Compute/images/write`` event is raised.
        """
        self._require_group(subscription_id, resource_group)
        _check_name(name, _NAME, "image", "Use 1-80 letters, digits, '_', '.', '-', starting with a letter or digit.")
        location = _location(body)
        props = _obj(body.get("properties"), "properties")
        source_vm = _ref_id(props.get("sourceVirtualMachine"), "properties.sourceVirtualMachine")
        profile_in = _obj(props.get("storageProfile"), "properties.storageProfile")
        if source_vm is not None and not profile_in:
            raise NotFound(f"Virtual machine '{source_vm}' was not found (the emulator has no virtual machines).")
        if not profile_in:
            raise InvalidParameter.missing("properties.storageProfile")
        if profile_in.get("osDisk") is None:
            raise InvalidParameter.missing("properties.storageProfile.osDisk")
        profile: dict[str, Any] = {"osDisk": self._image_disk(profile_in["osDisk"], "properties.storageProfile.osDisk",
                                                              os_disk=True)}
        data_in = profile_in.get("dataDisks") or []
        if not isinstance(data_in, list):
            raise InvalidParameter("The value of parameter 'properties.storageProfile.dataDisks' must be an array.")
        data = [self._image_disk(d, f"properties.storageProfile.dataDisks[{i}]", os_disk=False)
                for i, d in enumerate(data_in)]
        luns = [d["lun"] for d in data]
        if len(set(luns)) != len(luns):
            raise InvalidParameter("Image data disks must have unique 'lun' values.")
        profile["dataDisks"] = data
        profile["zoneResilient"] = _bool(profile_in.get("zoneResilient"), "properties.storageProfile.zoneResilient",
                                         False)
        # Azure's default is V1 whatever the source: an image of a Gen2 snapshot must say V2 itself.
        generation = _enum(props.get("hyperVGeneration"), HYPERV_GENERATIONS, "properties.hyperVGeneration",
                           default="V1") or "V1"
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "images", name))
            existing = self.images.get(k)
            if existing is not None and existing.operation is not None and not existing.operation.done:
                raise Conflict.operation_in_progress(f"image '{name}'")
            image = Image(subscription_id, resource_group, name, location, _tags(body.get("tags")),
                          storage_profile=profile,
                          hyper_v_generation=generation, source_virtual_machine=source_vm,
                          provisioning_state="Updating" if existing else "Creating")
            missing = self._missing_sources(image.source_ids())
            if missing is not None:
                raise missing
            op = self._new_operation(subscription_id, location, image.id, "PUT", api_version)
            image.operation = op
            self.images[k] = image
        self._run_after(self.image_create_duration if duration is None else duration,
                        lambda emit: self._finish_image(k, op, caller, emit))
        return image, existing is None, op

    def _finish_image(self, k: str, op: Operation, caller: dict[str, str] | None, emit: bool) -> None:
        with self._lock:
            image = self.images.get(k)
            if image is None or image.operation is not op:
                op.finish(self._now(), status="Canceled")
                return
            error = self._forced_failure(k) or self._missing_sources(image.source_ids())
            op.finish(self._now(), error)
            image.provisioning_state = "Failed" if error else "Succeeded"
            subject = image.id
        if emit:
            self._emit(subject, "Microsoft.Compute/images/write", caller, error is None)

    def get_image(self, subscription_id: str, resource_group: str, name: str) -> Image:
        return self._get(self.images, subscription_id, resource_group, "images", "images", name)

    def update_image_tags(self, subscription_id: str, resource_group: str, name: str, patch: dict[str, Any]) -> Image:
        with self._lock:
            image = self.get_image(subscription_id, resource_group, name)
            if "tags" in patch:
                image.tags = _tags(patch.get("tags"))
            return image

    def delete_image(self, subscription_id: str, resource_group: str, name: str, *,
                     api_version: str | None = None) -> Operation | None:
        """Delete at once; returns the (already finished) delete operation, or None when there was nothing."""
        with self._lock:
            image = self.images.pop(key(_arm_id(subscription_id, resource_group, "images", name)), None)
            if image is None:
                return None
            op = self._new_operation(subscription_id, image.location, image.id, "DELETE", api_version)
            op.finish(self._now())
            return op

    def list_images(self, subscription_id: str, resource_group: str | None = None) -> list[Image]:
        return (self._in_group(self.images, subscription_id, resource_group) if resource_group
                else self._in_subscription(self.images, subscription_id))
