"""Retention: delete a family's old gallery image versions that nothing uses any more (opt-in, ``retention`` in the
family).

The decision (:func:`plan`) is pure. A version beyond the newest ``keepVersions`` is deleted only when every one of
these holds, and each refusal is reported with its reason (``autopilot plan`` shows both lists):

* the app built it: its own tags (``autopilot.managedBy``, ``autopilot.family``, ``autopilot.version``) say so;
* no pool in any watched account references it (every account could be listed: one unreadable account refuses all);
* it is not the family's ``pinVersion`` and not the source or target of a rollout under way;
* it carries no lock but the app's own (a lock someone else put is their decision to keep it).

Acting (:func:`apply`): the app's own lock is removed, the version's deletion block is lifted with a PATCH
(``safetyProfile.blockDeletionBeforeEndOfLife: false``, end of life now; the app created it with the block),
then the version is deleted; with ``deleteSnapshots`` the snapshot set it was built from goes too, under the
same lock rules. A ``VersionDeleted`` alert says what was deleted and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from shared.config.families import FamilyConfig
from shared.core import alerts
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import iso
from shared.core.context import AppContext
from shared.core.resource_ids import normalize
from shared.pipeline.snapshot_tags import TAG_FAMILY, TAG_VERSION, version_problem

log = logging.getLogger("autopilot.retention")

VERSION_DELETED = alerts.VERSION_DELETED
MANAGED_BY_TAG = "autopilot.managedBy"  # the same tag shared/pipeline/stages.py writes on what it builds
MANAGED_BY = "batch-image-autopilot"


@dataclass(frozen=True)
class VersionFacts:
    version: str
    resource_id: str
    tags: dict[str, str]
    foreign_locks: tuple[str, ...] = ()  # names of locks on the version that are not the app's own
    snapshot_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    version: str
    resource_id: str
    delete: bool
    reason: str
    snapshot_ids: tuple[str, ...] = ()


@dataclass
class RetentionReport:
    verdicts: list[Verdict] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def to_delete(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.delete]


def built_by_app(facts: VersionFacts, family: str) -> bool:
    tags = {k.lower(): v for k, v in facts.tags.items()}
    return (tags.get(MANAGED_BY_TAG.lower()) == MANAGED_BY
            and tags.get(TAG_FAMILY.lower(), "").lower() == family.lower()
            and tags.get(TAG_VERSION.lower()) == facts.version)


def _key(version: str) -> tuple[int, int, int]:
    a, b, c = (int(p) for p in version.split("."))
    return a, b, c


def plan(family: FamilyConfig, versions: list[VersionFacts], referenced: set[str], *, mid_rollout: set[str],
         accounts_unreadable: bool = False) -> list[Verdict]:
    """Which of the family's versions to delete, and why each of the others stays. ``referenced``: normalised image ids
    pools use."""
    if family.retention is None:
        return []
    ordered = sorted((v for v in versions if not version_problem(v.version)), key=lambda v: _key(v.version),
                     reverse=True)
    out: list[Verdict] = []
    for index, facts in enumerate(ordered):
        if index < family.retention.keep_versions:
            out.append(Verdict(facts.version, facts.resource_id, False,
                               f"among the newest {family.retention.keep_versions} (keepVersions)"))
            continue
        reason = None
        if not built_by_app(facts, family.name):
            reason = (f"not built by the app (its tags lack {MANAGED_BY_TAG}={MANAGED_BY} for family {family.name} "
                      f"{facts.version})")
        elif accounts_unreadable:
            reason = "a watched Batch account could not be listed, so a pool there may still use it"
        elif normalize(facts.resource_id) in referenced:
            reason = "a pool references it"
        elif family.pin_version == facts.version:
            reason = "it is the family's pinVersion"
        elif facts.version in mid_rollout:
            reason = "a rollout under way moves pools from or to it"
        elif facts.foreign_locks:
            reason = f"it carries a lock the app did not put ({', '.join(facts.foreign_locks)})"
        if reason is not None:
            out.append(Verdict(facts.version, facts.resource_id, False, reason))
        else:
            out.append(Verdict(facts.version, facts.resource_id, True,
                               f"older than the newest {family.retention.keep_versions}, built by the app, used by no "
                               "pool, not pinned",
                               facts.snapshot_ids if family.retention.delete_snapshots else ()))
    return out


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------


def observe(context: AppContext, family: FamilyConfig) -> list[VersionFacts]:
    from azure.core.exceptions import ResourceNotFoundError

    from shared.guard.references import lock_owner
    from shared.resources import locks as lock_api

    g = family.gallery
    try:
        from shared.resources.compute import compute_client_for

        listing = compute_client_for(context.clients, g.subscription).gallery_image_versions.list_by_gallery_image
        versions = list(listing(g.resource_group, g.name, g.image_definition))
    except ResourceNotFoundError:
        return []  # the definition does not exist yet: no version to keep or delete
    owner = lock_owner(context)
    out: list[VersionFacts] = []
    for item in versions:
        data = item.as_dict()
        rid = data.get("id") or ""
        foreign = tuple(lock.name for lock in lock_api.list_locks(context.clients, rid)
                        if not _is_app_lock(lock, owner))
        storage = (data.get("properties") or {}).get("storageProfile") or {}
        snapshots = [((storage.get("osDiskImage") or {}).get("source") or {}).get("id")]
        snapshots += [((d.get("source") or {}).get("id")) for d in storage.get("dataDiskImages") or []]
        snapshot_ids = tuple(s for s in snapshots if isinstance(s, str) and "/snapshots/" in s.lower())
        if not snapshot_ids:
            snapshot_ids = _set_snapshots(context, family, data.get("name") or "")
        out.append(VersionFacts(data.get("name") or "", rid, dict(data.get("tags") or {}), foreign, snapshot_ids))
    return out


def _is_app_lock(lock: Any, owner: str | None) -> bool:
    from shared.guard.lock_plan import LOCK_NAME
    from shared.guard.references import is_ours

    return bool(lock.name.lower() == LOCK_NAME and is_ours(lock.owners, owner))


def _set_snapshots(context: AppContext, family: FamilyConfig, version: str) -> tuple[str, ...]:
    """The snapshot set a version was built from (for source managedImage the version names only the image)."""
    from shared.core.state import SNAPSHOT_SETS
    from shared.pipeline import snapshot_sets

    record = context.state.table(SNAPSHOT_SETS).get(family.name, version) if not version_problem(version) else None
    return tuple(snapshot_sets.from_entity(record.data).snapshot_ids) if record else ()


def run(context: AppContext, family: FamilyConfig, *, dry_run: bool = False) -> RetentionReport:
    """Plan (and unless ``dry_run``, apply) retention for one family."""
    from shared.guard.references import observe as observe_pools
    from shared.lifecycle import rollout
    from shared.lifecycle.rollout_runner import ROLLOUTS

    report = RetentionReport()
    if family.retention is None:
        return report
    inventory = observe_pools(context, follow_sources=False)
    referenced = {normalize(u.image_id) for u in inventory.uses if u.image_id}
    mid: set[str] = set()
    for record in context.state.table(ROLLOUTS).query(family.name):
        if record.data.get("stage") not in rollout.FINISHED:
            mid.update(str(record.data.get(k) or "") for k in ("fromVersion", "toVersion"))
    report.verdicts = plan(family, observe(context, family), referenced, mid_rollout=mid,
                           accounts_unreadable=bool(inventory.unreadable_accounts))
    if dry_run:
        return report
    for verdict in report.to_delete:
        try:
            if apply(context, family, verdict):
                report.deleted.append(verdict.resource_id)
        except Exception as exc:  # one version that cannot be deleted must not stop the others
            log.warning("retention: %s not deleted: %s", verdict.resource_id, exc)
            report.failed[verdict.resource_id] = f"{type(exc).__name__}: {exc}"
    return report


def apply(context: AppContext, family: FamilyConfig, verdict: Verdict) -> bool:
    """Delete one planned version (and its snapshots); True when this call's DELETE removed it.

    Instances of the app run the sweep at the same time, and a sweep can be redelivered: each step is one another
    instance may already have taken. A version found gone (404 on the PATCH, 204 on the DELETE: ARM's answer when
    there is nothing to delete) is someone's completed delete, so the snapshots and the alert (de-duplicated per
    version) are still seen to; a lock already removed answers 204 too. Only a pool or a foreign lock stops it."""
    from shared.core.resource_ids import ResourceId
    from shared.guard.references import lock_owner
    from shared.guard.references import observe as observe_pools

    owner = lock_owner(context)
    rid = ResourceId.parse(verdict.resource_id)
    from shared.resources.compute import compute_client_for

    compute = compute_client_for(context.clients, rid.subscription_id)
    # Re-read right before acting: a pool created since the plan (or a rollout) must win.
    inventory = observe_pools(context, follow_sources=False)
    if inventory.unreadable_accounts or normalize(verdict.resource_id) in {normalize(u.image_id) for u in inventory.uses
                                                                           if u.image_id}:
        raise RuntimeError("a pool references it now (or an account cannot be listed): kept")
    deleted_now = _delete_version(context, compute, rid, owner, verdict.resource_id)
    recorded = {normalize(s) for u in inventory.uses for s in u.recorded_sources}
    deleted_snapshots = [s for s in verdict.snapshot_ids if _delete_snapshot(context, compute, owner, s, recorded)]
    details: dict[str, Any] = {"family": family.name, "version": verdict.version, "snapshots": deleted_snapshots}
    AlertPublisher(context).publish(Alert(
        VERSION_DELETED, alerts.SEVERITY_INFO, verdict.resource_id,
        f"Deleted {family.name} {verdict.version} (retention)",
        f"gallery image version {verdict.resource_id} was deleted: {verdict.reason}"
        + (f"; its snapshots were deleted too: {', '.join(deleted_snapshots)}" if deleted_snapshots else ""),
        "nothing to do; to keep more versions raise retention.keepVersions, to keep one pin it (pinVersion) or "
        "put your own "
        "CanNotDelete lock on it", verdict.version, context.clock.now(), details))
    return deleted_now


def _delete_version(context: AppContext, compute: Any, rid: Any, owner: str | None, resource_id: str) -> bool:
    """Own lock off, deletion block lifted, DELETE. True when this DELETE removed the version, False when it was
    already gone (another instance, or an earlier copy of this sweep, deleted it)."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared.core import permissions
    from shared.guard.lock_plan import LOCK_NAME
    from shared.resources import locks as lock_api

    gallery, definition, version = rid.names[-3:]
    try:
        on_version = lock_api.list_locks(context.clients, resource_id)
    except ResourceNotFoundError:
        return False
    if any(not _is_app_lock(lock, owner) for lock in on_version):
        raise RuntimeError("it carries a lock the app did not put now: kept")
    if on_version:
        lock_api.delete_lock(context.clients, resource_id, LOCK_NAME)  # only the app's own, checked just above
    # The app created the version with safetyProfile.blockDeletionBeforeEndOfLife: lift it, then delete.
    try:
        compute.gallery_image_versions.begin_update(rid.resource_group, gallery, definition, version, {"properties": {
            "publishingProfile": {"endOfLifeDate": iso(context.clock.now())},
            "safetyProfile": {"blockDeletionBeforeEndOfLife": False}}}).result()
    except ResourceNotFoundError:
        return False
    statuses: list[int] = []
    with permissions.writing(context, "Microsoft.Compute/galleries/images/versions/delete", resource_id):
        compute.gallery_image_versions.begin_delete(
            rid.resource_group, gallery, definition, version, polling=False,
            raw_response_hook=lambda response: statuses.append(response.http_response.status_code))
    return not statuses or statuses[-1] != 204  # 204: nothing was there to delete


def _delete_snapshot(context: AppContext, compute: Any, owner: str | None, snapshot_id: str,
                     recorded: set[str]) -> bool:
    """One snapshot of a deleted version, under the same lock rules; True when it is gone now."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared.core import permissions
    from shared.core.resource_ids import ResourceId
    from shared.guard.lock_plan import LOCK_NAME
    from shared.resources import locks as lock_api

    srid = ResourceId.parse(snapshot_id)
    try:
        on_snapshot = lock_api.list_locks(context.clients, snapshot_id)
        foreign = [lock.name for lock in on_snapshot if not _is_app_lock(lock, owner)]
        if foreign or normalize(snapshot_id) in recorded:
            log.warning("retention: snapshot %s kept: a pool still names it, or it carries a lock the app did "
                        "not put (%s)", snapshot_id, ", ".join(foreign))
            return False
        if on_snapshot:
            lock_api.delete_lock(context.clients, snapshot_id, LOCK_NAME)
        with permissions.writing(context, "Microsoft.Compute/snapshots/delete", snapshot_id):
            compute.snapshots.begin_delete(srid.resource_group, srid.name, polling=False)
    except ResourceNotFoundError:
        return True  # another instance deleted it first
    return True
