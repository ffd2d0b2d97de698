"""Microsoft.Compute: Azure Compute Galleries and gallery image definitions (GalleryRP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from emulator.compute.base import ComputeCore, Operation, _Tracked
from emulator.compute.exceptions import (
    CannotDeleteResource,
    InvalidParameter,
    ParentResourceNotFound,
    PropertyChangeNotAllowed,
)
from emulator.compute.params import (
    _GALLERY_IMAGE_NAME,
    _GALLERY_NAME,
    ARCHITECTURES,
    HYPERV_GENERATIONS,
    OS_STATES,
    OS_TYPES,
    _arm_id,
    _check_name,
    _enum,
    _location,
    _obj,
    _tags,
)
from emulator.ids import key


@dataclass
class Gallery(_Tracked):
    description: str | None = None
    provisioning_state: str = "Creating"
    operation: Operation | None = None

    resource_type: ClassVar[str] = "Microsoft.Compute/galleries"

    @property
    def id(self) -> str:
        return _arm_id(self.subscription_id, self.resource_group, "galleries", self.name)

    def to_json(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        if self.description is not None:
            props["description"] = self.description
        props["identifier"] = {"uniqueName": f"{self.subscription_id}-{self.name.upper()}"}
        props["provisioningState"] = self.provisioning_state
        return self.envelope(props)


@dataclass
class GalleryImage(_Tracked):
    """An image definition: what every version of it is (OS, state, generation, identity)."""

    gallery: str = ""
    os_type: str = "Linux"
    os_state: str = "Generalized"
    hyper_v_generation: str = "V1"
    identifier: dict[str, str] = field(default_factory=dict)
    architecture: str = "x64"
    extra: dict[str, Any] = field(default_factory=dict)  # description, eula, features, purchasePlan, ...
    provisioning_state: str = "Creating"
    operation: Operation | None = None

    resource_type: ClassVar[str] = "Microsoft.Compute/galleries/images"

    @property
    def id(self) -> str:
        return _arm_id(self.subscription_id, self.resource_group, "galleries", self.gallery, "images", self.name)

    @property
    def gallery_key(self) -> str:
        return key(_arm_id(self.subscription_id, self.resource_group, "galleries", self.gallery))

    def to_json(self) -> dict[str, Any]:
        props = {**self.extra, "osType": self.os_type, "osState": self.os_state,
                 "hyperVGeneration": self.hyper_v_generation,
                 "identifier": dict(self.identifier), "architecture": self.architecture,
                 "provisioningState": self.provisioning_state}
        return self.envelope(props)


class GalleriesMixin(ComputeCore):
    """Galleries and image definitions: PUT, GET, DELETE and list."""

    # ---------------------------------------------------------------------------------------
    # Galleries and image definitions
    def put_gallery(self, subscription_id: str, resource_group: str, name: str, body: dict[str, Any], *,
                    api_version: str | None = None,
                    caller: dict[str, str] | None = None) -> tuple[Gallery, bool, Operation]:
        self._require_group(subscription_id, resource_group)
        _check_name(name, _GALLERY_NAME, "gallery", "Gallery names may contain only letters, digits, '_' and '.', "
                    "start and end with a letter or digit, and be at most 80 characters long (no '-').")
        location = _location(body)
        props = _obj(body.get("properties"), "properties")
        description = props.get("description")
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", name))
            existing = self.galleries.get(k)
            if existing is not None:
                if existing.location != location:
                    raise PropertyChangeNotAllowed("Changing property 'location' is not allowed (gallery is in "
                                                   f"'{existing.location}').", status=400)
                existing.tags = _tags(body.get("tags")) if "tags" in body else existing.tags
                existing.description = description if isinstance(description, str) else existing.description
                op = self._new_operation(subscription_id, location, existing.id, "PUT", api_version)
                op.finish(self._now())
                return existing, False, op
            gallery = Gallery(subscription_id, resource_group, name, location, _tags(body.get("tags")),
                              description=description if isinstance(description, str) else None)
            op = self._new_operation(subscription_id, location, gallery.id, "PUT", api_version)
            gallery.operation = op
            self.galleries[k] = gallery
        self._run_after(self.gallery_create_duration, lambda emit: self._finish_simple(self.galleries, k, op, caller,
                                                                                       emit,
                                                                                       "Microsoft.Compute"
                                                                                       "/galleries/write"))
        return gallery, True, op

    def _finish_simple(self, store: dict[str, Any], k: str, op: Operation, caller: dict[str, str] | None, emit: bool,
                       operation_name: str) -> None:
        with self._lock:
            record = store.get(k)
            if record is None or record.operation is not op:
                op.finish(self._now(), status="Canceled")
                return
            error = self._forced_failure(k)
            op.finish(self._now(), error)
            record.provisioning_state = "Failed" if error else "Succeeded"
            subject = record.id
        if emit:
            self._emit(subject, operation_name, caller, error is None)

    def get_gallery(self, subscription_id: str, resource_group: str, name: str) -> Gallery:
        return self._get(self.galleries, subscription_id, resource_group, "galleries", "galleries", name)

    def delete_gallery(self, subscription_id: str, resource_group: str, name: str) -> bool:
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", name))
            if k not in self.galleries:
                return False
            if any(d.gallery_key == k for d in self.gallery_images.values()):
                raise CannotDeleteResource()
            del self.galleries[k]
            return True

    def list_galleries(self, subscription_id: str, resource_group: str | None = None) -> list[Gallery]:
        if resource_group:
            return self._in_group(self.galleries, subscription_id, resource_group)
        return self._in_subscription(self.galleries, subscription_id)

    def put_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str,
                          body: dict[str, Any], *,
                          api_version: str | None = None,
                          caller: dict[str, str] | None = None) -> tuple[GalleryImage, bool, Operation]:
        """Create or update an image definition (osType, osState, hyperVGeneration, identifier are fixed once
        created)."""
        self._require_group(subscription_id, resource_group)
        _check_name(name, _GALLERY_IMAGE_NAME, "gallery image",
                    "Use 1-80 letters, digits, '_', '.', '-', starting and ending with a letter or digit.")
        parent = self.galleries.get(key(_arm_id(subscription_id, resource_group, "galleries", gallery)))
        if parent is None:
            raise ParentResourceNotFound(gallery)
        location = _location(body)
        if location != parent.location:
            raise InvalidParameter(f"The location '{location}' of the gallery image must be the gallery's location "
                                   f"'{parent.location}'.")
        props = _obj(body.get("properties"), "properties")
        os_type = _enum(props.get("osType"), OS_TYPES, "properties.osType", required=True) or "Linux"
        os_state = _enum(props.get("osState"), OS_STATES, "properties.osState", required=True) or "Generalized"
        generation = _enum(props.get("hyperVGeneration"), HYPERV_GENERATIONS, "properties.hyperVGeneration",
                           default="V1") or "V1"
        architecture = (_enum(props.get("architecture"), ARCHITECTURES, "properties.architecture", default="x64")
                        or "x64")
        identifier_in = _obj(props.get("identifier"), "properties.identifier")
        if not identifier_in:
            raise InvalidParameter.missing("properties.identifier")
        identifier = {}
        for part in ("publisher", "offer", "sku"):
            value = identifier_in.get(part)
            if not isinstance(value, str) or not value:
                raise InvalidParameter.missing(f"properties.identifier.{part}")
            identifier[part] = value
        extra = {f: props[f] for f in ("description", "eula", "privacyStatementUri", "releaseNoteUri", "endOfLifeDate",
                                       "recommended",
                                       "disallowed", "purchasePlan", "features", "allowUpdateImage")
                 if props.get(f) is not None}
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", name))
            existing = self.gallery_images.get(k)
            if existing is not None:
                for field_name, old, new in (("osType", existing.os_type, os_type),
                                             ("osState", existing.os_state, os_state),
                                             ("hyperVGeneration", existing.hyper_v_generation, generation),
                                             ("identifier", existing.identifier, identifier)):
                    if old != new:
                        raise PropertyChangeNotAllowed(f"Changing property 'galleryImage.properties.{field_name}' is "
                                                       "not allowed.")
                existing.extra = extra
                existing.tags = _tags(body.get("tags")) if "tags" in body else existing.tags
                op = self._new_operation(subscription_id, location, existing.id, "PUT", api_version)
                op.finish(self._now())
                return existing, False, op
            definition = GalleryImage(subscription_id, resource_group, name, location, _tags(body.get("tags")),
                                      gallery=parent.name,
                                      os_type=os_type, os_state=os_state, hyper_v_generation=generation,
                                      identifier=identifier,
                                      architecture=architecture, extra=extra)
            op = self._new_operation(subscription_id, location, definition.id, "PUT", api_version)
            definition.operation = op
            self.gallery_images[k] = definition
        self._run_after(self.gallery_image_create_duration,
                        lambda emit: self._finish_simple(self.gallery_images, k, op, caller, emit,
                                                         "Microsoft.Compute/galleries/images/write"))
        return definition, True, op

    def get_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str) -> GalleryImage:
        return self._get(self.gallery_images, subscription_id, resource_group, "galleries/images", "galleries", gallery,
                         "images", name)

    def delete_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str) -> bool:
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", name))
            if k not in self.gallery_images:
                return False
            if any(v.definition_key == k for v in self.gallery_image_versions.values()):
                raise CannotDeleteResource()
            del self.gallery_images[k]
            return True

    def list_gallery_images(self, subscription_id: str, resource_group: str, gallery: str) -> list[GalleryImage]:
        parent = self.get_gallery(subscription_id, resource_group, gallery)
        with self._lock:
            return sorted((d for d in self.gallery_images.values() if d.gallery_key == parent.key),
                          key=lambda d: d.name.lower())
