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

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shared.config.family_parts import (
    DEFAULT_CANARY_NODES,
    GUID,
    SAMPLE_VERSION,
    SOURCES,
    GalleryConfig,
    PoolSpec,
    ReplicaPolicy,
    RetentionPolicy,
    RolloutPolicy,
    StartTask,
    Validator,
    json_path,
    parse_gallery,
    parse_node_limits,
    parse_pool,
    parse_replicas,
    parse_retention,
    parse_rollout,
    parse_start_task,
    parse_string_list,
    show,
)
from shared.core.resource_ids import ResourceId
from shared.pipeline import naming
from shared.pipeline.image_rules import NodeLimits
from shared.pipeline.snapshot_tags import canonical_family, family_problem, version_problem
from shared.resources.clients import BATCH_API_VERSION


class FamilyConfigError(ValueError):
    """The families document is invalid. ``problems`` holds one line per problem, each starting with its JSON path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"The image families configuration (AUTOPILOT_FAMILIES) has {len(problems)} problem(s):\n  - "
                         + "\n  - ".join(problems))


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
    v = Validator(list(_extra_problems or []))
    families: list[FamilyConfig] = []
    top = v.obj("", document, required=("families",), optional=("$schema",))
    if top is not None:
        if "$schema" in top:
            v.string("$schema", top["$schema"])
        raw_families = top.get("families")
        if not isinstance(raw_families, Mapping):
            v.problem("families", f"{show(raw_families)} is not an object; give one entry per image family, e.g. "
                      f"{{\"gpu\": {{...}}}}")
        else:
            folded_seen: dict[str, str] = {}
            for raw_name, raw_family in raw_families.items():
                path = json_path("families", raw_name)
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


_FAMILY_KEYS = ("description", "gallery", "source", "imageResourceGroup", "keepManagedImage", "legacyManagedImagePools",
                "replicas",
                "nodeLimits", "pools", "snapshotResourceGroups", "allowedPrincipals", "maxLiveVersions",
                "canaryNodes", "startTask", "rollout", "retention", "pinVersion")
# Event Grid allows 25 filter values per event subscription; the pipeline's uses 3 for operation names, and one
# subject prefix per watched resource group (shared/core/event_routing.py). A sanity bound well inside that budget.
MAX_WATCHED_GROUPS = 20
MAX_ALLOWED_PRINCIPALS = 100


def _family(v: Validator, path: str, name: str, raw: object) -> FamilyConfig | None:
    before = len(v.problems)
    f = v.obj(path, raw, required=("gallery", "pools"),
              optional=tuple(k for k in _FAMILY_KEYS if k not in ("gallery", "pools")))
    if f is None:
        return None
    description = v.string(json_path(path, "description"), f["description"]) if "description" in f else None
    gallery = parse_gallery(v, json_path(path, "gallery"), f["gallery"]) if "gallery" in f else None
    source = v.choice(json_path(path, "source"), f["source"], SOURCES) if "source" in f else "managedImage"
    image_rg = v.string(json_path(path, "imageResourceGroup"), f["imageResourceGroup"],
                        naming.resource_group_problem) if "imageResourceGroup" in f else None
    keep = v.boolean(json_path(path, "keepManagedImage"), f["keepManagedImage"]) if "keepManagedImage" in f else None
    legacy = v.boolean(json_path(path, "legacyManagedImagePools"),
                       f["legacyManagedImagePools"]) if "legacyManagedImagePools" in f else False
    replicas = parse_replicas(v, json_path(path, "replicas"), f["replicas"]) if "replicas" in f else ReplicaPolicy()
    limits = parse_node_limits(v, json_path(path, "nodeLimits"), f["nodeLimits"]) if "nodeLimits" in f else NodeLimits()
    snapshot_groups = (parse_string_list(v, json_path(path, "snapshotResourceGroups"), f["snapshotResourceGroups"],
                                    naming.resource_group_problem,
                                    "images-rg", MAX_WATCHED_GROUPS) if "snapshotResourceGroups" in f else ())
    principals = (parse_string_list(v, json_path(path, "allowedPrincipals"), f["allowedPrincipals"], _guid_principal,
                               "00000000-0000-0000-0000-000000000000",
                               MAX_ALLOWED_PRINCIPALS) if "allowedPrincipals" in f else ())
    max_live = v.integer(json_path(path, "maxLiveVersions"), f["maxLiveVersions"], 1,
                         1000) if "maxLiveVersions" in f else None
    if source == "snapshots" and "imageResourceGroup" not in f and "snapshotResourceGroups" not in f:
        v.problem(json_path(path, "snapshotResourceGroups"),
                  "is required when the family has no imageResourceGroup: it names the resource "
                  "group(s) where the family's snapshots may live (the app ignores snapshots anywhere else)")
    canary = (v.integer(json_path(path, "canaryNodes"), f["canaryNodes"], 0, 100) if "canaryNodes" in f
              else DEFAULT_CANARY_NODES)
    start_task = parse_start_task(v, json_path(path, "startTask"), f["startTask"]) if "startTask" in f else None
    rollout = parse_rollout(v, json_path(path, "rollout"), f["rollout"]) if "rollout" in f else RolloutPolicy()
    retention = parse_retention(v, json_path(path, "retention"), f["retention"]) if "retention" in f else None
    pin = v.string(json_path(path, "pinVersion"), f["pinVersion"], version_problem,
                   example="1.4.0") if "pinVersion" in f else None

    if source == "managedImage" and "imageResourceGroup" not in f:
        v.problem(json_path(path, "imageResourceGroup"),
                  "is required with source \"managedImage\" (the default): it is where the managed images are created")
    if source == "snapshots" and keep:
        v.problem(json_path(path, "keepManagedImage"),
                  "has no effect with source \"snapshots\", which builds no managed image; remove it or use source "
                  "\"managedImage\"")
    if legacy:
        # Batch accepts a managed image as a pool's image only at API versions up to 2019-08-01 (the 2019 custom-image
        # article); the app speaks BATCH_API_VERSION and Batch retires the versions before it, so every such create is a
        # 400.
        v.problem(json_path(path, "legacyManagedImagePools"),
                  "managed-image pools cannot be created: Batch accepts a managed image as a pool's image only at API "
                  "versions up to "
                  f"2019-08-01, the app uses {BATCH_API_VERSION}, and Batch is retiring the older versions; remove the "
                  "key (the family's pools "
                  "use its gallery image version, which also has no shared node cap)")

    pools: list[PoolSpec] = []
    raw_pools = f.get("pools")
    if "pools" in f and not isinstance(raw_pools, list):
        v.problem(json_path(path, "pools"),
                  f"{show(raw_pools)} is not a list of pools (use [] for a family that only builds images)")
    elif isinstance(raw_pools, list):
        for i, raw_pool in enumerate(raw_pools):
            pool = parse_pool(v, json_path(json_path(path, "pools"), i), name, raw_pool,
                              in_place=bool(rollout and rollout.in_place))
            if pool is not None:
                pools.append(pool)
    if rollout is not None and rollout.in_place and legacy:
        v.problem(json_path(json_path(path, "rollout"), "mode"),
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
    return None if GUID.match(text) else "an object id or application (client) id is a GUID"


def _check_pool_id_clashes(v: Validator, families: list[FamilyConfig]) -> None:
    """Two pools of any families that would get the same id in the same Batch account.

    Batch pool ids are unique per account regardless of case, so the second create would fail
    with PoolExists - or worse, the pipeline would treat another family's pool as its own.
    """
    seen: dict[tuple[str, str], str] = {}
    for family in families:
        for i, pool in enumerate(family.pools):
            path = f"{json_path(json_path(json_path('families', family.name), 'pools'), i)}.poolId"
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
