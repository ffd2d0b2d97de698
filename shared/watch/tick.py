"""The pool watch: a tick that finds stalled pools, and the reaction to one stall event.

A tick costs one Batch list call per account (``$select`` of the fields the policy reads) and one
Table query per account for the episode records: O(accounts), never a GET per pool. Pools that need
a resize are published as ``PoolResizeStalled`` events on the app's custom topic; the
``resize_stalled`` function re-reads that one pool, decides again with fresh state, and resizes
with ``If-Match`` on the pool's ETag. The event is the contract between the two, so other
subscribers (a dashboard, a Logic App) see every stall too.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from shared.core import alerts, heap
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import iso, parse_iso
from shared.core.context import AppContext
from shared.core.event_routing import POOL_RESIZE_STALLED
from shared.core.resource_ids import pool_resource_id
from shared.core.state import EPISODES, WATCH, ConcurrencyConflict, Record, StateTable, safe_key
from shared.guard.references import account_ids
from shared.resources import batch_accounts, batch_pools, compute
from shared.resources.batch_pools import ResizeResult
from shared.watch.ceilings import TickLimits
from shared.watch.episode_record import Episode
from shared.watch.episodes import Action, Decision, decide
from shared.watch.node_watch import NodeWatch, NodeWatchReport
from shared.watch.pool_limits import Ceiling
from shared.watch.pool_policy import (
    DesiredTarget,
    PoolIntentError,
    PoolView,
    WatchPolicy,
    at_target,
    desired_target,
)
from shared.watch.replicas import ReplicaReport, ReplicaWatch

log = logging.getLogger("autopilot.watch")

STALL_DATA_VERSION = "1.0"
PUBLISH_BATCH = 100  # events per publish call: well under Event Grid's 1 MB request limit
_NO_ERRORS: Mapping[str, Any] = MappingProxyType({})  # what a stall event needs of a pool with no resize errors: shared

@dataclass
class TickReport:
    accounts: int = 0
    pools: int = 0
    managed: int = 0
    stalled: list[str] = field(default_factory=list)
    alerts: int = 0
    unreadable_accounts: dict[str, str] = field(default_factory=dict)
    invalid_pools: dict[str, str] = field(default_factory=dict)
    # managed pools with autoscale on: never resized, reported instead
    autoscale: list[str] = field(default_factory=list)
    full_scan: bool = True  # False: only the accounts with pools in an open episode were listed
    # UserSubscription accounts: the subscription's quotas apply, not read
    quota_not_judged: list[str] = field(default_factory=list)
    nodes: NodeWatchReport = field(default_factory=NodeWatchReport)  # node health: looks, repairs, canaries, verdicts
    rollout_actions: list[str] = field(default_factory=list)  # what the image rollouts did (or, in a dry run, would do)
    rollout_status: dict[str, dict[str, str]] = field(default_factory=dict)  # pool path -> runs / pending / stage
    rollout_errors: dict[str, str] = field(default_factory=dict)
    replicas: ReplicaReport = field(default_factory=ReplicaReport)  # versions whose replicas the full scan raised


def stall_event(account_id: str, pool: Mapping[str, Any], view: PoolView, decision: Decision, now: datetime,
                ceilings: Sequence[Ceiling] = ()) -> dict[str, Any]:
    """The documented ``PoolResizeStalled`` event (docs/events.md)."""
    subject = pool_resource_id(account_id, view.pool_id)
    desired = decision.episode
    data = {
        "accountId": account_id,
        "poolId": view.pool_id,
        "reason": decision.reason,
        "action": decision.action.value,
        "allocationState": view.allocation_state,
        "allocationStateTransitionTime": iso(view.allocation_state_transition_time)
        if view.allocation_state_transition_time else None,
        "currentDedicatedNodes": view.current_dedicated,
        "currentLowPriorityNodes": view.current_spot,
        "targetDedicatedNodes": view.target_dedicated,
        "targetLowPriorityNodes": view.target_spot,
        "desiredDedicatedNodes": desired.desired_dedicated if desired else None,
        "desiredLowPriorityNodes": desired.desired_spot if desired else None,
        "resizeErrors": pool.get("resizeErrors") or [],
        "eTag": view.etag,
        "detectedAt": iso(now),
        # What the tick found Batch would hold the pool under (node cap, core quotas): the handler sizes the resize to
        # them.
        "ceilings": [c.to_dict() for c in ceilings],
    }
    return {
        # Same pool, same observed state -> same id: duplicates from overlapping ticks are recognisable.
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subject}|{view.etag}|{data['allocationStateTransitionTime']}")),
        "subject": subject,
        "eventType": POOL_RESIZE_STALLED,
        "eventTime": iso(now),
        "dataVersion": STALL_DATA_VERSION,
        "data": data,
    }


# ---------------------------------------------------------------------------------------------
# The tick
# ---------------------------------------------------------------------------------------------


def tick(context: AppContext, *, dry_run: bool = False, full: bool | None = None) -> TickReport:
    """One pass of the watch.

    A *full* scan (every ``AUTOPILOT_WATCH_FULL_SCAN_MINUTES``) lists every account. The ticks in
    between list only the accounts where a pool is in an open episode (resizing, waiting out a
    backoff): a 300-node step takes about six minutes, so a 5-minute cadence alone would leave each
    finished step idle for up to five minutes (docs/benchmarks.md measured 1.84x the ideal time to
    target), while an idle subscription costs one Table query per tick.
    """
    now = context.clock.now()
    table = _EpisodeDeletes(context.state.table(EPISODES))
    report = TickReport()
    episodes = _episode_records(table)  # one query for every account, not one per account
    if full is None:
        # a dry run (the CLI's plan) always looks at everything
        full = True if dry_run else _full_scan_due(context, now)
    report.full_scan = full
    if full and not dry_run:
        _flush_alert_outbox(context)
    nodes = NodeWatch(context, now, full=full, dry_run=dry_run)  # node health and canaries (shared/watch/node_watch.py)
    report.nodes = nodes.report
    accounts = account_ids(context)
    if not report.full_scan:
        open_accounts = {partition for partition, records in episodes.items()
                         if any(_is_open(r) for r in records.values())}
        open_accounts |= nodes.open_accounts()
        open_accounts |= _rollout_accounts(context)  # a pool waiting for its next zero is looked at every tick
        accounts = [a for a in accounts if safe_key(a) in open_accounts]
    limits = TickLimits(context, full=report.full_scan)
    replicas = ReplicaWatch(context, full=report.full_scan, dry_run=dry_run)  # replicas follow the nodes on a version
    scan = _Scan(context, WatchPolicy.from_settings(context.settings), now, dry_run, table, report, episodes, nodes,
                 limits, replicas)

    # Pools on a managed image share a node cap across accounts: they are decided once every account has been listed.
    # Every other pool is decided with its own account's pools only, so a tick holds one account's pools at a time.
    deferred: list[tuple[batch_accounts.BatchAccount, Mapping[str, Any], PoolView]] = []
    for account_id in accounts:
        scan.account(account_id, deferred)
    if report.full_scan and report.unreadable_accounts:
        limits.full = False  # a pool we cannot see may share a managed image's cap: do not judge the cap blind
    for account, raw, view in deferred:
        scan.consider(account, raw, view)
    table.flush()
    report.alerts += nodes.finish()
    report.replicas = replicas.finish()  # only raises counts, so an unreadable account (an under-count) is safe
    if scan.stalls and not dry_run:
        for start in range(0, len(scan.stalls), PUBLISH_BATCH):
            context.clients.event_publisher.send(scan.stalls[start:start + PUBLISH_BATCH])
    if full:
        heap.freeze_once()  # the instance's SDK modules and clients now exist: later collections skip them
    return report


@dataclass
class _Scan:
    """What one tick holds while it reads the accounts and decides each pool; ``stalls`` are the events it raises."""

    context: AppContext
    policy: WatchPolicy
    now: datetime
    dry_run: bool
    table: _EpisodeDeletes
    report: TickReport
    episodes: dict[str, dict[str, Record]]
    nodes: NodeWatch
    limits: TickLimits
    replicas: ReplicaWatch
    stalls: list[dict[str, Any]] = field(default_factory=list)

    def account(self, account_id: str,
                deferred: list[tuple[batch_accounts.BatchAccount, Mapping[str, Any], PoolView]]) -> None:
        """List one account's pools and decide them (those sharing a managed image's cap go to ``deferred``)."""
        context, report, limits = self.context, self.report, self.limits
        report.accounts += 1
        try:
            # A full scan reads the account afresh: its core quotas may have been raised since (one GET per account per
            # full scan).
            account = batch_accounts.get_account(context.clients, account_id, use_cache=not report.full_scan)
            pages = batch_pools.iter_pool_pages(context.clients, account)
            first_page = next(pages, [])
        except Exception as exc:  # one unreachable account must not stop the others
            log.warning("watch: cannot list pools of %s: %s", account_id, exc)
            report.unreadable_accounts[account_id] = str(exc)
            return
        # Page by page into the small views (the heap holds one page of JSON, not the account's list); the quota needs
        # every pool of the account before any is decided, and a stall event needs only the pool's resize errors.
        seen: list[tuple[Mapping[str, Any], PoolView]] = []
        for raw in _stream_pools(account.id, first_page, pages, report):
            view = PoolView.from_list_item(raw, account.id)
            errors = raw.get("resizeErrors")
            seen.append(({"resizeErrors": errors} if errors else _NO_ERRORS, view))
        limits.add_account(account, [view for _, view in seen])
        _run_rollouts(context, account, [view for _, view in seen], report, self.dry_run)
        if not limits.quota_judged(account.id):
            report.quota_not_judged.append(account.id)
            if report.full_scan:
                log.info("watch: %s is in %s pool-allocation mode: the subscription's Compute quotas apply there, "
                         "which the app "
                         "does not read, so it does not size resizes to them; Batch's own quota errors still stop the "
                         "pool with "
                         "QuotaReached", account.id, account.pool_allocation_mode)
        for raw, view in seen:
            report.pools += 1
            if limits.shares_a_cap(view):
                deferred.append((account, raw, view))
            else:
                self.consider(account, raw, view)
        # this account's closed episodes, in transactions (if the tick fails first, the next one deletes them)
        self.table.flush()

    def consider(self, account: batch_accounts.BatchAccount, raw: Mapping[str, Any], view: PoolView) -> None:
        context, report, now, nodes, dry_run = self.context, self.report, self.now, self.nodes, self.dry_run
        records = self.episodes.get(safe_key(account.id), {})
        try:
            desired = desired_target(view, now)
        except PoolIntentError as exc:
            report.invalid_pools[pool_resource_id(account.id, view.pool_id)] = str(exc)
            log.warning("watch: pool %s in %s has invalid autopilot metadata: %s", view.pool_id, account.id, exc)
            return
        if desired is None:
            return  # not managed by the app: left alone
        report.managed += 1
        self.replicas.observe(account.location, view, desired)  # what the pool wants, before a canary caps it
        desired = nodes.gate(view, desired)  # a pending or failed canary caps the target
        subject = pool_resource_id(account.id, view.pool_id)
        record = records.get(safe_key(view.pool_id))
        nodes.observe(account, view, desired, driven=(record is not None and _is_open(record))
                      or (view.target_dedicated, view.target_spot) != (desired.dedicated, desired.spot)
                      or view.current_total != desired.total)
        if self.limits.waits_for_full_scan(view):
            return  # a managed-image pool between full scans: its shared cap is judged on the next full scan
        if record is None and not view.enable_auto_scale and (not view.is_steady or at_target(view, desired)):
            return  # what decide() says of such a pool: nothing to do, no episode to store (skipped: nearly every pool)
        # Ceilings matter only to a steady pool off its target (decide() reads them nowhere else): the pools at target,
        # nearly all of them, skip judging the node cap and quotas.
        ceilings = self.limits.ceilings(view, desired) if view.is_steady and not at_target(view, desired) else []
        if ceilings is None:
            return
        try:
            episode = Episode.from_dict(record.data) if record else None
            decision = decide(view, desired, episode, now, self.policy, ceilings=ceilings)
        except ValueError as exc:
            # PoolIntentError: metadata read only when needed (autopilot.nodeDeallocationOption, for a shrink);
            # ValueError: an episode record this version cannot read. Either way only this pool is skipped.
            report.invalid_pools[subject] = str(exc)
            log.warning("watch: pool %s in %s skipped: %s", view.pool_id, account.id, exc)
            return
        if decision.action == Action.REPORT_AUTOSCALE:
            report.autoscale.append(subject)
            if not dry_run:
                report.alerts += _settle(context, self.table, account.id, view, decision, record, episode)
                report.alerts += _report_autoscale(context, account.id, view, desired, now)
            return
        if decision.action in (Action.RESIZE, Action.VERIFY_IMAGE):
            report.stalled.append(subject)
            self.stalls.append(stall_event(account.id, raw, view, decision, now, ceilings))
        elif not dry_run:
            report.alerts += _settle(context, self.table, account.id, view, decision, record, episode)


class _EpisodeDeletes(StateTable):
    """The tick's handle on the Episodes table: a closed episode's row is not deleted at once (one request per pool, ~2
    ms of CPU each, a third of a 10,000-pool tick when 1 % of the pools finish every minute) but collected and deleted
    in transactions (:meth:`StateTable.delete_many`) when the account is done. Everything else goes straight through."""

    def __init__(self, table: StateTable) -> None:
        super().__init__(table._client, table._create)
        self.pending: list[Record] = []

    def delete(self, record: Record) -> None:
        self.pending.append(record)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            self.delete_many(pending)
        except Exception as exc:  # the rows stay; the next tick decides on them again and deletes them then
            log.warning("watch: could not delete %d closed episode record(s): %s", len(pending), exc)


def _stream_pools(account_id: str, first_page: list[dict[str, Any]], pages: Iterator[list[dict[str, Any]]],
                  report: TickReport) -> Iterator[dict[str, Any]]:
    """The account's pools page by page (the heap holds one page, not the account's whole list). A page that cannot
    be read ends this account's scan, as an unreadable first page does: the pools before it were looked at."""
    yield from first_page
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except Exception as exc:
            log.warning("watch: cannot list the rest of the pools of %s: %s", account_id, exc)
            report.unreadable_accounts[account_id] = str(exc)
            return
        yield from page


def _rollout_accounts(context: AppContext) -> set[str]:
    from shared.lifecycle import rollout_runner

    try:
        return rollout_runner.accounts_in_rollout(context)
    except Exception as exc:  # the rollout must never stop the watch
        log.warning("watch: cannot read the rollouts under way: %s", exc)
        return set()


def _run_rollouts(context: AppContext, account: Any, pools: list[PoolView], report: TickReport, dry_run: bool) -> None:
    """Hook: image rollouts (shared/lifecycle/rollout_runner.py) read the pools this tick just listed; no extra list
    call."""
    from shared.lifecycle import rollout_runner

    try:
        outcome = rollout_runner.run_account(context, account, pools, dry_run=dry_run)
    except Exception as exc:  # one family's rollout problem must not stop the watch of every pool
        log.warning("watch: rollout in %s failed: %s", account.id, exc, exc_info=True)
        report.rollout_errors[account.id] = str(exc)
        return
    report.rollout_actions.extend(outcome.actions)
    report.rollout_status.update(outcome.pending)


def _episode_records(table: StateTable) -> dict[str, dict[str, Record]]:
    grouped: dict[str, dict[str, Record]] = {}
    for record in table.query():
        grouped.setdefault(record.partition, {})[record.row] = record
    return grouped


def _is_open(record: Record) -> bool:
    """The pool is being driven (not at target, not stopped for a person): worth a look every tick."""
    try:
        episode = Episode.from_dict(record.data)
    except ValueError:
        return True  # unreadable: let the per-pool handling report it
    return not episode.is_closed and not episode.is_halted


def _flush_alert_outbox(context: AppContext) -> None:
    """Alerts the topic did not confirm wait in the Alerts table's outbox; the full scan (every few minutes, one
    instance) sends them again. A failure here must not stop the scan: the rows stay for the next one."""
    try:
        AlertPublisher(context).flush_outbox()
    except Exception as exc:
        log.warning("watch: could not read the alert outbox: %s", exc)


def _full_scan_due(context: AppContext, now: datetime) -> bool:
    """Whether this tick scans every account; claimed in Table storage so that concurrent instances
    do not all scan at once (a lost claim still lets the open-episode pools be followed)."""
    table = context.state.table(WATCH)
    record = table.get("watch", "fullScan")
    last = parse_iso(record.data.get("at")) if record else None
    # A second of slack: timer ticks land on the minute, a little late or early.
    if (last is not None and now - last < timedelta(minutes=context.settings.watch_full_scan_minutes)
        - timedelta(seconds=1)):
        return False
    try:
        table.save("watch", "fullScan", {"at": iso(now)}, expected=record)
    except ConcurrencyConflict:
        return False  # another instance claimed this full scan
    return True


# ---------------------------------------------------------------------------------------------
# One stall
# ---------------------------------------------------------------------------------------------


def handle_stall(context: AppContext, account_id: str, pool_id: str, observed_etag: str | None = None,
                 ceilings: Sequence[Ceiling] = ()) -> str:
    """Re-read the pool, decide with fresh state and act. Returns what was done, for the log.

    ``observed_etag`` is the pool's ETag when the tick flagged it (the event's ``eTag``). An event is about that pool
    state only: if the pool has changed since (our own resize for an earlier copy of the event, another instance's,
    a person's), the event is spent and the next tick looks again. Without this, a late or redelivered copy that
    arrives after the resize it caused has already finished (a staged step, a shrink) would start another resize
    in the same cycle.

    ``ceilings`` are the node cap and core quotas the tick found over the pool (the event's ``ceilings``): the resize is
    sized to fit under them, so Batch is never asked for what it would refuse.
    """
    policy = WatchPolicy.from_settings(context.settings)
    table = context.state.table(EPISODES)
    account = batch_accounts.get_account(context.clients, account_id)
    raw = batch_pools.get_pool(context.clients, account, pool_id)
    if raw is None:
        return "pool no longer exists"
    now = context.clock.now()
    view = PoolView.from_dict(raw, account.id)
    if observed_etag and view.etag and _bare_etag(observed_etag) != _bare_etag(view.etag):
        return (f"the pool changed since the watch flagged it (eTag {observed_etag} -> {view.etag}); the next tick "
                "looks again")
    try:
        desired = desired_target(view, now)
        if desired is None:
            return "pool is not managed"
        desired = NodeWatch.gate(view, desired)
        record = table.get(safe_key(account.id), safe_key(view.pool_id))
        episode = Episode.from_dict(record.data) if record else None
        decision = decide(view, desired, episode, now, policy, ceilings=ceilings)
        if decision.action == Action.VERIFY_IMAGE:
            # The generic AllocationFailed message is only a suspicion that the image is gone: read it.
            image = compute.get_any_image(context.clients, decision.image_id) if decision.image_id else None
            # "updating": a gallery version gaining replicas (shared/watch/replicas.py) still serves from the ones it
            # has.
            state = str(((image or {}).get("properties") or {}).get("provisioningState", "")).lower()
            exists = image is not None and state in ("succeeded", "updating", "")
            decision = decide(view, desired, episode, now, policy, image_exists=exists, ceilings=ceilings)
    except PoolIntentError as exc:
        # Raising would only make Event Grid redeliver the event for a day: the metadata will not fix itself.
        # The tick reports the pool as invalid every cycle.
        log.warning("watch: pool %s in %s not resized: %s", view.pool_id, account.id, exc)
        return f"invalid autopilot metadata: {exc}"
    if decision.action != Action.RESIZE or decision.step is None:
        _settle(context, table, account.id, view, decision, record, episode)
        return f"{decision.action.value}: {decision.reason}"
    step = decision.step
    from shared.core import permissions

    with permissions.writing(context, "Microsoft.Batch/batchAccounts/pools/write",
                             f"{account.id}/pools/{view.pool_id}"):
        result = batch_pools.resize_pool(context.clients, account, view.pool_id, etag=view.etag,
                                         target_dedicated=step.target_dedicated,
                                         target_spot=step.target_spot, resize_timeout=step.resize_timeout,
                                         node_deallocation_option=step.node_deallocation_option)
    if result != ResizeResult.ACCEPTED:
        # 409: someone is resizing it; 412: the pool changed since we read it (another instance
        # acted first); 404: gone. Nothing was done, so nothing is recorded: the next tick looks again.
        return f"resize not sent ({result.value}): {decision.reason}"
    _store(table, account.id, view.pool_id, decision.episode, record)
    _publish(context, decision)
    return (f"resized to {step.target_dedicated} dedicated / {step.target_spot} Spot ({step.resize_timeout_iso}): "
            f"{decision.reason}")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _bare_etag(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _settle(context: AppContext, table: StateTable, account_id: str, view: PoolView, decision: Decision,
            record: Record | None, episode: Episode | None) -> int:
    """Raise a non-resize decision's alerts, then store its episode (when it changed).

    Alerts first: the stored episode records which alerts were raised, and decide() never raises them again, so a
    record stored before an alert that then fails to go out (the topic refusing it) would lose the alert for good.
    This way a failed send stores nothing and the next look at the pool decides, and raises it, again. Two instances
    deciding the same alert share its de-duplication key (the episode's start), so the Alerts table sends it once.
    """
    sent = _publish(context, decision)
    changed = (decision.episode.to_dict() if decision.episode else None) != (episode.to_dict() if episode else None)
    if changed:
        # another instance acted on this pool meanwhile; the next tick decides afresh
        with contextlib.suppress(ConcurrencyConflict):
            _store(table, account_id, view.pool_id, decision.episode, record, retry=False)
    return sent


def _store(table: StateTable, account_id: str, pool_id: str, episode: Episode | None, record: Record | None, *,
           retry: bool = True) -> None:
    partition, row = safe_key(account_id), safe_key(pool_id)
    for attempt in range(3):
        try:
            if episode is None:
                if record is not None:
                    table.delete(record)
                return
            table.save(partition, row, episode.to_dict(), expected=record)
            return
        except ConcurrencyConflict:
            if not retry or attempt == 2:
                raise
            record = table.get(partition, row)  # the resize was accepted: our record wins


def _report_autoscale(context: AppContext, account_id: str, view: PoolView, desired: DesiredTarget,
                      now: datetime) -> int:
    """A managed pool with autoscale on is never resized: say so once per pool and desired target, across instances."""
    subject = pool_resource_id(account_id, view.pool_id)
    alert = Alert(
        type=alerts.NEEDS_ATTENTION,
        severity=alerts.SEVERITY_WARNING,
        subject=subject,
        title=f"Pool {view.pool_id} has autoscale enabled, so the autopilot does not resize it",
        diagnosis=(f"The pool carries the autopilot's desired target ({desired.dedicated} dedicated / {desired.spot} "
                   f"Spot, from its {desired.source}) "
                   f"but Batch sizes it with its autoscale formula; it has {view.current_dedicated} dedicated / "
                   f"{view.current_spot} Spot nodes now. "
                   "The autopilot never resizes an autoscale pool (Batch refuses it with 409)."),
        fix=("Disable autoscale on the pool to let the autopilot drive it to its desired target, or remove the "
             "autopilot's target from its "
             "metadata (autopilot.desiredDedicated, autopilot.desiredSpot, autopilot.schedule) to leave it to "
             "the formula."),
        dedupe_key=f"autoscale|{desired.dedicated}|{desired.spot}",
        occurred_at=now,
        details={
            "account": account_id,
            "pool": view.pool_id,
            "codes": [],
            "reason": "autoscale",
            "currentDedicatedNodes": view.current_dedicated,
            "currentLowPriorityNodes": view.current_spot,
            "desiredDedicatedNodes": desired.dedicated,
            "desiredLowPriorityNodes": desired.spot,
        },
    )
    return int(AlertPublisher(context).publish(alert))


def _publish(context: AppContext, decision: Decision) -> int:
    if not decision.alerts:
        return 0
    publisher = AlertPublisher(context)
    return sum(int(publisher.publish(alert)) for alert in decision.alerts)
