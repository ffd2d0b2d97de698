"""Which snapshots a set holds: what their tags say *now*, however the tags were written.

A snapshot's tags change through a write of the snapshot itself (``Microsoft.Compute/snapshots/write``:
creating it, ``az snapshot update``, Azure Policy's Modify effect) or through the Tags API
(``Microsoft.Resources/tags/write`` and, for "remove all tags", ``Microsoft.Resources/tags/delete``: the
portal's Tags blade, ``az tag update``, ``Update-AzTag``). Either event, and a snapshot's delete, lands in
:func:`on_snapshot_event`, which re-reads the snapshot and then every set that holds or wants it:

* a set that is not built yet holds exactly the snapshots whose tags claim it now; a snapshot that was
  re-tagged elsewhere, untagged or deleted leaves it, and a snapshot can move between sets;
* conflicts (a disk claimed twice, disagreeing disk counts, too many disks) are judged on those current
  candidates only, so the fix a conflict alert gives ends the conflict by itself;
* a snapshot that is not ready (still ``Creating``, or a CopyStart copy below ``completionPercent`` 100) is
  remembered and re-read by every sweep until it is ready or gone;
* once the image is being built, the members are fixed (:func:`freeze`); later tag changes to them are
  reported (``SnapshotSetChanged``), never acted on.

Decisions are pure (:func:`shared.pipeline.snapshot_sets.resolve`); this module reads Azure and the table around them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.core import alerts, permissions
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import parse_iso
from shared.core.context import AppContext
from shared.core.resource_ids import normalize, same_id
from shared.core.state import PIPELINE, SNAPSHOT_SETS, ConcurrencyConflict, Record
from shared.pipeline import snapshot_sets
from shared.pipeline.snapshot_sets import Candidate, SnapshotSet, SnapshotSetKey
from shared.pipeline.snapshot_tags import TAG_FAMILY, SnapshotTagError, parse_tags
from shared.resources import compute

log = logging.getLogger("autopilot.set_membership")

RETRIES = 5
ALERT_REPEAT = timedelta(hours=1)  # the same alert about the same situation at most once an hour
# Pipeline stages (shared.pipeline.stages) in which the image is being built or was built: members are fixed.
BUILDING_STAGES = ("image-requested", "version-requested", "done")
REOPENABLE_STAGES = ("refused", "failed")


@dataclass(frozen=True)
class Observation:
    """What one snapshot's tags claim now."""

    snapshot_id: str
    exists: bool
    key: SnapshotSetKey | None = None  # the set its tags claim (None: gone, untagged or bad tags)
    candidate: Candidate | None = None
    tag_error: SnapshotTagError | None = None
    tags: dict[str, str] | None = None


def situation_key(code: str, *parts: object) -> str:
    """An alert's de-duplication key: the code and a short hash of the situation (bounded, whatever the input)."""
    text = json.dumps([str(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return f"{code}|{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def _publish(context: AppContext, kind: str, subject: str, title: str, diagnosis: str, fix: str, dedupe: str,
             details: dict[str, Any] | None = None, severity: str = alerts.SEVERITY_WARNING) -> None:
    AlertPublisher(context).publish(Alert(kind, severity, subject, title, diagnosis, fix, dedupe, context.clock.now(),
                                          details or {},
                                          repeat_after=ALERT_REPEAT))


def readiness(snapshot: dict[str, Any]) -> tuple[bool, str]:
    """Ready = provisioningState Succeeded and, where reported, completionPercent 100 (CopyStart copies)."""
    props = snapshot.get("properties") or {}
    state = str(props.get("provisioningState") or "")
    if state and state.lower() != "succeeded":
        return False, state
    percent = props.get("completionPercent")
    if isinstance(percent, int | float) and percent < 100:
        return False, f"still copying ({percent:.0f}% done)"
    return True, ""


def observe(context: AppContext, snapshot_id: str) -> Observation:
    """Re-read one snapshot (never trusting an event) and say which set its tags claim.

    Only snapshots inside a family's scope are read (the pipeline checks before): a 401/403 here is a missing
    role, so it raises PermissionDenied and fails the invocation for Event Grid or the sweep to try again.
    """
    with permissions.writing(context, "Microsoft.Compute/snapshots/read", snapshot_id):
        snapshot = compute.get_snapshot(context.clients, snapshot_id)
    if snapshot is None:
        return Observation(snapshot_id, exists=False)
    tags = dict(snapshot.get("tags") or {})
    try:
        parsed = parse_tags(tags)
    except SnapshotTagError as exc:
        return Observation(snapshot.get("id") or snapshot_id, exists=True, tag_error=exc, tags=tags)
    if parsed is None:
        return Observation(snapshot.get("id") or snapshot_id, exists=True, tags=tags)
    ready, state = readiness(snapshot)
    member = snapshot_sets.member_from_snapshot(snapshot, parsed)
    return Observation(member.snapshot_id, exists=True, key=SnapshotSetKey(parsed.family, parsed.version),
                       candidate=Candidate(member, ready, state), tags=tags)


def stage_of(context: AppContext, key: SnapshotSetKey) -> Record | None:
    return context.state.table(PIPELINE).get(key.partition_key, key.row_key)


def is_frozen(snapshot_set: SnapshotSet, stage: Record | None) -> bool:
    name = stage.data.get("stage") if stage else None
    if name in REOPENABLE_STAGES:
        return False  # refused or failed: not built, so what the tags say counts again
    return name in BUILDING_STAGES or snapshot_set.frozen


def sets_holding(context: AppContext, snapshot_id: str) -> list[SnapshotSetKey]:
    """Every stored set that counts ``snapshot_id`` among its candidates."""
    wanted = normalize(snapshot_id)
    out = []
    for record in context.state.table(SNAPSHOT_SETS).query():
        ids = str(record.data.get("candidateIds") or record.data.get("snapshotIds") or "")
        if wanted in ids.split(","):
            try:
                out.append(SnapshotSetKey(str(record.data["family"]), str(record.data["version"])))
            except (KeyError, ValueError):
                continue
    return out


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventResult:
    key: SnapshotSetKey | None  # the set the snapshot's tags claim now (advance it)
    stage: str  # "ignored" | "refused" | "recorded"
    detail: str


def on_snapshot_event(context: AppContext, snapshot_id: str, *, event_time: datetime | None = None,
                      configured: Any = None, refusal: Any = None) -> EventResult:
    """A snapshot was written, re-tagged (either way), untagged or deleted: bring every set it touches up to date.

    ``configured(family) -> bool`` says whether a family exists (None: every family does).
    ``refusal(family, snapshot_id) -> str | None`` says why the snapshot may not join a configured family's set
    (opt-in scope, allowed principals; it alerts itself), or None when it may: a refused snapshot still leaves
    the sets it was in, but joins none.
    """
    observation = observe(context, snapshot_id)
    touched = {k for k in sets_holding(context, observation.snapshot_id) if k != observation.key}
    for key in sorted(touched, key=str):
        refresh(context, key, cache={normalize(observation.snapshot_id): observation}, event_time=event_time,
                about=observation.snapshot_id)
    if observation.tag_error is not None:
        exc = observation.tag_error
        _publish(context, alerts.IMAGE_REFUSED, observation.snapshot_id, f"Snapshot tags are invalid: {exc.tag}",
                 str(exc),
                 f"fix the tag on the snapshot, for example {exc.tag}={exc.example} (a write of the snapshot or "
                 "of its tags "
                 "re-runs the checks), or remove its autopilot.* tags", situation_key("BAD_TAGS",
                                                                                      observation.snapshot_id,
                                                                                  json.dumps(observation.tags,
                                                                                             sort_keys=True)))
        return EventResult(None, "refused", str(exc))
    if observation.key is None or observation.candidate is None:
        why = "deleted" if not observation.exists else "not opted in (no autopilot.family tag)"
        return EventResult(None, "ignored", f"snapshot {observation.snapshot_id} is {why}" if touched else why)
    key = observation.key
    if configured is not None and not configured(key.family):
        _publish(context, alerts.IMAGE_REFUSED, observation.snapshot_id, f"Unknown image family {key.family!r}",
                 f"snapshot {observation.snapshot_id} is tagged {TAG_FAMILY}={key.family}, but no such family is "
                 "configured",
                 "add the family to the families configuration (AUTOPILOT_FAMILIES or AUTOPILOT_FAMILIES_FILE; see "
                 "docs/families.example.json): the next sweep builds the set; or correct the tag",
                 situation_key("UNKNOWN_FAMILY", observation.snapshot_id, key.family))
    elif refusal is not None and (why := refusal(key.family, observation.snapshot_id)):
        return EventResult(None, "refused", why)
    refresh(context, key, cache={normalize(observation.snapshot_id): observation}, add=observation.candidate,
            event_time=event_time,
            about=observation.snapshot_id)
    return EventResult(key, "recorded", f"{observation.snapshot_id} claims {key}")


# ---------------------------------------------------------------------------------------------
# Re-reading a set
# ---------------------------------------------------------------------------------------------


def refresh(context: AppContext, key: SnapshotSetKey, *, cache: dict[str, Observation] | None = None,
            add: Candidate | None = None,
            event_time: datetime | None = None, about: str | None = None) -> SnapshotSet | None:
    """Re-read every snapshot the set counts (plus ``add``) and store the set as their tags say it is now.

    A set being built keeps its members: a change is reported, never applied. A refused or failed set whose
    members change gets a fresh run; so does one a person re-tagged after the refusal (``event_time`` later than it).
    ``about``: the snapshot an event is about (None: the sweep). Only an event about one of its snapshots makes a set
    being built report a change; the sweep leaves such sets alone. Returns the stored set (None when no snapshot
    claims it any more).
    """
    table = context.state.table(SNAPSHOT_SETS)
    seen: dict[str, Observation] = dict(cache or {})

    def look(snapshot_id: str) -> Observation:
        k = normalize(snapshot_id)
        if k not in seen:
            seen[k] = observe(context, snapshot_id)
        return seen[k]

    for _ in range(RETRIES):
        record = table.get(key.partition_key, key.row_key)
        stored = snapshot_sets.from_entity(record.data) if record else None
        stage = stage_of(context, key)
        if stored is not None and is_frozen(stored, stage):
            if about is not None:
                _report_changes(context, stored, look, about, add)
            return stored
        ids = [c.snapshot_id for c in stored.all_candidates] if stored else []
        if add is not None and not any(same_id(add.snapshot_id, i) for i in ids):
            ids.append(add.snapshot_id)
        candidates = []
        for snapshot_id in ids:
            observation = look(snapshot_id)
            if observation.key == key and observation.candidate is not None:
                candidates.append(observation.candidate)
        now = context.clock.now()
        fresh = snapshot_sets.resolve(key, candidates, stored.started_at if stored else None, now)
        retagged = stage is not None and stage.data.get("stage") in REOPENABLE_STAGES and event_time is not None \
            and add is not None and fresh is not None and fresh.member(add.snapshot_id) is not None \
            and _after(event_time, stage.data.get("updatedAt"))
        if snapshot_sets.same_membership(stored, fresh):
            if retagged and stage is not None:
                _reopen(context, key, stage)
            return stored
        try:
            if fresh is None:
                if record is not None:
                    table.delete(record)
            else:
                table.save(key.partition_key, key.row_key, snapshot_sets.to_entity(fresh), expected=record)
        except ConcurrencyConflict:
            continue
        changed = stored is not None and fresh is not None and stored.members != fresh.members
        # A fresh run once there is something new to check: the set changed and is complete again, or a person
        # re-tagged.
        if (retagged or (changed and snapshot_sets.is_complete(fresh))) and stage is not None \
                and stage.data.get("stage") in REOPENABLE_STAGES:
            _reopen(context, key, stage)
        _announce(context, key, stored, fresh, seen,
                  terminal=stage is not None and stage.data.get("stage") in REOPENABLE_STAGES)
        return fresh
    raise ConcurrencyConflict(f"could not bring snapshot set {key} up to date after {RETRIES} tries")


def _after(event_time: datetime, stage_time: object) -> bool:
    stamped = parse_iso(stage_time) if isinstance(stage_time, str) else None
    return stamped is None or event_time > stamped


def _reopen(context: AppContext, key: SnapshotSetKey, stage: Record) -> None:
    """A refused or failed version gets a fresh run of the checks (its stage row is the only thing to forget), and its
    set is open work again for the sweep."""
    with contextlib.suppress(ConcurrencyConflict):  # someone else reopened or advanced it meanwhile
        context.state.table(PIPELINE).delete(stage)
    mark_open(context, key, True)


def mark_open(context: AppContext, key: SnapshotSetKey, is_open: bool) -> None:
    """Set the set row's ``open`` column, which the sweep filters on (server side): a version that reached a terminal
    stage is closed, so the sweep no longer reads it; its row waits for expiry (shared/core/state_expiry.py). A write
    lost to a concurrent one is retried; a set row that is gone needs nothing."""
    table = context.state.table(SNAPSHOT_SETS)
    for _ in range(RETRIES):
        record = table.get(key.partition_key, key.row_key)
        if record is None or bool(record.data.get(snapshot_sets.OPEN_COLUMN)) == is_open:
            return
        try:
            table.replace(record, {**record.data, snapshot_sets.OPEN_COLUMN: is_open})
            return
        except ConcurrencyConflict:
            continue


def _announce(context: AppContext, key: SnapshotSetKey, before: SnapshotSet | None, after: SnapshotSet | None,
              seen: dict[str, Observation], *, terminal: bool = False) -> None:
    """Alert on what a person must act on: a new conflict, and a member deleted before the image was built."""
    old_conflicts = set(before.conflicts) if before else set()
    for conflict in after.conflicts if after else ():
        if conflict in old_conflicts:
            continue
        subject = conflict.snapshot_ids[-1] if conflict.snapshot_ids else str(key)
        _publish(context, alerts.IMAGE_REFUSED, subject, f"Conflicting snapshots for {key}",
                 f"snapshot set {key}: {conflict.message}", conflict.fix,
                 situation_key(conflict.code, str(key), *sorted(normalize(i) for i in conflict.snapshot_ids),
                               conflict.message),
                 {"codes": [conflict.code], "family": key.family, "version": key.version,
                  "resources": list(conflict.snapshot_ids)})
    if before is None or terminal:
        return  # a refused or failed version already told the person what happened
    for member in before.members:
        observation = seen.get(normalize(member.snapshot_id))
        if observation is not None and not observation.exists:
            _publish(context, alerts.IMAGE_REFUSED, member.snapshot_id, f"Image {key} refused: SNAPSHOT_DELETED",
                     f"snapshot {member.snapshot_id} ({member.label}) was deleted before the image was built; the set "
                     "now waits for "
                     f"{member.label} again",
                     "re-create the snapshot from the prepared VM's disk and tag it again (the same name and "
                     "tags will do)",
                     situation_key("SNAPSHOT_DELETED", str(key), normalize(member.snapshot_id),
                                   member.time_created or ""),
                     {"codes": ["SNAPSHOT_DELETED"], "family": key.family, "version": key.version,
                      "resources": [member.snapshot_id]})


def _report_changes(context: AppContext, built: SnapshotSet, look: Any, about: str, add: Candidate | None) -> None:
    """The set is being (or was) built from its members: a changed tag is reported, never applied."""
    for member in built.members:
        if not same_id(about, member.snapshot_id):
            continue  # only the snapshot the event is about is news
        observation: Observation = look(member.snapshot_id)
        if not observation.exists:
            continue  # deleting a built version's snapshots is the guard's business (locks), not a membership change
        claims = observation.candidate.member if observation.candidate is not None else None
        if observation.key == built.key and claims is not None and claims.slot == member.slot:
            continue
        _changed(context, built, member.snapshot_id,
                 f"snapshot {member.snapshot_id} was {member.label} of {built.key}, which is built "
                 f"(or being built) from it, and its tags now say {_claim_text(observation)}", observation)
    if add is not None and built.member(add.snapshot_id) is None:
        _changed(context, built, add.snapshot_id,
                 f"snapshot {add.snapshot_id} is tagged as {add.member.label} of {built.key}, which is "
                 "already built (or being built) from other snapshots", None)


def _claim_text(observation: Observation) -> str:
    if observation.key is None or observation.candidate is None:
        return "nothing (its autopilot.* tags were removed or are invalid)"
    return f"{observation.candidate.member.label} of {observation.key}"


def _changed(context: AppContext, built: SnapshotSet, snapshot_id: str, diagnosis: str,
             observation: Observation | None) -> None:
    log.warning("%s", diagnosis)
    _publish(context, alerts.SNAPSHOT_SET_CHANGED, snapshot_id, f"Snapshot tags changed after {built.key} was built",
             diagnosis,
             "nothing changes for the built version: its image and pools keep the disks it was built from. To "
             "build from new "
             "snapshots or tags, tag them with a new autopilot.version", situation_key(
                 "SET_FROZEN", str(built.key), normalize(snapshot_id),
                 json.dumps(observation.tags if observation else None, sort_keys=True)),
             {"family": built.key.family, "version": built.key.version}, severity=alerts.SEVERITY_INFO)


def freeze(context: AppContext, record: Record) -> Record:
    """Fix the set's members before the image is requested (If-Match: a membership change since ``record`` was read
    raises :class:`ConcurrencyConflict`, and the caller starts over from the new set)."""
    snapshot_set = snapshot_sets.from_entity(record.data)
    if snapshot_set.frozen:
        return record
    return context.state.table(SNAPSHOT_SETS).replace(record,
                                                      snapshot_sets.to_entity(replace(snapshot_set, frozen=True)))



MAX_COPY_HOPS = 5


def source_disk(context: AppContext, source_id: str | None) -> dict[str, Any] | None:
    """The managed disk a snapshot was taken from, following copies: a snapshot copied from a snapshot (the CopyStart
    fix for another region, a copy into another resource group) names that snapshot as its source, not the disk."""
    current = source_id
    for _ in range(MAX_COPY_HOPS):
        if not current:
            return None
        if "/providers/microsoft.compute/snapshots/" not in current.lower():
            return compute.get_disk(context.clients, current)
        snapshot = compute.get_snapshot(context.clients, current)
        if snapshot is None:
            return None
        creation = (snapshot.get("properties") or {}).get("creationData") or {}
        current = creation.get("sourceResourceId") if isinstance(creation, dict) else None
    return None
