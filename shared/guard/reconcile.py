"""The image guard's reconcile pass: observe references and locks, plan, apply (or only plan).

Used by the guard's timer, by its event handler (after a pool or lock change), and by the CLI's
``plan`` (dry run) and ``reconcile`` commands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.core import ownership, permissions, system_events
from shared.core.context import AppContext
from shared.core.system_events import ResourceEvent
from shared.guard.lock_plan import LOCK_NAME, NOTES_HEAD, LockAction, broken_pools, held_for_missing, plan_locks
from shared.guard.references import Inventory, app_locks, lock_owner, observe
from shared.resources import locks

log = logging.getLogger("autopilot.guard")


@dataclass
class GuardReport:
    actions: list[LockAction] = field(default_factory=list)
    applied: list[LockAction] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    guarded: int = 0
    skipped_release: bool = False
    missing: list[str] = field(default_factory=list)
    # Locks the graph no longer calls for, kept because a pool they were placed for depends on an
    # image that no longer exists (see shared/guard/lock_plan.held_for_missing).
    kept: list[str] = field(default_factory=list)
    # Removals the app declined after re-reading the lock (resource id -> why): not provably its own.
    not_removed: dict[str, str] = field(default_factory=dict)
    # Resources named by pool metadata that the guard does not trust (resource id -> why): shared/guard/trust.py.
    untrusted: dict[str, str] = field(default_factory=dict)


def reconcile(context: AppContext, *, dry_run: bool = False, inventory: Inventory | None = None) -> GuardReport:
    from azure.core.exceptions import ResourceNotFoundError

    from shared.core.resource_ids import normalize

    inventory = inventory or observe(context)
    with permissions.writing(context, "Microsoft.Authorization/locks/read",
                             f"/subscriptions/{context.settings.subscription_id}"):
        existing = app_locks(context)
    graph = inventory.graph
    actions = plan_locks(graph, {key: lock.notes for key, lock in existing.ours.items()}, taken=existing.taken,
                         lock_scopes={key: lock.scope for key, lock in existing.ours.items()})
    owner = lock_owner(context)
    report = GuardReport(actions=actions, guarded=len(graph), untrusted=dict(inventory.untrusted))
    if inventory.unreadable_accounts:
        # An account we could not list may hold pools that still use an image: releasing now
        # could unprotect it. Keep every lock until every account can be read again.
        actions = [a for a in actions if a.kind != "remove"]
        report.skipped_release = True
    broken = broken_pools(graph, inventory.missing_images - inventory.dropped_sources)
    if broken:
        # What a deleted image was built from can no longer be read, and is what a rebuild needs:
        # keep the locks placed for the pools that depend on it until those pools are gone.
        report.kept = [a.resource_id for a in actions if a.kind == "remove"
                       and held_for_missing(existing.ours[normalize(a.resource_id)].notes, broken)]
        actions = [a for a in actions if not (a.kind == "remove" and a.resource_id in report.kept)]
        report.actions = [a for a in report.actions if not (a.kind == "remove" and a.resource_id in report.kept)]
    if dry_run:
        return report
    for action in actions:
        if action.kind == "put" and normalize(action.resource_id) in inventory.missing_images:
            continue  # nothing to lock: the resource is gone (an ImageMissing alert covers that)
        lock_action = ("Microsoft.Authorization/locks/delete" if action.kind == "remove"
                       else "Microsoft.Authorization/locks/write")
        try:
            if action.kind in ("put", "refresh"):
                locks.put_lock(context.clients, action.resource_id, LOCK_NAME, action.notes, owner)
            else:
                # Re-read the lock just before removing it: only the app's own (name, owner, notes) is ever removed.
                why = ownership.lock_removal_refusal(None if owner is None
                                                     else locks.get_lock(context.clients, action.resource_id,
                                                                         LOCK_NAME),
                                                     owner, lock_name=LOCK_NAME, notes_head=NOTES_HEAD)
                if why is not None:
                    report.not_removed[action.resource_id] = why
                    log.warning("guard: kept lock on %s: %s", action.resource_id, why)
                    continue
                locks.delete_lock(context.clients, action.resource_id, LOCK_NAME)
            report.applied.append(action)
            log.info("guard: %s lock on %s", action.kind, action.resource_id)
        except ResourceNotFoundError:
            report.missing.append(action.resource_id)  # deleted since it was referenced: nothing to lock or release
        except Exception as exc:  # one failure (e.g. permission) must not stop the others
            report.failed[action.resource_id] = f"{type(exc).__name__}: {exc}"
            log.warning("guard: could not %s lock on %s: %s", action.kind, action.resource_id, exc)
            if permissions.is_denied(exc):
                permissions.report_denied(context, lock_action, action.resource_id, exc)
    if owner is None and report.not_removed:
        _report_unknown_identity(context, sorted(report.not_removed))
    return report


def _report_unknown_identity(context: AppContext, kept: list[str]) -> None:
    """Without its own client id the app removes no lock (it cannot tell its locks from anyone's): images no pool uses
    stay locked, and a person's delete of them is refused. Say so to a person, once a day, rather than only in the
    log."""
    from shared.core import alerts
    from shared.core.alerts import Alert, AlertPublisher

    now = context.clock.now()
    scope = f"/subscriptions/{context.settings.subscription_id}"
    action = "Microsoft.Authorization/locks/delete"
    alert = Alert(
        alerts.PERMISSION_DENIED, alerts.SEVERITY_WARNING, scope,
        f"The app removes none of its locks: {len(kept)} kept",
        "the app does not know its own client id (AZURE_CLIENT_ID is not set), so it cannot tell its "
        f"'{LOCK_NAME}' locks "
        f"from locks a person placed under that name, and removes none: {', '.join(kept[:10])} stay locked although no "
        "managed pool uses them, and deleting them fails with ScopeLocked.",
        "set the app setting AZURE_CLIENT_ID to the client id of the Function App's user-assigned managed "
        "identity (the "
        "deployment sets it: re-run it); from then on the app names itself as its locks' owner and removes them "
        "when no pool "
        "uses them. The locks listed here were placed without an owner, so the app will not remove them even "
        "then: once you "
        f"have checked that no pool uses a resource, remove its lock by hand (az lock delete --name {LOCK_NAME} "
        "--resource <id>)",
        f"{action.lower()}|client-id|{now:%Y-%m-%d}", now,
        {"action": action, "scope": scope, "code": "AppClientIdUnknown", "setting": "AZURE_CLIENT_ID",
         "locks": kept[:50]})
    try:
        AlertPublisher(context).publish(alert)
    except Exception as exc:  # the guard's pass goes on; the next one tries again
        log.warning("could not publish the unknown-client-id alert: %s", exc)


@dataclass(frozen=True)
class GuardOutcome:
    detail: str
    acted: bool  # False: routine, nothing to do (a resource no managed pool uses, someone else's lock)


def on_event(context: AppContext, event: ResourceEvent) -> GuardOutcome:
    """React to a system-topic event about a guarded resource, a pool or one of the app's locks."""
    from shared.core import alerts
    from shared.core.alerts import Alert, AlertPublisher
    from shared.core.resource_ids import normalize
    from shared.guard.lock_plan import dependants, kind_of

    lock = system_events.lock_of(event)
    if lock is not None:
        scope, name = lock
        if event.type == system_events.DELETE_SUCCESS and name.lower() == LOCK_NAME and kind_of(scope):
            # Re-lock at once while references remain. Also after the app's own removals: an instance
            # that observed "no pool" may release a lock just as another locks it for a new pool.
            report = reconcile(context)
            return GuardOutcome(f"lock removed on {scope}; {len(report.applied)} lock change(s)",
                                acted=bool(report.applied))
        return GuardOutcome("ignored: not the app's lock", acted=False)
    if event.resource_type.lower() == "microsoft.batch/batchaccounts/pools":
        report = reconcile(context)  # a pool appeared or went: protect or release what it uses
        return GuardOutcome(f"pool {event.outcome.lower()}: {len(report.applied)} lock change(s)",
                            acted=bool(report.applied))
    resource_id = event.resource_id.raw if event.resource_id else event.subject
    if kind_of(resource_id) is None:
        return GuardOutcome("ignored: not a guarded resource type", acted=False)
    if system_events.is_caused_by(event, context.settings.app_ids):
        # The app's own deletes (an intermediate managed image it no longer needs) are not incidents.
        return GuardOutcome("ignored: the app's own operation", acted=False)
    inventory = observe(context)
    pools = dependants(inventory.graph, resource_id)
    if not pools:
        return GuardOutcome("not used by any managed pool", acted=False)
    pool_list = [p.label for p in pools]
    now = context.clock.now()
    who = event.caller or "an unknown caller"
    if system_events.is_delete_failure(event):
        alert = Alert(
            alerts.DELETE_BLOCKED, alerts.SEVERITY_WARNING, resource_id,
            f"Blocked a delete of an image still in use ({len(pools)} pool(s))",
            f"{who} tried to delete {resource_id}, which Batch pool(s) {', '.join(pool_list)} still use; the app's "
            f"CanNotDelete lock '{LOCK_NAME}' stopped it. Deleting it would leave those pools unable to grow "
            "(AllocationFailed).",
            "delete or move the pools to another image first; the lock is released automatically when no pool "
            "uses the image",
            event.correlation_id or event.id, now,
            {"caller": who, "pools": pool_list, "operation": event.operation_name})
    elif system_events.is_delete_success(event):
        alert = Alert(
            alerts.IMAGE_MISSING, alerts.SEVERITY_CRITICAL, resource_id,
            f"An image in use was deleted: {len(pools)} pool(s) can no longer scale",
            f"{who} deleted {resource_id} (its lock must have been removed first). Batch pool(s) "
            f"{', '.join(pool_list)} "
            "use it and will fail every resize with AllocationFailed.",
            "rebuild the image (re-tag the snapshots of a new version) and move the pools to it, or restore the "
            "resource from backup",
            normalize(resource_id), now, {"caller": who, "pools": pool_list, "operation": event.operation_name})
    else:
        return GuardOutcome("ignored: neither a delete nor a failed delete", acted=False)
    AlertPublisher(context).publish(alert)
    return GuardOutcome(f"{alert.type}: {', '.join(pool_list)}", acted=True)
