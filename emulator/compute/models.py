"""Microsoft.Compute: managed disks, snapshots, managed images and the Azure Compute Gallery.

State and behaviour only (HTTP lives in ``responses.py``). Shapes and rules follow the REST specs
(ComputeRP 2025-04-01 images, DiskRP 2025-01-02 disks/snapshots, GalleryRP 2025-03-03) and what
azure-mgmt-compute 39 sends (images 2026-04-01, disks/snapshots 2026-03-02, galleries 2026-03-03):

* disks and snapshots are created synchronously (200, provisioningState ``Succeeded``);
* images and gallery image versions are long-running operations: accepted as ``Creating`` and
  finished by :attr:`Emulator.scheduler` after a virtual duration, with an operation-status
  resource (``.../locations/{loc}/operations/{id}``) and the Event Grid write event raised at the end;
* galleries and gallery image definitions finish at once by default (configurable durations).

Every public method used by the HTTP layer is also the one scenarios call to set things up, so
there is one code path per behaviour (see the ``create_*`` convenience wrappers at the bottom).
"""

from __future__ import annotations

import calendar
import random
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from emulator.core import AzureError
from emulator.ids import is_within, key, resource_group_id

if TYPE_CHECKING:
    from emulator.azure import Emulator

PROVIDER = "Microsoft.Compute"

OS_TYPES = ("Windows", "Linux")
OS_STATES = ("Generalized", "Specialized")
HYPERV_GENERATIONS = ("V1", "V2")
CACHING_TYPES = ("None", "ReadOnly", "ReadWrite")
DISK_SKUS = ("Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS", "PremiumV2_LRS")
SNAPSHOT_SKUS = ("Standard_LRS", "Premium_LRS", "Standard_ZRS")
GALLERY_STORAGE_TYPES = ("Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS")
ARCHITECTURES = ("x64", "Arm64")

# From GalleryRP api-version 2026-03-03 a version blocks early deletion unless told otherwise, with
# an end of life six months out (product brief, "What has changed since that article").
SAFETY_DEFAULT_API_VERSION = "2026-03-03"
DEFAULT_END_OF_LIFE_MONTHS = 6

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
_GALLERY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]{0,78}[A-Za-z0-9])?$")
_GALLERY_IMAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9])?$")
_VERSION_NAME = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_INT32_MAX = 2**31 - 1
_MARKETPLACE_ID = re.compile(
    r"^/?subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/locations/(?P<location>[^/]+)/publishers/(?P<publisher>[^/]+)"
    r"/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions/(?P<version>[^/]+)$",
    re.IGNORECASE,
)


def normalize_region(name: str) -> str:
    """ARM's short region name: "West Europe" -> "westeurope"."""
    return "".join(str(name).split()).lower()


def iso(when: datetime) -> str:
    """Compute's timestamp format: ``2016-12-28T04:41:35.079872+00:00``."""
    return when.isoformat(timespec="microseconds")


def add_months(when: datetime, months: int) -> datetime:
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def invalid(message: str, code: str = "InvalidParameter") -> AzureError:
    return AzureError(400, code, message)


def _missing(path: str) -> AzureError:
    return invalid(f"Required parameter '{path}' is missing (null).")


def _parse_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise invalid(f"The value of parameter '{path}' is invalid: expected an ISO 8601 date-time.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"The value '{value}' of parameter '{path}' is not a valid ISO 8601 date-time.") from None
    if parsed.tzinfo is None:
        raise invalid(f"The value '{value}' of parameter '{path}' must carry a time zone (e.g. 'Z').")
    return parsed


def _enum(value: Any, allowed: Iterable[str], path: str, *, required: bool = False, default: str | None = None) -> str | None:
    """Azure enums are case-insensitive on input and answered in their canonical casing."""
    if value is None:
        if required:
            raise _missing(path)
        return default
    for option in allowed:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    allowed_text = ", ".join(f"'{a}'" for a in allowed)
    raise invalid(f"The value '{value}' of parameter '{path}' is not allowed. Allowed values are {allowed_text}.")


def _bool(value: Any, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"The value '{value}' of parameter '{path}' is not a boolean.")
    return value


def _int(value: Any, path: str, *, required: bool = False, default: int | None = None, minimum: int | None = None) -> int | None:
    if value is None:
        if required:
            raise _missing(path)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"The value '{value}' of parameter '{path}' is not an integer.")
    if minimum is not None and value < minimum:
        raise invalid(f"The value {value} of parameter '{path}' must be at least {minimum}.")
    return value


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"The value of parameter '{path}' must be a JSON object.")
    return value


def _ref_id(value: Any, path: str) -> str | None:
    """A SubResource ``{"id": "..."}``; returns the id (as given) or None."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"].strip():
        raise invalid(f"The value of parameter '{path}.id' must be a resource id.")
    return value["id"]


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise invalid("The value of parameter 'tags' must be an object of string values.", "InvalidTag")
    if len(value) > 50:
        raise invalid("A resource can have at most 50 tags.", "InvalidTag")
    return dict(value)


def _location(body: dict[str, Any]) -> str:
    location = body.get("location")
    if not isinstance(location, str) or not location.strip():
        raise invalid("The 'location' property is required for this resource.", "LocationRequired")
    return normalize_region(location)


def _check_name(name: str, pattern: re.Pattern[str], kind: str, rule: str) -> None:
    if not pattern.match(name):
        raise invalid(f"The {kind} name '{name}' is invalid. {rule}", "InvalidResourceName")


def _sku_tier(sku: str) -> str:
    return "Premium" if sku.lower().startswith("premium") else "Ultra" if sku.lower().startswith("ultra") else "Standard"


def _arm_id(subscription_id: str, resource_group: str, *segments: str) -> str:
    return f"{resource_group_id(subscription_id, resource_group)}/providers/{PROVIDER}/" + "/".join(segments)


# --------------------------------------------------------------------------------------------
# Marketplace catalogue: the platform images a disk can be created from (creationData FromImage)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketplaceImage:
    publisher: str
    offer: str
    sku: str
    os_type: str
    hyper_v_generation: str
    versions: tuple[str, ...]
    disk_size_gb: int = 30
    # Third-party images carry a purchase plan that every disk made from them inherits.
    plan: dict[str, str] | None = None

    @property
    def urn(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}"

    def catalogue_key(self) -> tuple[str, str, str]:
        return self.publisher.lower(), self.offer.lower(), self.sku.lower()


DEFAULT_MARKETPLACE: tuple[MarketplaceImage, ...] = (
    MarketplaceImage("Canonical", "ubuntu-24_04-lts", "server", "Linux", "V2", ("24.04.202509090", "24.04.202510010")),
    MarketplaceImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "Linux", "V1", ("22.04.202509090", "22.04.202510010")),
    MarketplaceImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "Linux", "V2", ("22.04.202509090", "22.04.202510010")),
    MarketplaceImage("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter", "Windows", "V1", ("20348.4171.250910",), 127),
    MarketplaceImage("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-g2", "Windows", "V2", ("20348.4171.250910",), 127),
    MarketplaceImage("microsoft-dsvm", "ubuntu-hpc", "2204", "Linux", "V2", ("22.04.2025091001",), 64),
    MarketplaceImage("almalinux", "almalinux-x86_64", "9-gen2", "Linux", "V2", ("9.6.202505220",)),
    MarketplaceImage("ni", "ni-ubuntu", "ni-ubuntu-2204", "Linux", "V1", ("1.0.0",),
                     plan={"name": "ni-ubuntu-2204", "publisher": "ni", "product": "ni-ubuntu"}),
)


def marketplace_image_id(subscription_id: str, location: str, publisher: str, offer: str, sku: str, version: str) -> str:
    """The id Azure uses for a platform image version in ``creationData.imageReference.id``."""
    return (f"/Subscriptions/{subscription_id}/Providers/Microsoft.Compute/Locations/{normalize_region(location)}"
            f"/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{version}")


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


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
        props = {**self.extra, "osType": self.os_type, "osState": self.os_state, "hyperVGeneration": self.hyper_v_generation,
                 "identifier": dict(self.identifier), "architecture": self.architecture, "provisioningState": self.provisioning_state}
        return self.envelope(props)


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
        return _arm_id(self.subscription_id, self.resource_group, "galleries", self.gallery, "images", self.image, "versions", self.name)

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
        aggregated = "Failed" if "Failed" in states else "Completed" if states == {"Completed"} else "InProgress" if summary else "Unknown"
        return {"aggregatedState": aggregated, "summary": summary}

    def to_json(self, now: datetime | None = None, expand_replication: bool = False) -> dict[str, Any]:
        publishing: dict[str, Any] = {"targetRegions": [t.to_json() for t in self.target_regions], "replicaCount": self.replica_count,
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


# --------------------------------------------------------------------------------------------
# Backend
# --------------------------------------------------------------------------------------------


class ComputeBackend:
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
    # helpers
    def _now(self) -> datetime:
        return self.emulator.clock.now()

    def _uuid(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _require_group(self, subscription_id: str, resource_group: str) -> None:
        self.emulator.resources.require_group(subscription_id, resource_group)

    def _new_operation(self, subscription_id: str, location: str, resource_id: str, method: str, api_version: str | None) -> Operation:
        op = Operation(self._uuid(), subscription_id, normalize_region(location), resource_id, method, self._now(), api_version)
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
        emit(event_type="Microsoft.Resources.ResourceWriteSuccess" if ok else "Microsoft.Resources.ResourceWriteFailure",
             subject=subject, operation_name=operation_name, claims=dict(caller or {}), status="Succeeded" if ok else "Failed")

    def fail_next_operation(self, resource_id: str, code: str = "InternalOperationError",
                            message: str = "An internal execution error occurred. Please retry later.") -> None:
        """Make the next long-running operation on ``resource_id`` (image or gallery version) end Failed."""
        with self._lock:
            self._forced_failures[key(resource_id)] = (code, message)

    def _forced_failure(self, resource_key: str) -> AzureError | None:
        forced = self._forced_failures.pop(resource_key, None)
        return AzureError(500, forced[0], forced[1]) if forced else None

    def get_operation(self, subscription_id: str, location: str, name: str) -> Operation:
        op = self.operations.get(name.lower())
        if op is None or op.subscription_id.lower() != subscription_id.lower() or op.location != normalize_region(location):
            raise AzureError(404, "NotFound", f"The operation '{name}' was not found in location '{location}'.")
        return op

    def find(self, resource_id: str) -> Any | None:
        """Whatever compute resource has this id (any casing), or None."""
        k = key(resource_id)
        for store in (self.disks, self.snapshots, self.images, self.galleries, self.gallery_images, self.gallery_image_versions):
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
            return sorted((r for k, r in store.items() if is_within(k, f"/subscriptions/{subscription_id}")), key=lambda r: r.key)

    def _drop_group(self, subscription_id: str, resource_group: str) -> None:
        scope = resource_group_id(subscription_id, resource_group)
        with self._lock:
            for store in (self.disks, self.snapshots, self.images, self.galleries, self.gallery_images, self.gallery_image_versions):
                for k in [k for k in store if is_within(k, scope)]:
                    del store[k]

    # ---------------------------------------------------------------------------------------
    # Marketplace catalogue
    def add_marketplace_image(self, publisher: str, offer: str, sku: str, *, os_type: str = "Linux", hyper_v_generation: str = "V1",
                              versions: Iterable[str] = ("1.0.0",), disk_size_gb: int = 30,
                              plan: dict[str, str] | None = None) -> MarketplaceImage:
        """Add (or replace) a platform image, e.g. a third-party image with a purchase ``plan`` {name, publisher, product}."""
        entry = MarketplaceImage(publisher, offer, sku, _enum(os_type, OS_TYPES, "osType", required=True) or "Linux",
                                 _enum(hyper_v_generation, HYPERV_GENERATIONS, "hyperVGeneration", required=True) or "V1",
                                 tuple(versions), disk_size_gb, dict(plan) if plan else None)
        with self._lock:
            self.marketplace[entry.catalogue_key()] = entry
        return entry

    def marketplace_image(self, image_reference_id: str) -> tuple[MarketplaceImage, str]:
        """The catalogue entry and version for a platform image id, or 404 ``PlatformImageNotFound``."""
        m = _MARKETPLACE_ID.match(image_reference_id.strip())
        if m is None:
            raise invalid(f"The value '{image_reference_id}' of parameter 'creationData.imageReference.id' is not a valid platform image id. "
                          "Expected /Subscriptions/{sub}/Providers/Microsoft.Compute/Locations/{loc}/Publishers/{pub}/ArtifactTypes/VMImage"
                          "/Offers/{offer}/Skus/{sku}/Versions/{version}.")
        entry = self.marketplace.get((m["publisher"].lower(), m["offer"].lower(), m["sku"].lower()))
        version = m["version"]
        if entry is None or version.lower() not in {v.lower() for v in entry.versions}:
            raise AzureError(404, "PlatformImageNotFound",
                             f"The platform image '{m['publisher']}:{m['offer']}:{m['sku']}:{version}' is not available. "
                             "Verify that all fields in the storage profile are correct.")
        return entry, version

    # ---------------------------------------------------------------------------------------
    # Disks and snapshots (DiskRP): synchronous, provisioningState Succeeded at once
    def _disk_source(self, source_id: str) -> _DiskLike:
        k = key(source_id)
        source = self.snapshots.get(k) or self.disks.get(k)
        if source is None:
            raise AzureError(404, "NotFound", f"Resource '{source_id}' was not found. A copy needs an existing disk or snapshot.")
        return source

    def _build_disk_like(self, cls: type[_DiskLike], subscription_id: str, resource_group: str, name: str,
                         body: dict[str, Any]) -> _DiskLike:
        kind = "snapshot" if cls is Snapshot else "disk"
        _check_name(name, _NAME, kind, "Use 1-80 letters, digits, '_', '.', '-', starting with a letter or digit.")
        location = _location(body)
        props = _obj(body.get("properties"), "properties")
        creation = _obj(props.get("creationData"), "properties.creationData")
        if not creation:
            raise _missing("properties.creationData")
        # DiskRP DiskCreateOption: snapshots are Copy (same region) or CopyStart (a background deep copy, the way an
        # incremental snapshot is copied to another region: Learn "Copy an incremental snapshot to a new region").
        options = ("Copy", "CopyStart") if cls is Snapshot else ("Empty", "FromImage", "Copy")
        create_option = _enum(creation.get("createOption"), options, "properties.creationData.createOption", required=True)
        sku = _enum(_obj(body.get("sku"), "sku").get("name"), SNAPSHOT_SKUS if cls is Snapshot else DISK_SKUS, "sku.name",
                    default="Standard_LRS")
        size = _int(props.get("diskSizeGB"), "properties.diskSizeGB", minimum=1)
        os_type = _enum(props.get("osType"), OS_TYPES, "properties.osType")
        generation = _enum(props.get("hyperVGeneration"), HYPERV_GENERATIONS, "properties.hyperVGeneration")
        plan: dict[str, str] | None = None
        creation_data: dict[str, Any] = {"createOption": create_option}
        if create_option == "Empty":
            if size is None:
                raise _missing("properties.diskSizeGB")
        elif create_option == "FromImage":
            image_ref = _obj(creation.get("imageReference"), "properties.creationData.imageReference")
            gallery_ref = _obj(creation.get("galleryImageReference"), "properties.creationData.galleryImageReference")
            if image_ref.get("id"):
                entry, _version = self.marketplace_image(str(image_ref["id"]))
                os_type, generation, plan = entry.os_type, entry.hyper_v_generation, dict(entry.plan) if entry.plan else None
                if size is not None and size < entry.disk_size_gb:
                    raise invalid(f"The specified disk size {size} GB is smaller than the size {entry.disk_size_gb} GB of the image "
                                  f"'{entry.urn}'.", "InvalidParameter")
                size = size or entry.disk_size_gb
                creation_data["imageReference"] = {"id": image_ref["id"]}
            elif gallery_ref.get("id"):
                version = self.gallery_image_versions.get(key(str(gallery_ref["id"])))
                if version is None or version.provisioning_state not in ("Succeeded", "Updating"):
                    raise AzureError(404, "NotFound", f"Gallery image version '{gallery_ref['id']}' was not found or is not ready.")
                definition = self.gallery_images[version.definition_key]
                os_type, generation = definition.os_type, definition.hyper_v_generation
                size = size or (version.storage_profile.get("osDiskImage") or {}).get("sizeInGB") or 30
                creation_data["galleryImageReference"] = {"id": gallery_ref["id"]}
            else:
                raise _missing("properties.creationData.imageReference.id")
        else:  # Copy
            source_id = creation.get("sourceResourceId")
            if not isinstance(source_id, str) or not source_id:
                raise _missing("properties.creationData.sourceResourceId")
            source = self._disk_source(source_id)
            os_type = source.os_type if os_type is None else os_type
            generation = source.hyper_v_generation if generation is None else generation
            plan = dict(source.purchase_plan) if source.purchase_plan else None
            if size is not None and size < source.disk_size_gb:
                raise invalid(f"Disk size {size} GB is smaller than the source's size {source.disk_size_gb} GB.")
            size = size or source.disk_size_gb
            creation_data.update({"sourceResourceId": source_id, "sourceUniqueId": source.unique_id})
            if create_option == "CopyStart" and not (isinstance(source, Snapshot) and source.incremental):
                # Learn, "Copy an incremental snapshot to a new region": CopyStart copies incremental snapshots only.
                raise invalid("CopyStart copies an incremental snapshot: the source must be a snapshot created with "
                              "'properties.incremental': true.", "BadRequest")
        record = cls(subscription_id, resource_group, name, location, _tags(body.get("tags")), sku=sku or "Standard_LRS",
                     creation_data=creation_data, disk_size_gb=size or 0, os_type=os_type, hyper_v_generation=generation,
                     purchase_plan=plan, unique_id=self._uuid(), time_created=self._now())
        if isinstance(record, Snapshot):
            record.incremental = _bool(props.get("incremental"), "properties.incremental", False)
            if create_option == "CopyStart":
                record.copy_started_at, record.copy_duration, record.clock = self._now(), self.copy_start_duration, self._now
        return record

    def _put_disk_like(self, store: dict[str, Any], cls: type[_DiskLike], subscription_id: str, resource_group: str, name: str,
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
                        raise invalid(f"Disk size cannot be reduced from {existing.disk_size_gb} GB to {size} GB.", "BadRequest")
                    existing.disk_size_gb = size
                return existing, False
            record = self._build_disk_like(cls, subscription_id, resource_group, name, body)
            store[k] = record
            return record, True

    def put_disk(self, subscription_id: str, resource_group: str, name: str, body: dict[str, Any]) -> tuple[Disk, bool]:
        """Create (createOption FromImage | Empty | Copy) or update a managed disk. Returns (disk, created)."""
        return self._put_disk_like(self.disks, Disk, subscription_id, resource_group, name, body)

    def put_snapshot(self, subscription_id: str, resource_group: str, name: str, body: dict[str, Any]) -> tuple[Snapshot, bool]:
        """Create (createOption Copy from a disk or snapshot) or update a snapshot. Returns (snapshot, created)."""
        return self._put_disk_like(self.snapshots, Snapshot, subscription_id, resource_group, name, body)

    def _get(self, store: dict[str, Any], subscription_id: str, resource_group: str, kind: str, *segments: str) -> Any:
        self._require_group(subscription_id, resource_group)  # ARM answers ResourceGroupNotFound first
        record = store.get(key(_arm_id(subscription_id, resource_group, *segments)))
        if record is None:
            # ARM's answer for a missing tracked resource.
            raise AzureError(404, "ResourceNotFound", f"The Resource '{PROVIDER}/{kind}/{'/'.join(segments[1::2])}' under resource group "
                             f"'{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return record

    def get_disk(self, subscription_id: str, resource_group: str, name: str) -> Disk:
        return self._get(self.disks, subscription_id, resource_group, "disks", "disks", name)

    def get_snapshot(self, subscription_id: str, resource_group: str, name: str) -> Snapshot:
        return self._get(self.snapshots, subscription_id, resource_group, "snapshots", "snapshots", name)

    def update_snapshot(self, subscription_id: str, resource_group: str, name: str, patch: dict[str, Any]) -> Snapshot:
        """PATCH (SnapshotUpdate): ``tags`` replace the whole set; ``properties`` osType/diskSizeGB/supportsHibernation."""
        with self._lock:
            snap = self.get_snapshot(subscription_id, resource_group, name)
            props = _obj(patch.get("properties"), "properties")
            tags = _tags(patch.get("tags")) if "tags" in patch else None
            os_type = _enum(props.get("osType"), OS_TYPES, "properties.osType")
            size = _int(props.get("diskSizeGB"), "properties.diskSizeGB", minimum=1)
            sku = _enum(_obj(patch.get("sku"), "sku").get("name"), SNAPSHOT_SKUS, "sku.name")
            if size is not None and size < snap.disk_size_gb:
                raise invalid(f"Disk size cannot be reduced from {snap.disk_size_gb} GB to {size} GB.", "BadRequest")
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
            return self.snapshots.pop(key(_arm_id(subscription_id, resource_group, "snapshots", name)), None) is not None

    def list_disks(self, subscription_id: str, resource_group: str | None = None) -> list[Disk]:
        return self._in_group(self.disks, subscription_id, resource_group) if resource_group else self._in_subscription(self.disks, subscription_id)

    def list_snapshots(self, subscription_id: str, resource_group: str | None = None) -> list[Snapshot]:
        if resource_group:
            return self._in_group(self.snapshots, subscription_id, resource_group)
        return self._in_subscription(self.snapshots, subscription_id)

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
                raise invalid(f"The value of parameter '{path}.blobUri' must be a string.")
            out["blobUri"] = disk["blobUri"]
        if not any(f in out for f in ("snapshot", "managedDisk", "blobUri")):
            raise invalid(f"At least one of '{path}.snapshot', '{path}.managedDisk' or '{path}.blobUri' is required.")
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
                return AzureError(404, "NotFound", f"{kind} '{ref}' was not found. Every snapshot and managed disk an image "
                                  "references must exist until the image is created.")
            source = store[key(ref)]
            if source.copying:
                # A snapshot whose CopyStart copy is below completionPercent 100 cannot be read yet (the exact error is not
                # documented; the emulator refuses, the less convenient choice).
                return AzureError(409, "OperationNotAllowed", f"Snapshot '{ref}' is still being copied (completionPercent "
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
            raise AzureError(404, "NotFound", f"Virtual machine '{source_vm}' was not found (the emulator has no virtual machines).")
        if not profile_in:
            raise _missing("properties.storageProfile")
        if profile_in.get("osDisk") is None:
            raise _missing("properties.storageProfile.osDisk")
        profile: dict[str, Any] = {"osDisk": self._image_disk(profile_in["osDisk"], "properties.storageProfile.osDisk", os_disk=True)}
        data_in = profile_in.get("dataDisks") or []
        if not isinstance(data_in, list):
            raise invalid("The value of parameter 'properties.storageProfile.dataDisks' must be an array.")
        data = [self._image_disk(d, f"properties.storageProfile.dataDisks[{i}]", os_disk=False) for i, d in enumerate(data_in)]
        luns = [d["lun"] for d in data]
        if len(set(luns)) != len(luns):
            raise invalid("Image data disks must have unique 'lun' values.")
        profile["dataDisks"] = data
        profile["zoneResilient"] = _bool(profile_in.get("zoneResilient"), "properties.storageProfile.zoneResilient", False)
        # Azure's default is V1 whatever the source: an image of a Gen2 snapshot must say V2 itself.
        generation = _enum(props.get("hyperVGeneration"), HYPERV_GENERATIONS, "properties.hyperVGeneration", default="V1") or "V1"
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "images", name))
            existing = self.images.get(k)
            if existing is not None and existing.operation is not None and not existing.operation.done:
                raise AzureError(409, "Conflict", "The request failed due to conflict with a concurrent request: "
                                 f"an operation on image '{name}' is still in progress.")
            image = Image(subscription_id, resource_group, name, location, _tags(body.get("tags")), storage_profile=profile,
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

    def delete_image(self, subscription_id: str, resource_group: str, name: str, *, api_version: str | None = None) -> Operation | None:
        """Delete at once; returns the (already finished) delete operation, or None when there was nothing."""
        with self._lock:
            image = self.images.pop(key(_arm_id(subscription_id, resource_group, "images", name)), None)
            if image is None:
                return None
            op = self._new_operation(subscription_id, image.location, image.id, "DELETE", api_version)
            op.finish(self._now())
            return op

    def list_images(self, subscription_id: str, resource_group: str | None = None) -> list[Image]:
        return self._in_group(self.images, subscription_id, resource_group) if resource_group else self._in_subscription(self.images, subscription_id)

    # ---------------------------------------------------------------------------------------
    # Galleries and image definitions
    def _parent_missing(self, kind: str, name: str) -> AzureError:
        return AzureError(404, "ParentResourceNotFound",
                          f"Can not perform requested operation on nested resource. Parent resource '{name}' not found.")

    def put_gallery(self, subscription_id: str, resource_group: str, name: str, body: dict[str, Any], *,
                    api_version: str | None = None, caller: dict[str, str] | None = None) -> tuple[Gallery, bool, Operation]:
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
                    raise invalid(f"Changing property 'location' is not allowed (gallery is in '{existing.location}').", "PropertyChangeNotAllowed")
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
        self._run_after(self.gallery_create_duration, lambda emit: self._finish_simple(self.galleries, k, op, caller, emit,
                                                                                         "Microsoft.Compute/galleries/write"))
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
                raise AzureError(409, "CannotDeleteResource", "Can not delete resource before nested resources are deleted.")
            del self.galleries[k]
            return True

    def list_galleries(self, subscription_id: str, resource_group: str | None = None) -> list[Gallery]:
        if resource_group:
            return self._in_group(self.galleries, subscription_id, resource_group)
        return self._in_subscription(self.galleries, subscription_id)

    def put_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str, body: dict[str, Any], *,
                          api_version: str | None = None, caller: dict[str, str] | None = None) -> tuple[GalleryImage, bool, Operation]:
        """Create or update an image definition (osType, osState, hyperVGeneration, identifier are fixed once created)."""
        self._require_group(subscription_id, resource_group)
        _check_name(name, _GALLERY_IMAGE_NAME, "gallery image", "Use 1-80 letters, digits, '_', '.', '-', starting and ending with a letter or digit.")
        parent = self.galleries.get(key(_arm_id(subscription_id, resource_group, "galleries", gallery)))
        if parent is None:
            raise self._parent_missing("gallery", gallery)
        location = _location(body)
        if location != parent.location:
            raise invalid(f"The location '{location}' of the gallery image must be the gallery's location '{parent.location}'.")
        props = _obj(body.get("properties"), "properties")
        os_type = _enum(props.get("osType"), OS_TYPES, "properties.osType", required=True) or "Linux"
        os_state = _enum(props.get("osState"), OS_STATES, "properties.osState", required=True) or "Generalized"
        generation = _enum(props.get("hyperVGeneration"), HYPERV_GENERATIONS, "properties.hyperVGeneration", default="V1") or "V1"
        architecture = _enum(props.get("architecture"), ARCHITECTURES, "properties.architecture", default="x64") or "x64"
        identifier_in = _obj(props.get("identifier"), "properties.identifier")
        if not identifier_in:
            raise _missing("properties.identifier")
        identifier = {}
        for part in ("publisher", "offer", "sku"):
            value = identifier_in.get(part)
            if not isinstance(value, str) or not value:
                raise _missing(f"properties.identifier.{part}")
            identifier[part] = value
        extra = {f: props[f] for f in ("description", "eula", "privacyStatementUri", "releaseNoteUri", "endOfLifeDate", "recommended",
                                        "disallowed", "purchasePlan", "features", "allowUpdateImage") if props.get(f) is not None}
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", name))
            existing = self.gallery_images.get(k)
            if existing is not None:
                for field_name, old, new in (("osType", existing.os_type, os_type), ("osState", existing.os_state, os_state),
                                             ("hyperVGeneration", existing.hyper_v_generation, generation),
                                             ("identifier", existing.identifier, identifier)):
                    if old != new:
                        raise AzureError(409, "PropertyChangeNotAllowed", f"Changing property 'galleryImage.properties.{field_name}' is not allowed.")
                existing.extra = extra
                existing.tags = _tags(body.get("tags")) if "tags" in body else existing.tags
                op = self._new_operation(subscription_id, location, existing.id, "PUT", api_version)
                op.finish(self._now())
                return existing, False, op
            definition = GalleryImage(subscription_id, resource_group, name, location, _tags(body.get("tags")), gallery=parent.name,
                                      os_type=os_type, os_state=os_state, hyper_v_generation=generation, identifier=identifier,
                                      architecture=architecture, extra=extra)
            op = self._new_operation(subscription_id, location, definition.id, "PUT", api_version)
            definition.operation = op
            self.gallery_images[k] = definition
        self._run_after(self.gallery_image_create_duration,
                        lambda emit: self._finish_simple(self.gallery_images, k, op, caller, emit, "Microsoft.Compute/galleries/images/write"))
        return definition, True, op

    def get_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str) -> GalleryImage:
        return self._get(self.gallery_images, subscription_id, resource_group, "galleries/images", "galleries", gallery, "images", name)

    def delete_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str) -> bool:
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", name))
            if k not in self.gallery_images:
                return False
            if any(v.definition_key == k for v in self.gallery_image_versions.values()):
                raise AzureError(409, "CannotDeleteResource", "Can not delete resource before nested resources are deleted.")
            del self.gallery_images[k]
            return True

    def list_gallery_images(self, subscription_id: str, resource_group: str, gallery: str) -> list[GalleryImage]:
        parent = self.get_gallery(subscription_id, resource_group, gallery)
        with self._lock:
            return sorted((d for d in self.gallery_images.values() if d.gallery_key == parent.key), key=lambda d: d.name.lower())

    # ---------------------------------------------------------------------------------------
    # Gallery image versions: PUT is a long-running operation (replication to every target region)
    def _version_storage_profile(self, profile_in: dict[str, Any], definition: GalleryImage) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Validate the source(s) against the definition; return (profile to answer, [(store, id)] to re-check at the end)."""
        path = "properties.storageProfile"
        source_id = _ref_id(profile_in.get("source"), f"{path}.source")
        os_in = _obj(profile_in.get("osDiskImage"), f"{path}.osDiskImage")
        data_in = profile_in.get("dataDiskImages") or []
        if not isinstance(data_in, list):
            raise invalid(f"The value of parameter '{path}.dataDiskImages' must be an array.")
        refs: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        os_size = 30
        if source_id is not None:
            image = self.images.get(key(source_id))
            if image is None:
                raise AzureError(404, "NotFound", f"The source image '{source_id}' was not found.")
            if image.provisioning_state not in ("Succeeded",):
                raise invalid(f"The source image '{source_id}' is in provisioning state '{image.provisioning_state}'; "
                              "it can be used once it is 'Succeeded'.")
            os_disk = image.storage_profile["osDisk"]
            self._check_against_definition(definition, os_disk["osType"], image.hyper_v_generation, source_id, os_disk["osState"])
            out["source"] = {"id": source_id}
            refs.append(("images", source_id))
            os_size = os_disk.get("diskSizeGB") or self._image_source_size(os_disk) or 30
            # As in the spec example: the OS disk image is cached ReadOnly, data disk images None.
            out["osDiskImage"] = {"sizeInGB": os_size, "hostCaching": "ReadOnly"}
            out["dataDiskImages"] = [{"lun": d["lun"], "sizeInGB": d.get("diskSizeGB") or self._image_source_size(d) or 10,
                                      "hostCaching": "None"} for d in image.storage_profile.get("dataDisks") or []]
            return out, refs
        if not os_in:
            raise invalid(f"Either '{path}.source.id' (a managed image) or '{path}.osDiskImage.source.id' (a snapshot or disk) is required.")
        os_source = _ref_id(os_in.get("source"), f"{path}.osDiskImage.source")
        if os_source is None:
            raise _missing(f"{path}.osDiskImage.source.id")
        source = self._disk_source(os_source)
        self._check_against_definition(definition, source.os_type, source.hyper_v_generation, os_source, None)
        refs.append((source.collection, os_source))
        out["osDiskImage"] = {"source": {"id": os_source}, "sizeInGB": source.disk_size_gb,
                              "hostCaching": _enum(os_in.get("hostCaching"), CACHING_TYPES, f"{path}.osDiskImage.hostCaching",
                                                   default="ReadOnly")}
        data_out, luns = [], set()
        for i, d in enumerate(data_in):
            d = _obj(d, f"{path}.dataDiskImages[{i}]")
            lun = _int(d.get("lun"), f"{path}.dataDiskImages[{i}].lun", required=True, minimum=0)
            if lun in luns:
                raise invalid(f"Data disk images must have unique 'lun' values (lun {lun} repeats).")
            luns.add(lun)
            data_source = _ref_id(d.get("source"), f"{path}.dataDiskImages[{i}].source")
            if data_source is None:
                raise _missing(f"{path}.dataDiskImages[{i}].source.id")
            src = self._disk_source(data_source)
            refs.append((src.collection, data_source))
            data_out.append({"source": {"id": data_source}, "lun": lun, "sizeInGB": src.disk_size_gb,
                             "hostCaching": _enum(d.get("hostCaching"), CACHING_TYPES, f"{path}.dataDiskImages[{i}].hostCaching", default="None")})
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
            raise invalid(f"The source '{source_id}' has osType '{os_type}' but the gallery image definition '{definition.name}' "
                          f"has osType '{definition.os_type}'.")
        if os_state is not None and os_state != definition.os_state:
            raise invalid(f"The source image '{source_id}' is '{os_state}' but the gallery image definition '{definition.name}' "
                          f"is '{definition.os_state}'. The osState of the source and of the definition must match.")
        if generation is not None and generation != definition.hyper_v_generation:
            raise invalid(f"The source '{source_id}' has hyperVGeneration '{generation}' but the gallery image definition "
                          f"'{definition.name}' has hyperVGeneration '{definition.hyper_v_generation}'.")

    def _publishing(self, publishing_in: dict[str, Any], location: str, *, default_from: GalleryImageVersion | None = None) -> dict[str, Any]:
        path = "properties.publishingProfile"
        replica_count = _int(publishing_in.get("replicaCount"), f"{path}.replicaCount", minimum=1,
                             default=default_from.replica_count if default_from else 1) or 1
        storage = _enum(publishing_in.get("storageAccountType"), GALLERY_STORAGE_TYPES, f"{path}.storageAccountType",
                        default=default_from.storage_account_type if default_from else "Standard_LRS") or "Standard_LRS"
        exclude = _bool(publishing_in.get("excludeFromLatest"), f"{path}.excludeFromLatest",
                        default_from.exclude_from_latest if default_from else False)
        eol = publishing_in.get("endOfLifeDate")
        end_of_life = _parse_time(eol, f"{path}.endOfLifeDate") if eol is not None else (default_from.end_of_life if default_from else None)
        regions_in = publishing_in.get("targetRegions")
        targets: list[TargetRegion] = []
        if regions_in is None:
            if default_from is not None:
                targets = list(default_from.target_regions)
            else:
                targets = [TargetRegion(location, replica_count, storage)]
        else:
            if not isinstance(regions_in, list) or not regions_in:
                raise invalid(f"The value of parameter '{path}.targetRegions' must be a non-empty array.")
            seen = set()
            for i, r in enumerate(regions_in):
                r = _obj(r, f"{path}.targetRegions[{i}]")
                name = r.get("name")
                if not isinstance(name, str) or not name.strip():
                    raise _missing(f"{path}.targetRegions[{i}].name")
                if normalize_region(name) in seen:
                    raise invalid(f"The target region '{name}' is listed more than once.")
                seen.add(normalize_region(name))
                targets.append(TargetRegion(
                    name,
                    _int(r.get("regionalReplicaCount"), f"{path}.targetRegions[{i}].regionalReplicaCount", minimum=1, default=replica_count)
                    or replica_count,
                    _enum(r.get("storageAccountType"), GALLERY_STORAGE_TYPES, f"{path}.targetRegions[{i}].storageAccountType",
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
                                  body: dict[str, Any], *, api_version: str | None = None, caller: dict[str, str] | None = None,
                                  duration: timedelta | None = None) -> tuple[GalleryImageVersion, bool, Operation]:
        """Start publishing a version from a managed image (``storageProfile.source.id``) or from snapshots/disks
        (``osDiskImage.source.id`` + ``dataDiskImages``). Returns (version, created, operation).

        Replication takes :attr:`version_base_duration`, plus :attr:`version_per_extra_replica` per extra replica and
        :attr:`version_per_remote_region` outside the home region; the slowest region decides (or ``duration``).
        """
        self._require_group(subscription_id, resource_group)
        m = _VERSION_NAME.match(name)
        if m is None or any(int(g) > _INT32_MAX for g in m.groups()):
            raise invalid(f"The gallery image version name '{name}' is invalid. It must follow the format Major(int32).Minor(int32).Patch(int32), "
                          "for example 1.0.0.")
        definition = self.gallery_images.get(key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", image)))
        if definition is None:
            if key(_arm_id(subscription_id, resource_group, "galleries", gallery)) not in self.galleries:
                raise self._parent_missing("gallery", gallery)
            raise self._parent_missing("gallery image", f"{gallery}/{image}")
        location = _location(body)
        if location != definition.location:
            raise invalid(f"The location '{location}' of the gallery image version must be the gallery's location '{definition.location}'.")
        props = _obj(body.get("properties"), "properties")
        profile_in = _obj(props.get("storageProfile"), "properties.storageProfile")
        if not profile_in:
            raise _missing("properties.storageProfile")
        safety_in = _obj(props.get("safetyProfile"), "properties.safetyProfile")
        with self._lock:
            k = key(_arm_id(subscription_id, resource_group, "galleries", gallery, "images", image, "versions", name))
            existing = self.gallery_image_versions.get(k)
            if existing is not None and existing.operation is not None and not existing.operation.done:
                raise AzureError(409, "Conflict", "The request failed due to conflict with a concurrent request: "
                                 f"an operation on gallery image version '{name}' is still in progress.")
            storage_profile, refs = self._version_storage_profile(profile_in, definition)
            if existing is not None and self._source_keys(existing.storage_profile) != self._source_keys(storage_profile):
                raise AzureError(409, "PropertyChangeNotAllowed", "Changing property 'galleryImageVersion.properties.storageProfile' is not allowed.")
            publishing = self._publishing(_obj(props.get("publishingProfile"), "properties.publishingProfile"), location,
                                          default_from=None)
            now = self._now()
            default_block = (api_version or SAFETY_DEFAULT_API_VERSION) >= SAFETY_DEFAULT_API_VERSION
            block = _bool(safety_in.get("blockDeletionBeforeEndOfLife"), "properties.safetyProfile.blockDeletionBeforeEndOfLife", default_block)
            if block and publishing["end_of_life"] is None:
                publishing["end_of_life"] = add_months(now, DEFAULT_END_OF_LIFE_MONTHS)
            allow_replicated = _bool(safety_in.get("allowDeletionOfReplicatedLocations"),
                                     "properties.safetyProfile.allowDeletionOfReplicatedLocations", False)
            if existing is not None:
                self._check_region_removal(existing, publishing["target_regions"], allow_replicated)
            version = GalleryImageVersion(
                subscription_id, resource_group, name, location, _tags(body.get("tags")) if "tags" in body or existing is None else existing.tags,
                gallery=definition.gallery, image=definition.name, storage_profile=storage_profile,
                allow_deletion_of_replicated_locations=allow_replicated, block_deletion_before_end_of_life=block,
                published=existing.published if existing else now, provisioning_state="Updating" if existing else "Creating",
                **publishing)
            if existing is not None:
                version.ready_regions = existing.ready_regions & {t.region for t in version.target_regions}
            op = self._new_operation(subscription_id, location, version.id, "PUT", api_version)
            version.operation = op
            span = self._replication_plan(version, now)
            self.gallery_image_versions[k] = version
        self._run_after(span if duration is None else duration, lambda emit: self._finish_version(k, op, refs, caller, emit))
        return version, existing is None, op

    @staticmethod
    def _source_keys(profile: dict[str, Any]) -> list[str]:
        ids = [(profile.get("source") or {}).get("id"), ((profile.get("osDiskImage") or {}).get("source") or {}).get("id")]
        ids += [(d.get("source") or {}).get("id") for d in profile.get("dataDiskImages") or []]
        return [key(i) for i in ids if i]

    @staticmethod
    def _check_region_removal(existing: GalleryImageVersion, targets: list[TargetRegion], allow: bool) -> None:
        removed = existing.ready_regions - {t.region for t in targets}
        if removed and not allow:
            raise AzureError(409, "OperationNotAllowed", f"Removing replicated region(s) {', '.join(sorted(removed))} from gallery image version "
                             f"'{existing.name}' is not allowed: safetyProfile.allowDeletionOfReplicatedLocations is false.")

    def _finish_version(self, k: str, op: Operation, refs: list[tuple[str, str]], caller: dict[str, str] | None, emit: bool) -> None:
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
                    error = AzureError(404, "NotFound", f"The source '{ref}' of gallery image version '{version.name}' no longer exists; "
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

    def update_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str, name: str,
                                     patch: dict[str, Any], *, api_version: str | None = None,
                                     caller: dict[str, str] | None = None) -> tuple[GalleryImageVersion, Operation | None]:
        """PATCH (GalleryImageVersionUpdate): publishingProfile (endOfLifeDate, excludeFromLatest, targetRegions, ...),
        safetyProfile and tags. New target regions start a replication operation; the rest applies at once."""
        with self._lock:
            version = self.get_gallery_image_version(subscription_id, resource_group, gallery, image, name)
            if version.operation is not None and not version.operation.done:
                raise AzureError(409, "Conflict", "The request failed due to conflict with a concurrent request: "
                                 f"an operation on gallery image version '{name}' is still in progress.")
            props = _obj(patch.get("properties"), "properties")
            publishing = self._publishing(_obj(props.get("publishingProfile"), "properties.publishingProfile"), version.location,
                                          default_from=version)
            safety_in = _obj(props.get("safetyProfile"), "properties.safetyProfile")
            allow = _bool(safety_in.get("allowDeletionOfReplicatedLocations"), "properties.safetyProfile.allowDeletionOfReplicatedLocations",
                          version.allow_deletion_of_replicated_locations)
            block = _bool(safety_in.get("blockDeletionBeforeEndOfLife"), "properties.safetyProfile.blockDeletionBeforeEndOfLife",
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

    def get_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str, name: str) -> GalleryImageVersion:
        return self._get(self.gallery_image_versions, subscription_id, resource_group, "galleries/images/versions",
                         "galleries", gallery, "images", image, "versions", name)

    def delete_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str, name: str, *,
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
                raise AzureError(409, "OperationNotAllowed",
                                 f"Gallery image version '{version.id}' cannot be deleted before its end of life date {eol} because "
                                 "safetyProfile.blockDeletionBeforeEndOfLife is true. Set blockDeletionBeforeEndOfLife to false or "
                                 "wait until the end of life date.")
            del self.gallery_image_versions[k]
            op = self._new_operation(subscription_id, version.location, version.id, "DELETE", api_version)
            op.finish(now)
            return op

    def list_gallery_image_versions(self, subscription_id: str, resource_group: str, gallery: str, image: str) -> list[GalleryImageVersion]:
        definition = self.get_gallery_image(subscription_id, resource_group, gallery, image)
        with self._lock:
            return sorted((v for v in self.gallery_image_versions.values() if v.definition_key == definition.key), key=lambda v: v.version_tuple)

    # ---------------------------------------------------------------------------------------
    # Cross-service interface (architecture.md): what Batch asks about a pool's image
    def _latest_version(self, definition_key: str, region: str | None) -> GalleryImageVersion | None:
        candidates = []
        for v in self.gallery_image_versions.values():
            if v.definition_key != definition_key or v.exclude_from_latest:
                continue
            if region is not None:
                target = next((t for t in v.target_regions if t.region == region), None)
                if target is None or target.exclude_from_latest or region not in v.ready_regions or v.provisioning_state == "Failed":
                    continue
            elif v.provisioning_state != "Succeeded":
                continue
            candidates.append(v)
        return max(candidates, key=lambda v: v.version_tuple, default=None)

    def image_available(self, image_id: str, region: str) -> bool:
        """True when a pool in ``region`` can boot ``image_id`` now: a managed image that is Succeeded, or a gallery image
        version (a definition id means its latest version not excluded from latest) with a complete replica in ``region``."""
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
    def create_disk(self, subscription_id: str, resource_group: str, name: str, *, location: str, image_reference_id: str | None = None,
                    disk_size_gb: int | None = None, source_resource_id: str | None = None, tags: dict[str, str] | None = None) -> Disk:
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
        return self.put_disk(subscription_id, resource_group, name, {"location": location, "tags": tags or {}, "properties": props})[0]

    def create_snapshot(self, subscription_id: str, resource_group: str, name: str, *, source_resource_id: str,
                        location: str | None = None, tags: dict[str, str] | None = None) -> Snapshot:
        """A full snapshot copying a disk (or snapshot); location defaults to the source's."""
        location = location or self._disk_source(source_resource_id).location
        body = {"location": location, "tags": tags or {},
                "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source_resource_id}}}
        return self.put_snapshot(subscription_id, resource_group, name, body)[0]

    def create_image(self, subscription_id: str, resource_group: str, name: str, *, os_snapshot_id: str,
                     data_snapshot_ids: dict[int, str] | None = None, os_state: str = "Generalized", os_type: str | None = None,
                     hyper_v_generation: str | None = None, location: str | None = None, instant: bool = False) -> Image:
        """A managed image from an OS snapshot (+ data snapshots by LUN). osType defaults to the snapshot's; hyperVGeneration
        is sent only when given (Azure then defaults to V1). ``instant`` finishes the operation now, without an event."""
        snap = self._disk_source(os_snapshot_id)
        os_disk = {"osType": os_type or snap.os_type or "Linux", "osState": os_state, "snapshot": {"id": os_snapshot_id}}
        props: dict[str, Any] = {"storageProfile": {"osDisk": os_disk, "dataDisks": [
            {"lun": lun, "snapshot": {"id": sid}} for lun, sid in sorted((data_snapshot_ids or {}).items())]}}
        if hyper_v_generation:
            props["hyperVGeneration"] = hyper_v_generation
        body = {"location": location or snap.location, "properties": props}
        return self.put_image(subscription_id, resource_group, name, body, duration=timedelta(0) if instant else None)[0]

    def create_gallery(self, subscription_id: str, resource_group: str, name: str, *, location: str) -> Gallery:
        return self.put_gallery(subscription_id, resource_group, name, {"location": location})[0]

    def create_gallery_image(self, subscription_id: str, resource_group: str, gallery: str, name: str, *, location: str | None = None,
                             os_type: str = "Linux", os_state: str = "Generalized", hyper_v_generation: str = "V1",
                             publisher: str = "autopilot", offer: str = "batch", sku: str | None = None) -> GalleryImage:
        location = location or self.get_gallery(subscription_id, resource_group, gallery).location
        body = {"location": location, "properties": {"osType": os_type, "osState": os_state, "hyperVGeneration": hyper_v_generation,
                                                     "identifier": {"publisher": publisher, "offer": offer, "sku": sku or name}}}
        return self.put_gallery_image(subscription_id, resource_group, gallery, name, body)[0]

    def create_gallery_image_version(self, subscription_id: str, resource_group: str, gallery: str, image: str, name: str, *,
                                     source_image_id: str | None = None, os_snapshot_id: str | None = None,
                                     data_snapshot_ids: dict[int, str] | None = None, target_regions: dict[str, int] | None = None,
                                     block_deletion_before_end_of_life: bool = False, end_of_life: datetime | None = None,
                                     exclude_from_latest: bool = False, instant: bool = False) -> GalleryImageVersion:
        """A version from a managed image or from snapshots; ``target_regions`` maps region -> replica count.
        ``instant`` replicates now (no event); otherwise the scheduler finishes it as for an HTTP PUT."""
        definition = self.get_gallery_image(subscription_id, resource_group, gallery, image)
        if source_image_id:
            storage: dict[str, Any] = {"source": {"id": source_image_id}}
        elif os_snapshot_id:
            storage = {"osDiskImage": {"source": {"id": os_snapshot_id}},
                       "dataDiskImages": [{"lun": lun, "source": {"id": sid}} for lun, sid in sorted((data_snapshot_ids or {}).items())]}
        else:
            raise ValueError("give source_image_id or os_snapshot_id")
        publishing: dict[str, Any] = {"excludeFromLatest": exclude_from_latest,
                                      "targetRegions": [{"name": r, "regionalReplicaCount": n}
                                                        for r, n in (target_regions or {definition.location: 1}).items()]}
        if end_of_life is not None:
            publishing["endOfLifeDate"] = iso(end_of_life)
        body = {"location": definition.location, "properties": {
            "publishingProfile": publishing, "storageProfile": storage,
            "safetyProfile": {"blockDeletionBeforeEndOfLife": block_deletion_before_end_of_life}}}
        return self.put_gallery_image_version(subscription_id, resource_group, gallery, image, name, body,
                                              duration=timedelta(0) if instant else None)[0]
