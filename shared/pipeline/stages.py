"""Snapshot set -> managed image -> gallery image version -> pools, as a resumable stage machine.

Every step is idempotent and claimed before it is taken:

* names derive from (family, version), so a repeated step finds its own earlier result;
* the per-version row in the ``Pipeline`` table records the stage reached, and each Azure write is
  preceded by an ETag-guarded update of that row, so two instances racing on redelivered events
  never both start the same operation;
* long-running operations are started, never awaited: the image's and the gallery version's own
  ``ResourceWriteSuccess`` events (or the sweep timer) call :func:`advance` again.

Nothing is created for a version that fails a check from the Batch custom-image doc; an alert says
what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.config.families import FamilyConfig, PoolSpec, parse_families
from shared.core import alerts, ownership, permissions, pool_metadata
from shared.core import state_expiry as retention
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import iso, parse_iso
from shared.core.context import AppContext
from shared.core.durations import format_iso_duration
from shared.core.resource_ids import ResourceId, normalize, same_id
from shared.core.state import PIPELINE, SNAPSHOT_SETS, ConcurrencyConflict, Record
from shared.pipeline import image_rules, naming, scope, snapshot_sets
from shared.pipeline.snapshot_sets import SnapshotSet, SnapshotSetKey
from shared.pipeline.snapshot_tags import TAG_FAMILY, TAG_VERSION
from shared.resources import batch_accounts, batch_pools, compute
from shared.watch import canary

log = logging.getLogger("autopilot.pipeline")

MANAGED_BY_TAG = ownership.MANAGED_BY_TAG
MANAGED_BY = ownership.MANAGED_BY
GALLERY_VERSION_LIFETIME = timedelta(days=180)  # the 2026-03-03 API's default end of life: six months
CLAIM_RETRIES = 5
# A claimed create whose resource is still not there after this long was never sent (the instance
# died between claiming and calling Azure): the next event or sweep sends it again.
CLAIM_GRACE = timedelta(minutes=2)

# Stages, in order. "refused" and "failed" are terminal until the set changes (new snapshots).
ASSEMBLING, VALIDATED, IMAGE_REQUESTED, VERSION_REQUESTED, DONE = ("assembling", "validated", "image-requested",
                                                                   "version-requested", "done")
REFUSED, FAILED = "refused", "failed"
TERMINAL = (DONE, REFUSED, FAILED)


@dataclass(frozen=True)
class Outcome:
    stage: str
    detail: str = ""


def families_of(context: AppContext) -> Any:
    return parse_families(context.settings.families_json or '{"families": {}}')


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def on_snapshot_written(context: AppContext, snapshot_id: str, claims: Any = None, *,
                        event_time: datetime | None = None) -> Outcome:
    """A snapshot was written, re-tagged (a snapshot write or a Tags-API write), untagged or deleted: bring the sets
    it touches up to date from what its tags say now (shared.pipeline.set_membership), then advance the set it claims.

    ``claims``: the event's (who wrote the snapshot, or its tags), checked against a family's allowedPrincipals
    before the snapshot may join a set; None when the snapshot was found without an event.
    """
    from shared.pipeline import set_membership

    families = families_of(context)
    if not scope.in_any_snapshot_scope(families, snapshot_id, context.settings.subscription_id):
        # Not read at all: outside every family's snapshotResourceGroups it is not the app's business (and may be
        # unreadable).
        scope.count_ignored(context, scope.OUT_OF_SCOPE, snapshot_id, "outside every family's snapshotResourceGroups")
        return Outcome("ignored", "outside every family's snapshotResourceGroups")

    def refusal(family_name: str, observed_id: str) -> str | None:
        refused = _scope_refusal(context, families.get(family_name), observed_id, claims)
        return refused.detail if refused else None

    result = set_membership.on_snapshot_event(context, snapshot_id, event_time=event_time,
                                              configured=lambda name: families.get(name) is not None, refusal=refusal)
    if result.key is None:
        return Outcome(result.stage, result.detail)
    if families.get(result.key.family) is None:
        return Outcome("refused", f"unknown family {result.key.family}")
    return advance(context, result.key.family, result.key.version)


def on_image_written(context: AppContext, resource_id: str) -> Outcome:
    """A managed image or gallery image version the pipeline started has changed: advance its version."""
    if not scope.in_any_image_scope(families_of(context), resource_id, context.settings.subscription_id):
        scope.count_ignored(context, scope.OUT_OF_SCOPE, resource_id,
                            "outside every family's image resource group and gallery")
        return Outcome("ignored", "outside every family's image resource group and gallery")
    resource = _read_in_scope(context, permissions.write_action(resource_id).rsplit("/", 1)[0] + "/read", resource_id,
                              compute.get_any_image)
    if resource is None:
        return Outcome("ignored", f"{resource_id} no longer exists")
    tags = {k.lower(): v for k, v in (resource.get("tags") or {}).items()}
    if tags.get(MANAGED_BY_TAG.lower()) != MANAGED_BY or not tags.get(TAG_FAMILY) or not tags.get(TAG_VERSION):
        return Outcome("ignored", "not built by the pipeline")
    return advance(context, tags[TAG_FAMILY], tags[TAG_VERSION])


def _read_in_scope(context: AppContext, action: str, resource_id: str, read: Any) -> dict[str, Any] | None:
    """Re-read a resource inside a family's scope: a 401/403 there is a missing role (PermissionDenied), and the
    invocation fails so that Event Grid's redelivery reads it again once the role is granted."""
    with permissions.writing(context, action, resource_id):
        return read(context.clients, resource_id)


def _scope_refusal(context: AppContext, family: FamilyConfig, snapshot_id: str, claims: Any) -> Outcome | None:
    """A snapshot tagged for ``family`` but outside its scope, or written by someone it does not allow: refused, with an
    alert."""
    if not scope.in_family_scope(family, snapshot_id, context.settings.subscription_id):
        code, why, fix = scope.SNAPSHOT_OUT_OF_SCOPE, (f"it is outside the family's snapshotResourceGroups "
                                                       f"({', '.join(family.snapshot_groups)})"), \
            scope.scope_refusal_fix(family, snapshot_id)
    elif why := scope.principal_refusal(context, family, snapshot_id, claims):
        code, fix = scope.PRINCIPAL_NOT_ALLOWED, scope.principal_refusal_fix(family)
    else:
        return None
    _alert(context, alerts.IMAGE_REFUSED, snapshot_id, f"Snapshot refused for family {family.name}: {code}",
           f"snapshot {snapshot_id} is tagged {TAG_FAMILY}={family.name}, but {why}; it is not added to any set", fix,
           dedupe=f"scope|{code}", details={"codes": [code], "family": family.name})
    return Outcome("refused", f"{code}: {why}")


def sweep(context: AppContext) -> list[Outcome]:
    """Timer: advance every unfinished version (catching up on lost events); alert on overdue sets.

    One version that cannot be advanced (a corrupt row, Azure refusing a call) must not starve the
    others: each is tried, and the invocation fails at the end if any of them failed.
    """
    outcomes: list[Outcome] = []
    errors: list[str] = []
    # Only rows with an unsent alert (an outbox) are read here, not every version ever built.
    for row in list(context.state.table(PIPELINE).query_filter("outbox ge @empty", {"empty": ""})):
        if row.data.get("stage") in TERMINAL and row.data.get("outbox"):
            try:
                _flush_outbox(context, row)
            except Exception as exc:
                log.warning("sweep: alert of %s %s not sent yet: %s", row.partition, row.row, exc)
                errors.append(f"{row.partition} {row.row}: {type(exc).__name__}: {exc}")
    for record in list(open_sets(context)):
        try:
            outcome = _sweep_one(context, record)
        except Exception as exc:
            log.warning("sweep: %s %s failed: %s", record.partition, record.row, exc, exc_info=True)
            errors.append(f"{record.partition} {record.row}: {type(exc).__name__}: {exc}")
            continue
        if outcome is not None:
            outcomes.append(outcome)
    try:
        # finished rows past AUTOPILOT_STATE_RETENTION_DAYS: the sweep reads open work
        retention.expire_finished(context)
    except Exception as exc:  # housekeeping never fails the sweep
        log.warning("sweep: expiring finished state failed: %s", exc)
    _run_retention(context)
    if errors:
        raise RuntimeError(f"pipeline sweep: {len(errors)} version(s) could not be advanced: "
                           + "; ".join(errors)[:2000])
    return outcomes


def _run_retention(context: AppContext) -> None:
    """Hook: families with ``retention`` delete the old versions nothing uses (shared/core/state_expiry.py); others are
    untouched."""
    from shared.lifecycle import version_retention

    for family in families_of(context):
        if family.retention is None:
            continue
        try:
            report = version_retention.run(context, family)
        except Exception as exc:  # retention is housekeeping: it must never stop the sweep of new versions
            log.warning("retention of %s failed: %s", family.name, exc, exc_info=True)
            continue
        for resource_id, why in report.failed.items():
            log.warning("retention: %s not deleted: %s", resource_id, why)


def open_sets(context: AppContext) -> Iterator[Record]:
    """The set rows that are open work (assembling, or a version not yet at a terminal stage), filtered by the Table
    service: finished rows never cross the wire and wait for expiry (shared/core/state_expiry.py) and their
    tombstones."""
    _mark_rows_written_before_the_open_column(context)
    return context.state.table(SNAPSHOT_SETS).query_filter(f"{snapshot_sets.OPEN_COLUMN} eq @open", {"open": True})


_OPEN_MARKED = ("pipeline", "setsOpenMarked")  # Watch-table row: every set row carries the open column


def _mark_rows_written_before_the_open_column(context: AppContext) -> None:
    """Once per deployment: set rows written before the ``open`` column existed have none, and a filter on it would
    never return them. The first sweep reads every row once, gives each the column (open unless its stage is terminal)
    and records that it did; every later sweep costs one point read here."""
    from shared.core.state import WATCH
    from shared.pipeline.set_membership import mark_open

    marker = context.state.table(WATCH)
    if marker.get(*_OPEN_MARKED) is not None:
        return
    for record in list(context.state.table(SNAPSHOT_SETS).query()):
        if snapshot_sets.OPEN_COLUMN in record.data:
            continue
        stage = context.state.table(PIPELINE).get(record.partition, record.row)
        with contextlib.suppress(Exception):  # a row that cannot be marked now is marked by a later write of it
            mark_open(context, SnapshotSetKey(str(record.data.get("family", record.partition)),
                                              str(record.data.get("version", record.row))),
                      stage is None or stage.data.get("stage") not in TERMINAL)
    with contextlib.suppress(ConcurrencyConflict):  # another instance marked them at the same time
        marker.insert(*_OPEN_MARKED, {"at": iso(context.clock.now())})


def _sweep_one(context: AppContext, record: Record) -> Outcome | None:
    from shared.pipeline import set_membership

    # What the tags say now: members untagged, re-tagged or deleted without an event reaching the app leave,
    # and snapshots still copying are looked at again (a set being built keeps its members).
    snapshot_set = set_membership.refresh(context, snapshot_sets.from_entity(record.data).key)
    if snapshot_set is None:
        return None
    if not snapshot_sets.is_complete(snapshot_set):
        timeout = timedelta(minutes=context.settings.set_assembly_timeout_minutes)
        if snapshot_sets.is_overdue(snapshot_set, context.clock.now(), timeout):
            missing = ", ".join(snapshot_sets.missing(snapshot_set))
            first = snapshot_set.members[0].snapshot_id if snapshot_set.members else f"{snapshot_set.key}"
            _alert(context, alerts.SNAPSHOT_SET_INCOMPLETE, first, f"Snapshot set {snapshot_set.key} is incomplete",
                   f"{snapshot_sets.describe(snapshot_set)}; still missing: {missing}",
                   "snapshot the missing disk(s) and tag them with the same autopilot.family and autopilot.version, "
                   "or correct autopilot.diskCount; a snapshot still copying joins the set by itself when its "
                   "copy completes",
                   dedupe=f"incomplete|{snapshot_set.key}|{_waiting_for(snapshot_set)}",
                   severity=alerts.SEVERITY_WARNING, details={"missing": missing})
        return None
    stage = _load_stage(context, snapshot_set.key)
    if stage is None or stage.data.get("stage") not in TERMINAL:
        return advance(context, snapshot_set.key.family, snapshot_set.key.version)
    # Finished, but open: a membership write reopened it, or closing it lost a race. Close it once more.
    set_membership.mark_open(context, snapshot_set.key, False)
    return None


# ---------------------------------------------------------------------------------------------
# The stage machine
# ---------------------------------------------------------------------------------------------


def advance(context: AppContext, family_name: str, version: str) -> Outcome:
    family = families_of(context).get(family_name)
    if family is None:
        return Outcome("ignored", f"family {family_name} is not configured")
    key = SnapshotSetKey(family.name, version)
    if _load_stage(context, key) is None and retention.built_before(context, key.partition_key, key.row_key):
        # Built long ago; its rows expired (a re-tag of an old set): never built twice, and not open work for the sweep.
        from shared.pipeline.set_membership import mark_open

        mark_open(context, key, False)
        return Outcome(DONE, f"{key} was built before (tombstone); its state expired")
    for _ in range(CLAIM_RETRIES):
        # Read inside the loop: a set whose membership changed meanwhile is judged as it is now.
        record = context.state.table(SNAPSHOT_SETS).get(key.partition_key, key.row_key)
        if record is None:
            return Outcome(ASSEMBLING, "no snapshots yet")
        snapshot_set = snapshot_sets.from_entity(record.data)
        if not snapshot_sets.is_complete(snapshot_set):
            return Outcome(ASSEMBLING, "waiting for " + ", ".join(snapshot_sets.missing(snapshot_set)))
        try:
            return _advance_once(context, family, snapshot_set, record)
        except ConcurrencyConflict:
            continue  # another instance moved the stage (or the set changed): re-read and carry on from there
    return Outcome("busy", "another instance is advancing this version")


def _advance_once(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet,
                  set_record: Record | None = None) -> Outcome:
    key = snapshot_set.key
    sub = context.settings.subscription_id
    version_id = naming.family_gallery_version_id(family, key.version, sub)
    image_id = naming.family_managed_image_id(family, key.version, sub) if family.builds_managed_image else None
    row = _load_stage(context, key)
    stage = row.data.get("stage", ASSEMBLING) if row else ASSEMBLING
    if stage in TERMINAL:
        assert row is not None
        if row.data.get("outbox"):
            _flush_outbox(context, row)  # the terminal alert did not go out when the stage was reached
        return Outcome(stage, row.data.get("detail", ""))

    if stage == ASSEMBLING:
        gone = [m.snapshot_id for m in snapshot_set.members
                if compute.get_snapshot(context.clients, m.snapshot_id) is None]
        if gone:
            return _refuse(context, snapshot_set, row, version_id, [image_rules.Finding(
                image_rules.REFUSE, "SNAPSHOT_DELETED", gone[0],
                f"snapshot(s) {', '.join(gone)} were deleted before the image was built",
                "re-create the snapshot(s) from the prepared VM's disks and tag them again")])
        findings, skus = validate(context, family, snapshot_set, version_id, image_id)
        findings += scope.live_version_findings(context, family, key, PIPELINE,
                                                counted=(VALIDATED, IMAGE_REQUESTED, VERSION_REQUESTED, DONE),
                                                built=DONE)
        if image_rules.has_refusal(findings):
            return _refuse(context, snapshot_set, row, version_id, findings)
        for warning in image_rules.warnings(findings):
            log.warning("%s: %s (%s)", key, warning.message, warning.fix)
        if set_record is not None:
            from shared.pipeline.set_membership import freeze

            freeze(context, set_record)  # the members are fixed from here on; a change since the read starts over
        row = _save_stage(context, key, row, VALIDATED, nodeAgentSkus=json.dumps(skus))
        stage = VALIDATED

    if stage == VALIDATED and image_id is not None:
        image = compute.get_image(context.clients, image_id)
        if (image is not None
            and (why := ownership.image_not_ours(image, key.family, key.version, snapshot_set.snapshot_ids))):
            return _name_taken(context, snapshot_set, image_id, why, kind="managed image")
        if image is None or _provisioning_state(image) == "failed":  # failed: a retry after the set changed
            return _request(context, key, row, VALIDATED, IMAGE_REQUESTED, image_id,
                            lambda: compute.start_image_create(context.clients, image_id,
                                                               image_body(family, snapshot_set)))
        stage = IMAGE_REQUESTED
    elif stage == VALIDATED:
        stage = IMAGE_REQUESTED  # snapshots straight into the gallery: no managed image

    if stage == IMAGE_REQUESTED:
        if image_id is not None:
            image = compute.get_image(context.clients, image_id)
            if (image is not None
                and (why := ownership.image_not_ours(image, key.family, key.version, snapshot_set.snapshot_ids))):
                return _name_taken(context, snapshot_set, image_id, why, kind="managed image")
            state = _provisioning_state(image)
            if image is None and _claim_is_stale(context, row):
                # Claimed, but the create never reached Azure (the instance died in between): send it again.
                return _request(context, key, row, IMAGE_REQUESTED, IMAGE_REQUESTED, image_id,
                                lambda: compute.start_image_create(context.clients, image_id,
                                                                   image_body(family, snapshot_set)))
            if image is None or state in ("creating", "updating", ""):
                return Outcome(IMAGE_REQUESTED, f"image {image_id} is {state or 'not visible yet'}")
            if state == "failed":
                return _fail(context, snapshot_set, row, image_id, "The managed image could not be built",
                             managed_image=True)
        waiting = _ensure_image_definition(context, family)
        if waiting is not None:  # its creation raises no event the app subscribes to: the sweep comes back
            return Outcome(IMAGE_REQUESTED, f"gallery image definition {family.gallery.image_definition} is {waiting}")
        existing = compute.get_gallery_image_version(context.clients, version_id)
        if existing is not None and (why := ownership.version_not_ours(existing, key.family, key.version,
                                                                       _version_sources(snapshot_set, image_id))):
            return _name_taken(context, snapshot_set, version_id, why, kind="gallery image version")
        if existing is None or _provisioning_state(existing) == "failed":  # failed: a retry after the set changed
            return _request(context, key, row, IMAGE_REQUESTED, VERSION_REQUESTED, version_id,
                            lambda: compute.start_gallery_image_version_create(
                                context.clients, version_id,
                                gallery_version_body(context, family, snapshot_set, image_id)))
        row = _save_stage(context, key, row, VERSION_REQUESTED)
        stage = VERSION_REQUESTED

    if stage == VERSION_REQUESTED:
        gallery_version = compute.get_gallery_image_version(context.clients, version_id)
        if gallery_version is not None and (why := ownership.version_not_ours(gallery_version, key.family, key.version,
                                                                              _version_sources(snapshot_set,
                                                                                               image_id))):
            return _name_taken(context, snapshot_set, version_id, why, kind="gallery image version")
        state = _provisioning_state(gallery_version)
        if gallery_version is None and _claim_is_stale(context, row):
            return _request(context, key, row, IMAGE_REQUESTED, VERSION_REQUESTED, version_id,
                            lambda: compute.start_gallery_image_version_create(
                                context.clients, version_id,
                                gallery_version_body(context, family, snapshot_set, image_id)))
        if gallery_version is None or state in ("creating", "updating", ""):
            return Outcome(VERSION_REQUESTED, f"gallery version {version_id} is {state or 'not visible yet'}")
        if state == "failed":
            return _fail(context, snapshot_set, row, version_id, "The gallery image version could not be built")
        skus = json.loads(row.data.get("nodeAgentSkus") or "{}") if row else {}
        if image_id is not None and not family.keep_managed_image and not family.legacy_managed_image_pools:
            # Before the pools exist: once a pool uses the version, the guard locks the version's
            # source image too, and the delete would be refused (ScopeLocked) for as long as it lives.
            _drop_intermediate_image(context, image_id, snapshot_set)
        pools = create_pools(context, family, snapshot_set, version_id, image_id, skus)
        if pools.refused:
            return _pools_refused(context, snapshot_set, row, version_id, pools.refused)
        if pools.taken:
            for pool_path, why in pools.taken:
                _name_taken(context, snapshot_set, pool_path, why, kind="pool")
            return Outcome(VERSION_REQUESTED, f"pool id(s) taken: {', '.join(p for p, _ in pools.taken)}")
        if pools.missing:
            # Batch answered the create without creating the pool (e.g. the account's pool quota): not done.
            # The sweep tries again; the alert says what to fix.
            for pool_path in pools.missing:
                _alert(context, alerts.IMAGE_BUILD_FAILED, pool_path,
                       f"Pool {pool_path.rsplit('/', 1)[-1]} could not be created ({key})",
                       f"gallery image version {version_id} is ready, but Batch did not create pool {pool_path}",
                       "check the Batch account's pool quota and the pool configuration in the family; the "
                       "pipeline retries "
                       "at every sweep", dedupe=f"pool|{key}|{normalize(pool_path)}")
            return Outcome(VERSION_REQUESTED, f"pool(s) not created: {', '.join(pools.missing)}")
        names = ", ".join(pools.names)
        detail = (f"pools: {names}"
                  + (f" (created now: {', '.join(pools.created)})" if pools.created != pools.names else ""))
        done = _ready_alert(context, snapshot_set, version_id, pools)
        from shared.guard.reconcile import reconcile  # lock what the new pools use now, not at the next tick

        report = reconcile(context)
        built = {normalize(r) for r in (version_id, image_id, *snapshot_set.snapshot_ids) if r}
        unlocked = sorted(r for r in report.failed if normalize(r) in built)
        if unlocked:
            # Pools on an unprotected image are one delete away from AllocationFailed: not done until it is locked.
            # (A 401/403 already raised PermissionDenied; the sweep locks and finishes once the role is granted.)
            return Outcome(VERSION_REQUESTED, f"pools created, but could not lock {', '.join(unlocked)}")
        _finish(context, key, row, DONE, detail, done)
        return Outcome(DONE, names)
    return Outcome(stage)


def _drop_intermediate_image(context: AppContext, image_id: str, snapshot_set: SnapshotSet) -> None:
    """The gallery version is an independent copy: the intermediate managed image is no longer needed."""
    from azure.core.exceptions import HttpResponseError

    image = compute.get_image(context.clients, image_id)
    if image is None:
        return
    key = snapshot_set.key
    if why := ownership.image_not_ours(image, key.family, key.version, snapshot_set.snapshot_ids):
        # Someone replaced it since the version was built from it: it is theirs now, never the app's to delete.
        log.warning("kept %s: not the app's intermediate image (%s)", image_id, why)
        return
    try:
        with permissions.writing(context, "Microsoft.Compute/images/delete", image_id):
            compute.start_image_delete(context.clients, image_id)
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return
        if exc.status_code == 409:
            # Locked (by the guard, because some pool references it, or by a person): keep it.
            log.warning("kept intermediate image %s: its delete was refused (%s)", image_id,
                        exc.error.code if exc.error else exc.status_code)
            return
        raise


def _claim_is_stale(context: AppContext, row: Record | None) -> bool:
    if row is not None and row.data.get("released") == "true":
        return True
    updated = parse_iso(row.data.get("updatedAt")) if row else None
    return updated is None or context.clock.now() - updated >= CLAIM_GRACE


def _request(context: AppContext, key: SnapshotSetKey, row: Record | None, from_stage: str, to_stage: str,
             resource_id: str,
             start: Any) -> Outcome:
    """Claim ``to_stage`` (ETag-guarded: one instance wins), then start the long-running create.

    When the call fails the claim is handed back, so the redelivered event (or the sweep) sends it
    again instead of waiting forever for a resource that was never requested.
    """
    claimed = _save_stage(context, key, row, to_stage)
    try:
        with permissions.writing(context, permissions.write_action(resource_id), resource_id):
            start()
    except Exception as exc:
        if _own_create_in_progress(context, key, resource_id, exc):
            # Our earlier PUT took effect and only its answer was lost (a 5xx after Azure accepted it, retried by the
            # SDK into "an operation on ... is still in progress"): the create is under way, which is what was asked.
            log.info("%s: %s is already being created by an earlier request of ours (%s)", key, resource_id, exc)
            return Outcome(to_stage, resource_id)
        with contextlib.suppress(ConcurrencyConflict):  # someone moved on meanwhile: they own the stage now
            _save_stage(context, key, claimed, from_stage, released="true")
        raise
    return Outcome(to_stage, resource_id)


def _own_create_in_progress(context: AppContext, key: SnapshotSetKey, resource_id: str, exc: Exception) -> bool:
    """A 409 on a create the app sent, where the resource now exists, carries the app's own tags for this
    family and version, and is still being created: the app's own earlier request, not someone else's."""
    from azure.core.exceptions import HttpResponseError

    if not isinstance(exc, HttpResponseError) or exc.status_code != 409:
        return False
    existing = (compute.get_gallery_image_version(context.clients, resource_id) if "/galleries/" in resource_id.lower()
                else compute.get_image(context.clients, resource_id))
    if existing is None:
        return False
    tags = {k.lower(): v for k, v in (existing.get("tags") or {}).items()}
    ours = (tags.get(MANAGED_BY_TAG.lower()) == MANAGED_BY and tags.get(TAG_FAMILY) == key.family
            and tags.get(TAG_VERSION) == key.version)
    return ours and _provisioning_state(existing) in ("creating", "updating", "succeeded")


# ---------------------------------------------------------------------------------------------
# Checks from the Batch custom-image doc
# ---------------------------------------------------------------------------------------------


def validate(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, version_id: str,
             image_id: str | None) -> tuple[list[image_rules.Finding], dict[str, str]]:
    """Every check, reading what it needs from Azure. Returns findings and the nodeAgentSkuId per account."""
    now = context.clock.now()
    findings: list[image_rules.Finding] = list(image_rules.check_family(family))
    findings += image_rules.check_os_disk(snapshot_set, os_type=family.gallery.os_type)
    app_subscription = context.settings.subscription_id
    foreign = [a for a in dict.fromkeys(spec.account for spec in family.pools)
               if ResourceId.parse(a).subscription_id.lower() != app_subscription.lower()]
    if foreign:
        # The app reads accounts, snapshots and images in its own subscription only; an account elsewhere can
        # neither be read here nor use an image built here. Refuse before reading anything about it.
        for account_id in foreign:
            findings.append(image_rules.Finding(
                image_rules.REFUSE, "SNAPSHOT_SUBSCRIPTION", account_id,
                f"Batch account {account_id} is in subscription {ResourceId.parse(account_id).subscription_id}, but "
                "the snapshots "
                f"{', '.join(snapshot_set.snapshot_ids)} (and the image the app builds from them) are in "
                f"{app_subscription}; Batch "
                "needs the image in the account's subscription",
                "copy the snapshots into the Batch account's subscription and run the app there, or remove this "
                "account from the "
                "family's pools"))
        return _dedupe(findings), {}
    os_member = snapshot_set.os_member
    accounts = {}
    for spec in family.pools:
        if spec.account.lower() not in accounts:
            accounts[spec.account.lower()] = batch_accounts.get_account(context.clients, spec.account)
    targets = [image_rules.TargetAccount(a.id, a.location) for a in accounts.values()]
    findings += image_rules.check_location(
        snapshot_set.members, targets, gallery_location=family.gallery.location,
        gallery_subscription=family.gallery.subscription or app_subscription,
        allow_cross_subscription_gallery=context.settings.allow_cross_subscription_gallery)
    from shared.pipeline.set_membership import source_disk as disk_behind  # follows snapshot copies back to the disk

    source_disk = disk_behind(context, os_member.source_disk_id) if os_member and os_member.source_disk_id else None
    os_snapshot = compute.get_snapshot(context.clients, os_member.snapshot_id) if os_member else None
    source_image_id = image_rules.source_image_id_of_disk(source_disk) if source_disk else None
    plan = ((image_rules.purchase_plan_of(source_disk) if source_disk else None)
            or (image_rules.purchase_plan_of(os_snapshot) if os_snapshot else None))
    skus: dict[str, str] = {}
    supported_cache: dict[str, list[image_rules.SupportedImage]] = {}
    for spec in family.pools:
        account = accounts[spec.account.lower()]
        if account.id.lower() not in supported_cache:
            supported_cache[account.id.lower()] = [image_rules.SupportedImage.from_api(i)
                                                   for i in batch_pools.list_supported_images(context.clients, account)]
        result = image_rules.check_base_image(source_image_id, supported_cache[account.id.lower()], now=now,
                                              resource_id=os_member.snapshot_id if os_member else None,
                                              account_id=account.id,
                                              purchase_plan=plan, os_type=family.gallery.os_type,
                                              node_agent_sku_id=spec.node_agent_sku_id)
        findings += result.findings
        if result.node_agent_sku_id:
            skus[
                f"{account.id.lower()}|{spec.pool_id(family.name, snapshot_set.key.version)}"] = (
                    result.node_agent_sku_id)
    findings += image_rules.check_hyper_v_generation(
        os_member.hyper_v_generation if os_member else None, family.gallery.hyper_v_generation,
        [(spec.pool_id(family.name, snapshot_set.key.version), spec.vm_size) for spec in family.pools],
        snapshot_id=os_member.snapshot_id if os_member else None)
    pool_image = naming.family_pool_image_id(family, snapshot_set.key.version, context.settings.subscription_id)
    planned = image_rules.planned_pool_usages(family, snapshot_set.key.version, pool_image, snapshot_set.snapshot_ids)
    # No node-limit check here: the pools use the gallery image version, and Batch caps only pools created with a
    # managed image resource (quotas and limits page; the gallery doc lets gallery pools grow larger). The pool watch
    # enforces the managed-image cap at run time for the pre-existing managed-image pools it drives
    # (shared/watch/pool_limits.py).
    findings += image_rules.check_shared_image(planned)
    return _dedupe(findings), skus


def _dedupe(findings: list[image_rules.Finding]) -> list[image_rules.Finding]:
    seen, out = set(), []
    for finding in findings:
        if (finding.code, finding.message) not in seen:
            seen.add((finding.code, finding.message))
            out.append(finding)
    return out


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------


def _tags(snapshot_set: SnapshotSet, sources: Any = None) -> dict[str, str]:
    """The app's ownership tags (shared/core/ownership.py): the app, the set's key and what it is built from."""
    return ownership.app_tags(snapshot_set.key.family, snapshot_set.key.version,
                              snapshot_set.snapshot_ids if sources is None else sources)


def _version_sources(snapshot_set: SnapshotSet, image_id: str | None) -> list[str]:
    """What the gallery version is built from: the intermediate managed image, or the snapshots themselves."""
    return [image_id] if image_id is not None else list(snapshot_set.snapshot_ids)


def _name_taken(context: AppContext, snapshot_set: SnapshotSet, resource_id: str, why: str, *, kind: str) -> Outcome:
    """A resource the app did not build sits at a name it derives: never adopt, lock or delete it.

    The stage is left where it is (not refused for good): the sweep looks again, so the version is
    built as soon as the person frees the name, as the fix says.
    """
    key = snapshot_set.key
    diagnosis = (f"{kind} {resource_id} already exists at the name the app derives for {key}, but it is not the app's "
                 "own build "
                 f"of these snapshots: {why}. The app leaves it untouched (no reuse, lock or delete).")
    _alert(context, alerts.IMAGE_REFUSED, resource_id, f"Image {key} refused: {ownership.NAME_TAKEN}", diagnosis,
           ownership.name_taken_fix(resource_id, key.family, key.version, kind="pool" if kind == "pool" else "image"),
           dedupe=f"name-taken|{key}|{normalize(resource_id)}",
           details={"codes": [ownership.NAME_TAKEN], "family": key.family, "version": key.version,
                    "resources": [resource_id]})
    log.warning("%s: %s", key, diagnosis)
    return Outcome(REFUSED, f"{ownership.NAME_TAKEN}: {resource_id}")


def image_body(family: FamilyConfig, snapshot_set: SnapshotSet) -> dict[str, Any]:
    os_member = snapshot_set.os_member
    assert os_member is not None  # validated: the set has its OS disk
    return {
        "location": os_member.region,
        "tags": _tags(snapshot_set),
        "properties": {
            # Match the snapshot's generation: a mismatch makes every allocation fail later.
            "hyperVGeneration": os_member.hyper_v_generation or family.gallery.hyper_v_generation,
            "storageProfile": {
                "osDisk": {"osType": family.gallery.os_type, "osState": "Generalized",
                           "snapshot": {"id": os_member.snapshot_id}},
                "dataDisks": [{"lun": m.lun, "snapshot": {"id": m.snapshot_id}} for m in snapshot_set.data_members],
                "zoneResilient": False,
            },
        },
    }


def target_regions(context: AppContext, family: FamilyConfig) -> list[tuple[str, int]]:
    """(region, replicas) for the version: the gallery's own region, and every region with a target Batch account, each
    with one replica per ``nodesPerReplica`` of the pools there (Batch's gallery doc: a gallery image can be used from
    another region once it has replicas in the Batch account's region; at least one replica per 600 VMs, the app plans
    one per 300)."""
    nodes: dict[str, int] = {image_rules.normalize_region(family.gallery.location): 0}
    for spec in family.pools:
        region = image_rules.normalize_region(batch_accounts.get_account(context.clients, spec.account).location
                                              or family.gallery.location)
        nodes[region] = nodes.get(region, 0) + spec.peak_dedicated + spec.peak_spot
    return [(region, image_rules.replica_count(count, family.replicas.nodes_per_replica, family.replicas.minimum))
            for region, count in nodes.items()]


def gallery_version_body(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet,
                         image_id: str | None) -> dict[str, Any]:
    regions = target_regions(context, family)
    replicas = regions[0][1]  # the gallery's own region (the default for regions without a count)
    if image_id is not None:
        storage: dict[str, Any] = {"source": {"id": image_id}}
    else:
        os_member = snapshot_set.os_member
        assert os_member is not None
        storage = {
            "osDiskImage": {"source": {"id": os_member.snapshot_id}, "hostCaching": "ReadOnly"},
            "dataDiskImages": [{"lun": m.lun, "source": {"id": m.snapshot_id}, "hostCaching": "ReadOnly"}
                               for m in snapshot_set.data_members],
        }
    end_of_life = context.clock.now() + GALLERY_VERSION_LIFETIME
    return {
        "location": family.gallery.location,
        "tags": _tags(snapshot_set, _version_sources(snapshot_set, image_id)),
        "properties": {
            "publishingProfile": {
                # Plan one replica per 300 VMs (Batch's 2026 guidance for gallery images).
                "targetRegions": [{"name": family.gallery.location if i == 0 else region, "regionalReplicaCount": count,
                                   "storageAccountType": family.replicas.storage_account_type}
                                  for i, (region, count) in enumerate(regions)],
                "replicaCount": replicas,
                "excludeFromLatest": False,
                "endOfLifeDate": iso(end_of_life),
            },
            "storageProfile": storage,
            # Deletion protection where the API offers it; the guard's lock covers the rest.
            "safetyProfile": {"allowDeletionOfReplicatedLocations": False, "blockDeletionBeforeEndOfLife": True},
        },
    }


def pool_body(family: FamilyConfig, spec: PoolSpec, snapshot_set: SnapshotSet, pool_image_id: str, image_id: str | None,
              node_agent_sku_id: str, growth_step: int) -> dict[str, Any]:
    metadata = dict(spec.metadata_dict())
    metadata.update({
        pool_metadata.MANAGED: "true",
        pool_metadata.FAMILY: family.name,
        pool_metadata.VERSION: snapshot_set.key.version,
        pool_metadata.IMAGE_ID: pool_image_id,
        pool_metadata.SNAPSHOT_IDS: ",".join(snapshot_set.snapshot_ids),
        pool_metadata.DESIRED_DEDICATED: str(spec.dedicated),
        pool_metadata.DESIRED_SPOT: str(spec.spot),
        pool_metadata.DEALLOCATION: spec.node_deallocation_option.lower(),
        # Recorded on the pool: every later resize the watch issues uses it too, never less
        # (shared/watch/pool_policy.py).
        pool_metadata.RESIZE_TIMEOUT: str(spec.resize_timeout_minutes),
    })
    if image_id is not None and family.keep_managed_image:
        metadata[pool_metadata.MANAGED_IMAGE_ID] = image_id
    if spec.schedule:
        metadata[pool_metadata.SCHEDULE] = json.dumps([{"cron": s.cron, "dedicated": s.dedicated, "spot": s.spot}
                                                       for s in spec.schedule],
                                                      separators=(",", ":"))
    metadata.update(canary.metadata_for(family.canary_nodes))
    # One growth budget for both kinds, dedicated first, exactly as the watch's next_resize spends it.
    first_dedicated = min(spec.dedicated, growth_step)
    first_spot = min(spec.spot, growth_step - first_dedicated)
    # The canary first (shared/watch/canary.py): the pool grows past canaryNodes only once those nodes work.
    first_dedicated, first_spot = canary.first_target(first_dedicated, first_spot, family.canary_nodes)
    body: dict[str, Any] = {
        "properties": {
            "vmSize": spec.vm_size,
            "deploymentConfiguration": {"virtualMachineConfiguration": {
                "imageReference": {"id": pool_image_id}, "nodeAgentSkuId": node_agent_sku_id}},
            # Staged growth from the start: the first resize asks for at most one step; the pool
            # watch takes the pool the rest of the way (pools past 300 custom-image nodes may need
            # several resizes, per the Batch custom-image doc).
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": first_dedicated,
                                             "targetLowPriorityNodes": first_spot,
                                             "resizeTimeout": format_iso_duration(
                                                 timedelta(minutes=spec.resize_timeout_minutes)),
                                             "nodeDeallocationOption": spec.node_deallocation_option}},
            "metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())],
        }
    }
    if family.start_task is not None:
        body["properties"]["startTask"] = family.start_task.to_body()
    nat_pools = spec.nat_pools_for(family.gallery.os_type)
    if nat_pools:
        # Ranges Batch accepts (outside its reserved 50000-55000, >= 40 ports, no overlap): configured and
        # validated, or chosen by the app with one port per node of the pool's peak size (shared/pipeline/nat.py).
        body["properties"]["networkConfiguration"] = {
            "endpointConfiguration": {"inboundNatPools": [p.body() for p in nat_pools]}}
    return body


@dataclass(frozen=True)
class PoolsResult:
    names: tuple[str, ...]  # "{account}/{pool}" of every pool of the version that exists
    created: tuple[str, ...]  # those this call created
    missing: tuple[str, ...]  # pool resource ids Batch neither created nor has
    refused: tuple[batch_pools.PoolCreateRefused, ...] = ()  # pools Batch refused outright (400): no retry can help
    taken: tuple[tuple[str, str], ...] = ()  # (pool resource id, why) of pools at the derived id that are not the app's
    # "{account}/{pool}" of inPlace pools that exist on an earlier version: not created, the rollout moves them
    rolling: tuple[str, ...] = ()


def _ready_alert(context: AppContext, snapshot_set: SnapshotSet, version_id: str, pools: PoolsResult) -> Alert | None:
    """PoolsCreated for the pools that exist for this version. None when every pool is an inPlace pool still on an
    earlier version: nothing was created, and RolloutStarted says when the rollout moves them."""
    key = snapshot_set.key
    fresh = [n for n in pools.names if n not in pools.rolling]
    if not fresh:
        return None
    moving = (f"; {', '.join(pools.rolling)} keep their id and move to {key.version} in place (RolloutStarted says "
              "when)") if pools.rolling else ""
    return Alert(alerts.POOLS_CREATED, alerts.SEVERITY_INFO, version_id, f"Image {key} is ready: pools created",
                 f"gallery image version {version_id} was built from {len(snapshot_set.members)} snapshot(s); "
                 f"pools: {', '.join(fresh)}{moving}",
                 "nothing to do; the pool watch drives the pools to their targets", f"done|{key}",
                 context.clock.now(), {"pools": fresh, "family": key.family, "version": key.version})


def create_pools(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, version_id: str,
                 image_id: str | None,
                 skus: dict[str, str]) -> PoolsResult:
    pool_image_id = naming.family_pool_image_id(family, snapshot_set.key.version, context.settings.subscription_id)
    names, created, missing, refused, taken, rolling = [], [], [], [], [], []
    for spec in family.pools:
        account = batch_accounts.get_account(context.clients, spec.account)
        pool_id = spec.pool_id(family.name, snapshot_set.key.version)
        sku = spec.node_agent_sku_id or skus.get(f"{account.id.lower()}|{pool_id}")
        if not sku:
            raise RuntimeError(f"no nodeAgentSkuId for pool {pool_id}: set nodeAgentSkuId in the family's pool "
                               "configuration")
        body = pool_body(family, spec, snapshot_set, pool_image_id, image_id, sku, context.settings.growth_step_nodes)
        try:
            with permissions.writing(context, "Microsoft.Batch/batchAccounts/pools/write",
                                     f"{account.id}/pools/{pool_id}"):
                created_now = batch_pools.create_pool(context.clients, account, pool_id, body)
        except batch_pools.PoolCreateRefused as exc:
            refused.append(exc)
            continue
        if created_now:
            created.append(f"{account.name}/{pool_id}")
            log.info("created pool %s in %s from %s", pool_id, account.id, pool_image_id)
        else:
            existing = batch_pools.get_pool(context.clients, account, pool_id)
            if existing is None:
                # "Not created" must mean "already there": a refusal such as PoolQuotaReached is not success.
                missing.append(f"{account.id}/pools/{pool_id}")
                continue
            if why := ownership.pool_not_ours(existing, family.name, snapshot_set.key.version, pool_image_id,
                                              in_place=spec.in_place):
                taken.append((f"{account.id}/pools/{pool_id}", why))
                continue
            ran = pool_metadata.as_dict(existing.get("metadata")).get(pool_metadata.VERSION)
            if spec.in_place and ran != snapshot_set.key.version:
                rolling.append(f"{account.name}/{pool_id}")
        names.append(f"{account.name}/{pool_id}")
    return PoolsResult(tuple(names), tuple(created), tuple(missing), tuple(refused), tuple(taken), tuple(rolling))


# ---------------------------------------------------------------------------------------------
# State and small helpers
# ---------------------------------------------------------------------------------------------


def _load_stage(context: AppContext, key: SnapshotSetKey) -> Record | None:
    return context.state.table(PIPELINE).get(key.partition_key, key.row_key)


def _save_stage(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, **extra: str) -> Record:
    data = dict(row.data) if row else {}
    data.pop("released", None)
    data.update(extra)
    data.update({"stage": stage, "updatedAt": iso(context.clock.now())})
    saved = context.state.table(PIPELINE).save(key.partition_key, key.row_key, data, expected=row)
    if stage in TERMINAL:
        from shared.pipeline.set_membership import mark_open

        mark_open(context, key, False)  # finished: the sweep reads it no more (its rows wait for expiry)
    return saved


def _waiting_for(snapshot_set: SnapshotSet) -> str:
    """Which snapshots an incomplete set has and which are still not ready (not how far their copies are): a set that
    changes is a new situation, worth a new alert; one copy progressing is not."""
    text = json.dumps([sorted(normalize(i) for i in snapshot_set.snapshot_ids),
                       sorted(normalize(c.snapshot_id) for c in snapshot_set.pending),
                       snapshot_set.disk_count])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _attempt(snapshot_set: SnapshotSet) -> str:
    """Which snapshots (by id and creation) a run was about: a re-created snapshot is a new attempt, worth a new
    alert."""
    text = json.dumps([m.to_json() for m in snapshot_set.members], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _refuse(context: AppContext, snapshot_set: SnapshotSet, row: Record | None, subject: str,
            findings: list[image_rules.Finding]) -> Outcome:
    key = snapshot_set.key
    refusals = image_rules.refusals(findings)
    detail = "; ".join(f.message for f in refusals)
    # The key is the situation: these snapshots and these findings. A changed situation (another refusal after a
    # fix) is a new alert; the same one again (a re-tag without a fix) at most once an hour.
    situation = hashlib.sha256(
        json.dumps([_attempt(snapshot_set), [(f.code, f.message) for f in refusals]]).encode("utf-8")).hexdigest()[:16]
    alert = Alert(alerts.IMAGE_REFUSED, alerts.SEVERITY_WARNING, subject, f"Image {key} refused: {refusals[0].code}",
                  detail,
                  " / ".join(dict.fromkeys(f.fix for f in refusals)), f"refused|{key}|{situation}", context.clock.now(),
                  {"codes": [f.code for f in refusals], "family": key.family, "version": key.version,
                   "resources": sorted({f.resource_id for f in refusals if f.resource_id})},
                  repeat_after=timedelta(hours=1))
    _finish(context, key, row, REFUSED, detail[:4000], alert)
    return Outcome(REFUSED, detail)


def _fail(context: AppContext, snapshot_set: SnapshotSet, row: Record | None, resource_id: str, title: str, *,
          managed_image: bool = False) -> Outcome:
    key = snapshot_set.key
    if managed_image:
        fix = ("the failed intermediate managed image was deleted; fix the cause (a deleted snapshot, quota, "
               "a region), "
               "then re-tag one snapshot of the set (or re-create a deleted one) to retry")
    else:
        fix = ("check the resource's activity log; fix the cause (quota, a deleted snapshot, a region), then "
               "re-tag one "
               "snapshot of the set (or re-create a deleted one) to retry, or tag new snapshots with a new version")
    alert = Alert(alerts.IMAGE_BUILD_FAILED, alerts.SEVERITY_WARNING, resource_id, f"{title} ({key})",
                  f"{resource_id} ended in provisioningState Failed", fix,
                  f"failed|{key}|{normalize(resource_id)}|{_attempt(snapshot_set)}", context.clock.now(),
                  {"family": key.family, "version": key.version})
    row = _finish_stage_only(context, key, row, FAILED, f"{title}: {resource_id}", alert)
    if managed_image:
        # Nothing half-built stays behind: a Failed managed image is the app's own intermediate and holds nothing.
        # (A failed gallery version is left for inspection: its safety profile blocks deletion before end of life.)
        compute.start_image_delete(context.clients, resource_id)
    _flush_outbox(context, row)
    return Outcome(FAILED, resource_id)


def _pools_refused(context: AppContext, snapshot_set: SnapshotSet, row: Record | None, version_id: str,
                   refused: tuple[batch_pools.PoolCreateRefused, ...]) -> Outcome:
    """Batch refused a pool outright (400): one alert quoting Batch's code and message, and a terminal stage, so that
    neither redelivery nor the sweep asks again for what Batch will refuse again."""
    key = snapshot_set.key
    said = "; ".join(f"pool {r.pool_id}: {r.code}: {r.message}" for r in refused)
    alert = Alert(alerts.IMAGE_BUILD_FAILED, alerts.SEVERITY_WARNING, version_id,
                  f"Batch refused to create pool(s) {', '.join(r.pool_id for r in refused)} ({key}): {refused[0].code}",
                  f"gallery image version {version_id} is ready, but Batch answered the pool create with "
                  f"{refused[0].status}: {said}. "
                  "Retrying the same request cannot succeed, so the pipeline does not retry it.",
                  "fix the pool's configuration in the family (AUTOPILOT_FAMILIES) as Batch's message says, then "
                  "re-create the "
                  "snapshot(s) of the set (or tag snapshots with a new version) to create the pools again",
                  f"refusedpool|{key}|{_attempt(snapshot_set)}", context.clock.now(),
                  {"family": key.family, "version": key.version, "codes": [r.code for r in refused],
                   "pools": [r.pool_id for r in refused], "messages": [r.message for r in refused]})
    row = _finish_stage_only(context, key, row, FAILED, f"pool create refused: {said}"[:4000], alert)
    _flush_outbox(context, row)
    return Outcome(FAILED, said)


def _finish_stage_only(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, detail: str,
                       alert: Alert | None) -> Record:
    """Reach a terminal stage and queue its alert in the same row write (an outbox): the alert goes out even when
    sending fails now, from the redelivered event or the sweep, and never twice (the alerts table de-duplicates)."""
    if alert is None:
        return _save_stage(context, key, row, stage, detail=detail)
    return _save_stage(context, key, row, stage, detail=detail,
                       outbox=json.dumps(_alert_json(alert), separators=(",", ":")))


def _finish(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, detail: str,
            alert: Alert | None) -> Record:
    return _flush_outbox(context, _finish_stage_only(context, key, row, stage, detail, alert))


def _flush_outbox(context: AppContext, row: Record) -> Record:
    raw = row.data.get("outbox")
    if not raw:
        return row
    alert = _alert_from_json(json.loads(raw))
    sent = AlertPublisher(context).publish(alert)  # raises when the topic refuses: the row keeps the outbox
    # False means "already sent", or "another instance claimed it moments ago" (the alerts table hands a
    # claim over once it is STALE_CLAIM old): keep the outbox until that can no longer be the case.
    if sent or context.clock.now() - alert.occurred_at >= alerts.STALE_CLAIM:
        data = {k: v for k, v in row.data.items() if k != "outbox"}
        try:
            return context.state.table(PIPELINE).replace(row, data)
        except ConcurrencyConflict:
            return row  # someone else flushed (or reopened) it
    return row


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {"type": alert.type, "severity": alert.severity, "subject": alert.subject, "title": alert.title,
            "diagnosis": alert.diagnosis,
            "fix": alert.fix, "dedupe": alert.dedupe_key, "at": iso(alert.occurred_at), "details": alert.details,
            "repeatAfter": alert.repeat_after.total_seconds() if alert.repeat_after is not None else None}


def _alert_from_json(data: dict[str, Any]) -> Alert:
    occurred = parse_iso(data["at"])
    assert occurred is not None
    repeat = data.get("repeatAfter")
    return Alert(data["type"], data["severity"], data["subject"], data["title"], data["diagnosis"], data["fix"],
                 data["dedupe"], occurred,
                 dict(data.get("details") or {}), repeat_after=timedelta(seconds=float(repeat)) if repeat else None)


def _alert(context: AppContext, kind: str, subject: str, title: str, diagnosis: str, fix: str, *, dedupe: str,
           severity: str = alerts.SEVERITY_WARNING, details: dict[str, Any] | None = None) -> None:
    AlertPublisher(context).publish(Alert(kind, severity, subject, title, diagnosis, fix, dedupe, context.clock.now(),
                                          details or {}))


def _provisioning_state(resource: dict[str, Any] | None) -> str:
    return str(((resource or {}).get("properties") or {}).get("provisioningState") or "").lower()


def _ensure_image_definition(context: AppContext, family: FamilyConfig) -> str | None:
    """Start creating the family's gallery image definition when it is missing; never wait for it.

    Returns None when the definition is ready, else what it is waiting for (the sweep comes back).
    """
    gallery = family.gallery
    where = (gallery.resource_group, gallery.name, gallery.image_definition)
    definition = compute.get_gallery_image(context.clients, *where, gallery.subscription)
    if definition is None:
        body = {"location": gallery.location, "properties": {
            "osType": gallery.os_type, "osState": gallery.os_state, "hyperVGeneration": gallery.hyper_v_generation,
            "identifier": {"publisher": "batch-image-autopilot", "offer": family.name,
                           "sku": gallery.image_definition}}}
        definition_id = (f"/subscriptions/{gallery.subscription or context.settings.subscription_id}/resourceGroups"
                         f"/{gallery.resource_group}"
                         f"/providers/Microsoft.Compute/galleries/{gallery.name}/images/{gallery.image_definition}")
        with permissions.writing(context, "Microsoft.Compute/galleries/images/write", definition_id):
            compute.start_gallery_image_create(context.clients, *where, body, gallery.subscription)
        definition = compute.get_gallery_image(context.clients, *where, gallery.subscription)
        if definition is None:
            return "not visible yet"
    props = definition.get("properties") or {}
    if not same_id(str(props.get("osState", "")), "Generalized"):
        raise RuntimeError(f"gallery image definition {gallery.image_definition} is {props.get('osState')}; Batch "
                           "needs Generalized images")
    state = str(props.get("provisioningState") or "").lower()
    if state == "failed":
        raise RuntimeError(f"gallery image definition {gallery.image_definition} is in provisioningState Failed; "
                           "delete it so that the "
                           "pipeline can create it again")
    return None if state in ("succeeded", "") else state
