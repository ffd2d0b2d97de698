"""The parts of an image family - gallery, replicas, node limits, pools (with their NAT pools and schedules), start
task, rollout and retention: each part's validated type, and the parser that builds it from the JSON document
(shared/config/families.py reads the document and its families, and calls these for their parts).

The parsers share one :class:`Validator`, which collects every problem with its JSON path instead of stopping at the
first, so that an operator fixes the file in one go.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.core import durations
from shared.core.resource_ids import is_batch_account_id
from shared.pipeline import naming, nat
from shared.pipeline.image_rules import (
    CUSTOM_IMAGE_DEDICATED_LIMIT,
    CUSTOM_IMAGE_SPOT_LIMIT,
    MAX_POOL_NODES,
    NODES_PER_REPLICA,
    NodeLimits,
)
from shared.watch.schedules import ScheduleEntry, check_entry

# The Batch custom-image article: "set resizeTimeout to 20-30 minutes" for fixed-size pools, then
# resize again if the target was not reached. 25 sits in the middle of that band.
RESIZE_TIMEOUT_DEFAULT = 25
RESIZE_TIMEOUT_BAND = (20, 30)
RESIZE_TIMEOUT_LIMITS = (5, 1440)  # Batch refuses < 5 min; a day is a sanity bound, not an Azure one
MAX_REPLICAS = 100  # sanity bound on the configured minimum replica count, not an Azure number
SAMPLE_VERSION = "1.0.0"  # pool id templates are test-rendered with this version to find clashes

OS_TYPES = ("Linux", "Windows")
OS_STATES = ("Generalized", "Specialized")
HYPER_V_GENERATIONS = ("V1", "V2")
SOURCES = ("managedImage", "snapshots")
STORAGE_ACCOUNT_TYPES = ("Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS")
DEALLOCATION_OPTIONS = ("Requeue", "Terminate", "TaskCompletion", "RetainedData")  # management-plane casing
RESERVED_METADATA_PREFIX = "autopilot."  # shared/core/pool_metadata.py: the app's own keys on the pool

GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_VM_SIZE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,63}$")
_REGION = re.compile(r"^[A-Za-z][A-Za-z0-9 ]{1,63}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

ROLLOUT_MODES = ("newPools", "inPlace")
APPLY_WHEN = ("nextZero", "drain")
IN_PLACE_POOL_ID_TEMPLATE = "{family}"  # inPlace pools keep one id for every version
DEFAULT_RETIRE_AFTER = timedelta(hours=2)  # the new pools hold their target this long before the old ones go
DEFAULT_MAX_WAIT = timedelta(days=7)  # a weekly zero (a weekend schedule) still comes within it
MAX_KEEP_VERSIONS = 1000  # sanity bound, not an Azure number


# --- the validated configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class GalleryConfig:
    resource_group: str
    name: str
    image_definition: str
    os_type: str  # Linux | Windows
    hyper_v_generation: str  # V1 | V2
    location: str
    os_state: str = "Generalized"
    subscription: str | None = None  # None: the app's subscription


@dataclass(frozen=True)
class ReplicaPolicy:
    nodes_per_replica: int = NODES_PER_REPLICA
    minimum: int = 1
    storage_account_type: str = "Standard_LRS"


@dataclass(frozen=True)
class PoolSpec:
    account: str  # Batch account resource id
    vm_size: str
    pool_id_template: str = naming.DEFAULT_POOL_ID_TEMPLATE
    dedicated: int = 0
    spot: int = 0
    resize_timeout_minutes: int = RESIZE_TIMEOUT_DEFAULT
    allow_resize_timeout_outside_band: bool = False
    node_agent_sku_id: str | None = None  # None: derived from the base Marketplace image
    inbound_nat_pools: bool = False
    node_deallocation_option: str = "Requeue"
    metadata: tuple[tuple[str, str], ...] = ()
    schedule: tuple[ScheduleEntry, ...] = ()
    nat_pools: tuple[nat.NatPool, ...] = ()  # configured ranges; empty with inbound_nat_pools: the app chooses them

    def nat_pools_for(self, os_type: str) -> tuple[nat.NatPool, ...]:
        """The NAT pools the pool is created with: the configured ones, else one the app chooses for its peak size."""
        if not self.inbound_nat_pools:
            return ()
        return self.nat_pools or nat.choose(os_type, self.peak_dedicated + self.peak_spot)
    in_place: bool = False  # the family's rollout mode is inPlace: one pool id for every version

    @property
    def peak_dedicated(self) -> int:
        """The most dedicated nodes this pool is ever asked for (initial target or any schedule entry)."""
        return max([self.dedicated, *(s.dedicated for s in self.schedule)])

    @property
    def peak_spot(self) -> int:
        return max([self.spot, *(s.spot for s in self.schedule)])

    def metadata_dict(self) -> dict[str, str]:
        return dict(self.metadata)

    def pool_id(self, family: str, version: str) -> str:
        return naming.render_pool_id(self.pool_id_template, family, version, in_place=self.in_place)


@dataclass(frozen=True)
class RolloutPolicy:
    """How a new version reaches the family's pools. The default (newPools, nothing retired) is the app's original
    behaviour."""

    mode: str = "newPools"  # newPools | inPlace
    # newPools: take the previous version's pool of the same slot to 0 once the new one held target
    retire_previous: bool = False
    retire_after: timedelta = DEFAULT_RETIRE_AFTER
    delete_retired_pools: bool = False
    apply_when: str = "nextZero"  # inPlace: nextZero | drain
    max_wait: timedelta = DEFAULT_MAX_WAIT  # inPlace: RolloutBlocked when no zero came within it

    @property
    def in_place(self) -> bool:
        return self.mode == "inPlace"


@dataclass(frozen=True)
class RetentionPolicy:
    """Opt-in deletion of the family's old gallery image versions beyond the newest ``keep_versions``."""

    keep_versions: int
    delete_snapshots: bool = False


DEFAULT_CANARY_NODES = 3
START_TASK_SCOPES = ("Pool", "Task")
START_TASK_ELEVATIONS = ("NonAdmin", "Admin")


@dataclass(frozen=True)
class StartTask:
    """A family's optional start task (Batch ``StartTask``): the usual way to check an image on boot. With
    ``wait_for_success`` a failing command leaves the node ``startTaskFailed``, which the node-health check sees."""

    command_line: str
    wait_for_success: bool = True
    user_scope: str | None = None  # autoUser scope: Pool | Task
    elevation_level: str | None = None  # autoUser elevationLevel: NonAdmin | Admin
    user_name: str | None = None

    def to_body(self) -> dict[str, Any]:
        """The management-plane ``startTask`` (azure-mgmt-batch ``StartTask``: commandLine, userIdentity,
        waitForSuccess)."""
        body: dict[str, Any] = {"commandLine": self.command_line, "waitForSuccess": self.wait_for_success}
        if self.user_name:
            body["userIdentity"] = {"userName": self.user_name}
        elif self.user_scope or self.elevation_level:
            auto: dict[str, str] = {}
            if self.user_scope:
                auto["scope"] = self.user_scope
            if self.elevation_level:
                auto["elevationLevel"] = self.elevation_level
            body["userIdentity"] = {"autoUser": auto}
        return body


# --- validation -------------------------------------------------------------------------------------


def json_path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if _IDENTIFIER.match(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text)}]"


def show(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Validator:
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(document)'}: {message}")

    def obj(self, path: str, value: object, *, required: tuple[str, ...] = (),
            optional: tuple[str, ...] = ()) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, f"{show(value)} is not an object")
            return None
        allowed = (*required, *optional)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed keys are {', '.join(allowed)}"
                self.problem(json_path(path, key), f"unknown key; {hint}")
        for key in required:
            if key not in value:
                self.problem(json_path(path, key), "is required")
        return value

    def string(self, path: str, value: object, check: Any = None, *, example: str | None = None) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(path, f"{show(value)} is not a non-empty string"
                         + (f"; for example {json.dumps(example)}" if example else ""))
            return None
        text = value.strip()
        if check is not None and (why := check(text)):
            self.problem(path, f"{show(value)}: {why}" + (f"; for example {json.dumps(example)}" if example else ""))
            return None
        return text

    def integer(self, path: str, value: object, low: int, high: int) -> int | None:
        # JSON has one number type; 25.0 is accepted as 25 (JSON Schema's "integer" does the same).
        if (isinstance(value, bool) or not isinstance(value, int | float) or value != value
            or (isinstance(value, float) and not value.is_integer())):
            self.problem(path, f"{show(value)} is not a whole number")
            return None
        number = int(value)
        if not low <= number <= high:
            self.problem(path, f"{number} is outside {low}–{high}")
            return None
        return number

    def boolean(self, path: str, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.problem(path, f"{show(value)} is not true or false")
            return None
        return value

    def choice(self, path: str, value: object, choices: tuple[str, ...]) -> str | None:
        """One of ``choices``, matched case-insensitively and returned in its canonical spelling."""
        if isinstance(value, str):
            for c in choices:
                if c.lower() == value.strip().lower():
                    return c
        self.problem(path, f"{show(value)} is not one of {', '.join(choices)}")
        return None


def _guid(text: str) -> str | None:
    return None if GUID.match(text) else "a subscription id is a GUID"


def _batch_account(text: str) -> str | None:
    return None if is_batch_account_id(text) else "not a Batch account resource id"


def _region(text: str) -> str | None:
    return None if _REGION.match(text) else "not an Azure region name"


def _vm_size(text: str) -> str | None:
    return None if _VM_SIZE.match(text) else "not a VM size name"


def parse_gallery(v: Validator, path: str, raw: object) -> GalleryConfig | None:
    g = v.obj(path, raw,
              required=("resourceGroup", "name", "imageDefinition", "osType", "hyperVGeneration", "location"),
              optional=("subscription", "osState"))
    if g is None:
        return None
    subscription = v.string(json_path(path, "subscription"), g["subscription"], _guid) if "subscription" in g else None
    resource_group = v.string(json_path(path, "resourceGroup"), g.get("resourceGroup"),
                              naming.resource_group_problem) if "resourceGroup" in g else None
    name = v.string(json_path(path, "name"), g.get("name"), naming.gallery_name_problem) if "name" in g else None
    definition = v.string(json_path(path, "imageDefinition"), g.get("imageDefinition"),
                          naming.image_definition_problem) if "imageDefinition" in g else None
    os_type = v.choice(json_path(path, "osType"), g.get("osType"), OS_TYPES) if "osType" in g else None
    generation = v.choice(json_path(path, "hyperVGeneration"), g.get("hyperVGeneration"),
                          HYPER_V_GENERATIONS) if "hyperVGeneration" in g else None
    location = v.string(json_path(path, "location"), g.get("location"), _region,
                        example="westeurope") if "location" in g else None
    os_state = "Generalized"
    if "osState" in g:
        os_state = v.choice(json_path(path, "osState"), g["osState"], OS_STATES) or "Generalized"
        if os_state == "Specialized":
            # Batch provisions many nodes from one image and needs each to get its own identity at
            # first boot, so gallery images for Batch pools must be generalized (Batch custom-image doc, 2026).
            v.problem(json_path(path, "osState"),
                      "\"Specialized\" images cannot be used by Batch pools, which need generalized images; "
                      "generalize the VM (sysprep / waagent -deprovision+user) before taking the snapshots and set "
                      "\"Generalized\"")
    if None in (resource_group, name, definition, os_type, generation, location):
        return None
    assert resource_group and name and definition and os_type and generation and location  # for the type checker
    return GalleryConfig(resource_group=resource_group, name=name, image_definition=definition, os_type=os_type,
                         hyper_v_generation=generation, location=location, os_state=os_state, subscription=subscription)


def parse_replicas(v: Validator, path: str, raw: object) -> ReplicaPolicy | None:
    r = v.obj(path, raw, optional=("nodesPerReplica", "minimum", "storageAccountType"))
    if r is None:
        return None
    per = v.integer(json_path(path, "nodesPerReplica"), r["nodesPerReplica"], 1,
                    NODES_PER_REPLICA) if "nodesPerReplica" in r else NODES_PER_REPLICA
    minimum = v.integer(json_path(path, "minimum"), r["minimum"], 1, MAX_REPLICAS) if "minimum" in r else 1
    storage = v.choice(json_path(path, "storageAccountType"), r["storageAccountType"],
                       STORAGE_ACCOUNT_TYPES) if "storageAccountType" in r else "Standard_LRS"
    if per is None or minimum is None or storage is None:
        return None
    return ReplicaPolicy(nodes_per_replica=per, minimum=minimum, storage_account_type=storage)


def parse_node_limits(v: Validator, path: str, raw: object) -> NodeLimits | None:
    n = v.obj(path, raw, optional=("dedicated", "spot", "inboundNatDedicated", "inboundNatSpot"))
    if n is None:
        return None
    # The overrides may only lower Batch's documented custom-image limits: raising them would just
    # move the failure from this check to the pool's allocation.
    default = NodeLimits()
    values = {
        "dedicated": v.integer(json_path(path, "dedicated"), n["dedicated"], 0,
                               CUSTOM_IMAGE_DEDICATED_LIMIT) if "dedicated" in n else default.dedicated,
        "spot": v.integer(json_path(path, "spot"), n["spot"], 0,
                          CUSTOM_IMAGE_SPOT_LIMIT) if "spot" in n else default.spot,
        "inbound_nat_dedicated": (v.integer(json_path(path, "inboundNatDedicated"), n["inboundNatDedicated"], 0,
                                            CUSTOM_IMAGE_DEDICATED_LIMIT)
                                  if "inboundNatDedicated" in n else None),
        "inbound_nat_spot": v.integer(json_path(path, "inboundNatSpot"), n["inboundNatSpot"], 0,
                                      CUSTOM_IMAGE_SPOT_LIMIT) if "inboundNatSpot" in n else None,
    }
    if values["dedicated"] is None or values["spot"] is None:
        return None
    # An inbound-NAT limit never exceeds the plain limit it refines.
    values["inbound_nat_dedicated"] = min(values["inbound_nat_dedicated"] if values["inbound_nat_dedicated"] is not None
                                          else default.inbound_nat_dedicated, values["dedicated"])
    values["inbound_nat_spot"] = min(values["inbound_nat_spot"] if values["inbound_nat_spot"] is not None
                                     else default.inbound_nat_spot, values["spot"])
    return NodeLimits(**values)


def _metadata(v: Validator, path: str, raw: object) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(raw, Mapping):
        v.problem(path, f"{show(raw)} is not an object of name/value strings")
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for key, value in raw.items():
        item = json_path(path, key)
        if not isinstance(key, str) or not key.strip():
            v.problem(item, "metadata names are non-empty strings")
            ok = False
        elif key.strip().lower().startswith(RESERVED_METADATA_PREFIX):
            v.problem(item, f"names starting with {RESERVED_METADATA_PREFIX!r} are written by the app itself "
                      "(shared/core/pool_metadata.py); rename it")
            ok = False
        elif not isinstance(value, str):
            v.problem(item, f"{show(value)} is not a string; Batch pool metadata values are strings")
            ok = False
        else:
            pairs.append((key, value))
    return tuple(pairs) if ok else None


def _schedule(v: Validator, path: str, raw: object) -> tuple[ScheduleEntry, ...] | None:
    if not isinstance(raw, list):
        v.problem(path, f"{show(raw)} is not a list of {{\"cron\", \"dedicated\", \"spot\"}} entries")
        return None
    entries: list[ScheduleEntry] = []
    ok = True
    for i, raw_entry in enumerate(raw):
        # The same check as a schedule in pool metadata (shared/watch/schedules.py), so what passes here also runs
        # there.
        entry, found = check_entry(raw_entry)
        for field_name, text in found:
            v.problem(json_path(json_path(path, i), field_name) if field_name else json_path(path, i),
                      text.lstrip(": "))
        if entry is None:
            ok = False
            continue
        entries.append(entry)
    return tuple(entries) if ok else None


_POOL_KEYS = ("account", "poolId", "vmSize", "dedicated", "spot", "resizeTimeoutMinutes",
              "allowResizeTimeoutOutsideBand",
              "nodeAgentSkuId", "inboundNatPools", "nodeDeallocationOption", "metadata", "schedule")


def parse_pool(v: Validator, path: str, family: str, raw: object, *, in_place: bool = False) -> PoolSpec | None:
    before = len(v.problems)
    p = v.obj(path, raw, required=("account", "vmSize"),
              optional=tuple(k for k in _POOL_KEYS if k not in ("account", "vmSize")))
    if p is None:
        return None
    account = v.string(json_path(path, "account"), p.get("account"), _batch_account,
                       example="/subscriptions/<sub>/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts"
                               "/myaccount") if "account" in p else None
    template = IN_PLACE_POOL_ID_TEMPLATE if in_place else naming.DEFAULT_POOL_ID_TEMPLATE
    if "poolId" in p:
        template = v.string(json_path(path, "poolId"), p["poolId"],
                            lambda t: naming.pool_id_template_problem(t, in_place=in_place),
                            example=template) or template
    if template and not any(m.startswith(f"{json_path(path, 'poolId')}:") for m in v.problems[before:]):
        try:
            naming.render_pool_id(template, family, SAMPLE_VERSION, in_place=in_place)
        except naming.NamingError as exc:
            v.problem(json_path(path, "poolId"),
                      f"{json.dumps(template)} gives {exc.value!r} for version {SAMPLE_VERSION}: {exc.problem}")
    vm_size = v.string(json_path(path, "vmSize"), p.get("vmSize"), _vm_size,
                       example="Standard_D4ds_v5") if "vmSize" in p else None
    # No custom-image cap here: the app's pools use a gallery image version, which Batch does not cap (its gallery doc).
    dedicated = v.integer(json_path(path, "dedicated"), p["dedicated"], 0, MAX_POOL_NODES) if "dedicated" in p else 0
    spot = v.integer(json_path(path, "spot"), p["spot"], 0, MAX_POOL_NODES) if "spot" in p else 0
    allow = v.boolean(json_path(path, "allowResizeTimeoutOutsideBand"),
                      p["allowResizeTimeoutOutsideBand"]) if "allowResizeTimeoutOutsideBand" in p else False
    timeout = RESIZE_TIMEOUT_DEFAULT
    if "resizeTimeoutMinutes" in p:
        timeout = v.integer(json_path(path, "resizeTimeoutMinutes"), p["resizeTimeoutMinutes"], *RESIZE_TIMEOUT_LIMITS)
        low, high = RESIZE_TIMEOUT_BAND
        if timeout is not None and not allow and not low <= timeout <= high:
            v.problem(json_path(path, "resizeTimeoutMinutes"),
                      f"{timeout} is outside {low}–{high}; set allowResizeTimeoutOutsideBand: true to override "
                      "(the Batch custom-image guidance is 20–30 minutes, then resize again)")
            timeout = None
    agent = v.string(json_path(path, "nodeAgentSkuId"), p["nodeAgentSkuId"],
                     example="batch.node.ubuntu 22.04") if "nodeAgentSkuId" in p else None
    nat_enabled, nat_pools = _nat_pools(
        v, json_path(path, "inboundNatPools"), p["inboundNatPools"]) if "inboundNatPools" in p else (False, ())
    deallocation = (v.choice(json_path(path, "nodeDeallocationOption"), p["nodeDeallocationOption"],
                             DEALLOCATION_OPTIONS)
                    if "nodeDeallocationOption" in p else "Requeue")
    metadata = _metadata(v, json_path(path, "metadata"), p["metadata"]) if "metadata" in p else ()
    schedule = _schedule(v, json_path(path, "schedule"), p["schedule"]) if "schedule" in p else ()
    if (nat_pools and dedicated is not None and spot is not None
        and not any(m.startswith(f"{json_path(path, 'inboundNatPools')}") for m in v.problems[before:])):
        peak = max([dedicated + spot, *(e.dedicated + e.spot for e in schedule or ())])
        limit = nat.node_limit(nat_pools) or 0
        if peak > limit:
            v.problem(json_path(path, "inboundNatPools"),
                      f"the smallest frontend range holds {limit} ports, but the pool may grow to {peak} nodes; "
                      "Batch gives every node one port of each range, so widen the ranges (outside 50000-55000)")
    if len(v.problems) > before:
        return None
    # for the type checker
    assert account and vm_size and timeout is not None and dedicated is not None and spot is not None
    return PoolSpec(account=account, vm_size=vm_size, pool_id_template=template, dedicated=dedicated, spot=spot,
                    resize_timeout_minutes=timeout, allow_resize_timeout_outside_band=bool(allow),
                    node_agent_sku_id=agent,
                    inbound_nat_pools=bool(nat_enabled), node_deallocation_option=deallocation or "Requeue",
                    metadata=metadata or (), schedule=schedule or (), nat_pools=nat_pools, in_place=in_place)


_NAT_KEYS = ("name", "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd", "protocol")


def _nat_pools(v: Validator, path: str, raw: object) -> tuple[bool, tuple[nat.NatPool, ...]]:
    """``inboundNatPools``: false (none), true (the app chooses a range Batch accepts) or the NAT pools themselves,
    checked against Batch's rules (shared/pipeline/nat.py) so that the pool create is never refused for them."""
    if isinstance(raw, bool):
        return raw, ()
    if not isinstance(raw, list) or not raw:
        v.problem(path, f"{show(raw)} is not true, false or a non-empty list of "
                  '{"name", "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd"} objects')
        return False, ()
    pools: list[nat.NatPool] = []
    for i, item in enumerate(raw):
        p = json_path(path, i)
        n = v.obj(p, item, required=("name", "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd"),
                  optional=("protocol",))
        if n is None or any(k not in n for k in _NAT_KEYS[:4]):
            continue
        name = v.string(json_path(p, "name"), n["name"])
        backend = v.integer(json_path(p, "backendPort"), n["backendPort"], 1, nat.BACKEND_MAX)
        start = v.integer(json_path(p, "frontendPortRangeStart"), n["frontendPortRangeStart"], 1, nat.FRONTEND_MAX)
        end = v.integer(json_path(p, "frontendPortRangeEnd"), n["frontendPortRangeEnd"], 1, nat.FRONTEND_MAX)
        protocol = v.choice(json_path(p, "protocol"), n["protocol"], nat.PROTOCOLS) if "protocol" in n else "TCP"
        if name is None or backend is None or start is None or end is None or protocol is None:
            continue
        pools.append(nat.NatPool(name, backend, start, end, protocol))
    if len(pools) != len(raw):
        return False, ()
    for problem in nat.problems(pools):
        v.problem(path,
                  problem + " (Batch refuses such a pool with 400; rules from the azure-batch InboundNATPool model)")
    return True, tuple(pools)


def parse_string_list(v: Validator, path: str, raw: object, check: Any, example: str,
                      limit: int) -> tuple[str, ...] | None:
    if not isinstance(raw, list) or not raw:
        v.problem(path, f"{show(raw)} is not a non-empty list of strings; for example [{json.dumps(example)}]")
        return None
    if len(raw) > limit:
        v.problem(path, f"has {len(raw)} entries; at most {limit}")
        return None
    out = [v.string(json_path(path, i), item, check, example=example) for i, item in enumerate(raw)]
    return None if None in out else tuple(dict.fromkeys(o for o in out if o))


def parse_start_task(v: Validator, path: str, raw: object) -> StartTask | None:
    before = len(v.problems)
    t = v.obj(path, raw, required=("commandLine",), optional=("waitForSuccess", "userIdentity"))
    if t is None:
        return None
    command = v.string(json_path(path, "commandLine"), t.get("commandLine"),
                       example="/bin/sh -c 'nvidia-smi'") if "commandLine" in t else None
    wait = v.boolean(json_path(path, "waitForSuccess"), t["waitForSuccess"]) if "waitForSuccess" in t else True
    scope = elevation = user = None
    if "userIdentity" in t:
        ipath = json_path(path, "userIdentity")
        identity = v.obj(ipath, t["userIdentity"], optional=("autoUser", "userName"))
        if identity is not None and "autoUser" in identity and "userName" in identity:
            v.problem(ipath, "set autoUser or userName, not both")
        if identity is not None and "userName" in identity:
            user = v.string(json_path(ipath, "userName"), identity["userName"])
        if identity is not None and "autoUser" in identity:
            apath = json_path(ipath, "autoUser")
            auto = v.obj(apath, identity["autoUser"], optional=("scope", "elevationLevel"))
            if auto is not None:
                scope = v.choice(json_path(apath, "scope"), auto["scope"],
                                 START_TASK_SCOPES) if "scope" in auto else None
                elevation = (v.choice(json_path(apath, "elevationLevel"), auto["elevationLevel"], START_TASK_ELEVATIONS)
                             if "elevationLevel" in auto else None)
    if len(v.problems) > before or command is None:
        return None
    return StartTask(command_line=command, wait_for_success=bool(wait), user_scope=scope, elevation_level=elevation,
                     user_name=user)


def parse_span(text: str) -> timedelta:
    """``"2h"`` -> 2 hours; ``"1d12h"``, ``"30m"``. Raises ValueError for anything else (seconds too)."""
    return durations.parse_short(text, seconds=False)


def _span(v: Validator, path: str, value: object) -> timedelta | None:
    try:
        return parse_span(value if isinstance(value, str) else "")
    except ValueError:
        v.problem(path, f"{show(value)} is not a duration such as {durations.SHORT_EXAMPLES}")
        return None


_NEW_POOLS_KEYS = ("mode", "retirePrevious", "retireAfter", "deleteRetiredPools")
_IN_PLACE_KEYS = ("mode", "applyWhen", "maxWait")


def parse_rollout(v: Validator, path: str, raw: object) -> RolloutPolicy | None:
    if not isinstance(raw, Mapping):
        v.problem(path,
                  f"{show(raw)} is not an object; for example {{\"mode\": \"newPools\", \"retirePrevious\": true}}")
        return None
    mode = v.choice(json_path(path, "mode"), raw.get("mode"), ROLLOUT_MODES) if "mode" in raw else None
    if "mode" not in raw:
        v.problem(json_path(path, "mode"),
                  "is required: \"newPools\" (a new pool per version) or \"inPlace\" (the same "
                  "pools get the new image)")
    if mode is None:
        return None
    before = len(v.problems)
    if mode == "newPools":
        r = v.obj(path, raw, required=("mode",), optional=_NEW_POOLS_KEYS[1:])
        if r is None:
            return None
        retire = v.boolean(json_path(path, "retirePrevious"), r["retirePrevious"]) if "retirePrevious" in r else False
        after = (_span(v, json_path(path, "retireAfter"), r["retireAfter"]) if "retireAfter" in r
                 else DEFAULT_RETIRE_AFTER)
        delete = v.boolean(json_path(path, "deleteRetiredPools"),
                           r["deleteRetiredPools"]) if "deleteRetiredPools" in r else False
        if delete and retire is False:
            v.problem(json_path(path, "deleteRetiredPools"),
                      "needs retirePrevious: true (only retired pools are deleted)")
        if len(v.problems) > before or after is None:
            return None
        return RolloutPolicy(mode=mode, retire_previous=bool(retire), retire_after=after,
                             delete_retired_pools=bool(delete))
    r = v.obj(path, raw, required=("mode",), optional=_IN_PLACE_KEYS[1:])
    if r is None:
        return None
    apply_when = v.choice(json_path(path, "applyWhen"), r["applyWhen"], APPLY_WHEN) if "applyWhen" in r else "nextZero"
    max_wait = _span(v, json_path(path, "maxWait"), r["maxWait"]) if "maxWait" in r else DEFAULT_MAX_WAIT
    if len(v.problems) > before or apply_when is None or max_wait is None:
        return None
    return RolloutPolicy(mode=mode, apply_when=apply_when, max_wait=max_wait)


def parse_retention(v: Validator, path: str, raw: object) -> RetentionPolicy | None:
    r = v.obj(path, raw, required=("keepVersions",), optional=("deleteSnapshots",))
    if r is None:
        return None
    before = len(v.problems)
    # At least 1: the newest version is what the pools are rolled to; deleting it would leave them nothing.
    keep = v.integer(json_path(path, "keepVersions"), r.get("keepVersions"), 1,
                     MAX_KEEP_VERSIONS) if "keepVersions" in r else None
    snapshots = v.boolean(json_path(path, "deleteSnapshots"), r["deleteSnapshots"]) if "deleteSnapshots" in r else False
    if len(v.problems) > before or keep is None:
        return None
    return RetentionPolicy(keep_versions=keep, delete_snapshots=bool(snapshots))
