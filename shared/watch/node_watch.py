"""The watch's node-health pass: read node states of the pools that need a look, judge images, run canaries, repair.

Hooked into :func:`shared.watch.tick.tick` (three calls: :meth:`NodeWatch.gate`, :meth:`NodeWatch.observe`,
:meth:`NodeWatch.finish`). Decisions are in :mod:`shared.watch.node_health` and :mod:`shared.watch.canary`; this module
does the I/O.

Request budget: a steady, healthy pool costs no request of its own per tick. Node states (``GET /pools/{id}/nodes``,
one request per 1,000 nodes) are read only for a pool whose canary is pending, that has a health episode open, once
for a pool the resize watch drove (booked as ``lookAt`` in the pool's row, a Table write on a full scan, and read
``AUTOPILOT_UNHEALTHY_NODE_MINUTES`` after the last full scan that saw it driven, so the newest nodes had time to fail
for good), and on the slow rotation: once per ``AUTOPILOT_NODE_HEALTH_ROTATION_MINUTES`` a full scan reads
``/nodecounts`` (paged at 10 pools per request, as the older spec says) and lists the nodes of the pools that count
failed nodes. A pool being resized costs no node read while it changes.

Concurrency: a pool's health record is claimed (ETag) before its nodes are removed, so two instances never remove the
same node, and removenodes carries the pool's ETag (If-Match). Alerts go through the Alerts table (once per episode, or
once per image). An image verdict is one insert-only row per image: the first instance to write it raises it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.core import alerts, pool_metadata
from shared.core.alerts import Alert, AlertPublisher
from shared.core.clock import iso, parse_iso
from shared.core.context import AppContext
from shared.core.state import ConcurrencyConflict, Record, safe_key
from shared.resources.batch_accounts import BatchAccount
from shared.resources.clients import BATCH_API_VERSION
from shared.watch import canary
from shared.watch.node_health import (
    HealthPolicy,
    HealthRecord,
    NodeInfo,
    NodeSummary,
    decide_repair,
    image_suspect,
    network_suspect,
    summarize,
    verdict_threshold,
)
from shared.watch.pool_policy import DesiredTarget, PoolView

log = logging.getLogger("autopilot.nodes")

NODE_HEALTH = "NodeHealth"  # per pool: canary watch and health episode; partition "images": one verdict per image
IMAGES_PARTITION = "images"
NODES_UNHEALTHY = alerts.NODES_UNHEALTHY
IMAGE_UNHEALTHY = alerts.IMAGE_UNHEALTHY
NODE_SELECT = ["id", "state", "stateTransitionTime", "allocationTime", "isDedicated", "errors", "startTask",
               "startTaskInfo"]
NODE_PAGE = 1000
# /nodecounts states that make the rotation list a pool's nodes (BatchNodeCounts wire names): failed ones always,
# booting ones when the pool has been steady for AUTOPILOT_NODE_READY_MINUTES.
FAILED_STATES = ("unusable", "startTaskFailed")
BOOTING_STATES = ("creating", "starting", "waitingForStartTask", "unknown")

IMAGE_CHECKLIST = (
    "Rebuild the image and publish it as a new version (a new snapshot set with a higher version, e.g. 2.0.1): "
    "(1) start from a first-party Marketplace image that Batch supports (it is listed by Batch's supported images for "
    "the pool's nodeAgentSkuId); "
    "(2) install no VM extensions in the image; "
    "(3) keep the VM size's default temporary disk (do not remove or remap the resource disk); "
    "(4) generalize the VM before capturing (sysprep on Windows, waagent -deprovision+user on Linux); "
    "(5) keep the gallery image version in the same subscription and region as the Batch account. "
    "The pools of the broken version stay at their canary and the previous version stays in service; "
    "delete the broken version's pools once the new version has passed its canary."
)
NETWORK_FIX = (
    "Open the subnet to the Batch node agent: with simplified node communication allow outbound TCP 443 to the "
    "BatchNodeManagement.<region> service tag; with classic communication allow inbound TCP 29876-29877 from the "
    "BatchNodeManagement service tag. "
    "Check the subnet's NSG and any route table or firewall that forces traffic elsewhere. Then remove the "
    "unusable nodes "
    "of each pool on the subnet (<pools>), as nodes that failed meanwhile stay unusable "
    "(az batch node delete --pool-id <pool> --node-list <ids> --node-deallocation-option requeue): Batch brings fresh "
    "nodes, and once they "
    "are idle the pool's canary passes and the autopilot grows it to its target. Until then it replaces none of this "
    "version's nodes."
)
NODES_FIX = (
    "Read the node errors above (az batch node show --pool-id <pool> --node-id <id>), fix their cause, then remove the "
    "unhealthy nodes "
    "(az batch node delete --pool-id <pool> --node-list <ids> --node-deallocation-option requeue). Once the pool has "
    "no unhealthy node "
    "the health episode ends, the replacement budget is whole again and the autopilot restores the pool's target."
)


@dataclass
class Observed:
    account: BatchAccount
    view: PoolView
    desired: DesiredTarget
    nodes: list[NodeInfo]
    summary: NodeSummary
    has_start_task: bool
    record: Record | None
    driven: bool = False


@dataclass
class NodeWatchReport:
    looked: int = 0  # pools whose nodes were read this tick
    node_requests: int = 0
    removed: dict[str, list[str]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # pool subject -> NodeSummary.to_dict()
    verdicts: dict[str, str] = field(default_factory=dict)  # image id -> "image" | "network"
    canaries: dict[str, str] = field(default_factory=dict)  # pool subject -> passed | failed


def _subject(account_id: str, pool_id: str) -> str:
    return f"{account_id}/pools/{pool_id}"


class NodeWatch:
    def __init__(self, context: AppContext, now: datetime, *, full: bool, dry_run: bool = False) -> None:
        self.context = context
        self.now = now
        self.full = full
        self.dry_run = dry_run
        self.policy = HealthPolicy.from_settings(context.settings)
        self.table = context.state.table(NODE_HEALTH)
        self.records: dict[str, dict[str, Record]] = {}
        for record in self.table.query():  # one query per tick, like the Episodes table
            self.records.setdefault(record.partition, {})[record.row] = record
        self.observed: list[Observed] = []
        self.report = NodeWatchReport()
        # The slow rotation: once per period, on a full scan, one /nodecounts sweep per account (10 pools a page)
        # finds the steady pools with failed nodes; only those get their nodes listed.
        self.rotation = full and not dry_run and self._rotation_due()
        # account id -> pool id (lower) -> (failed, booting) nodes
        self._counts: dict[str, dict[str, tuple[int, int]]] = {}
        self._window = timedelta(minutes=context.settings.watch_full_scan_minutes)
        # looks booked for driven pools, written together by finish(): a Table transaction per 100 pools of an account
        self._bookings: list[tuple[str, str, dict[str, Any], Record | None]] = []

    # --- the tick's hooks -------------------------------------------------------------------------
    def open_accounts(self) -> set[str]:
        """Partitions (safe account keys) with a pool under a canary or in a health episode: followed every tick."""
        return {p for p, rows in self.records.items() if p != IMAGES_PARTITION and rows}

    @staticmethod
    def gate(view: PoolView, desired: DesiredTarget) -> DesiredTarget:
        """The target the resize watch may drive towards: capped at the canary while it is pending or failed."""
        return canary.cap(desired, view.metadata)

    def observe(self, account: BatchAccount, view: PoolView, desired: DesiredTarget, *, driven: bool) -> None:
        record = self.records.get(safe_key(account.id), {}).get(safe_key(view.pool_id))
        pending = canary.state(view.metadata) == canary.PENDING
        due = False
        if self.rotation:
            failed, booting = self._node_counts(account, view.pool_id)
            # Booting nodes in a pool that has been steady for the ready limit were allocated before it: overdue. A pool
            # that changed since has nodes booting as they should (and would cost a node list each on a busy hour).
            transition = view.allocation_state_transition_time
            settled = view.is_steady and transition is not None and self.now - transition >= self.policy.ready_within
            due = failed > 0 or (booting > 0 and settled)
        # A pool the watch drove gets one more look once its last nodes had time to fail for good
        # (lookAt, set while driven): then its row goes, and it costs nothing per tick again.
        look_at = parse_iso(record.data.get("lookAt")) if record is not None else None
        follow = look_at is not None and self.now >= look_at
        in_episode = record is not None and bool(record.data.get("started"))
        if not (pending or in_episode or due or follow):
            if driven and self.full and not self.dry_run:
                self._schedule_look(account, view, record)  # a Table write, no Batch request
            return
        if view.current_total == 0 and record is None:
            return  # no node to look at
        try:
            raw_nodes = self._list_nodes(account, view.pool_id)
        except Exception as exc:  # one unreadable pool must not stop the tick
            log.warning("nodes: cannot list nodes of %s in %s: %s", view.pool_id, account.id, exc)
            return
        nodes = [NodeInfo.from_dict(n) for n in raw_nodes]
        has_start_task = any((n.get("startTask") or {}).get("waitForSuccess", True)
                             and (n.get("startTask") or {}).get("commandLine")
                             for n in raw_nodes)
        summary = summarize(nodes)
        self.report.looked += 1
        self.report.summaries[_subject(account.id, view.pool_id)] = summary.to_dict()
        self.observed.append(Observed(account, view, desired, nodes, summary, bool(has_start_task), record, driven))

    def _schedule_look(self, account: BatchAccount, view: PoolView, record: Record | None) -> None:
        """A pool the resize watch drives gets no node read while it changes; one look is booked for when its newest
        nodes had time to fail for good (``AUTOPILOT_UNHEALTHY_NODE_MINUTES`` after the last full scan that saw it
        driven). Written by :meth:`finish`, with the tick's other bookings."""
        at = self.now + self.policy.unhealthy_after
        current = parse_iso(record.data.get("lookAt")) if record is not None else None
        if current is not None and current >= at - self._window:
            return  # booked recently enough: at most one write per pool per full-scan period
        data = {**(record.data if record is not None else {}),
                "canary": bool(record.data.get("canary")) if record else False,
                "lookAt": iso(at)}
        self._bookings.append((safe_key(account.id), safe_key(view.pool_id), data, record))

    def _write_bookings(self) -> None:
        """One Table transaction per 100 booked pools of an account, not one write each (at 1 % of 10,000 pools driven,
        single writes were a third of a full scan's CPU). A booking lost to a conflict or a fault is booked again by
        the next full scan that sees the pool driven; one another instance changed meanwhile is theirs."""
        bookings, self._bookings = self._bookings, []
        if not bookings:
            return
        try:
            self.table.save_many(bookings)
        except Exception as exc:
            log.warning("nodes: could not book %d node look(s); the next full scan books them: %s", len(bookings), exc)

    def finish(self) -> int:
        """Judge images, pass canaries, repair pools. Returns the number of alerts sent."""
        if self.dry_run:
            return 0
        self._write_bookings()
        sent = 0
        suspects: set[str] = set()
        groups: dict[str, list[Observed]] = {}
        for obs in self.observed:
            image = obs.view.image_id or obs.view.metadata.get(pool_metadata.IMAGE_ID)
            if image:
                groups.setdefault(image.lower(), []).append(obs)
        for image, members in groups.items():
            verdict, alerts_sent = self._judge_image(image, members)
            sent += alerts_sent
            if verdict:
                suspects.add(image)
        for obs in self.observed:
            image = (obs.view.image_id or obs.view.metadata.get(pool_metadata.IMAGE_ID) or "").lower()
            sent += self._pool(obs, image in suspects)
        return sent

    # --- images -----------------------------------------------------------------------------------
    def _judge_image(self, image: str, members: list[Observed]) -> tuple[str | None, int]:
        """The version's verdict: "image" (sticky: its canaries fail, growth stops for good), "network" (held while its
        nodes keep failing: canaries stay pending and capped, nothing is replaced, and the verdict lifts by itself once
        the nodes are healthy again, e.g. after a person opened the subnet and removed them), or None."""
        row = safe_key(image)
        existing = self.records.get(IMAGES_PARTITION, {}).get(row)
        canary_nodes = max([canary.size(m.view.metadata) for m in members] or [0])
        summaries = [m.summary for m in members]
        suspect = image_suspect(summaries, self.policy, canary_nodes)
        if existing is not None:
            verdict = str(existing.data.get("verdict") or "image")
            if verdict == "network" and not suspect:
                with contextlib.suppress(ConcurrencyConflict):
                    self.table.delete(existing)  # the nodes recovered: the next failure is judged afresh
                return None, 0
            if verdict == "image":
                self._fail_canaries(members)
            return verdict, 0
        if not suspect:
            return None, 0
        also_failing = self._network_suspect(image, members)
        verdict = "network" if also_failing else "image"
        at = iso(self.now)
        try:
            self.table.insert(IMAGES_PARTITION, row, {"image": image, "verdict": verdict, "at": at,
                                                       "failed": sum(s.failed for s in summaries),
                                                       "usable": sum(s.usable for s in summaries)})
        except ConcurrencyConflict:
            # Another instance judged it first: its verdict holds, and its time keys the alert, so only one goes out.
            winner = self.table.get(IMAGES_PARTITION, row)
            if winner is not None:
                verdict, at = str(winner.data.get("verdict") or verdict), str(winner.data.get("at") or at)
        self.report.verdicts[image] = verdict
        publisher = AlertPublisher(self.context)
        if verdict == "image":
            self._fail_canaries(members)
            return verdict, int(publisher.publish(self._image_alert(image, members, canary_nodes)))
        return verdict, sum(int(publisher.publish(self._network_alert(m, at, also_failing))) for m in members)

    def _network_suspect(self, image: str, members: list[Observed]) -> list[str]:
        """Other pools on the same subnet and VM size that run another (older) image: if they fail too, blame the
        network. Returns those failing pools (empty: the network is not to blame)."""
        compared = 0
        older: list[NodeSummary] = []
        failing: list[str] = []
        for member in members:
            subnet = self._subnet(member.account, member.view.pool_id)
            if not subnet:
                continue
            for other in self._pools_on(member.account, subnet, member.view.vm_size, image):
                compared += 1
                try:
                    summary = summarize(NodeInfo.from_dict(n) for n in self._list_nodes(member.account, other))
                except Exception as exc:
                    log.warning("nodes: cannot read nodes of %s for the network comparison: %s", other, exc)
                    continue
                older.append(summary)
                if summary.failed:
                    failing.append(other)
        return failing if compared > 0 and network_suspect(older, self.policy) else []

    def _fail_canaries(self, members: list[Observed]) -> None:
        for member in members:
            if canary.state(member.view.metadata) == canary.FAILED:
                continue
            changes = {canary.CANARY: canary.FAILED}
            if canary.size(member.view.metadata) == 0:
                # growth stops where it is
                changes[canary.CANARY_NODES] = str(member.view.target_dedicated + member.view.target_spot)
            if self._patch_metadata(member, changes):
                self.report.canaries[_subject(member.account.id, member.view.pool_id)] = canary.FAILED

    # --- one pool ---------------------------------------------------------------------------------
    def _pool(self, obs: Observed, suspect: bool) -> int:
        subject = _subject(obs.account.id, obs.view.pool_id)
        state = canary.state(obs.view.metadata)
        if (state == canary.PENDING and not suspect
                and canary.passed(obs.summary, obs.view.metadata, obs.desired.total)
                and self._patch_metadata(obs, {canary.CANARY: canary.PASSED})):
            self.report.canaries[subject] = canary.PASSED
            state = canary.PASSED
        previous = _health(obs.record)
        repair = decide_repair(obs.nodes, previous, self.now, self.policy, steady=obs.view.is_steady,
                               has_start_task=obs.has_start_task, image_suspect=suspect or state == canary.FAILED)
        keep_watching = state == canary.PENDING
        look_at: str | None = None
        if obs.driven:
            look_at = iso(self.now + self.policy.unhealthy_after)
        elif obs.record is not None and obs.record.data.get("lookAt"):
            previous_look = parse_iso(obs.record.data.get("lookAt"))
            look_at = None if previous_look is None or self.now >= previous_look else obs.record.data["lookAt"]
        if repair.next_look is not None and repair.record is None:
            look_at = max(look_at or "", iso(repair.next_look))  # failed nodes not yet due: look again when they are
        sent = 0
        if repair.alert and repair.record is not None:
            # Alert first, then store "stopped": a send that fails stores nothing and the next look raises it again;
            # the Alerts table keeps it to one per episode across instances and redeliveries.
            sent += int(AlertPublisher(self.context).publish(self._nodes_alert(obs, repair.record)))
        record = self._store(obs, repair.record, keep_watching, look_at)
        if record is False:
            return sent  # another instance changed this pool's record: it acts; the next tick looks again
        if repair.remove:
            if self._remove(obs, list(repair.remove)):
                self.report.removed[subject] = list(repair.remove)
            elif isinstance(record, Record):
                # Not removed (the pool changed or is resizing): give the ids back so a later look may remove them.
                with contextlib.suppress(ConcurrencyConflict):
                    restored = HealthRecord(previous.started if previous else self.now,
                                            previous.replaced if previous else (),
                                            previous.stopped if previous else False)
                    self.table.save(record.partition, record.row,
                                    {**restored.to_dict(), "canary": keep_watching, "lookAt": look_at},
                                    expected=record)
        return sent

    def _store(self, obs: Observed, health: HealthRecord | None, keep_watching: bool,
               look_at: str | None) -> Record | bool | None:
        """Save the pool's row when it changed. Returns the new record, None when deleted/absent, False on a
        conflict."""
        partition, row = safe_key(obs.account.id), safe_key(obs.view.pool_id)
        data: dict[str, Any] | None = None
        if health is not None or keep_watching or look_at:
            data = {**(health.to_dict() if health else {"started": None, "replaced": None, "stopped": None}),
                    "canary": keep_watching, "lookAt": look_at}
        if data is None and obs.record is None:
            return None
        if data is not None and obs.record is not None and all(obs.record.data.get(k) == v for k, v in data.items()):
            return obs.record
        try:
            if data is None:
                if obs.record is not None:
                    self.table.delete(obs.record)
                return None
            return self.table.save(partition, row, data, expected=obs.record)
        except ConcurrencyConflict:
            return False

    # --- the rotation -----------------------------------------------------------------------------
    def _rotation_due(self) -> bool:
        """Claimed in the Watch table like the full scan, so concurrent instances sweep once per period."""
        from shared.core.state import WATCH

        table = self.context.state.table(WATCH)
        record = table.get("watch", "nodeRotation")
        last = parse_iso(record.data.get("at")) if record else None
        if last is not None and self.now - last < self.policy.rotation - timedelta(seconds=1):
            return False
        try:
            table.save("watch", "nodeRotation", {"at": iso(self.now)}, expected=record)
        except ConcurrencyConflict:
            return False
        return True

    def _node_counts(self, account: BatchAccount, pool_id: str) -> tuple[int, int]:
        if account.id not in self._counts:
            counts: dict[str, tuple[int, int]] = {}
            try:
                client = self.context.clients.batch_account(account.endpoint)
                for page in client.list_pool_node_counts().by_page():
                    self.report.node_requests += 1
                    for item in page:
                        data = item.as_dict()
                        failed = booting = 0
                        for kind in ("dedicated", "lowPriority"):
                            row = data.get(kind) or {}
                            failed += sum(int(row.get(state) or 0) for state in FAILED_STATES)
                            # /nodecounts gives no times: a node that never leaves starting is judged on the node list.
                            booting += sum(int(row.get(state) or 0) for state in BOOTING_STATES)
                        counts[str(data.get("poolId") or "").lower()] = (failed, booting)
            except Exception as exc:
                log.warning("nodes: cannot read node counts of %s: %s", account.id, exc)
            self._counts[account.id] = counts
        return self._counts[account.id].get(pool_id.lower(), (0, 0))

    # --- Batch calls ------------------------------------------------------------------------------
    def _list_nodes(self, account: BatchAccount, pool_id: str) -> list[dict[str, Any]]:
        client = self.context.clients.batch_account(account.endpoint)
        pages = client.list_nodes(pool_id, select=NODE_SELECT, max_results=NODE_PAGE).by_page()
        out: list[dict[str, Any]] = []
        for page in pages:
            self.report.node_requests += 1
            out.extend(n.as_dict() for n in page)
        return out

    def _subnet(self, account: BatchAccount, pool_id: str) -> str | None:
        try:
            pool = self.context.clients.batch_account(account.endpoint).get_pool(
                pool_id, select=["id", "networkConfiguration"]).as_dict()
        except Exception:
            return None
        return ((pool.get("networkConfiguration") or {}).get("subnetId") or "").lower() or None

    def _pools_on(self, account: BatchAccount, subnet: str, vm_size: str | None, image: str) -> list[str]:
        client = self.context.clients.batch_account(account.endpoint)
        out = []
        for pool in client.list_pools(select=["id", "vmSize", "networkConfiguration", "virtualMachineConfiguration"]):
            data = pool.as_dict()
            pool_subnet = ((data.get("networkConfiguration") or {}).get("subnetId") or "").lower()
            pool_image = str(((data.get("virtualMachineConfiguration") or {}).get("imageReference")
                              or {}).get("virtualMachineImageId") or "").lower()
            if (pool_subnet == subnet and str(data.get("vmSize") or "").lower() == str(vm_size or "").lower()
                and pool_image != image):
                out.append(str(data["id"]))
        return out

    def _send(self, account: BatchAccount, method: str, path: str, body: dict[str, Any], etag: str | None) -> bool:
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        headers = {"Content-Type": "application/json; odata=minimalmetadata"}
        if etag:
            headers["If-Match"] = etag  # the pool we decided on, or nothing: another instance acting first gets 412
        request = HttpRequest(method, f"{path}?api-version={BATCH_API_VERSION}", json=body, headers=headers)
        try:
            response = self.context.clients.batch_account(account.endpoint).send_request(request)
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise
        if response.status_code in (404, 409, 412):
            return False
        response.raise_for_status()
        return True

    def _remove(self, obs: Observed, node_ids: list[str]) -> bool:
        from urllib.parse import quote

        # requeue: tasks on a node that cannot run them go back to the queue (BatchNodeDeallocationOption.REQUEUE).
        body = {"nodeList": node_ids, "nodeDeallocationOption": "requeue", "resizeTimeout": "PT15M"}
        done = self._send(obs.account, "POST", f"/pools/{quote(obs.view.pool_id, safe='')}/removenodes", body,
                          obs.view.etag)
        log.info("nodes: %s %d unhealthy node(s) of %s", "removed" if done else "could not remove", len(node_ids),
                 obs.view.pool_id)
        return done

    def _patch_metadata(self, obs: Observed, changes: Mapping[str, str]) -> bool:
        """Data-plane pool update: metadata, when given, replaces the pool's metadata, so all of it is sent (with
        If-Match)."""
        from urllib.parse import quote

        metadata = {**dict(obs.view.metadata), **changes}
        body = {"metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())]}
        return self._send(obs.account, "PATCH", f"/pools/{quote(obs.view.pool_id, safe='')}", body, obs.view.etag)

    # --- alerts -----------------------------------------------------------------------------------
    def _count_details(self, summary: NodeSummary) -> dict[str, Any]:
        return {"usableNodes": summary.usable, "unhealthyNodes": summary.failed, "bootingNodes": summary.booting,
                "totalNodes": summary.total,
                "nodeStates": dict(summary.by_state), "codes": sorted(summary.errors),
                "nodeErrors": dict(summary.errors)}

    def _nodes_alert(self, obs: Observed, record: HealthRecord) -> Alert:
        s = obs.summary
        errors = ("; ".join(f"{code}: {message}" for code, message in s.errors.items())
                  or "no error details on the nodes")
        return Alert(
            type=NODES_UNHEALTHY, severity=alerts.SEVERITY_WARNING, subject=_subject(obs.account.id, obs.view.pool_id),
            title=f"Pool {obs.view.pool_id} keeps getting unhealthy nodes; the autopilot stopped replacing them",
            diagnosis=(f"{s.failed} of {s.total} nodes are unhealthy ({_states(s)}); {len(record.replaced)} node(s) "
                       "were already replaced in this "
                       f"episode (budget {self.policy.max_replacements}). Batch reports: {errors}."),
            fix=NODES_FIX, dedupe_key=iso(record.started), occurred_at=self.now,
            details={"account": obs.account.id, "pool": obs.view.pool_id, "reason": "budget",
                     "replacedNodes": len(record.replaced),
                     "maxReplacements": self.policy.max_replacements, "episodeStarted": iso(record.started),
                     **self._count_details(s)})

    def _network_alert(self, obs: Observed, verdict_at: str, also_failing: list[str]) -> Alert:
        s = obs.summary
        pools = ", ".join([obs.view.pool_id, *also_failing])
        return Alert(
            type=NODES_UNHEALTHY, severity=alerts.SEVERITY_WARNING, subject=_subject(obs.account.id, obs.view.pool_id),
            title=f"Pool {obs.view.pool_id}: nodes are unusable on its subnet, not because of its image",
            diagnosis=(f"{s.failed} of {s.total} nodes are unhealthy ({_states(s)}), and pools on the same subnet and "
                       "VM size that "
                       f"run an older image ({', '.join(also_failing)}) fail too: the network (an NSG or route "
                       "blocking the Batch node agent) is "
                       "the likely cause, not the image. The version's pools stay at their canary and no node is "
                       "replaced until "
                       "the nodes work again."),
            fix=NETWORK_FIX.replace("<pools>", pools), dedupe_key=f"network|{verdict_at}", occurred_at=self.now,
            details={"account": obs.account.id, "pool": obs.view.pool_id, "reason": "network",
                     "subnetPools": also_failing,
                     **self._count_details(s)})

    def _image_alert(self, image: str, members: list[Observed], canary_nodes: int) -> Alert:
        failed = sum(m.summary.failed for m in members)
        usable = sum(m.summary.usable for m in members)
        errors: dict[str, str] = {}
        for m in members:
            for code, message in m.summary.errors.items():
                errors.setdefault(code, message)
        version = members[0].view.metadata.get(pool_metadata.VERSION, "?")
        family = members[0].view.metadata.get(pool_metadata.FAMILY, "?")
        pools = [f"{m.account.name}/{m.view.pool_id}" for m in members]
        return Alert(
            type=IMAGE_UNHEALTHY, severity=alerts.SEVERITY_CRITICAL, subject=members[0].view.image_id or image,
            title=f"Image version {version} of family {family} brings up nodes that Batch cannot use; its pools stop "
                  "at the canary",
            diagnosis=(f"{failed} of {failed + usable} nodes of version {version} failed on first boot across "
                       f"{len(pools)} pool(s) "
                       f"({', '.join(pools)}); the verdict needs at least {verdict_threshold(canary_nodes)} nodes and "
                       f"{self.policy.image_unhealthy_share:.0%} of them. Batch reports: "
                       + ("; ".join(f"{c}: {m}" for c, m in errors.items()) or "no error details") + ". "
                       "Growth of these pools stopped; the previous version stays in service."),
            fix=IMAGE_CHECKLIST, dedupe_key="verdict", occurred_at=self.now,
            details={"image": image, "family": family, "version": version, "pools": pools, "failedNodes": failed,
                     "usableNodes": usable,
                     "codes": sorted(errors), "nodeErrors": errors, "threshold": verdict_threshold(canary_nodes),
                     "share": self.policy.image_unhealthy_share})


def _health(record: Record | None) -> HealthRecord | None:
    if record is None or not record.data.get("started"):
        return None
    try:
        return HealthRecord.from_dict(record.data)
    except ValueError:
        return None


def _states(summary: NodeSummary) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(summary.by_state.items(), key=lambda kv: -kv[1]))
