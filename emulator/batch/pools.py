"""Azure Batch: pools (the spec, the record both planes share, create, conditional requests, updates, deletion)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.batch.base import (
    _GALLERY_IMAGE,
    _MANAGED_IMAGE,
    _POOL_ID,
    API_VERSION,
    DEALLOCATION_OPTIONS,
    IMAGE_UPDATE_API_VERSION,
    MANAGED_IMAGE_LAST_API_VERSION,
    BatchCore,
)
from emulator.batch.capacity import DEDICATED, KINDS, LOW_PRIORITY
from emulator.batch.exceptions import (
    ConditionNotMet,
    EmptyMetadataKey,
    InvalidAutoScalingSettings,
    InvalidMetadata,
    InvalidPropertyValue,
    MissingRequiredProperty,
    OperationInvalidForCurrentState,
    PoolBeingDeleted,
    PoolBeingResized,
    PoolExists,
    PoolNotFound,
    PoolQuotaReached,
    PreconditionFailed,
    PropertyCannotBeUpdated,
)
from emulator.batch.formats import bare_etag
from emulator.batch.nodes import Node
from emulator.exceptions import AzureError
from emulator.ids import key

if TYPE_CHECKING:
    from emulator.batch.accounts import BatchAccount
    from emulator.batch.resize import InjectedFailure, ResizeErrorRecord, ResizeOp


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
    # managed-image pools: the image and its snapshots (the shared node cap)
    cap_keys: frozenset[tuple[str, str]] = frozenset()
    # node id -> node, in allocation order (emulator/batch/nodes.py)
    nodes: dict[str, Node] = field(default_factory=dict)
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


@dataclass
class DeleteOperation:
    """A management-plane pool delete in flight (polled through its Location URL)."""

    id: str
    account_id: str
    pool: Pool
    done: bool = False


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


class PoolsMixin(BatchCore):
    """Pools: look-up, validation, creation, conditional requests, updates (both planes) and deletion."""

    # ------------------------------------------------------------------------------------------
    # pools: lookup and creation
    # ------------------------------------------------------------------------------------------
    def _pool(self, account: BatchAccount, pool_id: str, plane: str) -> Pool:
        pool = account.pools.get(pool_id.lower())
        if pool is None:
            raise PoolNotFound(plane=plane)
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
        if not spec.vm_size:
            raise MissingRequiredProperty.of("vmSize", plane=plane)
        if self.vm_size(spec.vm_size) is None:
            raise InvalidPropertyValue.of("vmSize", spec.vm_size,
                                          f"The VM size '{spec.vm_size}' is not supported by the emulator's Batch "
                                          "service (register it with BatchBackend.register_vm_size).", plane=plane)
        if not spec.image_reference:
            raise MissingRequiredProperty.of("imageReference", plane=plane)
        if not spec.node_agent_sku_id:
            raise MissingRequiredProperty.of("nodeAgentSkuId" if plane == "arm" else "nodeAgentSKUId", plane=plane)
        if spec.node_agent_sku_id.lower() not in self.known_node_agent_skus():
            raise InvalidPropertyValue.of("nodeAgentSkuId", spec.node_agent_sku_id,
                                          f"The node agent SKU '{spec.node_agent_sku_id}' is not supported.",
                                          plane=plane)
        ref = spec.image_reference
        image_id = ref.get("id")
        if image_id:
            if _MANAGED_IMAGE.match(image_id):
                # Only API versions up to 2019-08-01 took a managed image (see MANAGED_IMAGE_LAST_API_VERSION), whatever
                # the date.
                if (api_version or API_VERSION)[:10] > MANAGED_IMAGE_LAST_API_VERSION:
                    raise InvalidPropertyValue.of("imageReference.id", image_id,
                                                  "A managed image cannot be a pool's image at api-version "
                                                  f"{api_version or API_VERSION}: use an Azure Compute Gallery image "
                                                  "version or image definition.", plane=plane)
            elif not _GALLERY_IMAGE.match(image_id):
                raise InvalidPropertyValue.of("imageReference.id", image_id,
                                              "The image id must be an Azure Compute Gallery image of the form "
                                              "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute"
                                              "/galleries/{gallery}/images/{definition}[/versions/{version}].",
                                              plane=plane)
        elif not (ref.get("sharedGalleryImageId") or ref.get("communityGalleryImageId")):
            for part in ("publisher", "offer", "sku"):
                if not ref.get(part):
                    raise MissingRequiredProperty.of(f"imageReference.{part}", plane=plane)
        for name, value in (("targetDedicatedNodes", spec.target_dedicated),
                            ("targetLowPriorityNodes", spec.target_low_priority)):
            self._check_target(name, value, plane)
        if spec.resize_timeout is not None:
            self._check_timeout(spec.resize_timeout, plane)
        if spec.node_deallocation_option is not None and spec.node_deallocation_option not in DEALLOCATION_OPTIONS:
            raise InvalidPropertyValue.of("nodeDeallocationOption", spec.node_deallocation_option,
                                          "Use requeue, terminate, taskcompletion or retaineddata.", plane=plane)
        if spec.auto_scale_formula is not None and not spec.auto_scale_formula.strip():
            raise InvalidAutoScalingSettings("The specified auto-scaling settings are not valid: the formula is "
                                             "empty.", plane=plane)
        self._check_metadata(spec.metadata, plane)
        self._check_network(spec.network_configuration, plane)
        if spec.task_slots_per_node < 1:
            raise InvalidPropertyValue.of("taskSlotsPerNode", spec.task_slots_per_node,
                                          "taskSlotsPerNode must be at least 1.", plane=plane)
        return spec

    def _check_target(self, name: str, value: Any, plane: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > self.limits.max_target_nodes:
            raise InvalidPropertyValue(f"The value provided for one of the properties in the request body is invalid: "
                                       f"{name} must be an integer between 0 and {self.limits.max_target_nodes}.",
                                       {"PropertyName": name, "PropertyValue": str(value)}, plane=plane)

    def _check_timeout(self, timeout: timedelta, plane: str) -> None:
        if timeout < self.limits.min_resize_timeout:
            raise InvalidPropertyValue("The value provided for one of the properties in the request body is invalid: "
                                       "resizeTimeout must be at least 5 minutes.",
                                       {"PropertyName": "resizeTimeout", "PropertyValue": str(timeout),
                                        "Reason": "The minimum value is 5 minutes."},
                                       plane=plane)

    @staticmethod
    def _check_metadata(metadata: list[dict[str, str]], plane: str) -> None:
        for item in metadata:
            if (not isinstance(item, dict) or not isinstance(item.get("name"), str)
                or not isinstance(item.get("value"), str)):
                raise InvalidMetadata("Each metadata item must be an object with string 'name' and 'value'.",
                                      plane=plane)
            if not item["name"]:
                raise EmptyMetadataKey(plane=plane)

    @staticmethod
    def _check_network(network: dict[str, Any] | None, plane: str) -> None:
        if not network:
            return
        names: set[str] = set()
        nat_pools = network.get("natPools") or []
        # "The maximum number of inbound NAT Pools per Batch Pool is 5 ... fails with HTTP status code 400"
        # (azure-batch 15.1.0 BatchPoolEndpointConfiguration.inbound_nat_pools docstring).
        if len(nat_pools) > 5:
            raise InvalidPropertyValue(f"A pool can have at most 5 inbound NAT pools; {len(nat_pools)} were given.",
                                       plane=plane)
        ranges: list[tuple[int, int, str]] = []
        backends: set[int] = set()
        for nat in nat_pools:
            try:
                start, end, backend = (int(nat["frontendPortRangeStart"]), int(nat["frontendPortRangeEnd"]),
                                       int(nat["backendPort"]))
                name = str(nat["name"])
            except (KeyError, TypeError, ValueError):
                raise InvalidPropertyValue("Each inbound NAT pool needs name, protocol, backendPort, "
                                           "frontendPortRangeStart and frontendPortRangeEnd.", plane=plane) from None
            if name.lower() in names:
                raise InvalidPropertyValue(f"Inbound NAT pool names must be unique: '{name}' is repeated.", plane=plane)
            names.add(name.lower())
            if not (1 <= backend <= 65535) or not (1 <= start < end <= 65534) or end - start + 1 < 40:
                raise InvalidPropertyValue(f"Inbound NAT pool '{name}': ports must be within 1-65534, "
                                           "frontendPortRangeStart < frontendPortRangeEnd and the range must "
                                           "contain at least 40 ports.", plane=plane)
            # Backend port: "between 1 and 65535 except for 29876 and 29877 as these are reserved ... must be unique
            # within a Batch Pool"; frontend: "except ports from 50000 to 55000 which are reserved ... All ranges within
            # a Pool must be distinct and cannot overlap ... the request fails with HTTP status code 400" (azure-batch
            # 15.1.0 BatchInboundNatPool).
            if backend in (29876, 29877) or backend in backends:
                raise InvalidPropertyValue(f"Inbound NAT pool '{name}': backend port {backend} is reserved (29876, "
                                           "29877) or used by another inbound NAT pool of the pool.", plane=plane)
            backends.add(backend)
            if start <= 55000 and end >= 50000:
                raise InvalidPropertyValue(f"Inbound NAT pool '{name}': the frontend port range {start}-{end} "
                                           "includes ports from 50000 to 55000, which are reserved by the Batch "
                                           "service.", plane=plane)
            for other_start, other_end, other in ranges:
                if start <= other_end and end >= other_start:
                    raise InvalidPropertyValue(f"Inbound NAT pools '{other}' and '{name}': frontend port ranges "
                                               "within a pool must be distinct and cannot overlap.", plane=plane)
            ranges.append((start, end, name))

    def create_pool(self, account_name: str, pool_id: str, spec: PoolSpec | None = None, *, image_id: str | None = None,
                    metadata: Mapping[str, str] | list[dict[str, str]] | None = None, plane: str = "arm",
                    api_version: str | None = None,
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
                fields_["metadata"] = ([{"name": k, "value": v} for k, v in metadata.items()]
                                       if isinstance(metadata, Mapping) else list(metadata))
            spec = PoolSpec(**fields_)
        now = self._now()
        self._sync()
        with self._lock:
            return self._create_pool(self._account_by_name(account_name, plane), pool_id, spec, plane, now, api_version)

    def _create_pool(self, account: BatchAccount, pool_id: str, spec: PoolSpec, plane: str, now: datetime,
                     api_version: str | None = None) -> Pool:
        if not _POOL_ID.match(pool_id):
            raise InvalidPropertyValue(f"The pool id '{pool_id}' is invalid: use at most 64 letters, digits, hyphens "
                                       "and underscores.", {"PropertyName": "id", "PropertyValue": pool_id},
                                       plane=plane)
        if pool_id.lower() in account.pools:
            raise PoolExists(plane=plane)
        if len(account.pools) >= account.pool_quota:
            raise PoolQuotaReached(f"The pool quota of {account.pool_quota} for the account has been reached.",
                                   plane=plane)
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
            self._start_resize(pool, now, spec.target_dedicated, spec.target_low_priority, pool.resize_timeout,
                               spec.node_deallocation_option)
        return pool

    # ------------------------------------------------------------------------------------------
    # conditional requests
    # ------------------------------------------------------------------------------------------
    def check_conditions(self, pool: Pool | None, plane: str, *, if_match: str | None = None,
                         if_none_match: str | None = None,
                         if_modified_since: datetime | None = None, if_unmodified_since: datetime | None = None,
                         read: bool = False) -> bool:
        """Apply If-Match / If-None-Match / If-(Un)Modified-Since. Raises 412; returns False for a read's 304."""
        def failed() -> AzureError:
            if plane == "batch":
                return ConditionNotMet(plane="batch")
            return PreconditionFailed(plane="arm")

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
    # updates
    # ------------------------------------------------------------------------------------------
    def update_pool(self, account_name: str, pool_id: str, *,
                    metadata: list[dict[str, str]] | Mapping[str, str] | None = None,
                    start_task: dict[str, Any] | None = None, display_name: str | None = None,
                    if_match: str | None = None,
                    if_unmodified_since: datetime | None = None, if_modified_since: datetime | None = None,
                    replace: bool = False,
                    plane: str = "batch") -> Pool:
        """Data-plane PATCH (``replace=False``: only given properties change) or updateproperties (``replace=True``)."""
        now = self._now()
        self._sync()
        if isinstance(metadata, Mapping):
            metadata = [{"name": k, "value": v} for k, v in metadata.items()]
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match, if_unmodified_since=if_unmodified_since,
                                  if_modified_since=if_modified_since)
            if pool.state == "deleting":
                raise PoolBeingDeleted(plane=plane)
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
        """Learn "Update Batch pool properties" (batch-pool-update-properties): from API version 2024-07-01 a Pool -
        Update may change deploymentConfiguration only when the pool is steady with zero dedicated and zero Spot nodes;
        the next resize builds nodes from the new image."""
        if not api_version or api_version < IMAGE_UPDATE_API_VERSION:
            # Learn (same page): older API versions cannot change deploymentConfiguration at all. (The emulator's ARM
            # layer accepts only 2025-06-01 today, so this guards a future second api-version.)
            raise PropertyCannotBeUpdated("The deploymentConfiguration of an existing pool can be changed only "
                                          f"with api-version {IMAGE_UPDATE_API_VERSION} or later.", plane="arm")
        if (pool.allocation_state != "steady" or any(pool.current.values())
            or (pool.op is not None and not pool.op.finished)):
            # ASSUMED code: Batch does not publish the error code for this refusal; 409 + this code is the emulator's
            # guess.
            raise OperationInvalidForCurrentState("The pool's deploymentConfiguration can be changed only when the "
                                                  "pool is steady with zero dedicated and zero Spot nodes "
                                                  f"(allocationState {pool.allocation_state}, "
                                                  f"{pool.current.get(DEDICATED, 0)} dedicated, "
                                                  f"{pool.current.get(LOW_PRIORITY, 0)} Spot).", plane="arm")

    def _apply_mgmt_update(self, pool: Pool, changes: PoolUpdate, now: datetime, *,
                           image_update_api: str | None = None) -> Pool:
        if pool.state == "deleting":
            raise PoolBeingDeleted(plane="arm")
        spec = pool.spec
        if changes.vm_size is not None and changes.vm_size.lower() != spec.vm_size.lower():
            raise PropertyCannotBeUpdated("The vmSize of an existing pool cannot be changed.", plane="arm")
        new_image: dict[str, Any] | None = None
        if changes.image_reference is not None and {k: str(v).lower() for k, v in changes.image_reference.items()} != \
                {k: str(v).lower() for k, v in spec.image_reference.items()}:
            if image_update_api is None:
                # A PUT over an existing pool stays refused: only Pool - Update (PATCH) is documented to change the
                # image.
                raise PropertyCannotBeUpdated("The deploymentConfiguration of an existing pool cannot be changed.",
                                              plane="arm")
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
            if pool.auto_scale or wanted != pool.target or (pool.allocation_state == "steady"
                                                            and wanted != pool.current):
                if pool.allocation_state != "steady":
                    raise PoolBeingResized("The specified pool is being resized: change its scale settings once "
                                           "its allocationState is Steady.", plane="arm")
                resize = (dedicated, low, timeout, deallocation)
            else:
                pool.resize_timeout = timeout
                pool.node_deallocation_option = (deallocation if deallocation is not None
                                                 else pool.node_deallocation_option)
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
            # checked above, before anything changed: image and metadata land together or not at all
            spec.image_reference = new_image
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

    def put_pool_mgmt(self, account: BatchAccount, pool_id: str, spec: PoolSpec, update: PoolUpdate, *,
                      if_match: str | None = None,
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
    def delete_pool(self, account_name: str, pool_id: str, *, plane: str = "arm",
                    event: Mapping[str, Any] | None = None,
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
