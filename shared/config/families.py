"""The image-family configuration: what to build from a family's snapshots and which pools to create.

The document comes from the ``AUTOPILOT_FAMILIES`` setting (or the file named by
``AUTOPILOT_FAMILIES_FILE``) and is validated as a whole before anything runs, the way Cloud
Custodian validates a policy file: every problem is reported at once, each with its JSON path, so
an operator fixes the file in one go instead of one deployment per typo. ``docs/families.schema.json``
defines the document's shape (editors and ``autopilot validate`` use it); this parser states the same rules with
per-key messages, plus the cross-field ones a schema cannot (pool-id clashes); tests/unit/
test_families_schema_agreement.py holds the two together. ``docs/families.example.json`` is a complete example.

Shape (``?`` = optional, with its default)::

    {"$schema"?: "...",
     "families": {
       "<family>": {
         "description"?: "...",
         "gallery": {"subscription"?: <app subscription>, "resourceGroup", "name", "imageDefinition",
                     "osType": "Linux"|"Windows", "osState"?: "Generalized",
                     "hyperVGeneration": "V1"|"V2", "location"},
         "source"?: "managedImage" | "snapshots",
         "imageResourceGroup": "...",                      (required for source managedImage)
         "snapshotResourceGroups"?: [imageResourceGroup],  (required for source snapshots without imageResourceGroup)
         "allowedPrincipals"?: [],                         (object / application ids allowed to opt snapshots in; [] =
         anyone)
         "maxLiveVersions"?: none,                         (off when absent; retired = gallery version deleted)
         "keepManagedImage"?: false,
         "legacyManagedImagePools"?: false,                 (true is refused: see _family)
         "replicas"?: {"nodesPerReplica"?: 300, "minimum"?: 1, "storageAccountType"?: "Standard_LRS"},
         "nodeLimits"?: {"dedicated"?, "spot"?, "inboundNatDedicated"?, "inboundNatSpot"?},
         "pools": [{"account": "<Batch account resource id>", "poolId"?: "{family}-{version}",
                    "vmSize", "dedicated"?: 0, "spot"?: 0, "resizeTimeoutMinutes"?: 25,
                    "allowResizeTimeoutOutsideBand"?: false, "nodeAgentSkuId"?: <derived>,
                    "inboundNatPools"?: false | true | [{"name", "backendPort", "frontendPortRangeStart",
                                                          "frontendPortRangeEnd", "protocol"?: "TCP"}],
                    "nodeDeallocationOption"?: "Requeue",
                    "metadata"?: {}, "schedule"?: [{"cron", "dedicated", "spot"}]}],
         "rollout"?: {"mode": "newPools", "retirePrevious"?: false, "retireAfter"?: "2h", "deleteRetiredPools"?: false}
                   | {"mode": "inPlace", "applyWhen"?: "nextZero"|"drain", "maxWait"?: "7d"},
         "retention"?: {"keepVersions", "deleteSnapshots"?: false},             (absent: nothing is ever deleted)
         "pinVersion"?: "1.4.0"}}}

Without ``rollout``, ``retention`` and ``pinVersion`` the app behaves as before them: each version gets
its own pools and nothing old is retired or deleted (shared/lifecycle/rollout.py,
shared/lifecycle/version_retention.py).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from shared.core import durations
from shared.core.resource_ids import ResourceId, is_batch_account_id
from shared.pipeline import naming, nat
from shared.pipeline.image_rules import (
    CUSTOM_IMAGE_DEDICATED_LIMIT,
    CUSTOM_IMAGE_SPOT_LIMIT,
    MAX_POOL_NODES,
    NODES_PER_REPLICA,
    NodeLimits,
)
from shared.pipeline.snapshot_tags import canonical_family, family_problem, version_problem
from shared.resources.clients import BATCH_API_VERSION
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

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_VM_SIZE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,63}$")
_REGION = re.compile(r"^[A-Za-z][A-Za-z0-9 ]{1,63}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

ROLLOUT_MODES = ("newPools", "inPlace")
APPLY_WHEN = ("nextZero", "drain")
IN_PLACE_POOL_ID_TEMPLATE = "{family}"  # inPlace pools keep one id for every version
DEFAULT_RETIRE_AFTER = timedelta(hours=2)  # the new pools hold their target this long before the old ones go
DEFAULT_MAX_WAIT = timedelta(days=7)  # a weekly zero (a weekend schedule) still comes within it
MAX_KEEP_VERSIONS = 1000  # sanity bound, not an Azure number


class FamilyConfigError(ValueError):
    """The families document is invalid. ``problems`` holds one line per problem, each starting with its JSON path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"The image families configuration (AUTOPILOT_FAMILIES) has {len(problems)} problem(s):\n  - "
                         + "\n  - ".join(problems))


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


@dataclass(frozen=True)
class FamilyConfig:
    name: str
    gallery: GalleryConfig
    pools: tuple[PoolSpec, ...] = ()
    source: str = "managedImage"  # managedImage | snapshots
    image_resource_group: str | None = None
    keep_managed_image: bool = False
    legacy_managed_image_pools: bool = False
    replicas: ReplicaPolicy = field(default_factory=ReplicaPolicy)
    node_limits: NodeLimits = field(default_factory=NodeLimits)
    description: str | None = None
    snapshot_resource_groups: tuple[str, ...] = ()  # (): the image resource group
    allowed_principals: tuple[str, ...] = ()  # (): anyone who can tag a snapshot in scope
    max_live_versions: int | None = None  # None: no cap; counts versions being built or still in the gallery
    # Canary (issue 16): a new version's pools first grow to this many nodes, and to their targets only once those
    # nodes are idle or running. 3 lets a one-pool family be judged by its canary (the image verdict needs 3 nodes).
    canary_nodes: int = DEFAULT_CANARY_NODES
    start_task: StartTask | None = None
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    retention: RetentionPolicy | None = None  # None: never delete a version
    pin_version: str | None = None  # pools move to this version (a roll back) instead of the newest

    @property
    def builds_managed_image(self) -> bool:
        return self.source == "managedImage"

    @property
    def snapshot_groups(self) -> tuple[str, ...]:
        """Where the family's snapshots may live (shared/pipeline/scope.py): the setting, else the image resource
        group."""
        if self.snapshot_resource_groups:
            return self.snapshot_resource_groups
        return (self.image_resource_group,) if self.image_resource_group else ()


@dataclass(frozen=True)
class FamiliesConfig:
    """Every family by its (folded) name; iterating yields the FamilyConfig values."""

    families: Mapping[str, FamilyConfig] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> FamilyConfig | None:
        """The family called ``name``, matched case-insensitively (as snapshot tags are)."""
        return self.families.get(canonical_family(name)) if isinstance(name, str) else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.families)

    def __iter__(self) -> Iterator[FamilyConfig]:
        return iter(self.families.values())

    def __len__(self) -> int:
        return len(self.families)


# --- parsing --------------------------------------------------------------------------------------


def parse_families(text: str | None) -> FamiliesConfig:
    """Parse and validate the families document (JSON text). Empty or None: no families."""
    if text is None or not text.strip():
        return FamiliesConfig()
    duplicates: list[str] = []

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                duplicates.append(f"the key {key!r} appears twice in one object; JSON keeps only the last one, so "
                                  "remove one of them")
            seen[key] = value
        return seen

    try:
        document = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise FamilyConfigError(
            [f"the document is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    except RecursionError:
        raise FamilyConfigError(["the document is nested too deeply to be a families configuration"]) from None
    return families_from_dict(document, _extra_problems=duplicates)


def families_from_dict(document: object, *, _extra_problems: list[str] | None = None) -> FamiliesConfig:
    """Validate an already-decoded families document."""
    v = _Validator(list(_extra_problems or []))
    families: list[FamilyConfig] = []
    top = v.obj("", document, required=("families",), optional=("$schema",))
    if top is not None:
        if "$schema" in top:
            v.string("$schema", top["$schema"])
        raw_families = top.get("families")
        if not isinstance(raw_families, Mapping):
            v.problem("families", f"{_show(raw_families)} is not an object; give one entry per image family, e.g. "
                      f"{{\"gpu\": {{...}}}}")
        else:
            folded_seen: dict[str, str] = {}
            for raw_name, raw_family in raw_families.items():
                path = _join("families", raw_name)
                if not isinstance(raw_name, str):
                    v.problem(path, "family names are strings")
                    continue
                name = canonical_family(raw_name)
                if problem := family_problem(name):
                    v.problem(path, f"{raw_name!r} is not a usable family name: {problem}")
                    continue
                if name in folded_seen:
                    v.problem(path, f"family names are compared without case, and {folded_seen[name]!r} is already "
                              "defined; keep one")
                    continue
                folded_seen[name] = raw_name
                family = _family(v, path, name, raw_family)
                if family is not None:
                    families.append(family)
            _check_pool_id_clashes(v, families)
            groups = {g.lower() for f in families for g in (*f.snapshot_groups, f.image_resource_group or "",
                                                            f.gallery.resource_group) if g}
            if len(groups) > MAX_WATCHED_GROUPS:
                v.problem("families",
                          f"the families use {len(groups)} resource groups (snapshots, images, galleries); the event "
                          f"subscription filters on at most {MAX_WATCHED_GROUPS} (Event Grid allows 25 filter values): "
                          "share groups, "
                          "or deploy another instance")
    if v.problems:
        raise FamilyConfigError(v.problems)
    return FamiliesConfig(MappingProxyType({f.name: f for f in families}))


# --- validation -------------------------------------------------------------------------------------


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if _IDENTIFIER.match(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text)}]"


def _show(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Validator:
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(document)'}: {message}")

    def obj(self, path: str, value: object, *, required: tuple[str, ...] = (),
            optional: tuple[str, ...] = ()) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, f"{_show(value)} is not an object")
            return None
        allowed = (*required, *optional)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed keys are {', '.join(allowed)}"
                self.problem(_join(path, key), f"unknown key; {hint}")
        for key in required:
            if key not in value:
                self.problem(_join(path, key), "is required")
        return value

    def string(self, path: str, value: object, check: Any = None, *, example: str | None = None) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(path, f"{_show(value)} is not a non-empty string"
                         + (f"; for example {json.dumps(example)}" if example else ""))
            return None
        text = value.strip()
        if check is not None and (why := check(text)):
            self.problem(path, f"{_show(value)}: {why}" + (f"; for example {json.dumps(example)}" if example else ""))
            return None
        return text

    def integer(self, path: str, value: object, low: int, high: int) -> int | None:
        # JSON has one number type; 25.0 is accepted as 25 (JSON Schema's "integer" does the same).
        if (isinstance(value, bool) or not isinstance(value, int | float) or value != value
            or (isinstance(value, float) and not value.is_integer())):
            self.problem(path, f"{_show(value)} is not a whole number")
            return None
        number = int(value)
        if not low <= number <= high:
            self.problem(path, f"{number} is outside {low}–{high}")
            return None
        return number

    def boolean(self, path: str, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.problem(path, f"{_show(value)} is not true or false")
            return None
        return value

    def choice(self, path: str, value: object, choices: tuple[str, ...]) -> str | None:
        """One of ``choices``, matched case-insensitively and returned in its canonical spelling."""
        if isinstance(value, str):
            for c in choices:
                if c.lower() == value.strip().lower():
                    return c
        self.problem(path, f"{_show(value)} is not one of {', '.join(choices)}")
        return None


def _guid(text: str) -> str | None:
    return None if _GUID.match(text) else "a subscription id is a GUID"


def _batch_account(text: str) -> str | None:
    return None if is_batch_account_id(text) else "not a Batch account resource id"


def _region(text: str) -> str | None:
    return None if _REGION.match(text) else "not an Azure region name"


def _vm_size(text: str) -> str | None:
    return None if _VM_SIZE.match(text) else "not a VM size name"


def _gallery(v: _Validator, path: str, raw: object) -> GalleryConfig | None:
    g = v.obj(path, raw,
              required=("resourceGroup", "name", "imageDefinition", "osType", "hyperVGeneration", "location"),
              optional=("subscription", "osState"))
    if g is None:
        return None
    subscription = v.string(_join(path, "subscription"), g["subscription"], _guid) if "subscription" in g else None
    resource_group = v.string(_join(path, "resourceGroup"), g.get("resourceGroup"),
                              naming.resource_group_problem) if "resourceGroup" in g else None
    name = v.string(_join(path, "name"), g.get("name"), naming.gallery_name_problem) if "name" in g else None
    definition = v.string(_join(path, "imageDefinition"), g.get("imageDefinition"),
                          naming.image_definition_problem) if "imageDefinition" in g else None
    os_type = v.choice(_join(path, "osType"), g.get("osType"), OS_TYPES) if "osType" in g else None
    generation = v.choice(_join(path, "hyperVGeneration"), g.get("hyperVGeneration"),
                          HYPER_V_GENERATIONS) if "hyperVGeneration" in g else None
    location = v.string(_join(path, "location"), g.get("location"), _region,
                        example="westeurope") if "location" in g else None
    os_state = "Generalized"
    if "osState" in g:
        os_state = v.choice(_join(path, "osState"), g["osState"], OS_STATES) or "Generalized"
        if os_state == "Specialized":
            # Batch provisions many nodes from one image and needs each to get its own identity at
            # first boot, so gallery images for Batch pools must be generalized (Batch custom-image doc, 2026).
            v.problem(_join(path, "osState"),
                      "\"Specialized\" images cannot be used by Batch pools, which need generalized images; "
                      "generalize the VM (sysprep / waagent -deprovision+user) before taking the snapshots and set "
                      "\"Generalized\"")
    if None in (resource_group, name, definition, os_type, generation, location):
        return None
    assert resource_group and name and definition and os_type and generation and location  # for the type checker
    return GalleryConfig(resource_group=resource_group, name=name, image_definition=definition, os_type=os_type,
                         hyper_v_generation=generation, location=location, os_state=os_state, subscription=subscription)


def _replicas(v: _Validator, path: str, raw: object) -> ReplicaPolicy | None:
    r = v.obj(path, raw, optional=("nodesPerReplica", "minimum", "storageAccountType"))
    if r is None:
        return None
    per = v.integer(_join(path, "nodesPerReplica"), r["nodesPerReplica"], 1,
                    NODES_PER_REPLICA) if "nodesPerReplica" in r else NODES_PER_REPLICA
    minimum = v.integer(_join(path, "minimum"), r["minimum"], 1, MAX_REPLICAS) if "minimum" in r else 1
    storage = v.choice(_join(path, "storageAccountType"), r["storageAccountType"],
                       STORAGE_ACCOUNT_TYPES) if "storageAccountType" in r else "Standard_LRS"
    if per is None or minimum is None or storage is None:
        return None
    return ReplicaPolicy(nodes_per_replica=per, minimum=minimum, storage_account_type=storage)


def _node_limits(v: _Validator, path: str, raw: object) -> NodeLimits | None:
    n = v.obj(path, raw, optional=("dedicated", "spot", "inboundNatDedicated", "inboundNatSpot"))
    if n is None:
        return None
    # The overrides may only lower Batch's documented custom-image limits: raising them would just
    # move the failure from this check to the pool's allocation.
    default = NodeLimits()
    values = {
        "dedicated": v.integer(_join(path, "dedicated"), n["dedicated"], 0,
                               CUSTOM_IMAGE_DEDICATED_LIMIT) if "dedicated" in n else default.dedicated,
        "spot": v.integer(_join(path, "spot"), n["spot"], 0, CUSTOM_IMAGE_SPOT_LIMIT) if "spot" in n else default.spot,
        "inbound_nat_dedicated": (v.integer(_join(path, "inboundNatDedicated"), n["inboundNatDedicated"], 0,
                                            CUSTOM_IMAGE_DEDICATED_LIMIT)
                                  if "inboundNatDedicated" in n else None),
        "inbound_nat_spot": v.integer(_join(path, "inboundNatSpot"), n["inboundNatSpot"], 0,
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


def _metadata(v: _Validator, path: str, raw: object) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(raw, Mapping):
        v.problem(path, f"{_show(raw)} is not an object of name/value strings")
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for key, value in raw.items():
        item = _join(path, key)
        if not isinstance(key, str) or not key.strip():
            v.problem(item, "metadata names are non-empty strings")
            ok = False
        elif key.strip().lower().startswith(RESERVED_METADATA_PREFIX):
            v.problem(item, f"names starting with {RESERVED_METADATA_PREFIX!r} are written by the app itself "
                      "(shared/core/pool_metadata.py); rename it")
            ok = False
        elif not isinstance(value, str):
            v.problem(item, f"{_show(value)} is not a string; Batch pool metadata values are strings")
            ok = False
        else:
            pairs.append((key, value))
    return tuple(pairs) if ok else None


def _schedule(v: _Validator, path: str, raw: object) -> tuple[ScheduleEntry, ...] | None:
    if not isinstance(raw, list):
        v.problem(path, f"{_show(raw)} is not a list of {{\"cron\", \"dedicated\", \"spot\"}} entries")
        return None
    entries: list[ScheduleEntry] = []
    ok = True
    for i, raw_entry in enumerate(raw):
        # The same check as a schedule in pool metadata (shared/watch/schedules.py), so what passes here also runs
        # there.
        entry, found = check_entry(raw_entry)
        for field_name, text in found:
            v.problem(_join(_join(path, i), field_name) if field_name else _join(path, i), text.lstrip(": "))
        if entry is None:
            ok = False
            continue
        entries.append(entry)
    return tuple(entries) if ok else None


_POOL_KEYS = ("account", "poolId", "vmSize", "dedicated", "spot", "resizeTimeoutMinutes",
              "allowResizeTimeoutOutsideBand",
              "nodeAgentSkuId", "inboundNatPools", "nodeDeallocationOption", "metadata", "schedule")


def _pool(v: _Validator, path: str, family: str, raw: object, *, in_place: bool = False) -> PoolSpec | None:
    before = len(v.problems)
    p = v.obj(path, raw, required=("account", "vmSize"),
              optional=tuple(k for k in _POOL_KEYS if k not in ("account", "vmSize")))
    if p is None:
        return None
    account = v.string(_join(path, "account"), p.get("account"), _batch_account,
                       example="/subscriptions/<sub>/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts"
                               "/myaccount") if "account" in p else None
    template = IN_PLACE_POOL_ID_TEMPLATE if in_place else naming.DEFAULT_POOL_ID_TEMPLATE
    if "poolId" in p:
        template = v.string(_join(path, "poolId"), p["poolId"],
                            lambda t: naming.pool_id_template_problem(t, in_place=in_place),
                            example=template) or template
    if template and not any(m.startswith(f"{_join(path, 'poolId')}:") for m in v.problems[before:]):
        try:
            naming.render_pool_id(template, family, SAMPLE_VERSION, in_place=in_place)
        except naming.NamingError as exc:
            v.problem(_join(path, "poolId"),
                      f"{json.dumps(template)} gives {exc.value!r} for version {SAMPLE_VERSION}: {exc.problem}")
    vm_size = v.string(_join(path, "vmSize"), p.get("vmSize"), _vm_size,
                       example="Standard_D4ds_v5") if "vmSize" in p else None
    # No custom-image cap here: the app's pools use a gallery image version, which Batch does not cap (its gallery doc).
    dedicated = v.integer(_join(path, "dedicated"), p["dedicated"], 0, MAX_POOL_NODES) if "dedicated" in p else 0
    spot = v.integer(_join(path, "spot"), p["spot"], 0, MAX_POOL_NODES) if "spot" in p else 0
    allow = v.boolean(_join(path, "allowResizeTimeoutOutsideBand"),
                      p["allowResizeTimeoutOutsideBand"]) if "allowResizeTimeoutOutsideBand" in p else False
    timeout = RESIZE_TIMEOUT_DEFAULT
    if "resizeTimeoutMinutes" in p:
        timeout = v.integer(_join(path, "resizeTimeoutMinutes"), p["resizeTimeoutMinutes"], *RESIZE_TIMEOUT_LIMITS)
        low, high = RESIZE_TIMEOUT_BAND
        if timeout is not None and not allow and not low <= timeout <= high:
            v.problem(_join(path, "resizeTimeoutMinutes"),
                      f"{timeout} is outside {low}–{high}; set allowResizeTimeoutOutsideBand: true to override "
                      "(the Batch custom-image guidance is 20–30 minutes, then resize again)")
            timeout = None
    agent = v.string(_join(path, "nodeAgentSkuId"), p["nodeAgentSkuId"],
                     example="batch.node.ubuntu 22.04") if "nodeAgentSkuId" in p else None
    nat_enabled, nat_pools = _nat_pools(
        v, _join(path, "inboundNatPools"), p["inboundNatPools"]) if "inboundNatPools" in p else (False, ())
    deallocation = (v.choice(_join(path, "nodeDeallocationOption"), p["nodeDeallocationOption"], DEALLOCATION_OPTIONS)
                    if "nodeDeallocationOption" in p else "Requeue")
    metadata = _metadata(v, _join(path, "metadata"), p["metadata"]) if "metadata" in p else ()
    schedule = _schedule(v, _join(path, "schedule"), p["schedule"]) if "schedule" in p else ()
    if (nat_pools and dedicated is not None and spot is not None
        and not any(m.startswith(f"{_join(path, 'inboundNatPools')}") for m in v.problems[before:])):
        peak = max([dedicated + spot, *(e.dedicated + e.spot for e in schedule or ())])
        limit = nat.node_limit(nat_pools) or 0
        if peak > limit:
            v.problem(_join(path, "inboundNatPools"),
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


def _nat_pools(v: _Validator, path: str, raw: object) -> tuple[bool, tuple[nat.NatPool, ...]]:
    """``inboundNatPools``: false (none), true (the app chooses a range Batch accepts) or the NAT pools themselves,
    checked against Batch's rules (shared/pipeline/nat.py) so that the pool create is never refused for them."""
    if isinstance(raw, bool):
        return raw, ()
    if not isinstance(raw, list) or not raw:
        v.problem(path, f"{_show(raw)} is not true, false or a non-empty list of "
                  '{"name", "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd"} objects')
        return False, ()
    pools: list[nat.NatPool] = []
    for i, item in enumerate(raw):
        p = _join(path, i)
        n = v.obj(p, item, required=("name", "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd"),
                  optional=("protocol",))
        if n is None or any(k not in n for k in _NAT_KEYS[:4]):
            continue
        name = v.string(_join(p, "name"), n["name"])
        backend = v.integer(_join(p, "backendPort"), n["backendPort"], 1, nat.BACKEND_MAX)
        start = v.integer(_join(p, "frontendPortRangeStart"), n["frontendPortRangeStart"], 1, nat.FRONTEND_MAX)
        end = v.integer(_join(p, "frontendPortRangeEnd"), n["frontendPortRangeEnd"], 1, nat.FRONTEND_MAX)
        protocol = v.choice(_join(p, "protocol"), n["protocol"], nat.PROTOCOLS) if "protocol" in n else "TCP"
        if name is None or backend is None or start is None or end is None or protocol is None:
            continue
        pools.append(nat.NatPool(name, backend, start, end, protocol))
    if len(pools) != len(raw):
        return False, ()
    for problem in nat.problems(pools):
        v.problem(path,
                  problem + " (Batch refuses such a pool with 400; rules from the azure-batch InboundNATPool model)")
    return True, tuple(pools)


_FAMILY_KEYS = ("description", "gallery", "source", "imageResourceGroup", "keepManagedImage", "legacyManagedImagePools",
                "replicas",
                "nodeLimits", "pools", "snapshotResourceGroups", "allowedPrincipals", "maxLiveVersions",
                "canaryNodes", "startTask", "rollout", "retention", "pinVersion")
# Event Grid allows 25 filter values per event subscription; the pipeline's uses 3 for operation names, and one
# subject prefix per watched resource group (shared/core/event_routing.py). A sanity bound well inside that budget.
MAX_WATCHED_GROUPS = 20
MAX_ALLOWED_PRINCIPALS = 100


def _string_list(v: _Validator, path: str, raw: object, check: Any, example: str, limit: int) -> tuple[str, ...] | None:
    if not isinstance(raw, list) or not raw:
        v.problem(path, f"{_show(raw)} is not a non-empty list of strings; for example [{json.dumps(example)}]")
        return None
    if len(raw) > limit:
        v.problem(path, f"has {len(raw)} entries; at most {limit}")
        return None
    out = [v.string(_join(path, i), item, check, example=example) for i, item in enumerate(raw)]
    return None if None in out else tuple(dict.fromkeys(o for o in out if o))


def _start_task(v: _Validator, path: str, raw: object) -> StartTask | None:
    before = len(v.problems)
    t = v.obj(path, raw, required=("commandLine",), optional=("waitForSuccess", "userIdentity"))
    if t is None:
        return None
    command = v.string(_join(path, "commandLine"), t.get("commandLine"),
                       example="/bin/sh -c 'nvidia-smi'") if "commandLine" in t else None
    wait = v.boolean(_join(path, "waitForSuccess"), t["waitForSuccess"]) if "waitForSuccess" in t else True
    scope = elevation = user = None
    if "userIdentity" in t:
        ipath = _join(path, "userIdentity")
        identity = v.obj(ipath, t["userIdentity"], optional=("autoUser", "userName"))
        if identity is not None and "autoUser" in identity and "userName" in identity:
            v.problem(ipath, "set autoUser or userName, not both")
        if identity is not None and "userName" in identity:
            user = v.string(_join(ipath, "userName"), identity["userName"])
        if identity is not None and "autoUser" in identity:
            apath = _join(ipath, "autoUser")
            auto = v.obj(apath, identity["autoUser"], optional=("scope", "elevationLevel"))
            if auto is not None:
                scope = v.choice(_join(apath, "scope"), auto["scope"], START_TASK_SCOPES) if "scope" in auto else None
                elevation = (v.choice(_join(apath, "elevationLevel"), auto["elevationLevel"], START_TASK_ELEVATIONS)
                             if "elevationLevel" in auto else None)
    if len(v.problems) > before or command is None:
        return None
    return StartTask(command_line=command, wait_for_success=bool(wait), user_scope=scope, elevation_level=elevation,
                     user_name=user)


def parse_span(text: str) -> timedelta:
    """``"2h"`` -> 2 hours; ``"1d12h"``, ``"30m"``. Raises ValueError for anything else (seconds too)."""
    return durations.parse_short(text, seconds=False)


def _span(v: _Validator, path: str, value: object) -> timedelta | None:
    try:
        return parse_span(value if isinstance(value, str) else "")
    except ValueError:
        v.problem(path, f"{_show(value)} is not a duration such as {durations.SHORT_EXAMPLES}")
        return None


_NEW_POOLS_KEYS = ("mode", "retirePrevious", "retireAfter", "deleteRetiredPools")
_IN_PLACE_KEYS = ("mode", "applyWhen", "maxWait")


def _rollout(v: _Validator, path: str, raw: object) -> RolloutPolicy | None:
    if not isinstance(raw, Mapping):
        v.problem(path,
                  f"{_show(raw)} is not an object; for example {{\"mode\": \"newPools\", \"retirePrevious\": true}}")
        return None
    mode = v.choice(_join(path, "mode"), raw.get("mode"), ROLLOUT_MODES) if "mode" in raw else None
    if "mode" not in raw:
        v.problem(_join(path, "mode"), "is required: \"newPools\" (a new pool per version) or \"inPlace\" (the same "
                  "pools get the new image)")
    if mode is None:
        return None
    before = len(v.problems)
    if mode == "newPools":
        r = v.obj(path, raw, required=("mode",), optional=_NEW_POOLS_KEYS[1:])
        if r is None:
            return None
        retire = v.boolean(_join(path, "retirePrevious"), r["retirePrevious"]) if "retirePrevious" in r else False
        after = _span(v, _join(path, "retireAfter"), r["retireAfter"]) if "retireAfter" in r else DEFAULT_RETIRE_AFTER
        delete = v.boolean(_join(path, "deleteRetiredPools"),
                           r["deleteRetiredPools"]) if "deleteRetiredPools" in r else False
        if delete and retire is False:
            v.problem(_join(path, "deleteRetiredPools"), "needs retirePrevious: true (only retired pools are deleted)")
        if len(v.problems) > before or after is None:
            return None
        return RolloutPolicy(mode=mode, retire_previous=bool(retire), retire_after=after,
                             delete_retired_pools=bool(delete))
    r = v.obj(path, raw, required=("mode",), optional=_IN_PLACE_KEYS[1:])
    if r is None:
        return None
    apply_when = v.choice(_join(path, "applyWhen"), r["applyWhen"], APPLY_WHEN) if "applyWhen" in r else "nextZero"
    max_wait = _span(v, _join(path, "maxWait"), r["maxWait"]) if "maxWait" in r else DEFAULT_MAX_WAIT
    if len(v.problems) > before or apply_when is None or max_wait is None:
        return None
    return RolloutPolicy(mode=mode, apply_when=apply_when, max_wait=max_wait)


def _retention(v: _Validator, path: str, raw: object) -> RetentionPolicy | None:
    r = v.obj(path, raw, required=("keepVersions",), optional=("deleteSnapshots",))
    if r is None:
        return None
    before = len(v.problems)
    # At least 1: the newest version is what the pools are rolled to; deleting it would leave them nothing.
    keep = v.integer(_join(path, "keepVersions"), r.get("keepVersions"), 1,
                     MAX_KEEP_VERSIONS) if "keepVersions" in r else None
    snapshots = v.boolean(_join(path, "deleteSnapshots"), r["deleteSnapshots"]) if "deleteSnapshots" in r else False
    if len(v.problems) > before or keep is None:
        return None
    return RetentionPolicy(keep_versions=keep, delete_snapshots=bool(snapshots))


def _family(v: _Validator, path: str, name: str, raw: object) -> FamilyConfig | None:
    before = len(v.problems)
    f = v.obj(path, raw, required=("gallery", "pools"),
              optional=tuple(k for k in _FAMILY_KEYS if k not in ("gallery", "pools")))
    if f is None:
        return None
    description = v.string(_join(path, "description"), f["description"]) if "description" in f else None
    gallery = _gallery(v, _join(path, "gallery"), f["gallery"]) if "gallery" in f else None
    source = v.choice(_join(path, "source"), f["source"], SOURCES) if "source" in f else "managedImage"
    image_rg = v.string(_join(path, "imageResourceGroup"), f["imageResourceGroup"],
                        naming.resource_group_problem) if "imageResourceGroup" in f else None
    keep = v.boolean(_join(path, "keepManagedImage"), f["keepManagedImage"]) if "keepManagedImage" in f else None
    legacy = v.boolean(_join(path, "legacyManagedImagePools"),
                       f["legacyManagedImagePools"]) if "legacyManagedImagePools" in f else False
    replicas = _replicas(v, _join(path, "replicas"), f["replicas"]) if "replicas" in f else ReplicaPolicy()
    limits = _node_limits(v, _join(path, "nodeLimits"), f["nodeLimits"]) if "nodeLimits" in f else NodeLimits()
    snapshot_groups = (_string_list(v, _join(path, "snapshotResourceGroups"), f["snapshotResourceGroups"],
                                    naming.resource_group_problem,
                                    "images-rg", MAX_WATCHED_GROUPS) if "snapshotResourceGroups" in f else ())
    principals = (_string_list(v, _join(path, "allowedPrincipals"), f["allowedPrincipals"], _guid_principal,
                               "00000000-0000-0000-0000-000000000000",
                               MAX_ALLOWED_PRINCIPALS) if "allowedPrincipals" in f else ())
    max_live = v.integer(_join(path, "maxLiveVersions"), f["maxLiveVersions"], 1,
                         1000) if "maxLiveVersions" in f else None
    if source == "snapshots" and "imageResourceGroup" not in f and "snapshotResourceGroups" not in f:
        v.problem(_join(path, "snapshotResourceGroups"),
                  "is required when the family has no imageResourceGroup: it names the resource "
                  "group(s) where the family's snapshots may live (the app ignores snapshots anywhere else)")
    canary = (v.integer(_join(path, "canaryNodes"), f["canaryNodes"], 0, 100) if "canaryNodes" in f
              else DEFAULT_CANARY_NODES)
    start_task = _start_task(v, _join(path, "startTask"), f["startTask"]) if "startTask" in f else None
    rollout = _rollout(v, _join(path, "rollout"), f["rollout"]) if "rollout" in f else RolloutPolicy()
    retention = _retention(v, _join(path, "retention"), f["retention"]) if "retention" in f else None
    pin = v.string(_join(path, "pinVersion"), f["pinVersion"], version_problem,
                   example="1.4.0") if "pinVersion" in f else None

    if source == "managedImage" and "imageResourceGroup" not in f:
        v.problem(_join(path, "imageResourceGroup"),
                  "is required with source \"managedImage\" (the default): it is where the managed images are created")
    if source == "snapshots" and keep:
        v.problem(_join(path, "keepManagedImage"),
                  "has no effect with source \"snapshots\", which builds no managed image; remove it or use source "
                  "\"managedImage\"")
    if legacy:
        # Batch accepts a managed image as a pool's image only at API versions up to 2019-08-01 (the 2019 custom-image
        # article); the app speaks BATCH_API_VERSION and Batch retires the versions before it, so every such create is a
        # 400.
        v.problem(_join(path, "legacyManagedImagePools"),
                  "managed-image pools cannot be created: Batch accepts a managed image as a pool's image only at API "
                  "versions up to "
                  f"2019-08-01, the app uses {BATCH_API_VERSION}, and Batch is retiring the older versions; remove the "
                  "key (the family's pools "
                  "use its gallery image version, which also has no shared node cap)")

    pools: list[PoolSpec] = []
    raw_pools = f.get("pools")
    if "pools" in f and not isinstance(raw_pools, list):
        v.problem(_join(path, "pools"),
                  f"{_show(raw_pools)} is not a list of pools (use [] for a family that only builds images)")
    elif isinstance(raw_pools, list):
        for i, raw_pool in enumerate(raw_pools):
            pool = _pool(v, _join(_join(path, "pools"), i), name, raw_pool, in_place=bool(rollout and rollout.in_place))
            if pool is not None:
                pools.append(pool)
    if rollout is not None and rollout.in_place and legacy:
        v.problem(_join(_join(path, "rollout"), "mode"),
                  "inPlace needs gallery image versions; it cannot be combined with legacyManagedImagePools")
    if len(v.problems) > before or gallery is None or source is None or replicas is None \
            or limits is None or legacy is None \
            or rollout is None or ("retention" in f and retention is None):
        return None
    return FamilyConfig(name=name, gallery=gallery, pools=tuple(pools), source=source, image_resource_group=image_rg,
                        keep_managed_image=bool(keep) or bool(legacy), legacy_managed_image_pools=legacy,
                        replicas=replicas,
                        node_limits=limits, description=description, snapshot_resource_groups=snapshot_groups or (),
                        allowed_principals=tuple(p.lower() for p in principals or ()), max_live_versions=max_live,
                        canary_nodes=DEFAULT_CANARY_NODES if canary is None else canary, start_task=start_task,
                        rollout=rollout, retention=retention, pin_version=pin)


def _guid_principal(text: str) -> str | None:
    return None if _GUID.match(text) else "an object id or application (client) id is a GUID"


def _check_pool_id_clashes(v: _Validator, families: list[FamilyConfig]) -> None:
    """Two pools of any families that would get the same id in the same Batch account.

    Batch pool ids are unique per account regardless of case, so the second create would fail
    with PoolExists - or worse, the pipeline would treat another family's pool as its own.
    """
    seen: dict[tuple[str, str], str] = {}
    for family in families:
        for i, pool in enumerate(family.pools):
            path = f"{_join(_join(_join('families', family.name), 'pools'), i)}.poolId"
            try:
                pool_id = pool.pool_id(family.name, SAMPLE_VERSION)
            except naming.NamingError:
                continue  # already reported
            key = (ResourceId.parse(pool.account).key, naming.pool_id_key(pool_id))
            if key in seen:
                v.problem(path, f"gives pool id {pool_id!r} in the same Batch account as {seen[key]} (for version "
                          f"{SAMPLE_VERSION}; "
                          "pool ids are compared without case and '.' becomes '-'); include {family} or another "
                          "distinguishing text")
            else:
                seen[key] = path
