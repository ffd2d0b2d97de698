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
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.config.families import FamilyConfig, parse_families
from shared.core import alerts, ownership, permissions
from shared.core import state_expiry as retention
from shared.core.clock import iso, parse_iso
from shared.core.context import AppContext
from shared.core.resource_ids import normalize, same_id
from shared.core.state import PIPELINE, SNAPSHOT_SETS, ConcurrencyConflict, Record
from shared.pipeline import image_rules, naming, scope, snapshot_sets
from shared.pipeline.outcomes import fail, name_taken, pools_refused, refuse, waiting_for
from shared.pipeline.pool_creation import PoolsResult, create_pools, ready_alert
from shared.pipeline.request_bodies import gallery_version_body, image_body, version_sources
from shared.pipeline.snapshot_sets import SnapshotSet, SnapshotSetKey
from shared.pipeline.snapshot_tags import TAG_FAMILY, TAG_VERSION
from shared.pipeline.stage_record import (
    TERMINAL,
    Outcome,
    Stage,
    finish,
    flush_outbox,
    load_stage,
    provisioning_state,
    publish_alert,
    save_stage,
)
from shared.pipeline.validation import validate
from shared.resources import compute

log = logging.getLogger("autopilot.pipeline")

MANAGED_BY_TAG = ownership.MANAGED_BY_TAG
MANAGED_BY = ownership.MANAGED_BY
CLAIM_RETRIES = 5
# A claimed create whose resource is still not there after this long was never sent (the instance
# died between claiming and calling Azure): the next event or sweep sends it again.
CLAIM_GRACE = timedelta(minutes=2)


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
    publish_alert(context, alerts.IMAGE_REFUSED, snapshot_id, f"Snapshot refused for family {family.name}: {code}",
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
                flush_outbox(context, row)
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
            publish_alert(context, alerts.SNAPSHOT_SET_INCOMPLETE, first,
                          f"Snapshot set {snapshot_set.key} is incomplete",
                   f"{snapshot_sets.describe(snapshot_set)}; still missing: {missing}",
                   "snapshot the missing disk(s) and tag them with the same autopilot.family and autopilot.version, "
                   "or correct autopilot.diskCount; a snapshot still copying joins the set by itself when its "
                   "copy completes",
                   dedupe=f"incomplete|{snapshot_set.key}|{waiting_for(snapshot_set)}",
                   severity=alerts.SEVERITY_WARNING, details={"missing": missing})
        return None
    stage = load_stage(context, snapshot_set.key)
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
    if load_stage(context, key) is None and retention.built_before(context, key.partition_key, key.row_key):
        # Built long ago; its rows expired (a re-tag of an old set): never built twice, and not open work for the sweep.
        from shared.pipeline.set_membership import mark_open

        mark_open(context, key, False)
        return Outcome(Stage.DONE, f"{key} was built before (tombstone); its state expired")
    for _ in range(CLAIM_RETRIES):
        # Read inside the loop: a set whose membership changed meanwhile is judged as it is now.
        record = context.state.table(SNAPSHOT_SETS).get(key.partition_key, key.row_key)
        if record is None:
            return Outcome(Stage.ASSEMBLING, "no snapshots yet")
        snapshot_set = snapshot_sets.from_entity(record.data)
        if not snapshot_sets.is_complete(snapshot_set):
            return Outcome(Stage.ASSEMBLING, "waiting for " + ", ".join(snapshot_sets.missing(snapshot_set)))
        try:
            return _advance_once(context, family, snapshot_set, record)
        except ConcurrencyConflict:
            continue  # another instance moved the stage (or the set changed): re-read and carry on from there
    return Outcome("busy", "another instance is advancing this version")


@dataclass
class _Build:
    """One pass over a complete set: what every stage reads, and the version's row, which the stages move on."""

    context: AppContext
    family: FamilyConfig
    snapshot_set: SnapshotSet
    set_record: Record | None
    version_id: str
    image_id: str | None  # the intermediate managed image; None when the snapshots go straight into the gallery
    row: Record | None

    @property
    def key(self) -> SnapshotSetKey:
        return self.snapshot_set.key


# A stage either ends this pass (an Outcome: waiting for Azure, or a terminal stage) or hands over to the next one.
StageStep = Callable[[_Build], "Outcome | Stage"]


def _advance_once(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet,
                  set_record: Record | None = None) -> Outcome:
    key = snapshot_set.key
    sub = context.settings.subscription_id
    row = load_stage(context, key)
    stage = row.data.get("stage", Stage.ASSEMBLING) if row else Stage.ASSEMBLING
    if stage in TERMINAL:
        assert row is not None
        if row.data.get("outbox"):
            flush_outbox(context, row)  # the terminal alert did not go out when the stage was reached
        return Outcome(stage, row.data.get("detail", ""))
    build = _Build(context, family, snapshot_set, set_record,
                   version_id=naming.family_gallery_version_id(family, key.version, sub),
                   image_id=naming.family_managed_image_id(family, key.version, sub)
                   if family.builds_managed_image else None,
                   row=row)
    while (step := _STAGES.get(stage)) is not None:
        result = step(build)
        if isinstance(result, Outcome):
            return result
        stage = result
    return Outcome(stage)


def _assembling(b: _Build) -> Outcome | Stage:
    """Every snapshot still there and every check passed: the members are frozen and the build may start."""
    context, key = b.context, b.key
    gone = [m.snapshot_id for m in b.snapshot_set.members
            if compute.get_snapshot(context.clients, m.snapshot_id) is None]
    if gone:
        return refuse(context, b.snapshot_set, b.row, b.version_id, [image_rules.Finding(
            image_rules.REFUSE, "SNAPSHOT_DELETED", gone[0],
            f"snapshot(s) {', '.join(gone)} were deleted before the image was built",
            "re-create the snapshot(s) from the prepared VM's disks and tag them again")])
    findings, skus = validate(context, b.family, b.snapshot_set, b.version_id, b.image_id)
    findings += scope.live_version_findings(context, b.family, key, PIPELINE,
                                            counted=(Stage.VALIDATED, Stage.IMAGE_REQUESTED,
                                                     Stage.VERSION_REQUESTED, Stage.DONE),
                                            built=Stage.DONE)
    if image_rules.has_refusal(findings):
        return refuse(context, b.snapshot_set, b.row, b.version_id, findings)
    for warning in image_rules.warnings(findings):
        log.warning("%s: %s (%s)", key, warning.message, warning.fix)
    if b.set_record is not None:
        from shared.pipeline.set_membership import freeze

        freeze(context, b.set_record)  # the members are fixed from here on; a change since the read starts over
    b.row = save_stage(context, key, b.row, Stage.VALIDATED, nodeAgentSkus=json.dumps(skus))
    return Stage.VALIDATED


def _validated(b: _Build) -> Outcome | Stage:
    """Start the intermediate managed image (when the family builds one)."""
    if b.image_id is None:
        return Stage.IMAGE_REQUESTED  # snapshots straight into the gallery: no managed image
    image = compute.get_image(b.context.clients, b.image_id)
    if image is not None and (why := ownership.image_not_ours(image, b.key.family, b.key.version,
                                                              b.snapshot_set.snapshot_ids)):
        return name_taken(b.context, b.snapshot_set, b.image_id, why, kind="managed image")
    if image is None or provisioning_state(image) == "failed":  # failed: a retry after the set changed
        return _start_image(b, Stage.VALIDATED)
    return Stage.IMAGE_REQUESTED


def _image_requested(b: _Build) -> Outcome | Stage:
    """Wait for the managed image (if any) and the gallery image definition, then start the gallery version."""
    context, key = b.context, b.key
    if b.image_id is not None and (waiting := _image_not_built(b)) is not None:
        return waiting
    definition_waits = _ensure_image_definition(context, b.family)
    if definition_waits is not None:  # its creation raises no event the app subscribes to: the sweep comes back
        return Outcome(Stage.IMAGE_REQUESTED,
                       f"gallery image definition {b.family.gallery.image_definition} is {definition_waits}")
    existing = compute.get_gallery_image_version(context.clients, b.version_id)
    if existing is not None and (why := ownership.version_not_ours(existing, key.family, key.version,
                                                                   version_sources(b.snapshot_set, b.image_id))):
        return name_taken(context, b.snapshot_set, b.version_id, why, kind="gallery image version")
    if existing is None or provisioning_state(existing) == "failed":  # failed: a retry after the set changed
        return _start_version(b)
    b.row = save_stage(context, key, b.row, Stage.VERSION_REQUESTED)
    return Stage.VERSION_REQUESTED


def _image_not_built(b: _Build) -> Outcome | None:
    """None once the managed image is built; else why this pass stops (still building, failed, not ours)."""
    assert b.image_id is not None
    image = compute.get_image(b.context.clients, b.image_id)
    if image is not None and (why := ownership.image_not_ours(image, b.key.family, b.key.version,
                                                              b.snapshot_set.snapshot_ids)):
        return name_taken(b.context, b.snapshot_set, b.image_id, why, kind="managed image")
    state = provisioning_state(image)
    if image is None and _claim_is_stale(b.context, b.row):
        # Claimed, but the create never reached Azure (the instance died in between): send it again.
        return _start_image(b, Stage.IMAGE_REQUESTED)
    if image is None or state in ("creating", "updating", ""):
        return Outcome(Stage.IMAGE_REQUESTED, f"image {b.image_id} is {state or 'not visible yet'}")
    if state == "failed":
        return fail(b.context, b.snapshot_set, b.row, b.image_id, "The managed image could not be built",
                    managed_image=True)
    return None


def _version_requested(b: _Build) -> Outcome | Stage:
    """Wait for the gallery version, then create the pools, lock what they use, and finish."""
    context, key = b.context, b.key
    gallery_version = compute.get_gallery_image_version(context.clients, b.version_id)
    if gallery_version is not None and (why := ownership.version_not_ours(
            gallery_version, key.family, key.version, version_sources(b.snapshot_set, b.image_id))):
        return name_taken(context, b.snapshot_set, b.version_id, why, kind="gallery image version")
    state = provisioning_state(gallery_version)
    if gallery_version is None and _claim_is_stale(context, b.row):
        return _start_version(b)
    if gallery_version is None or state in ("creating", "updating", ""):
        return Outcome(Stage.VERSION_REQUESTED, f"gallery version {b.version_id} is {state or 'not visible yet'}")
    if state == "failed":
        return fail(context, b.snapshot_set, b.row, b.version_id, "The gallery image version could not be built")
    skus = json.loads(b.row.data.get("nodeAgentSkus") or "{}") if b.row else {}
    if b.image_id is not None and not b.family.keep_managed_image and not b.family.legacy_managed_image_pools:
        # Before the pools exist: once a pool uses the version, the guard locks the version's
        # source image too, and the delete would be refused (ScopeLocked) for as long as it lives.
        _drop_intermediate_image(context, b.image_id, b.snapshot_set)
    pools = create_pools(context, b.family, b.snapshot_set, b.version_id, b.image_id, skus)
    if (not_yet := _pools_not_ready(b, pools)) is not None:
        return not_yet
    return _done(b, pools)


def _pools_not_ready(b: _Build, pools: PoolsResult) -> Outcome | None:
    """None when every pool of the version exists and is the app's; else the outcome that says which is not."""
    context, key = b.context, b.key
    if pools.refused:
        return pools_refused(context, b.snapshot_set, b.row, b.version_id, pools.refused)
    if pools.taken:
        for pool_path, why in pools.taken:
            name_taken(context, b.snapshot_set, pool_path, why, kind="pool")
        return Outcome(Stage.VERSION_REQUESTED, f"pool id(s) taken: {', '.join(p for p, _ in pools.taken)}")
    if pools.missing:
        # Batch answered the create without creating the pool (e.g. the account's pool quota): not done.
        # The sweep tries again; the alert says what to fix.
        for pool_path in pools.missing:
            publish_alert(context, alerts.IMAGE_BUILD_FAILED, pool_path,
                          f"Pool {pool_path.rsplit('/', 1)[-1]} could not be created ({key})",
                          f"gallery image version {b.version_id} is ready, but Batch did not create pool {pool_path}",
                          "check the Batch account's pool quota and the pool configuration in the family; the "
                          "pipeline retries "
                          "at every sweep", dedupe=f"pool|{key}|{normalize(pool_path)}")
        return Outcome(Stage.VERSION_REQUESTED, f"pool(s) not created: {', '.join(pools.missing)}")
    return None


def _done(b: _Build, pools: PoolsResult) -> Outcome:
    """The pools exist: lock what they use now (not at the next tick), then reach ``done`` with its alert."""
    context, key, snapshot_set = b.context, b.key, b.snapshot_set
    names = ", ".join(pools.names)
    detail = (f"pools: {names}"
              + (f" (created now: {', '.join(pools.created)})" if pools.created != pools.names else ""))
    done = ready_alert(context, snapshot_set, b.version_id, pools)
    from shared.guard.reconcile import reconcile  # lock what the new pools use now, not at the next tick

    report = reconcile(context)
    built = {normalize(r) for r in (b.version_id, b.image_id, *snapshot_set.snapshot_ids) if r}
    unlocked = sorted(r for r in report.failed if normalize(r) in built)
    if unlocked:
        # Pools on an unprotected image are one delete away from AllocationFailed: not done until it is locked.
        # (A 401/403 already raised PermissionDenied; the sweep locks and finishes once the role is granted.)
        return Outcome(Stage.VERSION_REQUESTED, f"pools created, but could not lock {', '.join(unlocked)}")
    finish(context, key, b.row, Stage.DONE, detail, done)
    return Outcome(Stage.DONE, names)


def _start_image(b: _Build, from_stage: Stage) -> Outcome:
    assert b.image_id is not None
    image_id = b.image_id
    return _request(b.context, b.key, b.row, from_stage, Stage.IMAGE_REQUESTED, image_id,
                    lambda: compute.start_image_create(b.context.clients, image_id,
                                                       image_body(b.family, b.snapshot_set)))


def _start_version(b: _Build) -> Outcome:
    return _request(b.context, b.key, b.row, Stage.IMAGE_REQUESTED, Stage.VERSION_REQUESTED, b.version_id,
                    lambda: compute.start_gallery_image_version_create(
                        b.context.clients, b.version_id,
                        gallery_version_body(b.context, b.family, b.snapshot_set, b.image_id)))


_STAGES: dict[str, StageStep] = {
    Stage.ASSEMBLING: _assembling,
    Stage.VALIDATED: _validated,
    Stage.IMAGE_REQUESTED: _image_requested,
    Stage.VERSION_REQUESTED: _version_requested,
}


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
    claimed = save_stage(context, key, row, to_stage)
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
            save_stage(context, key, claimed, from_stage, released="true")
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
    return ours and provisioning_state(existing) in ("creating", "updating", "succeeded")


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
