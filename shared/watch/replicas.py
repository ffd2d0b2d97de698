"""Gallery replicas follow the nodes on a version: when pool targets grow after the version was built, its regional
replica count is raised (one replica per ``nodesPerReplica`` nodes, 300 by default:
shared/pipeline/image_rules.replica_count).

The pipeline sizes a version's replicas for the family's pools as configured when it builds it. A pool whose target is
raised later (``autopilot.desiredDedicated``, a schedule) can outgrow them: Batch's gallery doc asks for at least one
replica per 600 VMs, or allocations time out. The watch's full scan (every account listed) sums the desired nodes of the
managed pools on each gallery image version per region, from the pool lists it already read, and compares them with the
replica counts it recorded for the version (Watch table, one query per full scan). Only when a region needs more does it
GET the version and PATCH its ``targetRegions`` with the raised counts; a steady pool costs no request. A version seen
for the first time is read once to record its counts. Counts are only ever raised, never lowered: a partial scan (an
unreadable account) under-counts, and lowering would need every pool.

The version carries the app's CanNotDelete lock (the guard's); a CanNotDelete lock allows updates (Learn, "Lock your
resources to protect your infrastructure": authorized users can read and modify a resource, but not delete it), so the
PATCH goes through it. The app patches only versions it built: its ``autopilot.managedBy`` and ``autopilot.family``
tags.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.core import pool_metadata
from shared.core.resource_ids import InvalidResourceId, ResourceId
from shared.core.state import WATCH, ConcurrencyConflict, Record, StateTable, safe_key
from shared.pipeline import image_rules

if TYPE_CHECKING:
    from shared.config.families import FamilyConfig
    from shared.core.context import AppContext
    from shared.watch.pool_policy import DesiredTarget, PoolView

log = logging.getLogger("autopilot.replicas")

PARTITION = "replicas"  # Watch table rows: one per gallery image version a managed pool is on (forgotten after)
GALLERY_VERSION = "Microsoft.Compute/galleries/images/versions"


def needed(nodes_by_region: Mapping[str, int], nodes_per_replica: int, minimum: int) -> dict[str, int]:
    """Replicas each region needs for the nodes its pools want (pure)."""
    return {region: image_rules.replica_count(nodes, nodes_per_replica, minimum)
            for region, nodes in nodes_by_region.items()}


def raised(current: Mapping[str, int], wanted: Mapping[str, int]) -> dict[str, int]:
    """The regions whose count must go up, with their new counts (pure): counts are never lowered."""
    return {region: count for region, count in wanted.items() if count > current.get(region, 0)}


@dataclass
class ReplicaReport:
    raised: dict[str, dict[str, int]] = field(default_factory=dict)  # version id -> region -> new count
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # version id -> why not touched (not the app's, no family)


@dataclass
class _Version:
    family: str
    nodes: dict[str, int] = field(default_factory=dict)  # normalized region -> desired nodes of managed pools there


@functools.lru_cache(maxsize=4096)  # every pool on every full scan; a few hundred version ids repeat
def _version_key(image_id: str) -> str | None:
    """The comparison key of a gallery image version id; None for anything else."""
    try:
        rid = ResourceId.parse(image_id)
    except InvalidResourceId:
        return None
    return rid.key if rid.is_type(GALLERY_VERSION) else None


class ReplicaWatch:
    """Collects, during a full scan, the desired nodes per gallery version and region; :meth:`finish` raises
    replicas."""

    def __init__(self, context: AppContext, *, full: bool, dry_run: bool) -> None:
        self.context = context
        self.active = full and not dry_run
        self.versions: dict[str, _Version] = {}
        self.report = ReplicaReport()

    def observe(self, region: str | None, view: PoolView, desired: DesiredTarget) -> None:
        if not self.active or not view.image_id or not region:
            return
        version = _version_key(view.image_id)
        if version is None:
            return  # a managed image or a definition ("latest"): nothing to replicate per version here
        family = view.metadata.get(pool_metadata.FAMILY, "")
        entry = self.versions.setdefault(version, _Version(family))
        key = image_rules.normalize_region(region)
        entry.nodes[key] = entry.nodes.get(key, 0) + max(desired.total, view.target_dedicated + view.target_spot)

    def finish(self) -> ReplicaReport:
        if not self.active:  # with no version in use it still reads the rows once, to forget them
            return self.report
        from shared.pipeline.stages import families_of

        table = self.context.state.table(WATCH)
        try:
            recorded = {r.row: r for r in table.query(PARTITION)}
            families = families_of(self.context)
        except Exception as exc:  # replicas are judged again on the next full scan
            log.warning("replicas: cannot read the recorded replica counts: %s", exc)
            return self.report
        for version_id, entry in self.versions.items():
            family = families.get(entry.family) if entry.family else None
            if family is None:
                self.report.skipped[version_id] = f"family {entry.family!r} is not configured"
                continue
            record = recorded.get(safe_key(version_id))
            try:
                self._one(version_id, family, entry, record)
            except Exception as exc:  # one version (a 409 while it replicates, a 403) must not stop the others
                self.report.failed[version_id] = f"{type(exc).__name__}: {exc}"
                log.warning("replicas: %s not raised: %s", version_id, exc)
                from shared.core import permissions

                if permissions.is_denied(exc):
                    permissions.report_denied(self.context, f"{GALLERY_VERSION}/write", version_id, exc)
        self._forget_unused(table, recorded)
        return self.report

    def _forget_unused(self, table: StateTable, recorded: dict[str, Record]) -> None:
        """Delete the rows of versions no managed pool was seen on in this full scan (their pools are gone), so the
        Watch table follows the versions in use, not every version ever built (issue 18's soak found them piling up).
        A version missed because an account could not be listed only costs one GET at the next scan that sees it."""
        seen = {safe_key(version_id) for version_id in self.versions}
        stale = [record for row, record in recorded.items() if row not in seen]
        if not stale:
            return
        try:
            table.delete_many(stale)
        except Exception as exc:  # housekeeping: the next full scan tries again
            log.warning("replicas: rows of %d unused version(s) not deleted: %s", len(stale), exc)

    def _one(self, version_id: str, family: FamilyConfig, entry: _Version, record: Record | None) -> None:
        wanted = needed(entry.nodes, family.replicas.nodes_per_replica, family.replicas.minimum)
        if record is not None:
            if record.data.get("skip"):
                self.report.skipped[version_id] = str(record.data["skip"])
                return
            if not raised(_counts(record), wanted):
                return  # the steady case: no request
        from shared.resources import compute

        version = compute.get_gallery_image_version(self.context.clients, version_id)
        if version is None:
            return  # gone: the guard's ImageMissing covers it
        why = _not_ours(version, entry.family)
        if why is not None:
            self.report.skipped[version_id] = why
            self._record(version_id, record, {"skip": why})
            return
        targets = list(((version.get("properties") or {}).get("publishingProfile") or {}).get("targetRegions") or [])
        current = {image_rules.normalize_region(str(t.get("name", ""))): int(t.get("regionalReplicaCount") or 1)
                   for t in targets}
        more = raised(current, wanted)
        if more:
            body = _patch(targets, more, family.replicas.storage_account_type)
            compute.start_gallery_image_version_update(self.context.clients, version_id, body)
            self.report.raised[version_id] = more
            log.info("replicas: %s raised to %s for the nodes its pools want (%s)", version_id, more, entry.nodes)
            current.update(more)
        self._record(version_id, record, {"regions": json.dumps(current, sort_keys=True)})

    def _record(self, version_id: str, record: Record | None, data: dict[str, Any]) -> None:
        # Another instance recorded it first: the next full scan compares with theirs.
        with contextlib.suppress(ConcurrencyConflict):
            self.context.state.table(WATCH).save(PARTITION, safe_key(version_id), data, expected=record)


def _counts(record: Record) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(str(record.data.get("regions") or "{}")).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def _not_ours(version: Mapping[str, Any], family: str) -> str | None:
    from shared.core.ownership import MANAGED_BY, MANAGED_BY_TAG, TAG_FAMILY

    tags = {str(k).lower(): str(v) for k, v in (version.get("tags") or {}).items()}
    if tags.get(MANAGED_BY_TAG.lower()) != MANAGED_BY or tags.get(TAG_FAMILY, "").lower() != family.lower():
        return (f"it does not carry the app's tags ({MANAGED_BY_TAG}={MANAGED_BY}, {TAG_FAMILY}={family}): "
                "not the app's to change")
    return None


_TARGET_FIELDS = ("name", "regionalReplicaCount", "storageAccountType", "encryption", "excludeFromLatest")


def _patch(targets: list[Mapping[str, Any]], more: Mapping[str, int], storage: str) -> dict[str, Any]:
    """The PATCH body: every existing target region (a region left out would be a removal), with the raised counts, plus
    any region that has none yet."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for t in targets:
        region = image_rules.normalize_region(str(t.get("name", "")))
        seen.add(region)
        item = {k: v for k, v in t.items() if k in _TARGET_FIELDS}
        if region in more:
            item["regionalReplicaCount"] = more[region]
        out.append(item)
    out += [{"name": region, "regionalReplicaCount": count, "storageAccountType": storage}
            for region, count in more.items() if region not in seen]
    return {"properties": {"publishingProfile": {"targetRegions": out}}}
