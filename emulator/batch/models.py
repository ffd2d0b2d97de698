"""Azure Batch: accounts, pools (one state shared by the management and data planes) and the resize engine.

Both planes read and write the same :class:`Pool` objects; ``mgmt_responses`` and ``data_responses``
only translate shapes (PascalCase vs lower-case enums, ``details`` vs ``values``, weak vs bare ETags).

Resizes run on the emulator's scheduler, minute by minute of virtual time, so they progress in
virtual-time order no matter who reads what, and all randomness is drawn per (seed, pool, resize
number, minute, node kind) (see ``capacity.draw``). The rules, in order, for every minute of a
growing resize:

1. first growing minute only: injected failures, then the image (``compute.image_available``; gone ->
   ``AllocationFailed``), then Hyper-V generation (a Gen2 image on a size that cannot boot it);
2. per node kind (dedicated, then Spot/low-priority) still short of target and under the per-resize cap:
   a transient failure with ``*_failure_rate``; else grant ``per_minute`` (with jitter) limited by the
   region's free capacity (none left -> ``AllocationFailed`` insufficient capacity), the account's core
   quotas (BatchService accounts only; none left -> ``Account*QuotaReached``), the custom-image node
   limits and the inbound-NAT port ranges (those two only slow the resize down);
3. target reached -> steady, no errors; ``resizeTimeout`` passed -> steady with ``AllocationTimedout``.

Shrinks (and no-op resizes) complete after ``timings.shrink``; ``stopResize`` goes through
``stopping`` for ``timings.stop`` and ends with ``ResizeStopped`` errors for what was still missing.
``resizeErrors`` are only ever set when a resize ends (so only while steady) and are cleared by the next.
"""

from __future__ import annotations

import bisect
import itertools
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.batch.capacity import DEDICATED, KINDS, LOW_PRIORITY, CapacityConfig, CapacityModel, Limits, Timings, draw
from emulator.batch.catalog import (
    DEFAULT_VM_SIZES,
    MESSAGE_IMAGE_GONE,
    REASON_INSUFFICIENT_CAPACITY,
    REASON_INTERNAL_ERROR,
    REASON_SUBNET_DELEGATED,
    VmSize,
    allocation_failed_message,
    default_supported_images,
    gen2_provider_error,
    node_kind_label,
    stopped_message,
    timed_out_message,
)
from emulator.batch.formats import bare_etag, iso, make_etag
from emulator.batch.nodes import ImageHealth, Node, draw_fate
from emulator.batch.nodes import counts as node_state_counts
from emulator.core import AzureError, BatchServiceError
from emulator.ids import key

# Learn "Update Batch pool properties": the first management API version whose Pool - Update may change the image.
IMAGE_UPDATE_API_VERSION = "2024-07-01"

if TYPE_CHECKING:
    from emulator.azure import Emulator

MINUTE = timedelta(minutes=1)
# The 2019 custom-image article (azure-docs batch-custom-images.md@0147304) documents managed images as a pool image
# source; the current SDK docstrings (azure-mgmt-batch 19 / azure-batch 15 ImageReference.id) name only Compute Gallery
# images. The last API version known to take a managed image is 2019-08-01; later ones are refused (the less convenient choice).
MANAGED_IMAGE_LAST_API_VERSION = "2019-08-01"
API_VERSION = "2025-06-01"  # what a create without an explicit api-version is taken to use (the SDKs' version)
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")

_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_GALLERY_IMAGE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/[^/]+/images/[^/]+(/versions/[^/]+)?$", re.IGNORECASE)
_MANAGED_IMAGE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/images/[^/]+$", re.IGNORECASE)
_FORMULA_DEDICATED = re.compile(r"\$TargetDedicated(?:Nodes)?\s*=\s*(\d+)\s*;?", re.IGNORECASE)
_FORMULA_LOW = re.compile(r"\$TargetLowPriorityNodes\s*=\s*(\d+)\s*;?", re.IGNORECASE)


def batch_error(plane: str, status: int, code: str, message: str, values: Mapping[str, str] | None = None) -> AzureError:
    """An error in the shape of the plane that asked: ARM (``{"error": ...}``) or Batch data plane."""
    if plane == "batch":
        return BatchServiceError(status, code, message, values=values)
    if values:
        details = "; ".join(f"{k}: {v}" for k, v in values.items())
        message = f"{message} ({details})"
    return AzureError(status, code, message)


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass
class ResizeErrorRecord:
    """One resize error. Data plane: ``{code, message, values[{name, value}]}``; management: ``details``."""

    code: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class InjectedFailure:
    """A failure a scenario arranged for a pool's next growing resize(s)."""

    error: ResizeErrorRecord
    remaining: int | None = 1  # None: every resize until cleared


@dataclass
class ResizeOp:
    """One resize of a pool (explicit resize, PATCH of fixedScale, initial sizing, autoscale)."""

    number: int
    start: datetime
    target: dict[str, int]
    timeout: timedelta
    deallocation: str | None
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    next_minute: int = 1
    preflight_done: bool = False
    stopping: bool = False
    finished: bool = False

    @property
    def deadline(self) -> datetime:
        return self.start + self.timeout


@dataclass
class PoolSpec:
    """A pool's desired configuration, plane-neutral. Both planes' create/replace bodies parse into this.

    ``image_reference``: ``{"id": ...}`` (Compute Gallery image version / definition) or
    ``{"publisher", "offer", "sku", "version"}``, optionally ``sharedGalleryImageId`` / ``communityGalleryImageId``.
    ``network_configuration``: ``{"subnetId", "dynamicVNetAssignmentScope", "natPools": [{"name", "protocol",
    "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd", "networkSecurityGroupRules": [...]}],
    "publicIPAddressConfiguration", "enableAcceleratedNetworking"}`` with lower-case enum values.
    """

    vm_size: str
    image_reference: dict[str, Any]
    node_agent_sku_id: str
    target_dedicated: int = 0
    target_low_priority: int = 0
    resize_timeout: timedelta | None = None
    node_deallocation_option: str | None = None
    auto_scale_formula: str | None = None
    auto_scale_evaluation_interval: timedelta | None = None
    metadata: list[dict[str, str]] = field(default_factory=list)
    display_name: str | None = None
    network_configuration: dict[str, Any] | None = None
    task_slots_per_node: int = 1
    inter_node_communication: bool = False
    task_scheduling_policy: str = "spread"
    start_task: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    identity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other management-plane properties, echoed verbatim


@dataclass(eq=False)
class Pool:
    account: BatchAccount
    id: str
    spec: PoolSpec
    created: datetime
    last_modified: datetime
    etag: str
    seq: int
    state: str = "active"  # active | deleting
    state_time: datetime | None = None
    allocation_state: str = "steady"  # steady | resizing | stopping
    allocation_state_time: datetime | None = None
    current: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    target: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    resize_timeout: timedelta = timedelta(minutes=15)
    node_deallocation_option: str | None = None
    auto_scale: bool = False
    auto_scale_run: dict[str, Any] | None = None
    resize_errors: list[ResizeErrorRecord] = field(default_factory=list)
    op: ResizeOp | None = None
    resize_count: int = 0
    failures: list[InjectedFailure] = field(default_factory=list)
    removed: bool = False
    cap_keys: frozenset[tuple[str, str]] = frozenset()  # managed-image pools: the image and its snapshots (the shared node cap)
    nodes: dict[str, Node] = field(default_factory=dict)  # node id -> node, in allocation order (emulator/batch/nodes.py)
    node_seq: int = 0

    @property
    def arm_id(self) -> str:
        return f"{self.account.id}/pools/{self.id}"

    @property
    def key(self) -> str:
        return key(self.arm_id)

    @property
    def region(self) -> str:
        return self.account.location

    @property
    def image_id(self) -> str | None:
        value = self.spec.image_reference.get("id")
        return value if isinstance(value, str) and value else None

    @property
    def metadata(self) -> dict[str, str]:
        return {m["name"]: m["value"] for m in self.spec.metadata}

    def node_limit(self) -> int | None:
        """Inbound NAT pools give each node one frontend port per NAT pool: the smallest range caps the pool."""
        nat = (self.spec.network_configuration or {}).get("natPools") or []
        if not nat:
            return None
        return min(int(p["frontendPortRangeEnd"]) - int(p["frontendPortRangeStart"]) + 1 for p in nat)


@dataclass(eq=False)
class BatchAccount:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    created: datetime
    pool_allocation_mode: str = "BatchService"
    dedicated_core_quota: int = 50_000
    low_priority_core_quota: int = 50_000
    pool_quota: int = 100
    active_job_and_job_schedule_quota: int = 300
    per_family_quota: dict[str, int] = field(default_factory=dict)
    per_family_enforced: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    auto_storage: dict[str, Any] | None = None
    key_vault_reference: dict[str, Any] | None = None
    public_network_access: str = "Enabled"
    allowed_authentication_modes: list[str] = field(default_factory=lambda: ["SharedKey", "AAD", "TaskAuthenticationToken"])
    identity: dict[str, Any] = field(default_factory=lambda: {"type": "None"})
    pools: dict[str, Pool] = field(default_factory=dict)  # lower-case pool id -> pool
    used_cores: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    used_family_cores: dict[str, int] = field(default_factory=dict)
    _sorted_ids: list[str] | None = None

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/Microsoft.Batch/batchAccounts/{self.name}"

    @property
    def key(self) -> str:
        return key(self.id)

    @property
    def batch_service_mode(self) -> bool:
        return self.pool_allocation_mode == "BatchService"

    def sorted_pool_ids(self) -> list[str]:
        """Lower-case pool ids in order (cached until a pool is added or removed): listing is O(pools)."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.pools)
        return self._sorted_ids

    def iter_pool_keys(self, after: str | None = None, *, eq: str | None = None, prefix: str | None = None) -> Iterator[str]:
        """Lower-case pool ids in order, strictly after ``after`` (a paging token), optionally only ``eq`` or ``prefix``."""
        after = after.lower() if after else None
        if eq is not None:
            k = eq.lower()
            if k in self.pools and (after is None or k > after):
                yield k
            return
        ids = self.sorted_pool_ids()
        start = bisect.bisect_right(ids, after) if after else 0
        if prefix:
            prefix = prefix.lower()
            start = max(start, bisect.bisect_left(ids, prefix))
        for i in range(start, len(ids)):
            if prefix and not ids[i].startswith(prefix):
                return
            yield ids[i]


@dataclass
class DeleteOperation:
    """A management-plane pool delete in flight (polled through its Location URL)."""

    id: str
    account_id: str
    pool: Pool
    done: bool = False


# ---------------------------------------------------------------------------------------------
# Backend
# ---------------------------------------------------------------------------------------------


class BatchBackend:
    """Batch accounts and pools for one emulator. Public methods are what scenarios and tests call."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._lock = threading.RLock()
        self.accounts: dict[str, BatchAccount] = {}  # key(account id) -> account
        self._by_name: dict[str, BatchAccount] = {}  # lower-case account name -> account (data-plane host)
        self.vm_sizes: dict[str, VmSize] = dict(DEFAULT_VM_SIZES)
        self.supported_images: list[dict[str, Any]] = default_supported_images()
        self.capacity = CapacityModel()
        self.timings = Timings()
        self.limits = Limits()
        self.image_usage: dict[tuple[tuple[str, str], str], int] = {}  # ((image|snapshot, key), kind) -> nodes of managed-image pools
        self.image_health: dict[str, ImageHealth] = {}  # key(image id) -> how its nodes fail (scenario setImageHealth)
        self.delete_operations: dict[str, DeleteOperation] = {}
        self._pending_events: dict[str, list[dict[str, Any]]] = {}  # pool key -> delete events to raise on completion
        self.account_defaults: dict[str, Any] = {
            "dedicated_core_quota": 50_000, "low_priority_core_quota": 50_000, "pool_quota": 100,
            "dedicated_core_quota_per_vm_family_enforced": False,
        }
        self._serial = itertools.count(1)
        self._pool_seq = itertools.count(1)
        emulator.resources.group_delete_hooks.append(self._on_group_deleted)

    # ------------------------------------------------------------------------------------------
    # time and helpers
    # ------------------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.emulator.clock.now()

    def _sync(self) -> None:
        """Run whatever virtual time made due (resize minutes, deletions) before answering a read."""
        self.emulator.scheduler.run_due()

    def _new_etag(self, now: datetime) -> str:
        return make_etag(now, next(self._serial))

    def vm_size(self, name: str) -> VmSize | None:
        return self.vm_sizes.get(name.lower())

    def known_node_agent_skus(self) -> set[str]:
        return {str(i.get("nodeAgentSKUId", "")).lower() for i in self.supported_images}

    # ------------------------------------------------------------------------------------------
    # scenario knobs
    # ------------------------------------------------------------------------------------------
    def register_vm_size(self, name: str, cores: int, family: str, *, hyperv_gen2: bool = True) -> VmSize:
        """Add or replace a VM size (cores count against Batch core quotas; ``hyperv_gen2`` False = cannot boot Gen2)."""
        size = VmSize(name, int(cores), family, hyperv_gen2)
        with self._lock:
            self.vm_sizes[name.lower()] = size
        return size

    def configure_capacity(self, region: str | None = None, vm_size: str | None = None, **settings: float | int) -> CapacityConfig:
        """Change capacity for (region, size), a whole region (``vm_size=None``) or the default (both None).

        Settings are :class:`~emulator.batch.capacity.CapacityConfig` fields, e.g.
        ``configure_capacity("westeurope", "Standard_D4ds_v5", dedicated_available=200, dedicated_failure_rate=0)``.
        """
        with self._lock:
            return self.capacity.configure(region, vm_size, **settings)

    def set_failure_rates(self, region: str | None = None, vm_size: str | None = None, *, dedicated: float | None = None,
                          low_priority: float | None = None, internal_error_share: float | None = None) -> CapacityConfig:
        return self.configure_capacity(region, vm_size, dedicated_failure_rate=dedicated, low_priority_failure_rate=low_priority,
                                       internal_error_share=internal_error_share)

    def set_account_quotas(self, account_name: str, *, dedicated_cores: int | None = None, low_priority_cores: int | None = None,
                           pool_quota: int | None = None, per_vm_family: Mapping[str, int] | None = None,
                           per_vm_family_enforced: bool | None = None) -> BatchAccount:
        """Change an account's Batch quotas (they apply to BatchService-mode accounts only, as in Azure)."""
        with self._lock:
            account = self._account_by_name(account_name, "arm")
            if dedicated_cores is not None:
                account.dedicated_core_quota = int(dedicated_cores)
            if low_priority_cores is not None:
                account.low_priority_core_quota = int(low_priority_cores)
            if pool_quota is not None:
                account.pool_quota = int(pool_quota)
            if per_vm_family is not None:
                account.per_family_quota.update({k: int(v) for k, v in per_vm_family.items()})
            if per_vm_family_enforced is not None:
                account.per_family_enforced = bool(per_vm_family_enforced)
            return account

    def inject_failure(self, account_name: str, pool_id: str, kind: str = "subnet_delegation", *, count: int | None = 1,
                       code: str | None = None, message: str | None = None, values: Mapping[str, str] | None = None) -> InjectedFailure:
        """Make the pool's next ``count`` growing resizes (None: all, until cleared) fail in their first minute.

        kinds: ``subnet_delegation``, ``internal_error``, ``insufficient_capacity``, ``image_gone``,
        ``gen2_mismatch``, ``quota`` (dedicated core quota), ``low_priority_quota``, ``vm_series_quota``,
        or ``custom`` with ``code``/``message``/``values``.
        """
        with self._lock:
            pool = self._pool(self._account_by_name(account_name, "arm"), pool_id, "arm")
            error = self._failure_record(kind, pool, code=code, message=message, values=values)
            failure = InjectedFailure(error, count)
            pool.failures.append(failure)
            return failure

    def clear_failures(self, account_name: str, pool_id: str) -> None:
        with self._lock:
            self._pool(self._account_by_name(account_name, "arm"), pool_id, "arm").failures.clear()

    def set_supported_images(self, images: Iterable[Mapping[str, Any]]) -> None:
        """Replace the ``supportedimages`` list (data-plane shape: nodeAgentSKUId, imageReference, osType, ...)."""
        with self._lock:
            self.supported_images = [dict(i) for i in images]

    def add_supported_image(self, publisher: str, offer: str, sku: str, node_agent_sku_id: str, *, os_type: str = "linux",
                            verified: bool = True, capabilities: list[str] | None = None, end_of_life: datetime | str | None = None) -> dict:
        row: dict[str, Any] = {"nodeAgentSKUId": node_agent_sku_id,
                               "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
                               "verificationType": "verified" if verified else "unverified", "osType": os_type.lower()}
        if capabilities:
            row["capabilities"] = list(capabilities)
        if end_of_life is not None:
            row["batchSupportEndOfLife"] = iso(end_of_life) if isinstance(end_of_life, datetime) else end_of_life
        with self._lock:
            self.supported_images.append(row)
        return row

    def remove_supported_image(self, publisher: str, offer: str, sku: str) -> int:
        def same(i: Mapping[str, Any]) -> bool:
            ref = i.get("imageReference", {})
            return (str(ref.get("publisher", "")).lower(), str(ref.get("offer", "")).lower(), str(ref.get("sku", "")).lower()) == \
                (publisher.lower(), offer.lower(), sku.lower())

        with self._lock:
            before = len(self.supported_images)
            self.supported_images = [i for i in self.supported_images if not same(i)]
            return before - len(self.supported_images)

    # ------------------------------------------------------------------------------------------
    # accounts
    # ------------------------------------------------------------------------------------------
    def put_account(self, subscription_id: str, resource_group: str, name: str, location: str, *,
                    pool_allocation_mode: str | None = None, dedicated_core_quota: int | None = None,
                    low_priority_core_quota: int | None = None, pool_quota: int | None = None,
                    dedicated_core_quota_per_vm_family: Mapping[str, int] | None = None,
                    dedicated_core_quota_per_vm_family_enforced: bool | None = None, tags: Mapping[str, str] | None = None,
                    auto_storage: Mapping[str, Any] | None = None, key_vault_reference: Mapping[str, Any] | None = None,
                    public_network_access: str | None = None, allowed_authentication_modes: list[str] | None = None,
                    identity: Mapping[str, Any] | None = None) -> tuple[BatchAccount, bool]:
        """Create or update an account (the management-plane PUT and scenario setup share this)."""
        now = self._now()
        if not _ACCOUNT_NAME.match(name):
            raise AzureError(400, "AccountNameInvalid", f"The Batch account name '{name}' is invalid: it must be 3 to 24 characters, "
                             "lower-case letters and numbers only.")
        location = location.replace(" ", "").lower()
        mode = None
        if pool_allocation_mode is not None:
            mode = {"batchservice": "BatchService", "usersubscription": "UserSubscription"}.get(str(pool_allocation_mode).lower())
            if mode is None:
                raise AzureError(400, "InvalidPropertyValue", f"poolAllocationMode '{pool_allocation_mode}' is invalid: use BatchService or UserSubscription.")
        group = self.emulator.resources.require_group(subscription_id, resource_group)
        with self._lock:
            account_id = f"/subscriptions/{subscription_id}/resourceGroups/{group.name}/providers/Microsoft.Batch/batchAccounts/{name}"
            existing = self.accounts.get(key(account_id))
            other = self._by_name.get(name.lower())
            if other is not None and other is not existing:
                raise AzureError(409, "AccountNameNotAvailable", f"The Batch account name '{name}' is already in use.")
            if existing is not None:
                if existing.location != location:
                    raise AzureError(400, "InvalidResourceLocation", f"The resource '{name}' already exists in location '{existing.location}' in "
                                     f"resource group '{resource_group}'. A resource with the same name cannot be created in location '{location}'.")
                if mode is not None and mode != existing.pool_allocation_mode:
                    raise AzureError(400, "PropertyCannotBeUpdated", "The poolAllocationMode of an existing Batch account cannot be changed.")
                account, created = existing, False
            else:
                fam = {s.family: int(self.account_defaults["dedicated_core_quota"]) for s in self.vm_sizes.values()}
                account = BatchAccount(subscription_id, group.name, name, location, created=now,
                                       dedicated_core_quota=int(self.account_defaults["dedicated_core_quota"]),
                                       low_priority_core_quota=int(self.account_defaults["low_priority_core_quota"]),
                                       pool_quota=int(self.account_defaults["pool_quota"]), per_family_quota=fam,
                                       per_family_enforced=bool(self.account_defaults["dedicated_core_quota_per_vm_family_enforced"]))
                if mode is not None:
                    account.pool_allocation_mode = mode
                self.accounts[account.key] = account
                self._by_name[name.lower()] = account
                created = True
            if dedicated_core_quota is not None:
                account.dedicated_core_quota = int(dedicated_core_quota)
            if low_priority_core_quota is not None:
                account.low_priority_core_quota = int(low_priority_core_quota)
            if pool_quota is not None:
                account.pool_quota = int(pool_quota)
            if dedicated_core_quota_per_vm_family is not None:
                account.per_family_quota.update({k: int(v) for k, v in dedicated_core_quota_per_vm_family.items()})
            if dedicated_core_quota_per_vm_family_enforced is not None:
                account.per_family_enforced = bool(dedicated_core_quota_per_vm_family_enforced)
            if tags is not None:
                account.tags = dict(tags)
            if auto_storage is not None:
                account.auto_storage = {**dict(auto_storage), "lastKeySync": (account.auto_storage or {}).get("lastKeySync") or now}
            if key_vault_reference is not None:
                account.key_vault_reference = dict(key_vault_reference)
            if public_network_access is not None:
                account.public_network_access = public_network_access
            if allowed_authentication_modes is not None:
                account.allowed_authentication_modes = list(allowed_authentication_modes)
            if identity is not None:
                account.identity = dict(identity)
            return account, created

    def create_account(self, subscription_id: str, resource_group: str, name: str, location: str, **properties: Any) -> BatchAccount:
        """Scenario setup: create (or update) an account. Keywords as :meth:`put_account`."""
        return self.put_account(subscription_id, resource_group, name, location, **properties)[0]

    def get_account(self, subscription_id: str, resource_group: str, name: str) -> BatchAccount:
        account = self.accounts.get(key(f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Batch/batchAccounts/{name}"))
        if account is None:
            raise AzureError(404, "ResourceNotFound", f"The Resource 'Microsoft.Batch/batchAccounts/{name}' under resource group "
                             f"'{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return account

    def account_by_name(self, name: str) -> BatchAccount:
        return self._account_by_name(name, "arm")

    def _account_by_name(self, name: str, plane: str) -> BatchAccount:
        account = self._by_name.get(name.lower())
        if account is None:
            raise batch_error(plane, 404, "AccountNotFound" if plane == "batch" else "ResourceNotFound",
                              f"The Batch account '{name}' does not exist.")
        return account

    def list_accounts(self, subscription_id: str, resource_group: str | None = None) -> list[BatchAccount]:
        with self._lock:
            out = [a for a in self.accounts.values() if a.subscription_id.lower() == subscription_id.lower()
                   and (resource_group is None or a.resource_group.lower() == resource_group.lower())]
        return sorted(out, key=lambda a: a.name)

    def delete_account(self, subscription_id: str, resource_group: str, name: str) -> bool:
        with self._lock:
            account = self.accounts.get(key(f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Batch/batchAccounts/{name}"))
            if account is None:
                return False
            self._remove_account(account)
            return True

    def _remove_account(self, account: BatchAccount) -> None:
        for pool in list(account.pools.values()):
            self._remove_pool(pool)
        self.accounts.pop(account.key, None)
        if self._by_name.get(account.name.lower()) is account:
            del self._by_name[account.name.lower()]

    def _on_group_deleted(self, subscription_id: str, resource_group: str) -> None:
        with self._lock:
            for account in list(self.accounts.values()):
                if account.subscription_id.lower() == subscription_id.lower() and account.resource_group.lower() == resource_group.lower():
                    self._remove_account(account)

    # ------------------------------------------------------------------------------------------
    # pools: lookup and creation
    # ------------------------------------------------------------------------------------------
    def _pool(self, account: BatchAccount, pool_id: str, plane: str) -> Pool:
        pool = account.pools.get(pool_id.lower())
        if pool is None:
            raise batch_error(plane, 404, "PoolNotFound", "The specified pool does not exist.")
        return pool

    def find_pool(self, account_name: str, pool_id: str, plane: str = "arm") -> Pool:
        """The pool, without running due events first (use :meth:`get_pool` from scenario code)."""
        return self._pool(self._account_by_name(account_name, plane), pool_id, plane)

    def get_pool(self, account_name: str, pool_id: str, plane: str = "arm") -> Pool:
        """The pool as of now (due resize minutes are applied first)."""
        self._sync()
        with self._lock:
            return self.find_pool(account_name, pool_id, plane)

    def list_pools(self, account_name: str, plane: str = "arm") -> list[Pool]:
        """All pools of an account in id order (case-insensitive)."""
        self._sync()
        with self._lock:
            account = self._account_by_name(account_name, plane)
            return [account.pools[i] for i in account.sorted_pool_ids()]

    def validate_spec(self, spec: PoolSpec, plane: str, now: datetime, api_version: str | None = None) -> PoolSpec:
        """Check a pool configuration the way the service does at create time; returns it normalised."""
        def invalid(prop: str, value: Any, reason: str) -> AzureError:
            return batch_error(plane, 400, "InvalidPropertyValue", f"The value provided for one of the properties in the request body is invalid. {reason}",
                               {"PropertyName": prop, "PropertyValue": str(value), "Reason": reason})

        def missing(prop: str) -> AzureError:
            return batch_error(plane, 400, "MissingRequiredProperty", f"A required property was not specified in the request body: {prop}.",
                               {"PropertyName": prop})

        if not spec.vm_size:
            raise missing("vmSize")
        if self.vm_size(spec.vm_size) is None:
            raise invalid("vmSize", spec.vm_size, f"The VM size '{spec.vm_size}' is not supported by the emulator's Batch service "
                          "(register it with BatchBackend.register_vm_size).")
        if not spec.image_reference:
            raise missing("imageReference")
        if not spec.node_agent_sku_id:
            raise missing("nodeAgentSkuId" if plane == "arm" else "nodeAgentSKUId")
        if spec.node_agent_sku_id.lower() not in self.known_node_agent_skus():
            raise invalid("nodeAgentSkuId", spec.node_agent_sku_id, f"The node agent SKU '{spec.node_agent_sku_id}' is not supported.")
        ref = spec.image_reference
        image_id = ref.get("id")
        if image_id:
            if _MANAGED_IMAGE.match(image_id):
                # Only API versions up to 2019-08-01 took a managed image (see MANAGED_IMAGE_LAST_API_VERSION), whatever the date.
                if (api_version or API_VERSION)[:10] > MANAGED_IMAGE_LAST_API_VERSION:
                    raise invalid("imageReference.id", image_id, f"A managed image cannot be a pool's image at api-version {api_version or API_VERSION}: "
                                  "use an Azure Compute Gallery image version or image definition.")
            elif not _GALLERY_IMAGE.match(image_id):
                raise invalid("imageReference.id", image_id, "The image id must be an Azure Compute Gallery image of the form /subscriptions/{sub}/"
                              "resourceGroups/{rg}/providers/Microsoft.Compute/galleries/{gallery}/images/{definition}[/versions/{version}].")
        elif not (ref.get("sharedGalleryImageId") or ref.get("communityGalleryImageId")):
            for part in ("publisher", "offer", "sku"):
                if not ref.get(part):
                    raise missing(f"imageReference.{part}")
        for name, value in (("targetDedicatedNodes", spec.target_dedicated), ("targetLowPriorityNodes", spec.target_low_priority)):
            self._check_target(name, value, plane)
        if spec.resize_timeout is not None:
            self._check_timeout(spec.resize_timeout, plane)
        if spec.node_deallocation_option is not None and spec.node_deallocation_option not in DEALLOCATION_OPTIONS:
            raise invalid("nodeDeallocationOption", spec.node_deallocation_option, "Use requeue, terminate, taskcompletion or retaineddata.")
        if spec.auto_scale_formula is not None and not spec.auto_scale_formula.strip():
            raise batch_error(plane, 400, "InvalidAutoScalingSettings", "The specified auto-scaling settings are not valid: the formula is empty.")
        self._check_metadata(spec.metadata, plane)
        self._check_network(spec.network_configuration, plane)
        if spec.task_slots_per_node < 1:
            raise invalid("taskSlotsPerNode", spec.task_slots_per_node, "taskSlotsPerNode must be at least 1.")
        return spec

    def _check_target(self, name: str, value: Any, plane: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > self.limits.max_target_nodes:
            raise batch_error(plane, 400, "InvalidPropertyValue", f"The value provided for one of the properties in the request body is invalid: "
                              f"{name} must be an integer between 0 and {self.limits.max_target_nodes}.",
                              {"PropertyName": name, "PropertyValue": str(value)})

    def _check_timeout(self, timeout: timedelta, plane: str) -> None:
        if timeout < self.limits.min_resize_timeout:
            raise batch_error(plane, 400, "InvalidPropertyValue", "The value provided for one of the properties in the request body is invalid: "
                              "resizeTimeout must be at least 5 minutes.",
                              {"PropertyName": "resizeTimeout", "PropertyValue": str(timeout), "Reason": "The minimum value is 5 minutes."})

    @staticmethod
    def _check_metadata(metadata: list[dict[str, str]], plane: str) -> None:
        for item in metadata:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("value"), str):
                raise batch_error(plane, 400, "InvalidMetadata", "Each metadata item must be an object with string 'name' and 'value'.")
            if not item["name"]:
                raise batch_error(plane, 400, "EmptyMetadataKey", "The key for one of the metadata key-value pairs is empty.")

    @staticmethod
    def _check_network(network: dict[str, Any] | None, plane: str) -> None:
        if not network:
            return
        names: set[str] = set()
        nat_pools = network.get("natPools") or []
        # "The maximum number of inbound NAT Pools per Batch Pool is 5 ... fails with HTTP status code 400"
        # (azure-batch 15.1.0 BatchPoolEndpointConfiguration.inbound_nat_pools docstring).
        if len(nat_pools) > 5:
            raise batch_error(plane, 400, "InvalidPropertyValue", f"A pool can have at most 5 inbound NAT pools; {len(nat_pools)} were given.")
        ranges: list[tuple[int, int, str]] = []
        backends: set[int] = set()
        for nat in nat_pools:
            try:
                start, end, backend = int(nat["frontendPortRangeStart"]), int(nat["frontendPortRangeEnd"]), int(nat["backendPort"])
                name = str(nat["name"])
            except (KeyError, TypeError, ValueError):
                raise batch_error(plane, 400, "InvalidPropertyValue", "Each inbound NAT pool needs name, protocol, backendPort, "
                                  "frontendPortRangeStart and frontendPortRangeEnd.") from None
            if name.lower() in names:
                raise batch_error(plane, 400, "InvalidPropertyValue", f"Inbound NAT pool names must be unique: '{name}' is repeated.")
            names.add(name.lower())
            if not (1 <= backend <= 65535) or not (1 <= start < end <= 65534) or end - start + 1 < 40:
                raise batch_error(plane, 400, "InvalidPropertyValue", f"Inbound NAT pool '{name}': ports must be within 1-65534, "
                                  "frontendPortRangeStart < frontendPortRangeEnd and the range must contain at least 40 ports.")
            # Backend port: "between 1 and 65535 except for 29876 and 29877 as these are reserved ... must be unique within a
            # Batch Pool"; frontend: "except ports from 50000 to 55000 which are reserved ... All ranges within a Pool must be
            # distinct and cannot overlap ... the request fails with HTTP status code 400" (azure-batch 15.1.0 BatchInboundNatPool).
            if backend in (29876, 29877) or backend in backends:
                raise batch_error(plane, 400, "InvalidPropertyValue", f"Inbound NAT pool '{name}': backend port {backend} is reserved "
                                  "(29876, 29877) or used by another inbound NAT pool of the pool.")
            backends.add(backend)
            if start <= 55000 and end >= 50000:
                raise batch_error(plane, 400, "InvalidPropertyValue", f"Inbound NAT pool '{name}': the frontend port range {start}-{end} "
                                  "includes ports from 50000 to 55000, which are reserved by the Batch service.")
            for other_start, other_end, other in ranges:
                if start <= other_end and end >= other_start:
                    raise batch_error(plane, 400, "InvalidPropertyValue", f"Inbound NAT pools '{other}' and '{name}': frontend port ranges "
                                      "within a pool must be distinct and cannot overlap.")
            ranges.append((start, end, name))

    def create_pool(self, account_name: str, pool_id: str, spec: PoolSpec | None = None, *, image_id: str | None = None,
                    metadata: Mapping[str, str] | list[dict[str, str]] | None = None, plane: str = "arm", api_version: str | None = None,
                    **fields_: Any) -> Pool:
        """Scenario setup: create a pool (same code path as both planes' create). Starts its initial sizing.

        Either pass a :class:`PoolSpec`, or its fields as keywords (``vm_size=``, ``node_agent_sku_id=``,
        ``target_dedicated=``, ...) with ``image_id=`` as a shorthand for ``image_reference={"id": ...}`` and
        ``metadata`` as a dict. ``api_version``: the version the pool was created with (a pool on a managed image needs
        ``"2019-08-01"``, as such pools were created long ago).
        """
        if spec is None:
            if image_id is not None:
                fields_["image_reference"] = {"id": image_id}
            if metadata is not None:
                fields_["metadata"] = [{"name": k, "value": v} for k, v in metadata.items()] if isinstance(metadata, Mapping) else list(metadata)
            spec = PoolSpec(**fields_)
        now = self._now()
        self._sync()
        with self._lock:
            return self._create_pool(self._account_by_name(account_name, plane), pool_id, spec, plane, now, api_version)

    def _create_pool(self, account: BatchAccount, pool_id: str, spec: PoolSpec, plane: str, now: datetime, api_version: str | None = None) -> Pool:
        if not _POOL_ID.match(pool_id):
            raise batch_error(plane, 400, "InvalidPropertyValue", f"The pool id '{pool_id}' is invalid: use at most 64 letters, digits, hyphens "
                              "and underscores.", {"PropertyName": "id", "PropertyValue": pool_id})
        if pool_id.lower() in account.pools:
            raise batch_error(plane, 409, "PoolExists", "The specified pool already exists.")
        if len(account.pools) >= account.pool_quota:
            raise batch_error(plane, 409, "PoolQuotaReached", f"The pool quota of {account.pool_quota} for the account has been reached.")
        self.validate_spec(spec, plane, now, api_version)
        pool = Pool(account=account, id=pool_id, spec=spec, created=now, last_modified=now, etag=self._new_etag(now),
                    seq=next(self._pool_seq), state_time=now, allocation_state_time=now,
                    resize_timeout=spec.resize_timeout or self.limits.default_resize_timeout,
                    node_deallocation_option=spec.node_deallocation_option)
        pool.cap_keys = self._cap_keys(pool)
        account.pools[pool_id.lower()] = pool
        account._sorted_ids = None
        if spec.auto_scale_formula is not None:
            pool.auto_scale = True
            self._evaluate_formula(pool, now)
        elif spec.target_dedicated or spec.target_low_priority:
            self._start_resize(pool, now, spec.target_dedicated, spec.target_low_priority, pool.resize_timeout, spec.node_deallocation_option)
        return pool

    # ------------------------------------------------------------------------------------------
    # conditional requests
    # ------------------------------------------------------------------------------------------
    def check_conditions(self, pool: Pool | None, plane: str, *, if_match: str | None = None, if_none_match: str | None = None,
                         if_modified_since: datetime | None = None, if_unmodified_since: datetime | None = None,
                         read: bool = False) -> bool:
        """Apply If-Match / If-None-Match / If-(Un)Modified-Since. Raises 412; returns False for a read's 304."""
        def failed() -> AzureError:
            if plane == "batch":
                return BatchServiceError(412, "ConditionNotMet", "The condition specified in the conditional header(s) was not met for a write operation.")
            return AzureError(412, "PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")

        current = pool.etag if pool is not None else None
        if if_match is not None:
            wanted = [bare_etag(v) for v in if_match.split(",")]
            if "*" in wanted:
                if pool is None:
                    raise failed()
            elif current not in wanted:
                raise failed()
        if if_none_match is not None:
            unwanted = [bare_etag(v) for v in if_none_match.split(",")]
            if pool is not None and ("*" in unwanted or current in unwanted):
                if read and "*" not in unwanted:
                    return False
                raise failed()
        if pool is not None:
            modified = pool.last_modified.replace(microsecond=0)
            if if_unmodified_since is not None and modified > if_unmodified_since:
                raise failed()
            if if_modified_since is not None and modified <= if_modified_since:
                if read:
                    return False
                raise failed()
        return True

    # ------------------------------------------------------------------------------------------
    # resizes
    # ------------------------------------------------------------------------------------------
    def resize_pool(self, account_name: str, pool_id: str, target_dedicated: int = 0, target_low_priority: int = 0, *,
                    resize_timeout: timedelta | None = None, node_deallocation_option: str | None = None,
                    if_match: str | None = None, plane: str = "batch") -> Pool:
        """Start a resize (data-plane semantics: 409 unless steady, 409 with autoscale, 412 on a stale If-Match)."""
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            self._check_target("targetDedicatedNodes", target_dedicated, plane)
            self._check_target("targetLowPriorityNodes", target_low_priority, plane)
            timeout = resize_timeout if resize_timeout is not None else self.limits.default_resize_timeout
            self._check_timeout(timeout, plane)
            if node_deallocation_option is not None and node_deallocation_option not in DEALLOCATION_OPTIONS:
                raise batch_error(plane, 400, "InvalidPropertyValue", f"nodeDeallocationOption '{node_deallocation_option}' is invalid.")
            self._require_resizable(pool, plane)
            self._start_resize(pool, now, target_dedicated, target_low_priority, timeout, node_deallocation_option)
            self._touch(pool, now)
            return pool

    def _require_resizable(self, pool: Pool, plane: str) -> None:
        if pool.state == "deleting":
            raise batch_error(plane, 409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
        if pool.auto_scale:
            raise batch_error(plane, 409, "OperationInvalidForCurrentState", "The specified operation is not valid for the current state "
                              "of the resource: the pool has automatic scaling enabled.", {"Reason": "AutoScaleEnabled"})
        if pool.allocation_state != "steady":
            raise batch_error(plane, 409, "PoolBeingResized", "The specified pool is being resized.",
                              {"Reason": f"The pool allocation state is {pool.allocation_state}; resize only when it is steady."})

    def _touch(self, pool: Pool, now: datetime) -> None:
        pool.last_modified = now
        pool.etag = self._new_etag(now)

    def _start_resize(self, pool: Pool, now: datetime, dedicated: int, low: int, timeout: timedelta, deallocation: str | None) -> ResizeOp:
        pool.resize_count += 1
        op = ResizeOp(number=pool.resize_count, start=now, target={DEDICATED: dedicated, LOW_PRIORITY: low}, timeout=timeout,
                      deallocation=deallocation)
        pool.op = op
        pool.target = {DEDICATED: dedicated, LOW_PRIORITY: low}
        pool.resize_timeout = timeout
        pool.node_deallocation_option = deallocation
        pool.resize_errors = []
        pool.allocation_state, pool.allocation_state_time = "resizing", now
        first = now + (MINUTE if self._grows(pool, op) else self.timings.shrink)
        self._schedule(pool, op, min(first, op.deadline))
        return op

    @staticmethod
    def _grows(pool: Pool, op: ResizeOp) -> bool:
        return any(op.target[k] > pool.current[k] for k in KINDS)

    def _schedule(self, pool: Pool, op: ResizeOp, when: datetime) -> None:
        self.emulator.scheduler.at(when, lambda: self._on_resize_event(pool, op, when))

    def _on_resize_event(self, pool: Pool, op: ResizeOp, when: datetime) -> None:
        if pool.removed or pool.op is not op or op.finished or op.stopping:
            return
        image_state = None
        if not op.preflight_done and self._grows(pool, op) and when == op.start + op.next_minute * MINUTE:
            image_state = self._image_state(pool)  # another backend: called outside our lock
        with self._lock:
            if pool.removed or pool.op is not op or op.finished or op.stopping:
                return
            self._step(pool, op, when, image_state)

    def _cap_keys(self, pool: Pool) -> frozenset[tuple[str, str]]:
        """The resources whose pools share the custom-image node cap with ``pool``: its managed image and that image's
        snapshots ("Compute nodes in pool created with a managed image resource", Batch quotas and limits page; the 2020
        custom-image article: shared by pools on the same image or images of the same snapshot). None for other images."""
        image_id = pool.image_id
        if image_id is None or not _MANAGED_IMAGE.match(image_id):
            return frozenset()
        keys = {("image", key(image_id))}
        image = self.emulator.compute.images.get(key(image_id))  # a plain dict read: no compute lock taken under ours
        if image is not None:
            keys.update(("snapshot", key(source)) for store, source in image.source_ids() if store == "snapshots")
        return frozenset(keys)

    def _image_state(self, pool: Pool) -> tuple[bool, str | None]:
        image_id = pool.image_id
        if image_id is None:
            sku = str(pool.spec.image_reference.get("sku", "")).lower()
            return True, "V2" if "gen2" in sku else None
        compute = self.emulator.compute
        available = compute.image_available(image_id, pool.region)
        generation = compute.image_hyperv_generation(image_id) if available else None
        return bool(available), generation

    def _step(self, pool: Pool, op: ResizeOp, when: datetime, image_state: tuple[bool, str | None] | None) -> None:
        finish_tasks = op.deallocation == "taskcompletion"
        for kind in KINDS:  # shrinks happen at once, except for nodes whose tasks taskcompletion lets finish
            if pool.current[kind] > op.target[kind]:
                busy = sum(1 for n in pool.nodes.values() if n.kind == kind and n.busy(when)) if finish_tasks else 0
                self._set_nodes(pool, kind, max(op.target[kind], min(pool.current[kind], busy)), when=when)
        if finish_tasks and any(pool.current[k] > op.target[k] for k in KINDS):
            # Learn "Pool - Resize" nodeDeallocationOption taskcompletion: "Allow currently running Tasks to complete.
            # Schedule no new Tasks while waiting. Remove Compute Nodes when all Tasks have completed." The pool stays
            # resizing meanwhile.
            ends = [n.busy_until for n in pool.nodes.values() if n.busy_until is not None and n.busy(when)]
            self._schedule(pool, op, min(ends))
            return
        if when == op.start + op.next_minute * MINUTE:
            minute = op.next_minute
            op.next_minute += 1
            if self._grows(pool, op):
                if not op.preflight_done:
                    op.preflight_done = True
                    error = self._preflight(pool, image_state)
                    if error is not None:
                        self._finish(pool, op, when, [error])
                        return
                for kind in KINDS:
                    error = self._grow(pool, op, kind, minute)
                    if error is not None:
                        self._finish(pool, op, when, [error])
                        return
        if not self._grows(pool, op):
            self._finish(pool, op, when, [])
            return
        if when >= op.deadline:
            self._finish(pool, op, when, [ResizeErrorRecord("AllocationTimedout", timed_out_message(k))
                                          for k in KINDS if op.target[k] > pool.current[k]])
            return
        self._schedule(pool, op, min(op.start + op.next_minute * MINUTE, op.deadline))

    def _preflight(self, pool: Pool, image_state: tuple[bool, str | None] | None) -> ResizeErrorRecord | None:
        for failure in list(pool.failures):
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    pool.failures.remove(failure)
            return failure.error
        available, generation = image_state if image_state is not None else (True, None)
        if not available:
            return ResizeErrorRecord("AllocationFailed", MESSAGE_IMAGE_GONE)
        size = self.vm_size(pool.spec.vm_size)
        if generation is not None and generation.upper() == "V2" and size is not None and not size.hyperv_gen2:
            return self._failure_record("gen2_mismatch", pool)
        return None

    def _failure_record(self, kind: str, pool: Pool, *, code: str | None = None, message: str | None = None,
                        values: Mapping[str, str] | None = None) -> ResizeErrorRecord:
        grows_low = pool.target[LOW_PRIORITY] > pool.current[LOW_PRIORITY] and pool.target[DEDICATED] <= pool.current[DEDICATED]
        node_kind = LOW_PRIORITY if grows_low else DEDICATED
        if kind == "subnet_delegation":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind), [("Reason", REASON_SUBNET_DELEGATED)])
        if kind == "internal_error":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind), [("Reason", REASON_INTERNAL_ERROR)])
        if kind == "insufficient_capacity":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind), [("Reason", REASON_INSUFFICIENT_CAPACITY)])
        if kind == "image_gone":
            return ResizeErrorRecord("AllocationFailed", MESSAGE_IMAGE_GONE)
        if kind == "gen2_mismatch":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind),
                                     [("Provider Error Json", gen2_provider_error(pool.spec.vm_size)), ("Provider Error Json Truncated", "False")])
        if kind == "quota":
            return self._quota_error(pool, DEDICATED, "AccountCoreQuotaReached")
        if kind == "low_priority_quota":
            return self._quota_error(pool, LOW_PRIORITY, "AccountLowPriorityCoreQuotaReached")
        if kind == "vm_series_quota":
            return self._quota_error(pool, DEDICATED, "AccountVMSeriesCoreQuotaReached")
        if kind == "custom":
            if not code:
                raise ValueError("a custom failure needs a code")
            return ResizeErrorRecord(code, message or allocation_failed_message(node_kind), list((values or {}).items()))
        raise ValueError(f"unknown failure kind {kind!r}")

    @staticmethod
    def _quota_error(pool: Pool, kind: str, code: str) -> ResizeErrorRecord:
        account = pool.account
        if code == "AccountVMSeriesCoreQuotaReached":
            size = pool.spec.vm_size
            return ResizeErrorRecord(code, f"Desired number of dedicated nodes could not be allocated as the account has reached its "
                                     f"dedicated core quota for the VM family of size '{size}'")
        quota = account.dedicated_core_quota if kind == DEDICATED else account.low_priority_core_quota
        return ResizeErrorRecord(code, f"Desired number of {node_kind_label(kind)} nodes could not be allocated as the account has reached "
                                 f"its {node_kind_label(kind)} core quota of {quota} cores")

    def _grow(self, pool: Pool, op: ResizeOp, kind: str, minute: int) -> ResizeErrorRecord | None:
        short = op.target[kind] - pool.current[kind]
        if short <= 0:
            return None
        config = self.capacity.config(pool.region, pool.spec.vm_size)
        cap_left = config.max_nodes_per_resize - op.added[kind]
        if cap_left <= 0:
            return None  # this resize has added all it can: it waits for resizeTimeout
        rng = draw(self.emulator.seed, pool.key, op.number, minute, kind)
        if rng.random() < config.failure_rate(kind):
            reason = REASON_INTERNAL_ERROR if rng.random() < config.internal_error_share else REASON_INSUFFICIENT_CAPACITY
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(kind), [("Reason", reason)])
        rate = max(1, round(config.per_minute(kind) * (1 - config.rate_jitter * rng.random()))) if config.per_minute(kind) > 0 else 0
        free = self.capacity.free(pool.region, pool.spec.vm_size, kind)
        if free <= 0:
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(kind), [("Reason", REASON_INSUFFICIENT_CAPACITY)])
        limits = [short, cap_left, rate, free]
        account = pool.account
        size = self.vm_size(pool.spec.vm_size)
        cores = size.cores if size is not None else 1
        if account.batch_service_mode:
            quota = account.dedicated_core_quota if kind == DEDICATED else account.low_priority_core_quota
            room = (quota - account.used_cores[kind]) // cores
            if room <= 0:
                return self._quota_error(pool, kind, "AccountCoreQuotaReached" if kind == DEDICATED else "AccountLowPriorityCoreQuotaReached")
            limits.append(room)
            if kind == DEDICATED and account.per_family_enforced and size is not None:
                family_room = (account.per_family_quota.get(size.family, 0) - account.used_family_cores.get(size.family, 0)) // cores
                if family_room <= 0:
                    return self._quota_error(pool, kind, "AccountVMSeriesCoreQuotaReached")
                limits.append(family_room)
        if pool.cap_keys:  # managed-image pools only: gallery pools have no shared cap (Batch gallery doc)
            cap = self.limits.custom_image_dedicated_nodes if kind == DEDICATED else self.limits.custom_image_low_priority_nodes
            limits.append(cap - max(self.image_usage.get((k, kind), 0) for k in pool.cap_keys))
        node_limit = pool.node_limit()
        if node_limit is not None:
            limits.append(node_limit - pool.current[DEDICATED] - pool.current[LOW_PRIORITY])
        grant = min(limits)
        if grant > 0:
            self._set_nodes(pool, kind, pool.current[kind] + grant, when=op.start + minute * MINUTE)
            op.added[kind] += grant
        return None

    def _set_nodes(self, pool: Pool, kind: str, count: int, *, when: datetime | None = None) -> None:
        delta = count - pool.current[kind]
        if delta == 0:
            return
        self._place_nodes(pool, kind, delta, when or self._now())
        account = pool.account
        size = self.vm_size(pool.spec.vm_size)
        cores = size.cores if size is not None else 1
        account.used_cores[kind] += delta * cores
        if kind == DEDICATED and size is not None:
            account.used_family_cores[size.family] = account.used_family_cores.get(size.family, 0) + delta * cores
        self.capacity.add_usage(pool.region, pool.spec.vm_size, kind, delta)
        for cap_key in pool.cap_keys:
            self.image_usage[(cap_key, kind)] = self.image_usage.get((cap_key, kind), 0) + delta
        pool.current[kind] = count

    def _place_nodes(self, pool: Pool, kind: str, delta: int, when: datetime) -> None:
        """Allocate (delta > 0) or release (delta < 0) node objects. Released first: nodes a removeNodes call named
        (BatchNodeRemoveOptions.node_ids), then the newest. Which nodes Batch picks on a plain shrink is not
        published; newest-first keeps the oldest (and so the first-booted) nodes, which is the less convenient
        case for a health check that hopes a shrink sweeps away its broken nodes."""
        if delta > 0:
            health = self.image_health.get(key(pool.image_id)) if pool.image_id else None
            for _ in range(delta):
                pool.node_seq += 1
                suffix = "d" if kind == DEDICATED else "p"
                node_id = f"tvmps_{uuid.uuid5(uuid.NAMESPACE_URL, f'{pool.key}|{pool.node_seq}').hex}_{suffix}"
                pool.nodes[node_id] = Node(node_id, kind, when, draw_fate(health, pool, self.emulator.seed, node_id))
            return
        mine = [n for n in pool.nodes.values() if n.kind == kind]
        order = [n for n in mine if n.leaving_since is not None]
        order += [n for n in reversed(mine) if n.leaving_since is None and not n.busy(when)]
        order += [n for n in mine if n.leaving_since is None and n.busy(when)]  # nodes running tasks go last
        for node in order[:-delta]:
            del pool.nodes[node.id]

    def run_tasks(self, account_name: str, pool_id: str, nodes: int, duration: timedelta) -> int:
        """Scenario knob (the emulator has no task API): up to ``nodes`` idle nodes each run one task for ``duration``.
        Returns how many nodes got a task."""
        with self._lock:
            pool = self._pool(self._account_by_name(account_name, "batch"), pool_id, "batch")
            now = self._now()
            idle = [n for n in pool.nodes.values() if n.state(pool, now) == "idle"][:max(0, nodes)]
            for node in idle:
                node.busy_until = now + duration
            return len(idle)

    def set_image_health(self, image_id: str, *, start_task_failed_share: float = 0.0, unusable_share: float = 0.0) -> None:
        """Nodes allocated from now on from ``image_id`` (a gallery image version or managed image id) fail this way."""
        for share in (start_task_failed_share, unusable_share):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"a share must be between 0 and 1, got {share}")
        with self._lock:
            self.image_health[key(image_id)] = ImageHealth(start_task_failed_share, unusable_share)

    def remove_nodes(self, account_name: str, pool_id: str, node_ids: list[str], *, resize_timeout: timedelta | None = None,
                     node_deallocation_option: str | None = None, if_match: str | None = None, plane: str = "batch") -> Pool:
        """POST /pools/{poolId}/removenodes (REST reference "Pool - Remove Nodes"; azure-batch 15.1.0 BatchNodeRemoveOptions).

        "This operation can only run when the allocation state of the Pool is steady. When this operation runs, the
        allocation state changes from steady to resizing. Each request may remove up to 100 nodes." The pool's target
        drops by the nodes removed (azure-contracts.md 9.7), so Batch does not replace them on its own.
        """
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            if not node_ids or len(node_ids) > 100:
                # BatchNodeRemoveOptions.node_ids: "A list containing the IDs of the Compute Nodes to be removed ... max 100".
                raise batch_error(plane, 400, "InvalidPropertyValue", "The value provided for one of the properties in the request body is invalid.",
                                  {"PropertyName": "nodeList", "Reason": "nodeList must hold between 1 and 100 node ids."})
            if pool.state == "deleting":
                raise batch_error(plane, 409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
            self._require_resizable(pool, plane)
            if pool.auto_scale:
                raise batch_error(plane, 409, "AutoScalingEnabled", "The specified pool has automatic scaling enabled.")
            unknown = [n for n in node_ids if n not in pool.nodes]
            if unknown:
                # ASSUMED code: the reference does not list it; a node id that is not in the pool is refused.
                raise batch_error(plane, 404, "NodeNotFound", "The specified node does not exist.", {"NodeId": unknown[0]})
            removing = {k: 0 for k in KINDS}
            for node_id in dict.fromkeys(node_ids):
                node = pool.nodes[node_id]
                if node.leaving_since is None:
                    node.leaving_since = now
                    removing[node.kind] += 1
            timeout = resize_timeout or timedelta(minutes=15)
            self._check_timeout(timeout, plane)
            self._start_resize(pool, now, max(0, pool.target[DEDICATED] - removing[DEDICATED]),
                               max(0, pool.target[LOW_PRIORITY] - removing[LOW_PRIORITY]), timeout, node_deallocation_option or "requeue")
            self._touch(pool, now)
            return pool

    def _finish(self, pool: Pool, op: ResizeOp, when: datetime, errors: list[ResizeErrorRecord]) -> None:
        op.finished = True
        pool.resize_errors = errors
        pool.allocation_state, pool.allocation_state_time = "steady", when

    def stop_resize(self, account_name: str, pool_id: str, *, if_match: str | None = None, plane: str = "batch") -> Pool:
        """Stop a resize: ``stopping`` now, ``steady`` after ``timings.stop`` with the nodes it had (and ``ResizeStopped``)."""
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            if pool.state == "deleting":
                raise batch_error(plane, 409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
            op = pool.op
            if pool.allocation_state == "resizing" and op is not None and not op.finished:
                op.stopping = True
                pool.allocation_state, pool.allocation_state_time = "stopping", now
                when = now + self.timings.stop
                self.emulator.scheduler.at(when, lambda: self._on_stop_done(pool, op, when))
                self._touch(pool, now)
            return pool

    def _on_stop_done(self, pool: Pool, op: ResizeOp, when: datetime) -> None:
        with self._lock:
            if pool.removed or pool.op is not op or op.finished:
                return
            self._finish(pool, op, when, [ResizeErrorRecord("ResizeStopped", stopped_message(k)) for k in KINDS if op.target[k] > pool.current[k]])

    # ------------------------------------------------------------------------------------------
    # autoscale (the formula is not a language here: literal $TargetDedicatedNodes/$TargetLowPriorityNodes
    # assignments are applied when autoscale is enabled; anything else keeps the pool's size)
    # ------------------------------------------------------------------------------------------
    def _evaluate_formula(self, pool: Pool, now: datetime) -> None:
        formula = pool.spec.auto_scale_formula or ""
        dedicated_match, low_match = _FORMULA_DEDICATED.search(formula), _FORMULA_LOW.search(formula)
        dedicated = int(dedicated_match.group(1)) if dedicated_match else pool.target[DEDICATED]
        low = int(low_match.group(1)) if low_match else pool.target[LOW_PRIORITY]
        pool.auto_scale_run = {"timestamp": now, "results": f"$TargetDedicatedNodes={dedicated};$TargetLowPriorityNodes={low};"
                                                            "$NodeDeallocationOption=requeue"}
        if (dedicated, low) != (pool.current[DEDICATED], pool.current[LOW_PRIORITY]) and pool.allocation_state == "steady":
            self._start_resize(pool, now, dedicated, low, self.limits.default_resize_timeout, None)

    def enable_auto_scale(self, pool: Pool, formula: str, interval: timedelta | None, plane: str, now: datetime) -> None:
        if not formula or not formula.strip():
            raise batch_error(plane, 400, "InvalidAutoScalingSettings", "The specified auto-scaling settings are not valid: the formula is empty.")
        if pool.allocation_state != "steady":
            raise batch_error(plane, 409, "PoolBeingResized", "The specified pool is being resized.")
        pool.spec.auto_scale_formula = formula
        pool.spec.auto_scale_evaluation_interval = interval or timedelta(minutes=15)
        pool.auto_scale = True
        self._evaluate_formula(pool, now)

    def disable_auto_scale(self, account_name: str, pool_id: str, plane: str = "arm") -> Pool:
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            if pool.auto_scale:
                pool.auto_scale = False
                pool.spec.auto_scale_formula = None
                pool.spec.auto_scale_evaluation_interval = None
                pool.auto_scale_run = None
                self._touch(pool, now)
            return pool

    # ------------------------------------------------------------------------------------------
    # updates
    # ------------------------------------------------------------------------------------------
    def update_pool(self, account_name: str, pool_id: str, *, metadata: list[dict[str, str]] | Mapping[str, str] | None = None,
                    start_task: dict[str, Any] | None = None, display_name: str | None = None, if_match: str | None = None,
                    if_unmodified_since: datetime | None = None, if_modified_since: datetime | None = None, replace: bool = False,
                    plane: str = "batch") -> Pool:
        """Data-plane PATCH (``replace=False``: only given properties change) or updateproperties (``replace=True``)."""
        now = self._now()
        self._sync()
        if isinstance(metadata, Mapping):
            metadata = [{"name": k, "value": v} for k, v in metadata.items()]
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match, if_unmodified_since=if_unmodified_since, if_modified_since=if_modified_since)
            if pool.state == "deleting":
                raise batch_error(plane, 409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
            if metadata is not None:
                self._check_metadata(metadata, plane)
                pool.spec.metadata = [dict(m) for m in metadata]
            elif replace:
                pool.spec.metadata = []
            if start_task is not None or replace:
                pool.spec.start_task = start_task
            if display_name is not None:
                pool.spec.display_name = display_name
            self._touch(pool, now)
            return pool

    def update_pool_mgmt(self, account: BatchAccount, pool_id: str, changes: PoolUpdate, *, if_match: str | None = None,
                         if_none_match: str | None = None, api_version: str | None = None) -> Pool:
        """Management-plane PATCH (Pool - Update): given properties change; a changed ``fixedScale`` starts a
        resize (409 unless steady); ``autoScale`` enables automatic scaling; a changed image is accepted only
        from api-version 2024-07-01 on and only while the pool is steady with zero nodes (see _check_image_update)."""
        now = self._now()
        self._sync()
        with self._lock:
            pool = self._pool(account, pool_id, "arm")
            self.check_conditions(pool, "arm", if_match=if_match, if_none_match=if_none_match)
            return self._apply_mgmt_update(pool, changes, now, image_update_api=api_version)

    def _check_image_update(self, pool: Pool, api_version: str | None) -> None:
        """Learn "Update Batch pool properties" (batch-pool-update-properties): from API version 2024-07-01 a Pool - Update
        may change deploymentConfiguration only when the pool is steady with zero dedicated and zero Spot nodes;
        the next resize builds nodes from the new image."""
        if not api_version or api_version < IMAGE_UPDATE_API_VERSION:
            # Learn (same page): older API versions cannot change deploymentConfiguration at all. (The emulator's ARM layer
            # accepts only 2025-06-01 today, so this guards a future second api-version.)
            raise AzureError(400, "PropertyCannotBeUpdated", "The deploymentConfiguration of an existing pool can be changed only "
                             f"with api-version {IMAGE_UPDATE_API_VERSION} or later.")
        if pool.allocation_state != "steady" or any(pool.current.values()) or (pool.op is not None and not pool.op.finished):
            # ASSUMED code: Batch does not publish the error code for this refusal; 409 + this code is the emulator's guess.
            raise AzureError(409, "OperationInvalidForCurrentState",
                             "The pool's deploymentConfiguration can be changed only when the pool is steady with zero dedicated and zero "
                             f"Spot nodes (allocationState {pool.allocation_state}, {pool.current.get(DEDICATED, 0)} dedicated, "
                             f"{pool.current.get(LOW_PRIORITY, 0)} Spot).")

    def _apply_mgmt_update(self, pool: Pool, changes: PoolUpdate, now: datetime, *, image_update_api: str | None = None) -> Pool:
        if pool.state == "deleting":
            raise AzureError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed.")
        spec = pool.spec
        if changes.vm_size is not None and changes.vm_size.lower() != spec.vm_size.lower():
            raise AzureError(400, "PropertyCannotBeUpdated", "The vmSize of an existing pool cannot be changed.")
        new_image: dict[str, Any] | None = None
        if changes.image_reference is not None and {k: str(v).lower() for k, v in changes.image_reference.items()} != \
                {k: str(v).lower() for k, v in spec.image_reference.items()}:
            if image_update_api is None:
                # A PUT over an existing pool stays refused: only Pool - Update (PATCH) is documented to change the image.
                raise AzureError(400, "PropertyCannotBeUpdated", "The deploymentConfiguration of an existing pool cannot be changed.")
            self._check_image_update(pool, image_update_api)
            new_image = dict(changes.image_reference)
        if changes.metadata is not None:
            self._check_metadata(changes.metadata, "arm")
        if changes.network_configuration is not None:
            self._check_network(changes.network_configuration, "arm")
        resize: tuple[int, int, timedelta, str | None] | None = None
        if changes.fixed_scale is not None:
            dedicated, low, timeout, deallocation = changes.fixed_scale
            self._check_target("targetDedicatedNodes", dedicated, "arm")
            self._check_target("targetLowPriorityNodes", low, "arm")
            timeout = timeout if timeout is not None else self.limits.default_resize_timeout
            self._check_timeout(timeout, "arm")
            wanted = {DEDICATED: dedicated, LOW_PRIORITY: low}
            if pool.auto_scale or wanted != pool.target or (pool.allocation_state == "steady" and wanted != pool.current):
                if pool.allocation_state != "steady":
                    raise AzureError(409, "PoolBeingResized", "The specified pool is being resized: change its scale settings once "
                                     "its allocationState is Steady.")
                resize = (dedicated, low, timeout, deallocation)
            else:
                pool.resize_timeout = timeout
                pool.node_deallocation_option = deallocation if deallocation is not None else pool.node_deallocation_option
        if changes.auto_scale is not None and changes.fixed_scale is None:
            formula, interval = changes.auto_scale
            self.enable_auto_scale(pool, formula, interval, "arm", now)
        if resize is not None:
            pool.auto_scale = False
            spec.auto_scale_formula = None
            spec.auto_scale_evaluation_interval = None
            pool.auto_scale_run = None
            self._start_resize(pool, now, *resize)
        if changes.metadata is not None:
            spec.metadata = [dict(m) for m in changes.metadata]
        if new_image is not None:
            spec.image_reference = new_image  # checked above, before anything changed: image and metadata land together or not at all
        if changes.start_task is not None:
            spec.start_task = changes.start_task
        if changes.display_name is not None:
            spec.display_name = changes.display_name
        if changes.network_configuration is not None:
            spec.network_configuration = changes.network_configuration
        if changes.tags is not None:
            spec.tags = dict(changes.tags)
        if changes.extra:
            spec.extra.update(changes.extra)
        self._touch(pool, now)
        return pool

    def put_pool_mgmt(self, account: BatchAccount, pool_id: str, spec: PoolSpec, update: PoolUpdate, *, if_match: str | None = None,
                      if_none_match: str | None = None, api_version: str | None = None) -> tuple[Pool, bool]:
        """Management-plane PUT: create (If-None-Match: * makes it create-only) or apply to the existing pool."""
        now = self._now()
        self._sync()
        with self._lock:
            existing = account.pools.get(pool_id.lower())
            self.check_conditions(existing, "arm", if_match=if_match, if_none_match=if_none_match)
            if existing is not None:
                return self._apply_mgmt_update(existing, update, now), False
            return self._create_pool(account, pool_id, spec, "arm", now, api_version), True

    # ------------------------------------------------------------------------------------------
    # deletion
    # ------------------------------------------------------------------------------------------
    def delete_pool(self, account_name: str, pool_id: str, *, plane: str = "arm", event: Mapping[str, Any] | None = None,
                    if_match: str | None = None) -> DeleteOperation:
        """Mark the pool deleting; it disappears after ``timings.pool_delete``. ``event``: keyword arguments for
        ``eventgrid.emit_resource_event`` raised when the deletion completes (management plane)."""
        now = self._now()
        self._sync()
        with self._lock:
            account = self._account_by_name(account_name, plane)
            pool = self._pool(account, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            operation = DeleteOperation(uuid.uuid4().hex, account.id, pool)
            self.delete_operations[operation.id] = operation
            if pool.state != "deleting":
                pool.state, pool.state_time = "deleting", now
                if pool.op is not None and not pool.op.finished:
                    pool.op.finished = True
                    pool.allocation_state, pool.allocation_state_time = "steady", now
                when = now + self.timings.pool_delete
                self.emulator.scheduler.at(when, lambda: self._complete_delete(pool))
            if event is not None:
                self._pending_events.setdefault(pool.key, []).append(dict(event))
            return operation

    def _complete_delete(self, pool: Pool) -> None:
        with self._lock:
            if pool.removed:
                return
            self._remove_pool(pool)
            events = self._pending_events.pop(pool.key, [])
            for operation in self.delete_operations.values():
                if operation.pool is pool:
                    operation.done = True
        # Raised outside our lock: the event backend may read the clock, which a thread advancing time holds.
        emit: Callable[..., Any] | None = getattr(self.emulator.eventgrid, "emit_resource_event", None)
        if emit is not None:
            for kwargs in events:
                emit(**kwargs)

    def _remove_pool(self, pool: Pool) -> None:
        for kind in KINDS:
            self._set_nodes(pool, kind, 0)
        pool.removed = True
        account = pool.account
        if account.pools.get(pool.id.lower()) is pool:
            del account.pools[pool.id.lower()]
            account._sorted_ids = None
        if pool.op is not None:
            pool.op.finished = True

    def delete_operation(self, operation_id: str) -> DeleteOperation | None:
        self._sync()
        return self.delete_operations.get(operation_id)

    # ------------------------------------------------------------------------------------------
    # node counts
    # ------------------------------------------------------------------------------------------
    def node_counts(self, pool: Pool) -> dict[str, dict[str, int]]:
        """Per node kind, nodes by state on the virtual clock (emulator/batch/nodes.py; azure-batch 15.1.0 BatchNodeCounts)."""
        return node_state_counts(pool, self._now())


@dataclass
class PoolUpdate:
    """A management-plane PATCH body (None: not given). ``fixed_scale``: (dedicated, low, timeout, deallocation)."""

    fixed_scale: tuple[int, int, timedelta | None, str | None] | None = None
    auto_scale: tuple[str, timedelta | None] | None = None
    metadata: list[dict[str, str]] | None = None
    start_task: dict[str, Any] | None = None
    display_name: str | None = None
    network_configuration: dict[str, Any] | None = None
    vm_size: str | None = None
    image_reference: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
