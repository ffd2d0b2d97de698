"""Soak: two weeks of running, with schedules, new image versions, transient faults and a quota episode.

``make chaos`` runs the long profile: 14 simulated days, 200 managed pools on 5 Batch accounts (half of them on a daily
schedule: 6 dedicated nodes from 08:00, 2 from 20:00), a new snapshot set every 3 days (the pipeline builds its image
version and creates the family's two pools; two days later a person deletes the previous version's pools), 5 % of the
calls on every Azure surface failing (429, 500, 503, dropped connections), and one account's core quota cut for a day.
The watch ticks every 5 minutes (the full scan's cadence), so the run advances in 5-minute steps; that keeps it inside
15 minutes of wall time on 2 cores. ``make test`` runs the quick profile: 1 day, 12 pools on 2 accounts.

What must hold:

* the app keeps working: only transient errors escape a function, nothing is dead-lettered;
* every snapshot set gives exactly one image version and one pool set;
* at the end (after an hour without faults) every pool is steady at its desired size;
* the app's Table rows stay bounded. The rows are counted at the end of day 1 and at the end, per table, next to the
  rows the app must keep (:func:`_kept`): rows of work still open (an episode of a pool that exists and is not at its
  target; a snapshot set or pipeline row of a version not finished; an alert in the outbox; a node-health row of a pool
  that exists; the watch's bookkeeping and a replica row per gallery version a pool still uses) and the tombstones the
  state retention keeps (the rows of a version finished within the retention, then a Built row per built version;
  the de-duplication rows of alerts sent within the retention, and the ignored-event counters of that period). The
  bound (issue 18), per table: rows at the end <= rows kept + 10 % (rounded up). The retention is 2 days here
  (AUTOPILOT_STATE_RETENTION_DAYS; 30 in production) so that two weeks show finished rows expiring, as the 5-minute
  step compresses the ticks. A table the soak does not know fails the check until :func:`_kept` says what of it must
  stay.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from shared.core.alerts import OUTBOX
from shared.core.clock import parse_iso
from shared.core.resource_ids import ResourceId, batch_account_id
from shared.core.state import ALERTS, EPISODES, PIPELINE, SNAPSHOT_SETS, WATCH, safe_key
from shared.core.state_expiry import BUILT, TERMINAL
from shared.lifecycle.rollout_runner import ROLLOUTS
from shared.pipeline.scope import IGNORED
from shared.watch.episodes import Episode
from shared.watch.node_watch import NODE_HEALTH
from shared.watch.replicas import PARTITION as REPLICAS

from .harness import (
    CHAOS,
    LEDGER,
    MARKETPLACE_UBUNTU,
    UBUNTU_AGENT,
    chaos_rules,
    check,
    dump,
    failed_invocations,
    local_azure,
    nontransient_failures,
    successful_writes,
)

DAYS = 14 if CHAOS else 1
ACCOUNTS = [f"soakacct{i}" for i in range(5 if CHAOS else 2)]
POOLS = 200 if CHAOS else 12
VERSION_EVERY_DAYS = 3
STEP = timedelta(minutes=5)
DAY, NIGHT = 6, 2  # the scheduled pools' dedicated nodes from 08:00 and from 20:00
RETENTION_DAYS = 2  # AUTOPILOT_STATE_RETENTION_DAYS for the soak: finished rows expire within the two weeks
SCHEDULE = json.dumps([{"cron": "0 0 8 * * *", "dedicated": DAY, "spot": 0},
                       {"cron": "0 0 20 * * *", "dedicated": NIGHT, "spot": 0}])


def _families() -> dict[str, Any]:
    account_ids = [batch_account_id(SUBSCRIPTION_ID, "batch-rg", a) for a in ACCOUNTS]
    return {"families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": "soakGallery", "imageDefinition": "gpu-render",
                    "osType": "Linux",
                    "osState": "Generalized", "hyperVGeneration": "V2", "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "keepManagedImage": False,
        "pools": [{"account": account_ids[0], "poolId": "gpu-a-{versionDashed}", "vmSize": "Standard_D4ds_v5",
                   "dedicated": 4, "spot": 0},
                  {"account": account_ids[1], "poolId": "gpu-b-{versionDashed}", "vmSize": "Standard_D4ds_v5",
                   "dedicated": 3, "spot": 0}],
    }}}


def _rows(la: LocalAzure, connection: str) -> dict[str, int]:
    """Rows per app table (the run's own table prefix), straight from Table storage."""
    prefix = la.settings.table_prefix
    service = TableServiceClient.from_connection_string(connection)
    try:
        return {t.name[len(prefix):]: sum(1 for _ in service.get_table_client(t.name).list_entities(select=["RowKey"]))
                for t in service.list_tables() if t.name.startswith(prefix)}
    finally:
        service.close()


def _kept(la: LocalAzure, versions: list[str], watch_bookkeeping: int) -> dict[str, int]:
    """Per table, the rows the app must keep at the end: open work plus the tombstones of the state retention. Read from
    the world (the emulator's pools and gallery versions, the versions the soak built), or, for rows kept for a period,
    from their own timestamps; ``watch_bookkeeping`` is the Watch table's rows other than replicas at the end of day 1
    (the watch's singletons, which must not grow)."""
    state = la.context.state
    existing = {(a, p.id) for a in ACCOUNTS for p in la.emulator.batch.list_pools(a)}
    open_episodes = 0
    for record in state.table(EPISODES).query():
        episode = Episode.from_dict(record.data)
        account = episode.account_id.rsplit("/", 1)[-1]
        if (account, episode.pool_id) in existing and not episode.is_closed:
            open_episodes += 1
    # Rows kept for the retention period (plus an hour: the sweep that expires them runs every 5 minutes).
    cutoff = la.emulator.now() - timedelta(days=RETENTION_DAYS, hours=1)
    # A snapshot set and its pipeline row share their keys; the set's work is open until its pipeline row is finished
    # (and its alert sent), and a finished version's rows stay for the retention, then leave a Built tombstone.
    kept_versions = set()
    for r in state.table(PIPELINE).query():
        updated = parse_iso(r.data.get("updatedAt"))
        if (str(r.data.get("stage", "")).lower() not in TERMINAL or r.data.get("outbox") or updated is None
                or updated >= cutoff):
            kept_versions.add((r.partition, r.row))
    pipeline_rows = {(r.partition, r.row) for r in state.table(PIPELINE).query()}
    open_sets = sum(1 for r in state.table(SNAPSHOT_SETS).query()
                    if (r.partition, r.row) in kept_versions or (r.partition, r.row) not in pipeline_rows)
    alerts = 0
    for record in state.table(ALERTS).query():
        claimed = parse_iso(record.data.get("claimedAt"))
        if record.partition == OUTBOX or not record.data.get("sent") or claimed is None or claimed >= cutoff:
            alerts += 1
    oldest_hour = cutoff.strftime("%Y%m%d%H")
    ignored = sum(1 for r in state.table(IGNORED).query() if r.partition >= oldest_hour)
    pool_keys = {(safe_key(batch_account_id(SUBSCRIPTION_ID, "batch-rg", a)), safe_key(p)) for a, p in existing}
    node_health = sum(1 for r in state.table(NODE_HEALTH).query() if (r.partition, r.row) in pool_keys)
    in_use = set()
    for account in ACCOUNTS:
        for pool in la.emulator.batch.list_pools(account):
            if pool.image_id and "/versions/" in pool.image_id.lower():  # a gallery version (the replicas' rows)
                in_use.add(safe_key(ResourceId.parse(pool.image_id).key))
    slots = sum(len(f["pools"]) for f in _families()["families"].values())
    return {EPISODES: open_episodes, SNAPSHOT_SETS: open_sets, PIPELINE: len(kept_versions),
            BUILT: len(versions), ALERTS: alerts, IGNORED: ignored, NODE_HEALTH: node_health, ROLLOUTS: slots,
            WATCH: watch_bookkeeping + len(in_use)}


def _watch_bookkeeping(la: LocalAzure) -> int:
    return sum(1 for r in la.context.state.table(WATCH).query() if r.partition != REPLICAS)


def _expected_nodes(pool_id: str, metadata: dict[str, str], now: datetime) -> int:
    if "autopilot.schedule" in metadata:
        return DAY if 8 <= now.hour < 20 else NIGHT
    return int(metadata["autopilot.desiredDedicated"])


def test_two_weeks_of_running_stay_bounded(azurite: str, tls_material) -> None:
    LEDGER.case("soak")
    settings = {"AUTOPILOT_WATCH_SCHEDULE": "0 */5 * * * *", "AUTOPILOT_GUARD_SCHEDULE": "0 0 * * * *",
                "AUTOPILOT_GROWTH_STEP_NODES": "10", "AUTOPILOT_HTTP_RETRY_TOTAL": "2",
                "AUTOPILOT_STATE_RETENTION_DAYS": str(RETENTION_DAYS)}
    accounts = [batch_account_id(SUBSCRIPTION_ID, "batch-rg", a) for a in ACCOUNTS]
    with local_azure(azurite, tls_material, families=_families(), accounts=accounts, seed=18, settings=settings) as la:
        for name in ACCOUNTS:
            la.add_batch_account(name)
            la.emulator.batch.set_account_quotas(name, dedicated_cores=100_000, pool_quota=POOLS)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, "images-rg", "soakGallery", location="westeurope")
        for i in range(POOLS):
            metadata = {"autopilot.managed": "true", "autopilot.desiredDedicated": str(2 + i % 4),
                        "autopilot.desiredSpot": "0"}
            if i % 2:
                metadata["autopilot.schedule"] = SCHEDULE
            la.emulator.batch.create_pool(ACCOUNTS[i % len(ACCOUNTS)], f"steady{i:03d}", vm_size="Standard_D2s_v5",
                                          image_reference=dict(MARKETPLACE_UBUNTU), node_agent_sku_id=UBUNTU_AGENT,
                                          target_dedicated=1,
                                          resize_timeout=timedelta(minutes=15), metadata=metadata)
        rules = chaos_rules(0.05, retry_after_s=0)
        for rule in rules:
            la.emulator.faults.add(rule)

        versions: list[str] = []
        rows_day1: dict[str, int] = {}
        watch_bookkeeping = 0
        quota_account = ACCOUNTS[-1]
        for day in range(DAYS):
            if day % VERSION_EVERY_DAYS == 0:
                version = f"1.{len(versions)}.0"
                la.snapshot_set("gpu", version, prefix=f"gpu-{len(versions)}")
                versions.append(version)
            if day % VERSION_EVERY_DAYS == 2 and len(versions) >= 2:
                old = versions[-2].replace(".", "-")  # the version before the newest: a person retires its pools
                for account, pool_id in ((ACCOUNTS[0], f"gpu-a-{old}"), (ACCOUNTS[1], f"gpu-b-{old}")):
                    if la.emulator.batch.find_pool(account, pool_id) is not None:
                        la.operator.batch_management.pool.begin_delete("batch-rg", account, pool_id).result()
            if day == 2:
                la.emulator.batch.set_account_quotas(quota_account, dedicated_cores=8)  # a quota episode: a day long
            if day == 3:
                la.emulator.batch.set_account_quotas(quota_account, dedicated_cores=100_000)
            la.run(timedelta(days=1), step=STEP)
            if day == 0:
                rows_day1 = _rows(la, la.env["AzureWebJobsStorage"])
                watch_bookkeeping = _watch_bookkeeping(la)
        la.emulator.faults.clear()
        # End at midday, an hour after the faults stop, so the scheduled pools' target is the day size.
        end = (la.emulator.now() + timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
        if end - la.emulator.now() > timedelta(days=1):
            end -= timedelta(days=1)
        la.run(max(end - la.emulator.now(), timedelta(hours=1)), step=STEP)

        rows_end = _rows(la, la.env["AzureWebJobsStorage"])
        kept = _kept(la, versions, watch_bookkeeping)
        bound = {t: kept.get(t, 0) + math.ceil(0.1 * kept.get(t, 0)) for t in rows_end}
        figures = {"days": DAYS, "accounts": len(ACCOUNTS), "pools": POOLS, "versions": versions,
                   "retention_days": RETENTION_DAYS, "rows_day1": rows_day1,
                   "rows_end": rows_end, "kept_end": kept, "bound_end": bound,
                   "faults_injected": sum(r.injected for r in rules),
                   "failed_invocations": len(failed_invocations(la)), "invocations": len(la.host.invocations),
                   "alerts": dict(Counter(str(a["eventType"]).rsplit(".", 1)[-1] for a in la.alerts())),
                   "requests": len(la.emulator.log.entries())}
        dump("soak-chaos.json" if CHAOS else "soak.json", figures)
        LEDGER.add_faults(rules)
        for table, n in rows_end.items():
            LEDGER.count(f"soak: {table} rows at the end (day 1: {rows_day1.get(table, 0)})", n)

        check("only transient Azure errors escape a function", not nontransient_failures(la),
              "functions failed on errors Event Grid redelivery cannot fix:\n  "
              + "\n  ".join(nontransient_failures(la)[:20]))
        check("nothing is dead-lettered", not la.host.dead_letters,
              "dead-lettered: "
              f"{[(d.subscription.function, d.event.get('subject')) for d in la.host.dead_letters][:10]}")
        made = Counter(e.path.rsplit("/", 1)[-1]
                       for e in successful_writes(la, "Microsoft.Compute/galleries/images/versions/write"))
        check("exactly one image version per snapshot set", made == Counter(versions),
              f"versions written: {dict(made)}, sets: {versions}")
        pools_written = Counter(e.path.rsplit("/", 1)[-1]
                                for e in successful_writes(la, "Microsoft.Batch/batchAccounts/pools/write"))
        want_pools = Counter(f"gpu-{x}-{v.replace('.', '-')}" for v in versions for x in "ab")
        check("exactly one pool set per version", pools_written == want_pools, f"pools written: {dict(pools_written)}")
        now = la.emulator.now()
        off = {}
        for account in ACCOUNTS:
            for pool in la.emulator.batch.list_pools(account):
                metadata = ({m["name"]: m["value"] for m in pool.metadata} if isinstance(pool.metadata, list)
                            else dict(pool.metadata))
                want = _expected_nodes(pool.id, metadata, now)
                if pool.allocation_state != "steady" or pool.current["dedicated"] != want:
                    off[f"{account}/{pool.id}"] = (pool.allocation_state, pool.current["dedicated"], want)
        stuck = {k: v for k, v in off.items() if k.startswith(f"{quota_account}/")}
        others = {k: v for k, v in off.items() if k not in stuck}
        check("every pool is steady at its desired size at the end", not others,
              f"pools off target at {now.isoformat()}: {others}")
        unknown = sorted(set(rows_end) - set(kept))
        check("every app table is one the soak knows what to keep of", not unknown,
              f"tables with no rule in _kept: {unknown} (rows: {[rows_end[t] for t in unknown]})")
        over = {t: f"{rows_end[t]} rows > {kept[t]} kept + 10 %" for t in rows_end if rows_end[t] > bound[t]}
        check("Table rows stay bounded by open work + tombstones + 10 %, per table", not over,
              f"tables over their bound at the end: {over}; day 1: {rows_day1}")
        # The soak found this once (issue 18's branch): after QuotaReached and the quota raised, the old quota resize
        # error was read as a fresh QuotaReached and the pools never grew again. Issue 12's quota resume is meant to fix
        # it; the long profile (make chaos) must show it, so this is a check, not an expected failure.
        check("pools stopped by the quota episode grow again once the quota is raised", not stuck,
              f"{len(stuck)} pools of {quota_account} off target: {dict(list(stuck.items())[:3])}")
