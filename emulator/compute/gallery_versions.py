"""Microsoft.Compute: gallery image versions (GalleryRP), published by a long-running replication operation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from emulator.compute.base import ComputeCore, Operation, _Tracked
from emulator.compute.exceptions import (
    Conflict,
    InvalidParameter,
    NotFound,
    OperationNotAllowed,
    ParentResourceNotFound,
    PropertyChangeNotAllowed,
)
from emulator.compute.galleries import GalleryImage
from emulator.compute.params import (
    _INT32_MAX,
    _VERSION_NAME,
    CACHING_TYPES,
    DEFAULT_END_OF_LIFE_MONTHS,
    GALLERY_STORAGE_TYPES,
    SAFETY_DEFAULT_API_VERSION,
    _arm_id,
    _bool,
    _enum,
    _int,
    _location,
    _obj,
    _parse_time,
    _ref_id,
    _tags,
    add_months,
    iso,
    normalize_region,
)
from emulator.ids import key


@dataclass
class TargetRegion:
    name: str  # as given ("West US"); compared normalized
    regional_replica_count: int
    storage_account_type: str
    exclude_from_latest: bool = False
    encryption: dict[str, Any] | None = None

    @property
    def region(self) -> str:
        return normalize_region(self.name)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "regionalReplicaCount": self.regional_replica_count,
                                "storageAccountType": self.storage_account_type}
        if self.encryption is not None:
            body["encryption"] = self.encryption
        body["excludeFromLatest"] = self.exclude_from_latest
        return body


@dataclass
class GalleryImageVersion(_Tracked):
    gallery: str = ""
    image: str = ""
    target_regions: list[TargetRegion] = field(default_factory=list)
    replica_count: int = 1
    exclude_from_latest: bool = False
    end_of_life: datetime | None = None
    storage_account_type: str = "Standard_LRS"
    published: datetime | None = None
    storage_profile: dict[str, Any] = field(default_factory=dict)
    allow_deletion_of_replicated_locations: bool = False
    block_deletion_before_end_of_life: bool = False
    provisioning_state: str = "Creating"
    operation: Operation | None = None
    # Replication bookkeeping: when each target region started/finishes, and the regions that hold
    # a complete replica (what ``image_available`` answers from).
    replication_started: datetime | None = None
    region_done_at: dict[str, datetime] = field(default_factory=dict)
    ready_regions: set[str] = field(default_factory=set)

    resource_type: ClassVar[str] = "Microsoft.Compute/galleries/images/versions"

    @property
    def id(self) -> str:
        return _arm_id(self.subscription_id, self.resource_group, "galleries", self.gallery, "images", self.image,
                       "versions", self.name)

    @property
    def definition_key(self) -> str:
        return key(_arm_id(self.subscription_id, self.resource_group, "galleries", self.gallery, "images", self.image))

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.name.split("."))

    def replication_status(self, now: datetime) -> dict[str, Any]:
        summary = []
        for target in self.target_regions:
            region = target.region
            done_at = self.region_done_at.get(region)
            if region in self.ready_regions:
                state, progress = "Completed", 100
            elif self.provisioning_state == "Failed":
                state, progress = "Failed", 0
            elif done_at is None or self.replication_started is None:
                state, progress = "Unknown", 0
            else:
                total = (done_at - self.replication_started).total_seconds()
                elapsed = (now - self.replication_started).total_seconds()
                state, progress = "Replicating", max(0, min(99, int(100 * elapsed / total))) if total > 0 else 99
            summary.append({"region": target.name, "state": state, "details": "", "progress": progress})
        states = {s["state"] for s in summary}
        aggregated = ("Failed" if "Failed" in states else "Completed" if states == {"Completed"} else "InProgress"
                      if summary else "Unknown")
        return {"aggregatedState": aggregated, "summary": summary}

    def to_json(self, now: datetime | None = None, expand_replication: bool = False) -> dict[str, Any]:
        publishing: dict[str, Any] = {"targetRegions": [t.to_json() for t in self.target_regions],
                                      "replicaCount": self.replica_count,
                                      "excludeFromLatest": self.exclude_from_latest}
        if self.published is not None:
            publishing["publishedDate"] = iso(self.published)
        if self.end_of_life is not None:
            publishing["endOfLifeDate"] = iso(self.end_of_life)
        publishing["storageAccountType"] = self.storage_account_type
        props: dict[str, Any] = {
            "publishingProfile": publishing,
            "storageProfile": self.storage_profile,
            "safetyProfile": {"allowDeletionOfReplicatedLocations": self.allow_deletion_of_replicated_locations,
                              "reportedForPolicyViolation": False,
                              "blockDeletionBeforeEndOfLife": self.block_deletion_before_end_of_life},
            "provisioningState": self.provisioning_state,
        }
        if expand_replication and now is not None:
            props["replicationStatus"] = self.replication_status(now)
        return self.envelope(props)


class GalleryVersionsMixin(ComputeCore):
    """Gallery image versions: PUT (replication), PATCH, GET, DELETE (safety profile) and list."""

    # ---------------------------------------------------------------------------------------
    # Gallery image versions: PUT is a long-running operation (replication to every target region)
    def _version_storage_profile(self, profile_in: dict[str, Any],
                                 definition: GalleryImage) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Validate the source(s) against the definition; return (profile to answer, [(store, id)] to re-check at the
        end)."""
        path = "properties.storageProfile"
        source_id = _ref_id(profile_in.get("source"), f"{path}.source")
        os_in = _obj(profile_in.get("osDiskImage"), f"{path}.osDiskImage")
        data_in = profile_in.get("dataDiskImages") or []
        if not isinstance(data_in, list):
            raise InvalidParameter(f"The value of parameter '{path}.dataDiskImages' must be an array.")
        refs: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        os_size = 30
        if source_id is not None:
            image = self.images.get(key(source_id))
            if image is None:
                raise NotFound(f"The source image '{source_id}' was not found.")
            if image.provisioning_state not in ("Succeeded",):
                raise InvalidParameter(f"The source image '{source_id}' is in provisioning state "
                                       f"'{image.provisioning_state}'; it can be used once it is 'Succeeded'.")
            os_disk = image.storage_profile["osDisk"]
            self._check_against_definition(definition, os_disk["osType"], image.hyper_v_generation, source_id,
                                           os_disk["osState"])
            out["source"] = {"id": source_id}
            refs.append(("images", source_id))
            os_size = os_disk.get("diskSizeGB") or self._image_source_size(os_disk) or 30
            # As in the spec example: the OS disk image is cached ReadOnly, data disk images None.
            out["osDiskImage"] = {"sizeInGB": os_size, "hostCaching": "ReadOnly"}
            out["dataDiskImages"] = [{"lun": d["lun"], "sizeInGB": d.get("diskSizeGB") or self._image_source_size(d)
                                      or 10,
                                      "hostCaching": "None"} for d in image.storage_profile.get("dataDisks") or []]
            return out, refs
        if not os_in:
            raise InvalidParameter(f"Either '{path}.source.id' (a managed image) or '{path}.osDiskImage.source.id' "
                                   "(a snapshot or disk) is required.")
        os_source = _ref_id(os_in.get("source"), f"{path}.osDiskImage.source")
        if os_source is None:
            raise InvalidParameter.missing(f"{path}.osDiskImage.source.id")
        source = self._disk_source(os_source)
        self._check_against_definition(definition, source.os_type, source.hyper_v_generation, os_source, None)
        refs.append((source.collection, os_source))
        out["osDiskImage"] = {"source": {"id": os_source}, "sizeInGB": source.disk_size_gb,
                              "hostCaching": _enum(os_in.get("hostCaching"), CACHING_TYPES,
                                                   f"{path}.osDiskImage.hostCaching",
                                                   default="ReadOnly")}
        data_out, luns = [], set()
        for i, d in enumerate(data_in):
            d = _obj(d, f"{path}.dataDiskImages[{i}]")
            lun = _int(d.get("lun"), f"{path}.dataDiskImages[{i}].lun", required=True, minimum=0)
            if lun in luns:
                raise InvalidParameter(f"Data disk images must have unique 'lun' values (lun {lun} repeats).")
            luns.add(lun)
            data_source = _ref_id(d.get("source"), f"{path}.dataDiskImages[{i}].source")
            if data_source is None:
                raise InvalidParameter.missing(f"{path}.dataDiskImages[{i}].source.id")
            src = self._disk_source(data_source)
            refs.append((src.collection, data_source))
            data_out.append({"source": {"id": data_source}, "lun": lun, "sizeInGB": src.disk_size_gb,
                             "hostCaching": _enum(d.get("hostCaching"), CACHING_TYPES,
                                                  f"{path}.dataDiskImages[{i}].hostCaching", default="None")})
        if data_out:
            out["dataDiskImages"] = data_out
        return out, refs

    def _image_source_size(self, disk: dict[str, Any]) -> int | None:
        for store, field_name in ((self.snapshots, "snapshot"), (self.disks, "managedDisk")):
            ref = disk.get(field_name)
            if ref and key(ref["id"]) in store:
                return store[key(ref["id"])].disk_size_gb
        return None

    @staticmethod
    def _check_against_definition(definition: GalleryImage, os_type: str | None, generation: str | None, source_id: str,
                                  os_state: str | None) -> None:
        if os_type is not None and os_type != definition.os_type:
            raise InvalidParameter(f"The source '{source_id}' has osType '{os_type}' but the gallery image "
                                   f"definition '{definition.name}' has osType '{definition.os_type}'.")
        if os_state is not None and os_state != definition.os_state:
            raise InvalidParameter(f"The source image '{source_id}' is '{os_state}' but the gallery image definition "
                                   f"'{definition.name}' is '{definition.os_state}'. The osState of the source and "
                                   "of the definition must match.")
        if generation is not None and generation != definition.hyper_v_generation:
            raise InvalidParameter(f"The source '{source_id}' has hyperVGeneration '{generation}' but the gallery "
                                   f"image definition '{definition.name}' has hyperVGeneration "
                                   f"'{definition.hyper_v_generation}'.")

    def _publishing(self, publishing_in: dict[str, Any], location: str, *,
                    default_from: GalleryImageVersion | None = None) -> dict[str, Any]:
        path = "properties.publishingProfile"
        replica_count = _int(publishing_in.get("replicaCount"), f"{path}.replicaCount", minimum=1,
                             default=default_from.replica_count if default_from else 1) or 1
        storage = _enum(publishing_in.get("storageAccountType"), GALLERY_STORAGE_TYPES, f"{path}.storageAccountType",
                        default=default_from.storage_account_type if default_from else "Standard_LRS") or "Standard_LRS"
        exclude = _bool(publishing_in.get("excludeFromLatest"), f"{path}.excludeFromLatest",
                        default_from.exclude_from_latest if default_from else False)
        eol = publishing_in.get("endOfLifeDate")
        end_of_life = _parse_time(
            eol, f"{path}.endOfLifeDate") if eol is not None else (default_from.end_of_life if default_from else None)
        regions_in = publishing_in.get("targetRegions")
        targets: list[TargetRegion] = []
        if regions_in is None:
            if default_from is not None:
                targets = list(default_from.target_regions)
            else:
                targets = [TargetRegion(location, replica_count, storage)]
        else:
            if not isinstance(regions_in, list) or not regions_in:
                raise InvalidParameter(f"The value of parameter '{path}.targetRegions' must be a non-empty array.")
            seen = set()
            for i, r in enumerate(regions_in):
                r = _obj(r, f"{path}.targetRegions[{i}]")
                name = r.get("name")
                if not isinstance(name, str) or not name.strip():
                    raise InvalidParameter.missing(f"{path}.targetRegions[{i}].name")
                if normalize_region(name) in seen:
                    raise InvalidParameter(f"The target region '{name}' is listed more than once.")
                seen.add(normalize_region(name))
                targets.append(TargetRegion(
                    name,
                    _int(r.get("regionalReplicaCount"), f"{path}.targetRegions[{i}].regionalReplicaCount", minimum=1,
                         default=replica_count)
                    or replica_count,
                    _enum(r.get("storageAccountType"), GALLERY_STORAGE_TYPES,
                          f"{path}.targetRegions[{i}].storageAccountType",
                          default=storage) or storage,
                    _bool(r.get("excludeFromLatest"), f"{path}.targetRegions[{i}].excludeFromLatest", False),
                    r.get("encryption") if isinstance(r.get("encryption"), dict) else None,
                ))
        return {"replica_count": replica_count, "storage_account_type": storage, "exclude_from_latest": exclude,
                "end_of_life": end_of_life, "target_regions": targets}

    def _replication_plan(self, version: GalleryImageVersion, start: datetime) -> timedelta:
        version.replication_started = start
        version.region_done_at = {}
        longest = timedelta(0)
        for target in version.target_regions:
            span = self.version_base_duration + self.version_per_extra_replica * (target.regional_replica_count - 1)
            if target.region != version.location:
                span += self.version_per_remote_region
            version.region_done_at[target.region] = start + span
            longest = max(longest, span)
        return longest

    def put_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str, name: str,
                                  body: dict[str, Any], *, api_version: str | None = None,
                                  caller: dict[str, str] | None = None,
                                  duration: timedelta | None = None) -> tuple[GalleryImageVersion, bool, Operation]:
        """Start publishing a version from a managed image (``storageProfile.source.id``) or from snapshots/disks
        (``osDiskImage.source.id`` + ``dataDiskImages``). Returns (version, created, operation).

        Replication takes :attr:`version_base_duration`, plus :attr:`version_per_extra_replica` per extra replica and
        :attr:`version_per_remote_region` outside the home region; the slowest region decides (or ``duration``).
        """
        self._require_group(subscription_id, resource_group)
        m = _VERSION_NAME.match(name)
        if m is None or any(int(g) > _INT32_MAX for g in m.groups()):
            raise InvalidParameter(f"The gallery image version name '{name}' is invalid. It must follow the format "
                                   "Major(int32).Minor(int32).Patch(int32), for example 1.0.0.")
        definition = self.gallery_images.get(
            key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", image)))
        if definition is None:
            if key(_arm_id(subscription_id, resource_group, "galleries", gallery)) not in self.galleries:
                raise ParentResourceNotFound(gallery)
            raise ParentResourceNotFound(f"{gallery}/{image}")
        location = _location(body)
        if location != definition.location:
            raise InvalidParameter(f"The location '{location}' of the gallery image version must be the gallery's "
                                   f"location '{definition.location}'.")
        props = _obj(body.get("properties"), "properties")
        profile_in = _obj(props.get("storageProfile"), "properties.storageProfile")
        if not profile_in:
            raise InvalidParameter.missing("properties.storageProfile")
        safety_in = _obj(props.get("safetyProfile"), "properties.safetyProfile")
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", image, "versions", name))
            existing = self.gallery_image_versions.get(k)
            if existing is not None and existing.operation is not None and not existing.operation.done:
                raise Conflict.operation_in_progress(f"gallery image version '{name}'")
            storage_profile, refs = self._version_storage_profile(profile_in, definition)
            if (existing is not None
                and self._source_keys(existing.storage_profile) != self._source_keys(storage_profile)):
                raise PropertyChangeNotAllowed("Changing property 'galleryImageVersion.properties.storageProfile' is "
                                               "not allowed.")
            publishing = self._publishing(_obj(props.get("publishingProfile"), "properties.publishingProfile"),
                                          location,
                                          default_from=None)
            now = self._now()
            default_block = (api_version or SAFETY_DEFAULT_API_VERSION) >= SAFETY_DEFAULT_API_VERSION
            block = _bool(safety_in.get("blockDeletionBeforeEndOfLife"),
                          "properties.safetyProfile.blockDeletionBeforeEndOfLife", default_block)
            if block and publishing["end_of_life"] is None:
                publishing["end_of_life"] = add_months(now, DEFAULT_END_OF_LIFE_MONTHS)
            allow_replicated = _bool(safety_in.get("allowDeletionOfReplicatedLocations"),
                                     "properties.safetyProfile.allowDeletionOfReplicatedLocations", False)
            if existing is not None:
                self._check_region_removal(existing, publishing["target_regions"], allow_replicated)
            version = GalleryImageVersion(
                subscription_id, resource_group, name, location, _tags(body.get("tags")) if "tags" in body
                or existing is None else existing.tags,
                gallery=definition.gallery, image=definition.name, storage_profile=storage_profile,
                allow_deletion_of_replicated_locations=allow_replicated, block_deletion_before_end_of_life=block,
                published=existing.published if existing else now,
                provisioning_state="Updating" if existing else "Creating",
                **publishing)
            if existing is not None:
                version.ready_regions = existing.ready_regions & {t.region for t in version.target_regions}
            op = self._new_operation(subscription_id, location, version.id, "PUT", api_version)
            version.operation = op
            span = self._replication_plan(version, now)
            self.gallery_image_versions[k] = version
        self._run_after(span if duration is None else duration,
                        lambda emit: self._finish_version(k, op, refs, caller, emit))
        return version, existing is None, op

    @staticmethod
    def _source_keys(profile: dict[str, Any]) -> list[str]:
        ids = [(profile.get("source") or {}).get("id"),
               ((profile.get("osDiskImage") or {}).get("source") or {}).get("id")]
        ids += [(d.get("source") or {}).get("id") for d in profile.get("dataDiskImages") or []]
        return [key(i) for i in ids if i]

    @staticmethod
    def _check_region_removal(existing: GalleryImageVersion, targets: list[TargetRegion], allow: bool) -> None:
        removed = existing.ready_regions - {t.region for t in targets}
        if removed and not allow:
            raise OperationNotAllowed(f"Removing replicated region(s) {', '.join(sorted(removed))} from gallery "
                                      f"image version '{existing.name}' is not allowed: "
                                      "safetyProfile.allowDeletionOfReplicatedLocations is false.")

    def _finish_version(self, k: str, op: Operation, refs: list[tuple[str, str]], caller: dict[str, str] | None,
                        emit: bool) -> None:
        with self._lock:
            version = self.gallery_image_versions.get(k)
            if version is None or version.operation is not op:
                op.finish(self._now(), status="Canceled")
                return
            error = self._forced_failure(k)
            for store_name, ref in refs:
                store = {"images": self.images, "snapshots": self.snapshots, "disks": self.disks}[store_name]
                source = store.get(key(ref))
                if error is None and (source is None or getattr(source, "provisioning_state", "Succeeded") == "Failed"):
                    error = NotFound(f"The source '{ref}' of gallery image version '{version.name}' no longer exists; "
                                     "replication could not complete.")
            op.finish(self._now(), error)
            if error is None:
                version.provisioning_state = "Succeeded"
                version.ready_regions = {t.region for t in version.target_regions}
            else:
                version.provisioning_state = "Failed"
            subject = version.id
        if emit:
            self._emit(subject, "Microsoft.Compute/galleries/images/versions/write", caller, error is None)

    def update_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str,
                                     name: str,
                                     patch: dict[str, Any], *, api_version: str | None = None,
                                     caller: dict[str, str]
                                     | None = None) -> tuple[GalleryImageVersion, Operation | None]:
        """PATCH (GalleryImageVersionUpdate): publishingProfile (endOfLifeDate, excludeFromLatest, targetRegions, ...),
        safetyProfile and tags. New target regions start a replication operation; the rest applies at once."""
        with self._lock:
            version = self.get_gallery_image_version(subscription_id, resource_group, gallery, image, name)
            if version.operation is not None and not version.operation.done:
                raise Conflict.operation_in_progress(f"gallery image version '{name}'")
            props = _obj(patch.get("properties"), "properties")
            publishing = self._publishing(_obj(props.get("publishingProfile"), "properties.publishingProfile"),
                                          version.location,
                                          default_from=version)
            safety_in = _obj(props.get("safetyProfile"), "properties.safetyProfile")
            allow = _bool(safety_in.get("allowDeletionOfReplicatedLocations"),
                          "properties.safetyProfile.allowDeletionOfReplicatedLocations",
                          version.allow_deletion_of_replicated_locations)
            block = _bool(safety_in.get("blockDeletionBeforeEndOfLife"),
                          "properties.safetyProfile.blockDeletionBeforeEndOfLife",
                          version.block_deletion_before_end_of_life)
            self._check_region_removal(version, publishing["target_regions"], allow)
            before = {t.region: t.regional_replica_count for t in version.target_regions}
            if "tags" in patch:
                version.tags = _tags(patch.get("tags"))
            version.allow_deletion_of_replicated_locations = allow
            version.block_deletion_before_end_of_life = block
            for attr, value in publishing.items():
                setattr(version, attr, value)
            version.ready_regions &= {t.region for t in version.target_regions}
            pending = {t.region for t in version.target_regions} - version.ready_regions
            # More replicas in a region are made by replication too: the PATCH is a long-running operation and
            # the version is "Updating" until they exist (spec GalleryRP galleryImageVersion.json: Update is
            # x-ms-long-running-operation, provisioningState includes Updating); ready regions keep serving.
            grown = {t.region for t in version.target_regions if t.regional_replica_count > before.get(t.region, 0)}
            if not pending and not grown:
                return version, None
            k = version.key
            op = self._new_operation(subscription_id, version.location, version.id, "PATCH", api_version)
            version.operation = op
            version.provisioning_state = "Updating"
            span = self._replication_plan(version, self._now())
            refs = self._refs_of(version.storage_profile)
        self._run_after(span, lambda emit: self._finish_version(k, op, refs, caller, emit))
        return version, op

    def _refs_of(self, profile: dict[str, Any]) -> list[tuple[str, str]]:
        refs: list[tuple[str, str]] = []
        if (profile.get("source") or {}).get("id"):
            refs.append(("images", profile["source"]["id"]))
        for disk in [profile.get("osDiskImage") or {}, *(profile.get("dataDiskImages") or [])]:
            ref = (disk.get("source") or {}).get("id")
            if ref:
                refs.append(("snapshots" if key(ref) in self.snapshots else "disks", ref))
        return refs

    def get_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str,
                                  name: str) -> GalleryImageVersion:
        return self._get(self.gallery_image_versions, subscription_id, resource_group, "galleries/images/versions",
                         "galleries", gallery, "images", image, "versions", name)

    def delete_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str,
                                     name: str, *,
                                     api_version: str | None = None) -> Operation | None:
        """Delete at once, unless ``blockDeletionBeforeEndOfLife`` holds before the end-of-life date (409)."""
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", image, "versions", name))
            version = self.gallery_image_versions.get(k)
            if version is None:
                return None
            now = self._now()
            if version.block_deletion_before_end_of_life and (version.end_of_life is None or now < version.end_of_life):
                eol = iso(version.end_of_life) if version.end_of_life else "(not set)"
                raise OperationNotAllowed(
                    f"Gallery image version '{version.id}' cannot be deleted before its end of life date {eol} because "
                    "safetyProfile.blockDeletionBeforeEndOfLife is true. Set blockDeletionBeforeEndOfLife to false or "
                    "wait until the end of life date.")
            del self.gallery_image_versions[k]
            op = self._new_operation(subscription_id, version.location, version.id, "DELETE", api_version)
            op.finish(now)
            return op

    def list_gallery_image_versions(self, subscription_id: str, resource_group: str, gallery: str,
                                    image: str) -> list[GalleryImageVersion]:
        definition = self.get_gallery_image(subscription_id, resource_group, gallery, image)
        with self._lock:
            return sorted((v for v in self.gallery_image_versions.values() if v.definition_key == definition.key),
                          key=lambda v: v.version_tuple)
