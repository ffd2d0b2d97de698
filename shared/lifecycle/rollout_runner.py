"""The rollout's I/O: read pools and state, ask :mod:`shared.lifecycle.rollout`, act with ETags, raise the alerts.

Called by the pool watch for every account it lists (no extra list call), and for accounts with a
rollout under way on every tick, so a short zero (``nextZero``) is not missed between full scans.

Concurrency and redelivery: the slot's Table record is written with its ETag before an action, and
every pool change is a Pool - Update with ``If-Match`` on the pool just re-read from the management
plane. A second instance deciding the same step gets 412 (pool) or a ConcurrencyConflict (record) and
does nothing; a restart mid-rollout finds the record and the pool's own metadata and carries on.
Families without ``rollout``/``pinVersion`` are skipped: today's behaviour is unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.config.families import FamilyConfig
from shared.config.family_parts import PoolSpec, RolloutPolicy
from shared.core import alerts, permissions, pool_metadata
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import iso, parse_iso
from shared.core.context import AppContext
from shared.core.durations import format_short
from shared.core.resource_ids import ResourceId
from shared.core.state import PIPELINE, SNAPSHOT_SETS, ConcurrencyConflict, Record, safe_key
from shared.lifecycle import rollout
from shared.pipeline import naming, snapshot_sets
from shared.resources import batch_pools, compute
from shared.resources.batch_accounts import BatchAccount
from shared.resources.batch_pools import UpdateResult
from shared.watch import canary
from shared.watch.pool_policy import PoolIntentError, PoolView, at_target, desired_target

log = logging.getLogger("autopilot.rollout")

ROLLOUTS = "Rollouts"  # one row per (family, slot): the rollout under way or last finished

ROLLOUT_STARTED = alerts.ROLLOUT_STARTED
ROLLOUT_COMPLETED = alerts.ROLLOUT_COMPLETED
ROLLOUT_BLOCKED = alerts.ROLLOUT_BLOCKED
ROLLOUT_ROLLED_BACK = alerts.ROLLOUT_ROLLED_BACK

STRANDED_NOTE = ("Queued tasks of jobs bound to a drained pool stay queued until the pool has nodes again; "
                 "a job bound to a retired pool must be moved to the new pool (or use an auto pool specification).")


@dataclass
class RolloutReport:
    actions: list[str] = field(default_factory=list)
    # pool path -> {"runs", "pending", "stage", "runningTasks"}; runningTasks only for a pool being drained (else None)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)


def is_configured(family: FamilyConfig) -> bool:
    """False for a family that sets none of the rollout keys: the app then does exactly what it did before them."""
    return family.rollout != RolloutPolicy() or family.pin_version is not None


def ready_versions(context: AppContext, family: FamilyConfig) -> list[str]:
    """Versions of the family the pipeline finished (gallery version built, pools created)."""
    return [r.row for r in context.state.table(PIPELINE).query(family.name) if r.data.get("stage") == "done"]


def accounts_in_rollout(context: AppContext) -> set[str]:
    """safe_key(account id) of every account with a rollout under way: the watch lists them on every tick.

    Without a family that configures a rollout this reads nothing (an idle subscription's tick stays one Table
    query)."""
    from shared.pipeline.stages import families_of

    out: set[str] = set()
    if not any(is_configured(f) for f in families_of(context)):
        return out
    for record in context.state.table(ROLLOUTS).query():
        if record.data.get("stage") not in (*rollout.FINISHED, None) and record.data.get("account"):
            out.add(safe_key(str(record.data["account"])))
    return out


def _slot_row(account_id: str, spec: PoolSpec) -> str:
    return safe_key(f"{ResourceId.parse(account_id).key}|{spec.pool_id_template}")


def _state_of(record: Record | None) -> rollout.RolloutState | None:
    if record is None:
        return None
    started = parse_iso(record.data.get("startedAt"))
    stage_at = parse_iso(record.data.get("stageAt")) or started
    if started is None or stage_at is None or not record.data.get("toVersion"):
        return None
    return rollout.RolloutState(to_version=str(record.data["toVersion"]), from_version=record.data.get("fromVersion")
                                or None,
                                stage=str(record.data.get("stage") or ""), started_at=started, stage_at=stage_at,
                                blocked=bool(record.data.get("blocked")))


def _facts(view: PoolView, now: datetime) -> rollout.PoolFacts:
    hold = rollout.hold_of(view.metadata)
    plain = replace(view, metadata={k: v for k, v in view.metadata.items() if k != rollout.HOLD})
    try:
        desired = desired_target(plain, now)
    except PoolIntentError:
        desired = None
    return rollout.PoolFacts(pool_id=view.pool_id, version=view.metadata.get(pool_metadata.VERSION),
                             steady=view.is_steady,
                             current_nodes=view.current_total,
                             at_target=desired is not None and at_target(view, desired),
                             desired_nodes=desired.total if desired else 0, hold=hold)


def run_account(context: AppContext, account: BatchAccount, pools: Sequence[dict[str, Any] | PoolView], *,
                dry_run: bool = False) -> RolloutReport:
    """Advance every configured family's rollout in this account, from the pools the watch just listed (as the watch's
    views, or as the data-plane JSON)."""
    from shared.pipeline.stages import families_of

    report = RolloutReport()
    families = [f for f in families_of(context) if is_configured(f)]
    if not families:
        return report
    now = context.clock.now()
    views = {v.pool_id.lower(): v
             for v in (p if isinstance(p, PoolView) else PoolView.from_dict(p, account.id) for p in pools)}
    account_key = ResourceId.parse(account.id).key
    for family in families:
        slots = [s for s in family.pools if ResourceId.parse(s.account).key == account_key]
        if not slots:
            continue
        wanted = rollout.wanted_version(ready_versions(context, family), family.pin_version)
        if wanted is None:
            if family.pin_version is not None:
                log.warning("rollout: %s pins %s, which the app has not built (or no longer has): nothing moves",
                            family.name,
                            family.pin_version)
            continue
        for spec in slots:
            try:
                if family.rollout.in_place:
                    _in_place(context, account, family, spec, views, wanted, now, report, dry_run)
                elif family.rollout.retire_previous:
                    _new_pools(context, account, family, spec, views, wanted, now, report, dry_run)
            except ConcurrencyConflict:
                report.actions.append(f"{family.name}: another instance moved the rollout first; next tick looks again")
    return report


# ---------------------------------------------------------------------------------------------
# inPlace
# ---------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One pool slot's rollout at this tick: what a step reads, and the slot's row (saved with its ETag)."""

    context: AppContext
    account: BatchAccount
    family: FamilyConfig
    pool_id: str  # inPlace: the pool; newPools: the wanted version's pool
    wanted: str
    now: datetime
    report: RolloutReport
    row: str
    record: Record | None
    state: rollout.RolloutState | None
    decision: rollout.Decision
    facts: rollout.PoolFacts | None = None  # inPlace: the pool's
    about: Sequence[str] = ()  # newPools: the old pools the step is about
    views: dict[str, PoolView] = field(default_factory=dict)  # newPools: the account's pools by lower-cased id

    @property
    def subject(self) -> str:
        return f"{self.account.id}/pools/{self.pool_id}"

    def save(self, data: dict[str, Any]) -> None:
        self.context.state.table(ROLLOUTS).save(self.family.name, self.row, data, self.record)

    def save_stage(self, stage: str) -> None:
        assert self.record is not None
        self.save({**self.record.data, "stage": stage, "stageAt": iso(self.now)})


def _in_place(context: AppContext, account: BatchAccount, family: FamilyConfig, spec: PoolSpec,
              views: dict[str, PoolView],
              wanted: str, now: datetime, report: RolloutReport, dry_run: bool) -> None:
    pool_id = spec.pool_id(family.name, wanted)
    view = views.get(pool_id.lower())
    if view is None or not view.is_managed:
        return  # not created yet (the pipeline creates it) or not ours
    table = context.state.table(ROLLOUTS)
    row = _slot_row(account.id, spec)
    record = table.get(family.name, row)
    state = _state_of(record)
    facts = _facts(view, now)
    passed = canary.canary_passed(view.metadata)
    decision = rollout.decide_in_place(family.rollout, facts, wanted, state, now, canary_passed=passed)
    subject = f"{account.id}/pools/{pool_id}"
    stage = (state.stage if state
             and state.to_version == wanted else ("" if facts.version == wanted else rollout.WAITING))
    report.pending[subject] = {"runs": facts.version or "", "pending": "" if facts.version == wanted else wanted,
                               "stage": stage or rollout.DONE,
                               "runningTasks": _running_tasks(context, account, facts, report)}
    if decision.step == rollout.Step.NOTHING or dry_run:
        if decision.step != rollout.Step.NOTHING:
            report.actions.append(f"{pool_id}: would {decision.step.value}: {decision.reason}")
        return
    step = _IN_PLACE_STEPS.get(decision.step)
    if step is not None:
        step(_Slot(context, account, family, pool_id, wanted, now, report, row, record, state, decision, facts=facts))


def _in_place_start(s: _Slot) -> None:
    family, facts, wanted, now = s.family, s.facts, s.wanted, s.now
    assert facts is not None
    first = rollout.DRAINING if family.rollout.apply_when == "drain" else rollout.WAITING
    s.save({"account": s.account.id, "pool": s.pool_id, "mode": "inPlace", "fromVersion": facts.version or "",
            "toVersion": wanted, "stage": first, "startedAt": iso(now), "stageAt": iso(now)})
    s.report.actions.append(f"{s.pool_id}: rollout {facts.version} -> {wanted} started")
    _alert(s.context, ROLLOUT_STARTED, alerts.SEVERITY_INFO, s.subject,
           f"Rolling {family.name} {wanted} into pool {s.pool_id}",
           f"pool {s.pool_id} runs {facts.version or 'an unknown version'}; {wanted} is "
           + ("pinned" if family.pin_version == wanted else "the newest version") + "; the image changes in place ("
           + ("at the pool's next zero" if family.rollout.apply_when == "nextZero" else "after draining the pool "
              "with taskcompletion")
           + "). " + (STRANDED_NOTE if family.rollout.apply_when == "drain" else ""),
           "nothing to do; RolloutCompleted follows", f"{wanted}|{iso(now)}",
           {"from": facts.version, "to": wanted, "pool": s.pool_id})


def _in_place_blocked(s: _Slot) -> None:
    record, facts, family, wanted, pool_id = s.record, s.facts, s.family, s.wanted, s.pool_id
    assert record is not None and facts is not None
    s.save({**record.data, "blocked": True})
    _alert(s.context, ROLLOUT_BLOCKED, alerts.SEVERITY_WARNING, s.subject,
           f"Rollout of {family.name} {wanted} to pool {pool_id} is blocked",
           f"Batch changes a pool's image only when it is steady with zero nodes, and pool {pool_id} has not "
           "reached 0 nodes within "
           f"maxWait ({format_short(family.rollout.max_wait)}); it has {facts.current_nodes} nodes and runs "
           f"{facts.version}.",
           'set the family\'s rollout to {"mode": "inPlace", "applyWhen": "drain"} to let the autopilot '
           'empty the pool '
           "(running tasks finish; queued tasks wait), or take the pool to 0 yourself (a schedule entry with "
           "0 nodes); "
           "the image changes at the next tick that sees the pool at 0",
           f"{wanted}|{record.data.get('startedAt')}",
           {"to": wanted, "pool": pool_id, "nodes": facts.current_nodes})


def _in_place_hold_for_drain(s: _Slot) -> None:
    result, detail = _patch_metadata(s.context, s.account, s.pool_id, {rollout.HOLD: rollout.HOLD_DRAIN})
    s.report.actions.append(f"{s.pool_id}: hold for drain: {result.value} {detail}")
    # A drain to go back (the pool runs the new version, its canary failed) keeps the stage PATCHED: that stage is how
    # a later tick knows a pool found on the previous version was rolled back, not yet patched (decide_in_place).
    if result == UpdateResult.ACCEPTED and s.record is not None and (s.facts is None or s.facts.version != s.wanted):
        s.save_stage(rollout.DRAINING)


def _in_place_patch_image(s: _Slot) -> None:
    result, detail = _patch_image(s.context, s.family, s.account, s.pool_id, s.wanted)
    s.report.actions.append(f"{s.pool_id}: image -> {s.wanted}: {result.value} {detail}".rstrip())
    if (result == UpdateResult.ACCEPTED and s.record is not None and s.state is not None
            and s.state.to_version == s.wanted):
        s.save_stage(rollout.PATCHED)
        # the new version is referenced now: lock it; the old one is released
        from shared.guard.reconcile import reconcile

        reconcile(s.context)


def _in_place_roll_back(s: _Slot) -> None:
    record, state, family, wanted, pool_id = s.record, s.state, s.family, s.wanted, s.pool_id
    assert record is not None and state is not None and state.from_version
    previous = state.from_version
    result, detail = _patch_image(s.context, family, s.account, pool_id, previous, canary_first=False)
    s.report.actions.append(f"{pool_id}: canary of {wanted} failed, image -> {previous}: {result.value} {detail}"
                            .rstrip())
    if result != UpdateResult.ACCEPTED:
        return
    s.save_stage(rollout.ROLLED_BACK)
    _alert(s.context, ROLLOUT_ROLLED_BACK, alerts.SEVERITY_WARNING, s.subject,
           f"Pool {pool_id} went back to {family.name} {previous}",
           f"the canary of {wanted} on pool {pool_id} failed (its first nodes on the new image were not usable; "
           f"ImageUnhealthy says why), so at the pool's zero the app patched the image back to {previous}, "
           "which the "
           f"pool ran before. The pool regrows on {previous}; {wanted} is not tried again.",
           "fix the image (ImageUnhealthy has the checklist) and publish it as a newer version: it rolls out the "
           "same way, canary first; to hold the pool on a version meanwhile, pin it with \"pinVersion\"",
           f"{wanted}|{record.data.get('startedAt')}",
           {"from": wanted, "to": previous, "pool": pool_id})
    # the previous version is used again: lock it; release the failed one
    from shared.guard.reconcile import reconcile

    reconcile(s.context)


def _in_place_complete(s: _Slot) -> None:
    record, family, wanted, pool_id = s.record, s.family, s.wanted, s.pool_id
    assert record is not None
    s.save_stage(rollout.DONE)
    s.report.actions.append(f"{pool_id}: rollout to {wanted} completed")
    _alert(s.context, ROLLOUT_COMPLETED, alerts.SEVERITY_INFO, s.subject, f"Pool {pool_id} runs {family.name} {wanted}",
           f"pool {pool_id} was moved from {record.data.get('fromVersion') or 'its previous version'} to {wanted} "
           "in place and is at "
           "its target", "nothing to do", f"{wanted}|{record.data.get('startedAt')}",
           {"from": record.data.get("fromVersion"), "to": wanted, "pool": pool_id})


_IN_PLACE_STEPS: dict[rollout.Step, Callable[[_Slot], None]] = {
    rollout.Step.START: _in_place_start,
    rollout.Step.BLOCKED: _in_place_blocked,
    rollout.Step.HOLD_FOR_DRAIN: _in_place_hold_for_drain,
    rollout.Step.PATCH_IMAGE: _in_place_patch_image,
    rollout.Step.ROLL_BACK: _in_place_roll_back,
    rollout.Step.COMPLETE: _in_place_complete,
}


def _running_tasks(context: AppContext, account: BatchAccount, facts: rollout.PoolFacts,
                   report: RolloutReport) -> int | None:
    """Tasks still running on a pool the rollout holds at 0 (drain or retired): Batch removes its nodes with
    taskcompletion only once they finish, so this is what the drain waits for. Read from the node list (no pool-level
    counter); None for a pool that is not held, or when the nodes cannot be listed."""
    if facts.hold is None:
        return None
    if facts.current_nodes == 0:
        return 0
    try:
        running = batch_pools.running_tasks(context.clients, account, facts.pool_id)
    except Exception as exc:  # the count is for people; the drain goes on without it
        log.info("rollout: cannot count the running tasks of %s: %s", facts.pool_id, exc)
        return None
    if running:
        report.actions.append(f"{facts.pool_id}: draining, {running} task(s) still running on {facts.current_nodes} "
                              "node(s); taskcompletion lets them finish before Batch removes the nodes. "
                              + STRANDED_NOTE)
    return running


def _patch_image(context: AppContext, family: FamilyConfig, account: BatchAccount, pool_id: str, version: str, *,
                 canary_first: bool = True) -> tuple[UpdateResult, str]:
    """One Pool - Update: the image, autopilot.version/imageId and the hold lifted, so the guard's locks follow the
    image.

    ``canary_first``: the pool's first regrow on the new image stops at the family's ``canaryNodes`` until those nodes
    work (shared/watch/canary.py), as for a new pool. A roll back to the version the pool ran before needs no canary."""
    image_id = naming.family_pool_image_id(family, version, context.settings.subscription_id)
    # Invariant: a pool never references a version that does not exist. Read it right before pointing the pool at it.
    existing = compute.get_gallery_image_version(context.clients, image_id)
    # "updating": a built version gaining replicas (shared/watch/replicas.py) serves from the ones it has.
    state = str(((existing or {}).get("properties") or {}).get("provisioningState", "")).lower()
    if existing is None or state not in ("succeeded", "updating", ""):
        return (UpdateResult.REFUSED,
                f"gallery image version {image_id} does not exist (or is not ready): the pool is left as it is")
    pool = batch_pools.get_pool_management(context.clients, account, pool_id)
    if pool is None:
        return UpdateResult.GONE, ""
    props = pool.get("properties") or {}
    metadata = pool_metadata.as_dict(props.get("metadata"))
    current = (((props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration")
                or {}).get("imageReference") or {}).get("id")
    if isinstance(current,
                  str) and current.lower() == image_id.lower() and metadata.get(pool_metadata.VERSION) == version \
            and rollout.HOLD not in metadata:
        return UpdateResult.ACCEPTED, "(already done: another instance, or an earlier copy of this tick)"
    metadata.pop(rollout.HOLD, None)
    # A new image gets its own canary (going back to the previous one needs none).
    if not (isinstance(current, str) and current.lower() == image_id.lower()):
        metadata.pop(canary.CANARY, None)
        metadata.pop(canary.CANARY_NODES, None)
        if canary_first:
            metadata.update(canary.metadata_for(family.canary_nodes))
    metadata[pool_metadata.VERSION] = version
    metadata[pool_metadata.IMAGE_ID] = image_id
    # The guard locks what the pool's metadata names: the new version's snapshots (and kept managed image), not the old
    # ones.
    metadata.pop(pool_metadata.MANAGED_IMAGE_ID, None)
    set_record = context.state.table(SNAPSHOT_SETS).get(family.name, version)
    if set_record is not None:
        metadata[pool_metadata.SNAPSHOT_IDS] = ",".join(snapshot_sets.from_entity(set_record.data).snapshot_ids)
    if family.keep_managed_image and family.builds_managed_image:
        metadata[pool_metadata.MANAGED_IMAGE_ID] = naming.family_managed_image_id(
            family, version, context.settings.subscription_id)
    vm = dict((props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {})
    vm["imageReference"] = {"id": image_id}
    body = {"properties": {"deploymentConfiguration": {"virtualMachineConfiguration": _wire_vm(vm)},
                           "metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())]}}
    return batch_pools.update_pool_management(context.clients, account, pool_id, body, pool.get("etag"))


def _wire_vm(vm: dict[str, Any]) -> dict[str, Any]:
    """The image reference and the node agent (which the PATCH body must carry with it); the rest of the VM
    configuration stays."""
    out: dict[str, Any] = {"imageReference": vm["imageReference"]}
    if vm.get("nodeAgentSkuId"):
        out["nodeAgentSkuId"] = vm["nodeAgentSkuId"]
    return out


def _patch_metadata(context: AppContext, account: BatchAccount, pool_id: str,
                    changes: dict[str, str | None]) -> tuple[UpdateResult, str]:
    """Pool - Update of the metadata only (allowed at any size), conditional on the pool just read."""
    pool = batch_pools.get_pool_management(context.clients, account, pool_id)
    if pool is None:
        return UpdateResult.GONE, ""
    before = pool_metadata.as_dict((pool.get("properties") or {}).get("metadata"))
    metadata = dict(before)
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    if metadata == before:
        # Another instance (or an earlier copy of this tick) made the change since our listing: writing it again would
        # be a second update, and a second write event, for nothing.
        return UpdateResult.ACCEPTED, "(already so)"
    body = {"properties": {"metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())]}}
    return batch_pools.update_pool_management(context.clients, account, pool_id, body, pool.get("etag"))


# ---------------------------------------------------------------------------------------------
# newPools + retirePrevious
# ---------------------------------------------------------------------------------------------


def _new_pools(context: AppContext, account: BatchAccount, family: FamilyConfig, spec: PoolSpec,
               views: dict[str, PoolView],
               wanted: str, now: datetime, report: RolloutReport, dry_run: bool) -> None:
    new_id = spec.pool_id(family.name, wanted)
    new_view = views.get(new_id.lower())
    old_views = _old_pools(family, spec, views, new_id, wanted)
    table = context.state.table(ROLLOUTS)
    row = _slot_row(account.id, spec)
    record = table.get(family.name, row)
    state = _state_of(record)
    if state is not None and state.to_version != wanted:
        state = None
    old_facts = [_facts(v, now) for v in old_views]
    jobs: dict[str, int] | None = None
    if family.rollout.delete_retired_pools and any(f.hold == rollout.HOLD_RETIRED and f.current_nodes == 0
                                                   for f in old_facts) and not dry_run:
        with permissions.writing(context, "Microsoft.Batch/batchAccounts/jobs/read", account.id):
            jobs = {f.pool_id: len(batch_pools.active_jobs_on(context.clients, account, f.pool_id)) for f in old_facts
                    if f.hold == rollout.HOLD_RETIRED and f.current_nodes == 0}
    new_facts = _facts(new_view, now) if new_view is not None and new_view.is_managed else None
    passed = canary.canary_passed(new_view.metadata) if new_view is not None else None
    decision, about = rollout.decide_new_pools(family.rollout, new_facts, old_facts, state, now, canary_passed=passed,
                                              jobs_on=jobs)
    for f in old_facts:
        old_stage = "retired" if f.hold == rollout.HOLD_RETIRED else (state.stage if state else "")
        report.pending[f"{account.id}/pools/{f.pool_id}"] = {"runs": f.version or "", "pending": "", "stage": old_stage,
                                                            "runningTasks": _running_tasks(context, account, f, report)}
    if new_facts is not None:
        report.pending[f"{account.id}/pools/{new_id}"] = {"runs": wanted, "pending": "",
                                                          "stage": state.stage if state else ""}
    if decision.step == rollout.Step.NOTHING or dry_run:
        if decision.step != rollout.Step.NOTHING:
            report.actions.append(f"{new_id}: would {decision.step.value} {', '.join(about)}: {decision.reason}")
        return
    step = _NEW_POOLS_STEPS.get(decision.step)
    if step is not None:
        slot = _Slot(context, account, family, new_id, wanted, now, report, row, record, state, decision,
                     about=about, views=views)
        step(slot, old_facts)


def _old_pools(family: FamilyConfig, spec: PoolSpec, views: dict[str, PoolView], new_id: str,
               wanted: str) -> list[PoolView]:
    """The slot's pools that the wanted version's pool replaces."""
    old_views: list[PoolView] = []
    for view in views.values():
        version = view.metadata.get(pool_metadata.VERSION, "")
        if (view.pool_id.lower() == new_id.lower() or not view.is_managed
            or view.metadata.get(pool_metadata.FAMILY) != family.name):
            continue
        try:
            same_slot = spec.pool_id(family.name, version).lower() == view.pool_id.lower()
        except Exception:
            same_slot = False
        # The previous versions' pools; with a pin (a roll back) the newer versions' pools too. Without a pin nothing
        # newer than the newest built version is touched (its pools may exist a moment before its pipeline row is done).
        if same_slot and version != wanted and (
                rollout.version_key(version) < rollout.version_key(wanted) or family.pin_version == wanted):
            old_views.append(view)
    return old_views


def _new_pools_start_holding(s: _Slot, old_facts: list[rollout.PoolFacts]) -> None:
    family, wanted, now, new_id, about = s.family, s.wanted, s.now, s.pool_id, s.about
    old_ids = ", ".join(about)
    s.save({"account": s.account.id, "pool": new_id, "mode": "newPools", "fromVersion": old_facts[0].version or "",
            "toVersion": wanted, "stage": rollout.HOLDING, "startedAt": iso(now), "stageAt": iso(now),
            "oldPools": json.dumps(about)})
    s.report.actions.append(
        f"{new_id}: holding; retiring {old_ids} after {format_short(family.rollout.retire_after)}")
    _alert(s.context, ROLLOUT_STARTED, alerts.SEVERITY_INFO, s.subject,
           f"Rolling {family.name} {wanted} out: {new_id} replaces {old_ids}",
           f"pool {new_id} of {wanted} reached its target; once it has held it for "
           f"{format_short(family.rollout.retire_after)}, "
           f"{old_ids} go to 0 nodes with taskcompletion (running tasks finish) and their desired target and "
           "schedule move to "
           f"{new_id}. {STRANDED_NOTE}",
           f"submit new jobs to {new_id}; nothing else to do", f"{wanted}|{iso(now)}",
           {"to": wanted, "newPool": new_id, "oldPools": about})


def _new_pools_retire(s: _Slot, old_facts: list[rollout.PoolFacts]) -> None:
    assert s.record is not None
    new_id = s.pool_id
    for old_id in s.about:
        old = s.views[old_id.lower()]
        moved = {k: old.metadata.get(k) for k in (pool_metadata.DESIRED_DEDICATED, pool_metadata.DESIRED_SPOT,
                                                  pool_metadata.SCHEDULE)}
        result, detail = _patch_metadata(s.context, s.account, new_id, moved)
        if result != UpdateResult.ACCEPTED:
            s.report.actions.append(f"{new_id}: target not moved ({result.value} {detail}); next tick tries again")
            return
        result, detail = _patch_metadata(s.context, s.account, old_id,
                                         {rollout.HOLD: rollout.HOLD_RETIRED, rollout.RETIRED_BY: s.wanted})
        s.report.actions.append(f"{old_id}: retired by {new_id}: {result.value} {detail}".rstrip())
        if result != UpdateResult.ACCEPTED:
            return
    s.save_stage(rollout.RETIRING)


def _new_pools_restore(s: _Slot, old_facts: list[rollout.PoolFacts]) -> None:
    result, detail = _patch_metadata(s.context, s.account, s.pool_id, {rollout.HOLD: None, rollout.RETIRED_BY: None})
    s.report.actions.append(f"{s.pool_id}: pinned {s.wanted}, un-retired: {result.value} {detail}".rstrip())


def _new_pools_delete_retired(s: _Slot, old_facts: list[rollout.PoolFacts]) -> None:
    for old_id in s.about:
        s.report.actions.append(f"{old_id}: retired and empty, no active job targets it: "
                                + _delete_retired(s.context, s.account, old_id))


def _new_pools_complete(s: _Slot, old_facts: list[rollout.PoolFacts]) -> None:
    record, family, wanted, new_id = s.record, s.family, s.wanted, s.pool_id
    assert record is not None
    s.save_stage(rollout.DONE)
    old_ids = ", ".join(json.loads(record.data.get("oldPools") or "[]"))
    s.report.actions.append(f"{new_id}: rollout to {wanted} completed")
    _alert(s.context, ROLLOUT_COMPLETED, alerts.SEVERITY_INFO, s.subject,
           f"{family.name} {wanted} rolled out: {new_id} took over",
           f"{old_ids or 'the previous pools'} "
           + ("were deleted" if family.rollout.delete_retired_pools else "are at 0 nodes and held there "
              "(autopilot.rolloutHold=retired)")
           + f"; {new_id} runs {wanted} at its target. The image guard releases what no pool references any more.",
           "nothing to do" if family.rollout.delete_retired_pools else
           "delete the retired pools when no job needs them (or set deleteRetiredPools: true); their images stay "
           "locked while they exist",
           f"{wanted}|{record.data.get('startedAt')}", {"to": wanted, "newPool": new_id})
    from shared.guard.reconcile import reconcile

    reconcile(s.context)


_NEW_POOLS_STEPS: dict[rollout.Step, Callable[[_Slot, list[rollout.PoolFacts]], None]] = {
    rollout.Step.START_HOLDING: _new_pools_start_holding,
    rollout.Step.RETIRE: _new_pools_retire,
    rollout.Step.RESTORE: _new_pools_restore,
    rollout.Step.DELETE_RETIRED: _new_pools_delete_retired,
    rollout.Step.COMPLETE: _new_pools_complete,
}


def _delete_retired(context: AppContext, account: BatchAccount, pool_id: str) -> str:
    """Start deleting a retired pool, once: Batch takes minutes to delete a pool, and the listing shows it (at 0 nodes,
    retired) until then, so each tick and each instance would ask again. The management plane's provisioningState
    says whether a delete is under way; a copy that still crosses another's is answered 202, 204 or 409 (Batch's
    answer for a pool being deleted is not published): all mean the pool is going."""
    from azure.core.exceptions import HttpResponseError

    pool = batch_pools.get_pool_management(context.clients, account, pool_id)
    if pool is None or str((pool.get("properties") or {}).get("provisioningState", "")).lower() == "deleting":
        return "already being deleted"
    try:
        scope = f"{account.id}/pools/{pool_id}"
        with permissions.writing(context, "Microsoft.Batch/batchAccounts/pools/delete", scope):
            batch_pools.start_pool_delete(context.clients, account, pool_id)
    except HttpResponseError as exc:
        if exc.status_code not in (404, 409) or (exc.error is not None and exc.error.code == "ScopeLocked"):
            raise
        return f"already being deleted ({exc.status_code})"
    return "deleting"


def _alert(context: AppContext, kind: str, severity: str, subject: str, title: str, diagnosis: str, fix: str,
           dedupe: str,
           details: dict[str, Any]) -> None:
    AlertPublisher(context).publish(Alert(kind, severity, subject, title, diagnosis, fix, dedupe, context.clock.now(),
                                          details))
