"""Microsoft.Compute: the asynchronous-operation record, the tracked-resource base and the backend plumbing
(clock, ids, operations, events, look-ups) that every Compute resource mixin uses.
"""

from __future__ import annotations

import random
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from emulator.compute.exceptions import ForcedOperationFailure, NotFound, ResourceNotFound
from emulator.compute.params import PROVIDER, _arm_id, iso, normalize_region
from emulator.exceptions import AzureError
from emulator.ids import is_within, key, resource_group_id

if TYPE_CHECKING:
    from emulator.azure import Emulator
    from emulator.compute.disks import Disk, Snapshot
    from emulator.compute.galleries import Gallery, GalleryImage
    from emulator.compute.gallery_versions import GalleryImageVersion
    from emulator.compute.images import Image
    from emulator.compute.marketplace import MarketplaceImage


@dataclass
class Operation:
    """An asynchronous operation, as ``GET .../locations/{loc}/operations/{name}`` reports it."""

    name: str
    subscription_id: str
    location: str
    resource_id: str
    method: str  # PUT | PATCH | DELETE
    start_time: datetime
    api_version: str | None = None
    status: str = "InProgress"  # InProgress | Succeeded | Failed | Canceled
    end_time: datetime | None = None
    error: AzureError | None = None

    @property
    def done(self) -> bool:
        return self.status != "InProgress"

    def finish(self, now: datetime, error: AzureError | None = None, status: str | None = None) -> None:
        self.end_time = now
        self.error = error
        self.status = status or ("Failed" if error is not None else "Succeeded")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"startTime": iso(self.start_time), "status": self.status, "name": self.name}
        if self.end_time is not None:
            body["endTime"] = iso(self.end_time)
        if self.error is not None:
            body["error"] = self.error.body()["error"]
        return body


@dataclass
class _Tracked(ABC):
    subscription_id: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)

    resource_type: ClassVar[str] = ""

    @property
    @abstractmethod
    def id(self) -> str:
        """The resource's ARM id (each resource type builds its own)."""

    @property
    def key(self) -> str:
        return key(self.id)

    def envelope(self, properties: dict[str, Any]) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "type": self.resource_type, "location": self.location,
                "tags": dict(self.tags), "properties": properties}


class ComputeCore:
    """What every Compute resource mixin shares: the state (set up by ``ComputeBackend.__init__``) and the plumbing."""

    emulator: Emulator
    _lock: threading.RLock
    _rng: random.Random
    disks: dict[str, Disk]
    snapshots: dict[str, Snapshot]
    images: dict[str, Image]
    galleries: dict[str, Gallery]
    gallery_images: dict[str, GalleryImage]
    gallery_image_versions: dict[str, GalleryImageVersion]
    operations: dict[str, Operation]
    marketplace: dict[tuple[str, str, str], MarketplaceImage]
    _forced_failures: dict[str, tuple[str, str]]

    # ---------------------------------------------------------------------------------------
    # helpers
    def _now(self) -> datetime:
        return self.emulator.clock.now()

    def _uuid(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _require_group(self, subscription_id: str, resource_group: str) -> None:
        self.emulator.resources.require_group(subscription_id, resource_group)

    def _new_operation(self, subscription_id: str, location: str, resource_id: str, method: str,
                       api_version: str | None) -> Operation:
        op = Operation(self._uuid(), subscription_id, normalize_region(location), resource_id, method, self._now(),
                       api_version)
        self.operations[op.name.lower()] = op
        return op

    def _run_after(self, duration: timedelta, finish: Callable[[bool], None]) -> None:
        """Finish an operation now (``emit=False``: the dispatcher raises the event for the request)
        or later on the scheduler (``emit=True``: the operation raises its own event, as ARM does)."""
        if duration <= timedelta(0):
            finish(False)
        else:
            self.emulator.scheduler.after(duration, lambda: finish(True))

    def _emit(self, subject: str, operation_name: str, caller: dict[str, str] | None, ok: bool) -> None:
        # The Event Grid backend is another module's; stay usable while it is still a placeholder.
        emit = getattr(self.emulator.eventgrid, "emit_resource_event", None)
        if emit is None:
            return
        emit(event_type="Microsoft.Resources.ResourceWriteSuccess" if ok
             else "Microsoft.Resources.ResourceWriteFailure",
             subject=subject, operation_name=operation_name, claims=dict(caller or {}),
             status="Succeeded" if ok else "Failed")

    def fail_next_operation(self, resource_id: str, code: str = "InternalOperationError",
                            message: str = "An internal execution error occurred. Please retry later.") -> None:
        """Make the next long-running operation on ``resource_id`` (image or gallery version) end Failed."""
        with self._lock:
            self._forced_failures[key(resource_id)] = (code, message)

    def _forced_failure(self, resource_key: str) -> AzureError | None:
        forced = self._forced_failures.pop(resource_key, None)
        return ForcedOperationFailure(*forced) if forced else None

    def get_operation(self, subscription_id: str, location: str, name: str) -> Operation:
        op = self.operations.get(name.lower())
        if (op is None or op.subscription_id.lower() != subscription_id.lower()
            or op.location != normalize_region(location)):
            raise NotFound(f"The operation '{name}' was not found in location '{location}'.")
        return op

    def find(self, resource_id: str) -> Any | None:
        """Whatever compute resource has this id (any casing), or None."""
        k = key(resource_id)
        for store in (self.disks, self.snapshots, self.images, self.galleries, self.gallery_images,
                      self.gallery_image_versions):
            if k in store:
                return store[k]
        return None

    def _in_group(self, store: dict[str, Any], subscription_id: str, resource_group: str) -> list[Any]:
        scope = resource_group_id(subscription_id, resource_group)
        self._require_group(subscription_id, resource_group)
        with self._lock:
            return sorted((r for k, r in store.items() if is_within(k, scope)), key=lambda r: r.name.lower())

    def _in_subscription(self, store: dict[str, Any], subscription_id: str) -> list[Any]:
        with self._lock:
            return sorted((r for k, r in store.items() if is_within(k, f"/subscriptions/{subscription_id}")),
                          key=lambda r: r.key)

    def _drop_group(self, subscription_id: str, resource_group: str) -> None:
        scope = resource_group_id(subscription_id, resource_group)
        with self._lock:
            for store in (self.disks, self.snapshots, self.images, self.galleries, self.gallery_images,
                          self.gallery_image_versions):
                for k in [k for k in store if is_within(k, scope)]:
                    del store[k]

    def _get(self, store: dict[str, Any], subscription_id: str, resource_group: str, kind: str, *segments: str) -> Any:
        self._require_group(subscription_id, resource_group)  # ARM answers ResourceGroupNotFound first
        record = store.get(key(_arm_id(subscription_id, resource_group, *segments)))
        if record is None:
            # ARM's answer for a missing tracked resource.
            raise ResourceNotFound(f"The Resource '{PROVIDER}/{kind}/{'/'.join(segments[1::2])}' under resource "
                                   f"group '{resource_group}' was not found. For more details please go to "
                                   "https://aka.ms/ARMResourceNotFoundFix")
        return record
