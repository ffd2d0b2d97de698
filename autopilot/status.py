"""``status``, ``plan`` and ``reconcile`` against a subscription: a real one (settings from the environment, as
the Function App has them) or the local emulator (``AUTOPILOT_CREDENTIAL=emulator``).

Everything here goes through the app's own code: ``shared.guard.references.observe`` for what pools use,
``shared.watch.tick.tick`` and ``shared.guard.reconcile.reconcile`` for what the timers do, ``shared.watch.episodes``
for the pool watch's records. ``status`` and ``plan`` only read (GETs, and Table queries); ``reconcile`` acts.
The JSON structures are versioned contracts: ``autopilot/schemas/{status,plan,reconcile}.schema.json``
(docs/cli.md shows them; a test keeps the two in step).
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.core.clock import iso_z as iso

log = logging.getLogger("autopilot.cli")

STATUS_VERSION = 1
PLAN_VERSION = 1
RECONCILE_VERSION = 1
FAILING_HEALTH = frozenset({"failing", "stopped", "gave-up", "invalid-metadata", "image-missing"})


@dataclass(frozen=True)
class FixedClock:
    """The moment the command looked (every decision of one command uses the same "now")."""

    moment: datetime

    def now(self) -> datetime:
        return self.moment


def emulator_now(settings: Any) -> datetime | None:
    """The emulator's virtual time (``GET /_emulator/clock``), trusting only the emulator's CA; None if unavailable."""
    url = settings.arm_endpoint.rstrip("/") + "/_emulator/clock"
    context = ssl.create_default_context(
        cafile=settings.ca_bundle) if settings.ca_bundle else ssl.create_default_context()
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return datetime.fromisoformat(json.loads(response.read())["now"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("could not read the emulator's virtual clock at %s (%s); using the system clock", url, exc)
        return None


def build_context() -> Any:
    """An AppContext from the environment (raises shared.config.settings.SettingsError with every problem)."""
    from shared.config.settings import check_startup, load_settings
    from shared.core.clock import SystemClock
    from shared.core.context import AppContext

    settings = load_settings()
    check_startup(settings)  # what the Function App would refuse to start with, refused here too
    moment = emulator_now(settings) if settings.is_emulator else None
    return AppContext.from_settings(settings, clock=FixedClock(moment or SystemClock().now()))


def _account_name(account_id: str) -> str:
    return account_id.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------


def episode_json(episode: Any, now: datetime) -> dict[str, Any]:
    backing_off = episode.backoff.backoff_until is not None and episode.backoff.backoff_until > now
    return {
        "started": iso(episode.started), "attempts": episode.attempts, "requests": episode.requests,
        "failingSince": iso(episode.failing_since), "awaitingOutcome": episode.awaiting_outcome,
        "lastRequestTime": iso(episode.last_request_time),
        "backoff": {"failures": episode.backoff.failures, "until": iso(episode.backoff.backoff_until),
                    "active": backing_off},
        "lastErrorCode": episode.last_error_code, "lastErrorCause": episode.last_error_cause,
        "lastFix": episode.last_fix,
        "stoppedReason": episode.stopped_reason, "gaveUp": episode.gave_up, "recoveredAt": iso(episode.recovered_at),
        "lastAlertType": str(episode.last_alert_type) if episode.last_alert_type else None,
        "lastAlertTime": iso(episode.last_alert_time),
    }


def _episodes(context: Any, account_ids: list[str]) -> dict[tuple[str, str], Any]:
    """Episode records by (account id lower, pool id lower); unreadable records are skipped with a warning."""
    from shared.core.state import EPISODES, safe_key
    from shared.watch.episodes import Episode

    table = context.state.table(EPISODES)
    out: dict[tuple[str, str], Any] = {}
    for account_id in account_ids:
        for record in table.query(safe_key(account_id)):
            try:
                episode = Episode.from_dict(record.data)
            except ValueError as exc:
                log.warning("skipping episode record %s/%s: %s", record.partition, record.row, exc)
                continue
            out[(account_id.lower(), episode.pool_id.lower() or record.row)] = episode
    return out


def _node_counts(context: Any, account_id: str) -> dict[str, dict[str, int]]:
    """Per pool (lower-case id): usable / unhealthy / booting / total nodes from one ``/nodecounts`` sweep of the
    account (paged at 10 pools a page in the older spec); {} when the account cannot be read."""
    from shared.resources import batch_accounts
    from shared.watch.node_health import BOOTING, FAILED, USABLE

    out: dict[str, dict[str, int]] = {}
    try:
        account = batch_accounts.get_account(context.clients, account_id)
        for item in context.clients.batch_account(account.endpoint).list_pool_node_counts():
            data = item.as_dict()
            row = {"usable": 0, "unhealthy": 0, "booting": 0, "total": 0}
            for kind in ("dedicated", "lowPriority"):
                for state, n in (data.get(kind) or {}).items():
                    if state == "total" or not isinstance(n, int):
                        continue
                    row["total"] += n
                    lowered = state.lower()
                    for name, states in (("usable", USABLE), ("unhealthy", FAILED), ("booting", BOOTING)):
                        if lowered in states:
                            row[name] += n
            out[str(data.get("poolId") or "").lower()] = row
    except Exception as exc:  # node counts are a courtesy: the pool rows stand without them
        log.warning("could not read node counts of %s: %s", account_id, exc)
    return out


def _pool_row(account_id: str, raw: dict[str, Any], episode: Any, now: datetime, missing_images: set[str],
              nodes: dict[str, int] | None = None) -> dict[str, Any]:
    from shared.core import pool_metadata
    from shared.core.resource_ids import normalize
    from shared.watch import canary
    from shared.watch.pool_policy import PoolIntentError, PoolView, desired_target

    view = PoolView.from_dict(raw, account_id)
    problem = None
    try:
        desired = desired_target(view, now)
    except PoolIntentError as exc:
        desired, problem = None, str(exc)
    metadata = dict(view.metadata)
    if desired is not None:
        desired = canary.cap(desired, metadata)  # what the watch drives towards while a canary is pending or failed
    at_target = (desired is not None and view.current_dedicated == desired.dedicated
                 and view.current_spot == desired.spot)
    if not view.is_managed:
        health = "unmanaged"
    elif problem:
        health = "invalid-metadata"
    elif canary.state(metadata) == canary.FAILED:
        health, problem = "stopped", (f"version {metadata.get(pool_metadata.VERSION, '?')} failed its canary "
                                      "(ImageUnhealthy): the pool stays at "
                                      f"{canary.size(metadata)} node(s); publish a rebuilt version (see the alert's "
                                      "checklist)")
    elif view.image_id and normalize(view.image_id) in missing_images:
        health, problem = "image-missing", f"the pool's image {view.image_id} no longer exists: the pool cannot grow"
    elif desired is None:
        health = "no-target"
    elif episode is not None and not episode.is_closed and episode.gave_up:
        health, problem = "gave-up", episode.stopped_reason
    elif episode is not None and not episode.is_closed and episode.stopped_reason:
        health, problem = "stopped", f"{episode.stopped_reason}. {episode.last_fix or ''}".strip()
    elif not view.is_steady:
        health = "resizing"
    elif at_target:
        health = "ok"
    elif (episode is not None and not episode.is_closed and episode.backoff.backoff_until
          and episode.backoff.backoff_until > now):
        health = "backing-off"
    elif view.resize_errors:
        health, problem = "failing", ", ".join(e.code for e in view.resize_errors)
    else:
        health = "pending"
    return {
        "account": _account_name(account_id), "accountId": account_id, "id": view.pool_id, "managed": view.is_managed,
        "family": metadata.get(pool_metadata.FAMILY), "version": metadata.get(pool_metadata.VERSION),
        "image": view.image_id,
        "vmSize": view.vm_size,
        "desired": {"dedicated": desired.dedicated, "spot": desired.spot,
                    "source": desired.source} if desired else None,
        "current": {"dedicated": view.current_dedicated, "spot": view.current_spot},
        "target": {"dedicated": view.target_dedicated, "spot": view.target_spot},
        "allocationState": view.allocation_state,
        "allocationStateTransitionTime": iso(view.allocation_state_transition_time),
        "resizeErrors": [{"code": e.code, "message": e.message} for e in view.resize_errors],
        "health": health, "problem": problem,
        "episode": episode_json(episode, now) if episode is not None else None,
        "nodes": nodes,
        "canary": canary.state(metadata),
    }


RECENT_ALERTS = 10
RECENT_ALERTS_WINDOW_DAYS = 7


def recent_alerts(context: Any, now: datetime) -> list[dict[str, Any]]:
    """The last alerts the app sent (from its de-duplication table, which keeps each alert's diagnosis and fix), newest
    first."""
    from datetime import timedelta

    from shared.core.clock import parse_iso
    from shared.core.state import ALERTS

    since = now - timedelta(days=RECENT_ALERTS_WINDOW_DAYS)
    rows = []
    for record in context.state.table(ALERTS).query():
        data = record.data
        when = parse_iso(data.get("occurredAt")) or parse_iso(data.get("claimedAt"))
        if when is None or when < since or not data.get("sent"):
            continue
        rows.append({"time": iso(when), "type": str(data.get("type") or ""),
                     "severity": str(data.get("severity") or "info"),
                     "subject": str(data.get("subject") or ""), "title": str(data.get("title") or ""),
                     # alerts claimed before the app stored these show an empty diagnosis and fix
                     "diagnosis": str(data.get("diagnosis") or ""), "fix": str(data.get("fix") or "")})
    rows.sort(key=lambda r: r["time"], reverse=True)
    return rows[:RECENT_ALERTS]


def collect_status(context: Any) -> dict[str, Any]:
    from shared.guard.references import account_ids, observe

    now = context.clock.now()
    accounts = account_ids(context)
    inventory = observe(context)
    pools = _status_pools(context, inventory, accounts, now)
    images = _status_images(context, inventory, _locks_by_resource(context))
    problems, warnings, ignored = _problems_and_warnings(context, inventory, pools, images)
    return {
        "statusVersion": STATUS_VERSION,
        "generatedAt": iso(now),
        "subscriptionId": context.settings.subscription_id,
        "target": "emulator" if context.settings.is_emulator else "azure",
        "accounts": [{"id": a, "name": _account_name(a), "readable": a not in inventory.unreadable_accounts,
                      "error": inventory.unreadable_accounts.get(a)} for a in accounts],
        "pools": pools,
        "images": images,
        "recentAlerts": recent_alerts(context, now),
        "problems": problems,
        "warnings": warnings,
        "ignoredEvents": ignored,
        "untrustedReferences": dict(sorted(inventory.untrusted.items())),
    }


def _status_pools(context: Any, inventory: Any, accounts: list[str], now: datetime) -> list[dict[str, Any]]:
    """Every pool of the readable accounts with its episode, node counts and rollout."""
    episodes = _episodes(context, [a for a in accounts if a not in inventory.unreadable_accounts])
    pools = []
    for account_id, raw_pools in inventory.pools.items():
        counts = _node_counts(context, account_id) if raw_pools else {}
        for raw in raw_pools:
            episode = episodes.get((account_id.lower(), str(raw.get("id", "")).lower()))
            pools.append(_pool_row(account_id, raw, episode, now, inventory.missing_images,
                                   counts.get(str(raw.get("id", "")).lower())))
    pools.sort(key=lambda p: (p["account"], p["id"].lower()))
    rollouts = _rollout_rows(context, inventory)
    for p in pools:
        p["rollout"] = rollouts.get(f"{p['accountId']}/pools/{p['id']}".lower())
    return pools


def _locks_by_resource(context: Any) -> dict[str, list[dict[str, Any]]]:
    """Every lock in the subscription on an image-like resource, grouped by resource."""
    from shared.core.resource_ids import lock_target, normalize
    from shared.guard.lock_plan import LOCK_NAME

    locks_by_resource: dict[str, list[dict[str, Any]]] = {}
    for lock in context.clients.locks.management_locks.list_at_subscription_level():
        target = lock_target(lock.id or "")
        if target is None:
            continue
        locks_by_resource.setdefault(normalize(target[0]), []).append({
            "name": lock.name or target[1], "level": str(lock.level),
            "owner": "app" if (lock.name or target[1]).lower() == LOCK_NAME else "other",
            "notes": lock.notes or ""})
    return locks_by_resource


def _status_images(context: Any, inventory: Any,
                   locks_by_resource: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What managed pools use (and what those were built from), plus every version of the families' definitions."""
    from shared.core.resource_ids import normalize
    from shared.guard.lock_plan import GALLERY_VERSION, MANAGED_IMAGE, SNAPSHOT, kind_of
    from shared.resources import compute

    resources: dict[str, dict[str, Any]] = {}
    for key, guarded in inventory.graph.items():
        resources[key] = {"id": guarded.resource_id, "kind": guarded.kind,
                          "pools": sorted(f"{_account_name(p.account_id)}/{p.pool_id}" for p in guarded.pools)}
    for version in _family_versions(context):
        resources.setdefault(normalize(version.id), {"id": version.id, "kind": GALLERY_VERSION, "pools": []})
    images = []
    for key, entry in sorted(resources.items()):
        kind = entry["kind"] or kind_of(entry["id"])
        if key in inventory.missing_images:
            resource = None
        elif kind == SNAPSHOT:
            resource = compute.get_snapshot(context.clients, entry["id"])
        else:
            resource = compute.get_any_image(context.clients, entry["id"])
        state = (((resource or {}).get("properties") or {}).get("provisioningState")
                 or (resource or {}).get("provisioning_state"))
        images.append({
            "kind": {GALLERY_VERSION: "galleryImageVersion", MANAGED_IMAGE: "managedImage",
                     SNAPSHOT: "snapshot"}.get(kind, "other"),
            "id": entry["id"], "exists": resource is not None,
            "provisioningState": state if resource is not None else None,
            "pools": entry["pools"], "locks": locks_by_resource.get(key, []),
            "protected": any(lk["owner"] == "app" for lk in locks_by_resource.get(key, [])),
        })
    return images


def _family_versions(context: Any) -> list[Any]:
    """Every version of the configured families' image definitions the app may read."""
    from shared.config.families import parse_families

    found = []
    families = parse_families(context.settings.families_json) if context.settings.families_json else None
    for family in families or []:
        gallery = family.gallery
        foreign = gallery.subscription and gallery.subscription.lower() != context.settings.subscription_id.lower()
        if foreign and not context.settings.allow_cross_subscription_gallery:
            continue  # a gallery in another subscription the app may not read: its versions show when a pool uses them
        try:
            from shared.resources.compute import compute_client_for

            client = compute_client_for(context.clients, gallery.subscription)
            listing = client.gallery_image_versions.list_by_gallery_image
            versions = list(listing(gallery.resource_group, gallery.name, gallery.image_definition))
        except Exception as exc:  # the definition may not exist yet (no version built): nothing to show
            log.info("no versions listed for family %s: %s", family.name, exc)
            versions = []
        found += versions
    return found


def _problems_and_warnings(context: Any, inventory: Any, pools: list[dict[str, Any]],
                           images: list[dict[str, Any]]) -> tuple[list[str], list[str], dict[str, int]]:
    """What makes status exit 1 (problems), what a person may want to look at (warnings), and the events the app
    ignored in the last 24 hours."""
    from shared.core.resource_ids import normalize
    from shared.pipeline.scope import ignored_counts

    problems = [f"account {a}: cannot list pools ({e})" for a, e in inventory.unreadable_accounts.items()]
    problems += [f"pool {p['account']}/{p['id']}: {p['health']}" + (f" — {p['problem']}" if p["problem"] else "")
                 for p in pools
                 if p["health"] in FAILING_HEALTH]
    # A pool's own image gone is a problem (it cannot grow). What that image was built from (the intermediate managed
    # image a family does not keep, the snapshots) is not: the version is an independent copy. The images table still
    # shows it missing.
    pool_images = {normalize(p["image"]) for p in pools if p["image"]}
    problems += [f"image {i['id']} is used by {', '.join(i['pools'])} but does not exist" for i in images
                 if not i["exists"] and i["pools"] and normalize(i["id"]) in pool_images]
    warnings = [f"image {i['id']} is used by {', '.join(i['pools'])} but has no lock from the app yet (the guard adds "
                "it on its next pass, "
                "or run `autopilot reconcile`)" for i in images if i["exists"] and i["pools"] and not i["protected"]]
    warnings += [f"pool {p['account']}/{p['id']}: {p['health']}" + (f" — {p['problem']}" if p["problem"] else "")
                 for p in pools
                 if p["health"] == "no-target"]
    ignored = ignored_counts(context)
    warnings += [f"pool metadata names {rid}, which the guard does not follow: {why}"
                 for rid, why in sorted(inventory.untrusted.items())]
    warnings += [f"{count} event(s) ignored in the last 24 hours: {reason} (outside every family's resource groups)"
                 for reason, count in sorted(ignored.items())]
    return problems, warnings, ignored


def _rollout_rows(context: Any, inventory: Any) -> dict[str, dict[str, Any]]:
    """Per pool in a configured family's rollout: the version it runs, the version pending and the stage (a dry run:
    nothing acts)."""
    from shared.lifecycle import rollout_runner
    from shared.resources import batch_accounts

    rows: dict[str, dict[str, Any]] = {}
    for account_id, raw_pools in inventory.pools.items():
        try:
            account = batch_accounts.get_account(context.clients, account_id)
            report = rollout_runner.run_account(context, account, raw_pools, dry_run=True)
        except Exception as exc:  # status must show what it can
            log.info("no rollout status for %s: %s", account_id, exc)
            continue
        for path, row in report.pending.items():
            rows[path.lower()] = {"runs": row.get("runs") or None, "pending": row.get("pending") or None,
                                  "stage": row.get("stage") or "", "runningTasks": row.get("runningTasks")}
    return rows


def status_failing(status: dict[str, Any]) -> bool:
    """Whether ``status`` should exit 1: unreadable accounts, failing pools, or images in use that are gone."""
    return bool(status["problems"])


# ---------------------------------------------------------------------------------------------
# plan and reconcile
# ---------------------------------------------------------------------------------------------


def _decisions(context: Any, inventory: Any) -> list[dict[str, Any]]:
    """What the watch would decide for each managed pool now (pure decisions; an image is read only when Batch's
    generic failure message makes the watch check whether the pool's image still exists)."""
    from shared.resources import compute
    from shared.watch.episodes import Action, decide
    from shared.watch.pool_policy import PoolIntentError, PoolView, WatchPolicy, desired_target

    policy = WatchPolicy.from_settings(context.settings)
    now = context.clock.now()
    episodes = _episodes(context, list(inventory.pools))
    out = []
    for account_id, pools in inventory.pools.items():
        for raw in pools:
            view = PoolView.from_dict(raw, account_id)
            if not view.is_managed:
                continue
            label = f"{_account_name(account_id)}/{view.pool_id}"
            try:
                desired = desired_target(view, now)
            except PoolIntentError as exc:
                out.append({"pool": label, "action": "invalid-metadata", "reason": str(exc), "resize": None,
                            "alerts": []})
                continue
            episode = episodes.get((account_id.lower(), view.pool_id.lower()))
            try:
                decision = decide(view, desired, episode, now, policy)
                if decision.action == Action.VERIFY_IMAGE and decision.image_id:
                    image = compute.get_any_image(context.clients, decision.image_id)
                    exists = (image is not None
                              and str((image.get("properties") or {}).get("provisioningState", "")).lower()
                              in ("succeeded", ""))
                    decision = decide(view, desired, episode, now, policy, image_exists=exists)
            except PoolIntentError as exc:  # e.g. autopilot.nodeDeallocationOption, read only for a shrink
                out.append({"pool": label, "action": "invalid-metadata", "reason": str(exc), "resize": None,
                            "alerts": []})
                continue
            step = decision.step
            out.append({
                "pool": label, "action": decision.action.value, "reason": decision.reason,
                "resize": {"dedicated": step.target_dedicated, "spot": step.target_spot,
                           "resizeTimeout": step.resize_timeout_iso,
                           "nodeDeallocationOption": step.node_deallocation_option} if step else None,
                "alerts": [str(a.type) for a in decision.alerts],
            })
    return sorted(out, key=lambda d: d["pool"].lower())


def _lock_action(action: Any) -> dict[str, Any]:
    return {"kind": action.kind, "resource": action.resource_id, "notes": action.notes}


def plan(context: Any) -> dict[str, Any]:
    from shared.guard.reconcile import reconcile
    from shared.guard.references import observe
    from shared.watch.tick import tick

    now = context.clock.now()
    inventory = observe(context)
    guard = reconcile(context, dry_run=True, inventory=inventory)
    watch = tick(context, dry_run=True)
    return {
        "planVersion": PLAN_VERSION,
        "generatedAt": iso(now),
        "subscriptionId": context.settings.subscription_id,
        "watch": {"accounts": watch.accounts, "pools": watch.pools, "managed": watch.managed,
                  "stalled": list(watch.stalled),
                  "autoscale": list(getattr(watch, "autoscale", [])),
                  "unreadableAccounts": dict(watch.unreadable_accounts), "invalidPools": dict(watch.invalid_pools),
                  "decisions": _decisions(context, inventory)},
        "guard": {"guarded": guard.guarded, "skippedRelease": guard.skipped_release,
                  "actions": [_lock_action(a) for a in guard.actions
                              if not (guard.skipped_release and a.kind == "remove")],
                  "missingImages": sorted(inventory.missing_images)},
        "rollout": {"actions": list(getattr(watch, "rollout_actions", [])),
                    "errors": dict(getattr(watch, "rollout_errors", {}))},
        "retention": _retention_plan(context),
    }


def _retention_plan(context: Any) -> list[dict[str, Any]]:
    """What retention would delete (and why each other version stays), per family with ``retention``; deletes
    nothing."""
    from shared.lifecycle import version_retention as retention
    from shared.pipeline.stages import families_of

    out: list[dict[str, Any]] = []
    for family in families_of(context):
        if family.retention is None:
            continue
        try:
            report = retention.run(context, family, dry_run=True)
        except Exception as exc:  # e.g. the definition does not exist yet
            out.append({"family": family.name, "version": None, "id": None, "delete": False,
                        "reason": f"not planned: {exc}"})
            continue
        out += [{"family": family.name, "version": v.version, "id": v.resource_id, "delete": v.delete,
                 "reason": v.reason}
                for v in report.verdicts]
    return out


def reconcile_now(context: Any, *, handle_stalls: bool = False) -> dict[str, Any]:
    """One watch pass and one guard pass, as the two timers do. The watch publishes a PoolResizeStalled event per
    stalled pool (the Function App's resize_stalled handles it); ``handle_stalls`` handles them here too."""
    from autopilot.messages import without_class_names
    from shared.guard.reconcile import reconcile
    from shared.watch.tick import handle_stall, tick

    now = context.clock.now()
    watch = tick(context)
    handled = []
    if handle_stalls:
        for subject in watch.stalled:
            account_id, pool_id = subject.rsplit("/pools/", 1)
            try:
                handled.append({"pool": f"{_account_name(account_id)}/{pool_id}",
                                "result": handle_stall(context, account_id, pool_id), "ok": True})
            except Exception as exc:  # one pool's failure must not hide the others
                handled.append({"pool": f"{_account_name(account_id)}/{pool_id}",
                                "result": f"failed: {' '.join(str(exc).split())[:300]}", "ok": False})
    guard = reconcile(context)
    return {
        "reconcileVersion": RECONCILE_VERSION,
        "generatedAt": iso(now),
        "subscriptionId": context.settings.subscription_id,
        "watch": {"accounts": watch.accounts, "pools": watch.pools, "managed": watch.managed,
                  "stalled": list(watch.stalled),
                  "autoscale": list(getattr(watch, "autoscale", [])),
                  "stallEventsPublished": len(watch.stalled), "alerts": watch.alerts, "handled": handled,
                  "unreadableAccounts": dict(watch.unreadable_accounts), "invalidPools": dict(watch.invalid_pools)},
        "guard": {"guarded": guard.guarded, "skippedRelease": guard.skipped_release,
                  "applied": [_lock_action(a) for a in guard.applied],
                  "failed": {resource: without_class_names(error) for resource, error in guard.failed.items()},
                  "missing": list(guard.missing)},
    }


def reconcile_failed(result: dict[str, Any]) -> bool:
    return bool(result["guard"]["failed"] or result["watch"]["unreadableAccounts"]
                or any(not h["ok"] for h in result["watch"]["handled"]))


# ---------------------------------------------------------------------------------------------
# Schemas (documented in docs/cli.md): JSON files beside the code, like every other schema of the project
# ---------------------------------------------------------------------------------------------

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def load_schema(name: str) -> dict[str, Any]:
    """``autopilot/schemas/{name}.schema.json``: status, plan, reconcile (and report, autopilot/report.py)."""
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


STATUS_SCHEMA: dict[str, Any] = load_schema("status")
PLAN_SCHEMA: dict[str, Any] = load_schema("plan")
RECONCILE_SCHEMA: dict[str, Any] = load_schema("reconcile")
