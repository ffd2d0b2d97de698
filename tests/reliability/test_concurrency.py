"""Concurrency: four instances of the pool watch at once, as when the Function App scales out.

Four :class:`~shared.core.context.AppContext` objects, each with its own SDK clients (own connections), share the
settings, the state tables (Azurite) and the emulator. Every cycle, all four run the watch tick at the same
moment (threads released by a barrier), so each stalled pool is published four times; then every copy of
every PoolResizeStalled event is handled by every instance at once (``shared.watch.tick.handle_stall``, which is
what the ``resize_stalled`` function runs after parsing the event): sixteen concurrent reactions per stall.

What must hold:

* exactly one accepted resize per stalled pool per cycle, never two (the request log, per pool, per cycle);
* one alert per failure episode: AllocationFailed once and PoolRecovered once for a pool whose resizes failed
  for a while, QuotaReached once for a pool stopped by quota, and no alert twice;
* every pool that can reach its target does;
* nothing escapes an instance but ConcurrencyConflict or a transient Azure error.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from shared.core.context import AppContext
from shared.watch import tick as watch

from .harness import (
    ACCOUNT,
    ACCOUNT_ID,
    LEDGER,
    TABLE_FAULT_SETTINGS,
    check,
    custom_image,
    duplicated_alerts,
    is_transient,
    local_azure,
    managed_pool,
    resize_posts,
    resizes_per_cycle,
    scaled,
    step,
    storage,
)

INSTANCES = 4
CYCLES = scaled(20, 40)
DESIRED = {f"pool{i}": 10 + 7 * i for i in range(8)}
TRANSIENT = {"pool1": 1, "pool4": 2, "pool6": 3}  # growing resizes that fail with AllocationFailed before one succeeds
QUOTA = "pool7"  # every growing resize fails on the account's core quota: the watch stops and says so once


def _together(calls: list, workers: int) -> list[str]:
    """Run the calls at once (a barrier releases them together); return the errors that escaped, as the host records
    them."""
    barrier = threading.Barrier(min(len(calls), workers)) if calls else None
    errors: list[str] = []

    def run(call) -> None:
        if barrier is not None and len(calls) <= workers:
            barrier.wait(timeout=30)
        try:
            call()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, calls))
    return errors


def _react(context: AppContext, event: dict) -> str:
    """What the resize_stalled function does with a parsed PoolResizeStalled event, on one instance's context."""
    data = event["data"]
    if "observed_etag" in inspect.signature(watch.handle_stall).parameters:
        return watch.handle_stall(context, data["accountId"], data["poolId"], observed_etag=data.get("eTag"))
    return watch.handle_stall(context, data["accountId"], data["poolId"])


# Odd seeds run with Table storage failing a fifth of its calls (emulator.table_faults), even seeds without.
@pytest.mark.parametrize("seed", range(1, scaled(2, 20) + 1))
def test_four_watch_instances_resize_each_pool_once_per_cycle(azurite: str, tls_material, seed: int) -> None:
    table_faults = seed % 2 == 1
    LEDGER.case("concurrency" + (" (Table storage faults)" if table_faults else ""))
    with storage(azurite, seed, faults=table_faults) as (tables, _proxy), \
            local_azure(tables, tls_material, accounts=[ACCOUNT_ID], seed=seed,
                        settings={"AUTOPILOT_GROWTH_STEP_NODES": "10",
                                  **(TABLE_FAULT_SETTINGS if table_faults else {})}) as la:
        la.add_batch_account(ACCOUNT)
        image = custom_image(la)
        for i, (pool_id, desired) in enumerate(DESIRED.items()):
            managed_pool(la, pool_id, target=2, desired=desired, image_id=image if i % 2 == 0 else None)
        for pool_id, count in TRANSIENT.items():
            la.emulator.batch.inject_failure(ACCOUNT, pool_id, "insufficient_capacity", count=count)
        la.emulator.batch.inject_failure(ACCOUNT, QUOTA, "quota", count=None)
        instances = [AppContext.from_settings(la.settings, clock=la.emulator.clock) for _ in range(INSTANCES)]
        tick_times: list[datetime] = []
        stalls_by_cycle: list[list[dict]] = []
        escaped: list[str] = []
        try:
            for _ in range(CYCLES):
                step(la, 5)
                tick_times.append(la.emulator.now())
                seen = len(la.stall_events())
                escaped += _together([lambda c=c: watch.tick(c) for c in instances], INSTANCES)
                stalls = la.stall_events()[seen:]
                stalls_by_cycle.append(stalls)
                reactions = [lambda c=c, e=e: _react(c, e) for e in stalls for c in instances]
                escaped += _together(reactions, 32)
            step(la, 5)
        finally:
            for context in instances:
                context.clients.close()

        LEDGER.count("concurrency: watch ticks", INSTANCES * CYCLES)
        LEDGER.count("concurrency: stall reactions", sum(len(s) for s in stalls_by_cycle) * INSTANCES)
        check("only ConcurrencyConflict or transient Azure errors escape an instance",
              all(is_transient("resize_stalled", e) for e in escaped), f"escaped: {escaped}")
        accepted = resizes_per_cycle(la, tick_times, accepted_only=True)
        refused = [e for e in resize_posts(la) if e.status in (409, 412)]
        LEDGER.count("concurrency: resizes accepted", sum(accepted.values()))
        LEDGER.count("concurrency: resizes refused by Batch (412/409: another instance acted first)", len(refused))
        LEDGER.count("concurrency: errors escaped (ConcurrencyConflict, transient)", len(escaped))
        check("the instances really raced (some resize calls lost to another instance's)", len(refused) > 0,
              "no resize call was ever refused: the instances did not overlap, so this run proves nothing about "
              "concurrency")
        doubled = {k: n for k, n in accepted.items() if n > 1}
        check("at most one accepted resize per pool per cycle", not doubled,
              f"(cycle, pool) -> accepted resizes: {doubled}")
        for cycle, stalls in enumerate(stalls_by_cycle):
            for pool_id in sorted({e["data"]["poolId"] for e in stalls if e["data"]["action"] == "resize"}):
                check("exactly one resize per stalled pool per cycle", accepted.get((cycle, pool_id), 0) == 1,
                      f"cycle {cycle}: {pool_id} was published as stalled "
                      f"{sum(e['data']['poolId'] == pool_id for e in stalls)} time(s) "
                      f"and got {accepted.get((cycle, pool_id), 0)} accepted resize(s)")
        nodes = {p.id: p.current["dedicated"] for p in la.emulator.batch.list_pools(ACCOUNT)}
        want = {p: d for p, d in DESIRED.items() if p != QUOTA}
        check("every pool that can reach its target does", {p: nodes[p] for p in want} == want,
              f"nodes: {nodes}, want {want}")

        alerts = Counter((a["subject"].rsplit("/", 1)[-1], a["eventType"].rsplit(".", 1)[-1]) for a in la.alerts())
        for pool_id in TRANSIENT:
            check("one alert per episode", alerts[(pool_id, "AllocationFailed")] == 1
                  and alerts[(pool_id, "PoolRecovered")] == 1,
                  f"{pool_id}: {alerts[(pool_id, 'AllocationFailed')]} AllocationFailed, "
                  f"{alerts[(pool_id, 'PoolRecovered')]} PoolRecovered")
        check("one alert per episode", alerts[(QUOTA, "QuotaReached")] == 1,
              f"{QUOTA}: {alerts[(QUOTA, 'QuotaReached')]} QuotaReached")
        check("no duplicate alert", not duplicated_alerts(la), f"alerts sent more than once: {duplicated_alerts(la)}")
        LEDGER.count("concurrency: alerts", sum(alerts.values()))
