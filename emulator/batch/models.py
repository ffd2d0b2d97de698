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

The backend is composed of one mixin per resource: ``accounts``, ``pools``, ``resize`` (the engine above,
stopResize, autoscale) and ``pool_nodes``; shared constants and plumbing in ``base``. This module adds the
scenario knobs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from emulator.batch.accounts import AccountsMixin, BatchAccount
from emulator.batch.base import API_VERSION, BatchCore
from emulator.batch.capacity import CapacityConfig, CapacityModel, Limits, Timings
from emulator.batch.catalog import DEFAULT_VM_SIZES, VmSize, default_supported_images
from emulator.batch.formats import iso
from emulator.batch.nodes import ImageHealth
from emulator.batch.pool_nodes import PoolNodesMixin
from emulator.batch.pools import DeleteOperation, Pool, PoolsMixin, PoolSpec, PoolUpdate
from emulator.batch.resize import InjectedFailure, ResizeErrorRecord, ResizeMixin, ResizeOp

if TYPE_CHECKING:
    from emulator.azure import Emulator

__all__ = [
    "API_VERSION", "BatchAccount", "BatchBackend", "DeleteOperation", "InjectedFailure", "Pool", "PoolSpec",
    "PoolUpdate",
    "ResizeErrorRecord", "ResizeOp",
]


class BatchBackend(AccountsMixin, PoolsMixin, ResizeMixin, PoolNodesMixin, BatchCore):
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
        # ((image|snapshot, key), kind) -> nodes of managed-image pools
        self.image_usage: dict[tuple[tuple[str, str], str], int] = {}
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
    # scenario knobs
    # ------------------------------------------------------------------------------------------
    def register_vm_size(self, name: str, cores: int, family: str, *, hyperv_gen2: bool = True) -> VmSize:
        """Add or replace a VM size (cores count against Batch core quotas; ``hyperv_gen2`` False = cannot boot
        Gen2)."""
        size = VmSize(name, int(cores), family, hyperv_gen2)
        with self._lock:
            self.vm_sizes[name.lower()] = size
        return size

    def configure_capacity(self, region: str | None = None, vm_size: str | None = None,
                           **settings: float | int) -> CapacityConfig:
        """Change capacity for (region, size), a whole region (``vm_size=None``) or the default (both None).

        Settings are :class:`~emulator.batch.capacity.CapacityConfig` fields, e.g.
        ``configure_capacity("westeurope", "Standard_D4ds_v5", dedicated_available=200, dedicated_failure_rate=0)``.
        """
        with self._lock:
            return self.capacity.configure(region, vm_size, **settings)

    def set_failure_rates(self, region: str | None = None, vm_size: str | None = None, *,
                          dedicated: float | None = None,
                          low_priority: float | None = None,
                          internal_error_share: float | None = None) -> CapacityConfig:
        return self.configure_capacity(region, vm_size, dedicated_failure_rate=dedicated,
                                       low_priority_failure_rate=low_priority,
                                       internal_error_share=internal_error_share)

    def inject_failure(self, account_name: str, pool_id: str, kind: str = "subnet_delegation", *, count: int | None = 1,
                       code: str | None = None, message: str | None = None,
                       values: Mapping[str, str] | None = None) -> InjectedFailure:
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

    def add_supported_image(self, publisher: str, offer: str, sku: str, node_agent_sku_id: str, *,
                            os_type: str = "linux",
                            verified: bool = True, capabilities: list[str] | None = None,
                            end_of_life: datetime | str | None = None) -> dict:
        row: dict[str, Any] = {"nodeAgentSKUId": node_agent_sku_id,
                               "imageReference": {"publisher": publisher, "offer": offer, "sku": sku,
                                                  "version": "latest"},
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
            return (str(ref.get("publisher", "")).lower(), str(ref.get("offer", "")).lower(),
                    str(ref.get("sku", "")).lower()) == \
                (publisher.lower(), offer.lower(), sku.lower())

        with self._lock:
            before = len(self.supported_images)
            self.supported_images = [i for i in self.supported_images if not same(i)]
            return before - len(self.supported_images)
