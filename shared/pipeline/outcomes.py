"""The ends of a version that a person must act on: refused (a check failed, a name is taken), failed (Azure could not
build it, Batch refused a pool), each with the alert that says what to do. The alert's de-duplication key is the
situation (which snapshots, which findings), so a changed situation alerts again and the same one does not."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

from shared.core import alerts, ownership
from shared.core.alerts import Alert
from shared.core.context import AppContext
from shared.core.resource_ids import normalize
from shared.core.state import Record
from shared.pipeline import image_rules
from shared.pipeline.snapshot_sets import SnapshotSet
from shared.pipeline.stage_record import Outcome, Stage, finish, finish_stage_only, flush_outbox, publish_alert
from shared.resources import batch_pools, compute

log = logging.getLogger("autopilot.pipeline")


def waiting_for(snapshot_set: SnapshotSet) -> str:
    """Which snapshots an incomplete set has and which are still not ready (not how far their copies are): a set that
    changes is a new situation, worth a new alert; one copy progressing is not."""
    text = json.dumps([sorted(normalize(i) for i in snapshot_set.snapshot_ids),
                       sorted(normalize(c.snapshot_id) for c in snapshot_set.pending),
                       snapshot_set.disk_count])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def attempt(snapshot_set: SnapshotSet) -> str:
    """Which snapshots (by id and creation) a run was about: a re-created snapshot is a new attempt, worth a new
    alert."""
    text = json.dumps([m.to_json() for m in snapshot_set.members], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def refuse(context: AppContext, snapshot_set: SnapshotSet, row: Record | None, subject: str,
            findings: list[image_rules.Finding]) -> Outcome:
    key = snapshot_set.key
    refusals = image_rules.refusals(findings)
    detail = "; ".join(f.message for f in refusals)
    # The key is the situation: these snapshots and these findings. A changed situation (another refusal after a
    # fix) is a new alert; the same one again (a re-tag without a fix) at most once an hour.
    situation = hashlib.sha256(
        json.dumps([attempt(snapshot_set), [(f.code, f.message) for f in refusals]]).encode("utf-8")).hexdigest()[:16]
    alert = Alert(alerts.IMAGE_REFUSED, alerts.SEVERITY_WARNING, subject, f"Image {key} refused: {refusals[0].code}",
                  detail,
                  " / ".join(dict.fromkeys(f.fix for f in refusals)), f"refused|{key}|{situation}", context.clock.now(),
                  {"codes": [f.code for f in refusals], "family": key.family, "version": key.version,
                   "resources": sorted({f.resource_id for f in refusals if f.resource_id})},
                  repeat_after=timedelta(hours=1))
    finish(context, key, row, Stage.REFUSED, detail[:4000], alert)
    return Outcome(Stage.REFUSED, detail)


def fail(context: AppContext, snapshot_set: SnapshotSet, row: Record | None, resource_id: str, title: str, *,
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
                  f"failed|{key}|{normalize(resource_id)}|{attempt(snapshot_set)}", context.clock.now(),
                  {"family": key.family, "version": key.version})
    row = finish_stage_only(context, key, row, Stage.FAILED, f"{title}: {resource_id}", alert)
    if managed_image:
        # Nothing half-built stays behind: a Failed managed image is the app's own intermediate and holds nothing.
        # (A failed gallery version is left for inspection: its safety profile blocks deletion before end of life.)
        compute.start_image_delete(context.clients, resource_id)
    flush_outbox(context, row)
    return Outcome(Stage.FAILED, resource_id)


def pools_refused(context: AppContext, snapshot_set: SnapshotSet, row: Record | None, version_id: str,
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
                  f"refusedpool|{key}|{attempt(snapshot_set)}", context.clock.now(),
                  {"family": key.family, "version": key.version, "codes": [r.code for r in refused],
                   "pools": [r.pool_id for r in refused], "messages": [r.message for r in refused]})
    row = finish_stage_only(context, key, row, Stage.FAILED, f"pool create refused: {said}"[:4000], alert)
    flush_outbox(context, row)
    return Outcome(Stage.FAILED, said)


def name_taken(context: AppContext, snapshot_set: SnapshotSet, resource_id: str, why: str, *, kind: str) -> Outcome:
    """A resource the app did not build sits at a name it derives: never adopt, lock or delete it.

    The stage is left where it is (not refused for good): the sweep looks again, so the version is
    built as soon as the person frees the name, as the fix says.
    """
    key = snapshot_set.key
    diagnosis = (f"{kind} {resource_id} already exists at the name the app derives for {key}, but it is not the app's "
                 "own build "
                 f"of these snapshots: {why}. The app leaves it untouched (no reuse, lock or delete).")
    publish_alert(context, alerts.IMAGE_REFUSED, resource_id, f"Image {key} refused: {ownership.NAME_TAKEN}", diagnosis,
           ownership.name_taken_fix(resource_id, key.family, key.version, kind="pool" if kind == "pool" else "image"),
           dedupe=f"name-taken|{key}|{normalize(resource_id)}",
           details={"codes": [ownership.NAME_TAKEN], "family": key.family, "version": key.version,
                    "resources": [resource_id]})
    log.warning("%s: %s", key, diagnosis)
    return Outcome(Stage.REFUSED, f"{ownership.NAME_TAKEN}: {resource_id}")
