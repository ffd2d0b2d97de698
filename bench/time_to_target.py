"""Time to target: how long a 2,500-node custom-image pool takes to reach its size, in virtual minutes.

The emulator's capacity model is configured for the pool's (region, VM size) so that:

* one resize adds at most ``max_nodes_per_resize`` = 300 nodes (a bigger target stays short and the
  resize ends with ``AllocationTimedout`` when its ``resizeTimeout`` passes),
* nodes arrive at ``dedicated_per_minute`` = 50 per minute with ``rate_jitter`` = 0 (so a full
  300-node resize has exactly 6 growing minutes),
* every growing minute fails the resize with a transient ``AllocationFailed`` with probability
  ``p = 1 - 0.8 ** (1 / 6)`` = 3.65 %, so a full 300-node resize fails with probability
  ``1 - (1 - p) ** 6`` = **20 %** (half of them "internal error", half "insufficient capacity";
  the nodes granted before the failing minute stay). The draws are seeded per (emulator seed, pool,
  resize number, minute), so a seed fixes the weather, not the outcome of a strategy.

Strategies, each from the pool's creation at t = 0 on a fresh emulator with the same seed:

* ``batch_alone`` - the pool is created with target 2,500 (Batch's default 15-minute resizeTimeout)
  and nothing else happens;
* ``naive_fixed_interval`` - the same pool, plus a loop (:func:`naive_controller`, the real Batch SDK
  against the emulator) that every ``NAIVE_INTERVAL`` minutes reads the pool and, when it is steady
  below 2,500, resizes it to the full 2,500 again;
* ``app`` - the pool is created as the image pipeline creates it (metadata ``autopilot.managed=true``,
  ``desiredDedicated=2500``, a first target of one growth step, the family's default 25-minute
  resizeTimeout) and the local Functions host runs the app on its default schedules (a watch tick
  every minute that follows pools in an open episode, a full scan every 5 minutes) - only the app
  resizes it from then on;
* ``app`` variants with app settings changed (never code): a tick only every 5 minutes (the
  cadence before the fast lane), and the default cadence with a 1-minute first backoff;
* ``oracle`` - a controller with perfect timing (:func:`oracle_controller`): reads the pool every
  virtual minute and, the moment it is steady below target, resizes it by one step of 300.

The **ideal bound** comes from the model's parameters alone: a pool has one resize at a time, and a
resize is granted at most 50 nodes per minute, starting the minute after it is issued; a resize that
reaches its own target ends in that minute and the next can be granted nodes in the following one,
so the per-resize cap costs nothing to a controller that chains resizes without a gap. Hence
``ceil(2500 / 50)`` = **50 minutes** without failures. A failing minute grants nothing, so each
failure costs at least one more minute; the expected number of failed minutes before the 50
granting ones is ``50 p / (1 - p)`` = 1.9, an expected ideal of ~51.9 minutes. The oracle measures
the realised ideal per seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.common import count_kinds, local_azure, summary

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
REGION = "westeurope"
VM_SIZE = "Standard_D4ds_v5"
NODE_AGENT = "batch.node.ubuntu 24.04"
ACCOUNT = "tttaccount"
POOL_ID = "render-2-0-0"
TARGET = 2_500
MAX_PER_RESIZE = 300
PER_MINUTE = 50
FAILURE_PER_RESIZE = 0.20
FAILURE_PER_MINUTE = 1 - (1 - FAILURE_PER_RESIZE) ** (1 / (MAX_PER_RESIZE / PER_MINUTE))
# minutes; the app's own watch cadence, so the two differ in what they do, not in how often they look
NAIVE_INTERVAL = 5
# shared.config.family_parts.RESIZE_TIMEOUT_DEFAULT: what the pipeline gives a new pool
PIPELINE_RESIZE_TIMEOUT = timedelta(minutes=25)
HORIZON_MINUTES = 8 * 60
TARGET_RATIO = 1.15
# Issue 18: the app's time against the ideal controller's on the same seed, default settings.
ORACLE_MEDIAN_TARGET = 1.03
ORACLE_WORST_TARGET = 1.10
BATCH_API_VERSION = "2025-06-01"

APP_VARIANTS: dict[str, dict[str, str]] = {
    "app": {},
    "app_watch_5min": {"AUTOPILOT_WATCH_SCHEDULE": "0 */5 * * * *"},
    "app_backoff_1min": {"AUTOPILOT_BACKOFF_INITIAL_MINUTES": "1"},
}
LABELS = {
    "batch_alone": "(a) Batch alone: one resize to 2,500",
    "naive_fixed_interval": f"(b) naive: every {NAIVE_INTERVAL} min, resize to 2,500 if steady",
    "app": "(c) this app, default settings (tick every minute, full scan every 5 min)",
    "app_watch_5min": "(c') this app, AUTOPILOT_WATCH_SCHEDULE every 5 minutes",
    "app_backoff_1min": "(c'') this app, default cadence + AUTOPILOT_BACKOFF_INITIAL_MINUTES=1",
    "oracle": "ideal controller (re-issues the minute the pool is steady)",
}


def ideal_bound() -> dict[str, Any]:
    p = FAILURE_PER_MINUTE
    minutes = math.ceil(TARGET / PER_MINUTE)
    return {"minutes": minutes, "expected_failed_minutes": minutes * p / (1 - p),
            "expected_minutes_with_failures": minutes / (1 - p),
            "failure_per_minute": p, "failure_per_full_resize": 1 - (1 - p) ** (MAX_PER_RESIZE // PER_MINUTE)}


@dataclass
class Trace:
    """What the pool did, minute by minute (read from the emulator's state, never through a request)."""

    reached_at: int | None = None
    nodes: list[int] = field(default_factory=list)
    resizes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    # Minutes in which the pool gained no node, by what the pool showed at the end of the minute:
    # steady after a step that succeeded (nobody asked for more yet), steady after a failed resize
    # (the failing minute itself, then any wait before the next request), or resizing without a grant
    # (a resize that hit its 300-node cap and waits for its timeout).
    stalled_minutes: dict[str, int] = field(default_factory=lambda: {"steady_after_success": 0,
                                                                     "steady_after_failure": 0,
                                                                      "resizing_without_growth": 0})
    # For each unsuccessful resize, in order: the minutes without growth after its failing minute until the pool
    # grows again (the wait the controller chose: backoff, cadence).
    waits_after_failure: list[int] = field(default_factory=list)
    # Per failure class (internal, capacity, timeout, other): failed resizes, and the resizes issued after one of that
    # class before the next outcome (a retry storm shows as more resizes than failures).
    failures_by_class: dict[str, int] = field(default_factory=dict)
    retries_by_class: dict[str, int] = field(default_factory=dict)
    waits_by_class: dict[str, list[int]] = field(default_factory=dict)  # waits_after_failure, by the failure's class
    _last_transition: Any = None
    _failed_at: int | None = None
    _retry_class: str | None = None
    _failed_class: str = "other"

    def observe(self, pool: Any, minute: int) -> None:
        before = self.nodes[-1] if self.nodes else 0
        self.nodes.append(pool.current["dedicated"])
        if self._failed_at is not None and pool.current["dedicated"] > before:
            self.waits_after_failure.append(minute - self._failed_at - 1)
            self.waits_by_class.setdefault(self._failed_class, []).append(minute - self._failed_at - 1)
            self._failed_at = None
        if pool.current["dedicated"] <= before and pool.current["dedicated"] < TARGET:
            if pool.allocation_state != "steady":
                self.stalled_minutes["resizing_without_growth"] += 1
            elif pool.resize_errors:
                self.stalled_minutes["steady_after_failure"] += 1
            else:
                self.stalled_minutes["steady_after_success"] += 1
        if pool.resize_count > self.resizes and self._retry_class is not None:
            self.retries_by_class[self._retry_class] = (self.retries_by_class.get(self._retry_class, 0)
                                                        + pool.resize_count - self.resizes)
            self._retry_class = None
        self.resizes = pool.resize_count
        if pool.allocation_state == "steady" and pool.allocation_state_time != self._last_transition:
            self._last_transition = pool.allocation_state_time
            if pool.resize_errors and pool.current["dedicated"] < TARGET:
                self._failed_at = minute
            for error in pool.resize_errors:
                reason = dict(error.values).get("Reason", "")
                key = f"{error.code}{' (' + reason + ')' if reason else ''}"
                self.failures[key] = self.failures.get(key, 0) + 1
                kind = failure_class(error.code, reason)
                self.failures_by_class[kind] = self.failures_by_class.get(kind, 0) + 1
                self._retry_class = self._failed_class = kind
        if self.reached_at is None and pool.current["dedicated"] >= TARGET:
            self.reached_at = minute


FAILURE_CLASSES = ("internal", "capacity", "timeout", "other")


def failure_class(code: str, reason: str) -> str:
    """The bench's failure classes, by the words the emulator's resize errors carry."""
    text = f"{code} {reason}".lower()
    if "internal" in text:
        return "internal"
    if "capacity" in text:
        return "capacity"
    if "timedout" in text or "timeout" in text:
        return "timeout"
    return "other"


def _configure(la: Any) -> str:
    """Capacity as in the module docstring; an account; a gallery image version ready in the region. Returns the image
    id."""
    la.emulator.batch.configure_capacity(REGION, VM_SIZE, max_nodes_per_resize=MAX_PER_RESIZE,
                                         dedicated_per_minute=PER_MINUTE,
                                         low_priority_per_minute=PER_MINUTE, rate_jitter=0.0,
                                         dedicated_failure_rate=FAILURE_PER_MINUTE,
                                         low_priority_failure_rate=FAILURE_PER_MINUTE, internal_error_share=0.5)
    la.add_batch_account(ACCOUNT)
    compute = la.emulator.compute
    disk = la.add_prepared_disk("render-osdisk")
    snapshot = compute.create_snapshot(SUBSCRIPTION_ID, "images-rg", "render-2-0-0-os", source_resource_id=disk)
    compute.create_gallery(SUBSCRIPTION_ID, "images-rg", "autopilotGallery", location=REGION)
    compute.create_gallery_image(SUBSCRIPTION_ID, "images-rg", "autopilotGallery", "render", hyper_v_generation="V2")
    version = compute.create_gallery_image_version(SUBSCRIPTION_ID, "images-rg", "autopilotGallery", "render", "2.0.0",
                                                   os_snapshot_id=snapshot.id, target_regions={REGION: 9}, instant=True)
    return version.id


def _batch_client(la: Any) -> Any:
    """The operator's Batch data-plane client for the account (real SDK, HTTPS, the operator's identity)."""
    account = la.operator.batch_management.batch_account.get("batch-rg", ACCOUNT)
    return la.operator.batch_account(account.account_endpoint)


def resize(client: Any, pool_id: str, dedicated: int, timeout: timedelta | None = None) -> int:
    """POST /pools/{id}/resize through the SDK client's pipeline; returns the HTTP status.

    (``BatchClient.begin_resize_pool`` would start a poller thread that polls the pool every few
    wall-clock seconds until it is steady - meaningless on a virtual clock.)
    """
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    body: dict[str, Any] = {"targetDedicatedNodes": dedicated, "targetLowPriorityNodes": 0}
    if timeout is not None:
        body["resizeTimeout"] = f"PT{int(timeout.total_seconds() // 60)}M"
    request = HttpRequest("POST", f"/pools/{pool_id}/resize?api-version={BATCH_API_VERSION}", json=body,
                          headers={"Content-Type": "application/json; odata=minimalmetadata"})
    try:
        return client.send_request(request).status_code
    except HttpResponseError as exc:  # azure-batch's pipeline raises for non-2xx answers, even under send_request
        return exc.status_code or 0


def naive_controller(client: Any, interval: int = NAIVE_INTERVAL) -> Callable[[int], None]:
    """Every ``interval`` minutes: read the pool; steady and short of 2,500 -> resize to 2,500 (Batch's default
    timeout)."""

    def step(minute: int) -> None:
        if minute % interval:
            return
        pool = client.get_pool(POOL_ID, select=["id", "allocationState", "currentDedicatedNodes"])
        if str(pool.allocation_state).lower().endswith("steady") and (pool.current_dedicated_nodes or 0) < TARGET:
            resize(client, POOL_ID, TARGET)

    return step


def oracle_controller(client: Any) -> Callable[[int], None]:
    """Every minute: read the pool; steady and short -> resize by one 300-node step (a step always reaches its own
    target)."""

    def step(minute: int) -> None:
        pool = client.get_pool(POOL_ID, select=["id", "allocationState", "currentDedicatedNodes"])
        current = pool.current_dedicated_nodes or 0
        if str(pool.allocation_state).lower().endswith("steady") and current < TARGET:
            resize(client, POOL_ID, min(TARGET, current + MAX_PER_RESIZE), timedelta(minutes=20))

    return step


def run_strategy(strategy: str, seed: int, *, horizon: int = HORIZON_MINUTES) -> dict[str, Any]:
    from shared.core.resource_ids import batch_account_id

    account_id = batch_account_id(SUBSCRIPTION_ID, "batch-rg", ACCOUNT)
    is_app = strategy in APP_VARIANTS
    settings = APP_VARIANTS.get(strategy, {})
    wall0 = time.perf_counter()
    with local_azure(seed=seed, accounts=[account_id] if is_app else None, settings=settings) as la:
        image_id = _configure(la)
        backend, emulator = la.emulator.batch, la.emulator
        controller: Callable[[int], None] | None = None
        if is_app:
            metadata = {"autopilot.managed": "true", "autopilot.family": "render", "autopilot.version": "2.0.0",
                        "autopilot.imageId": image_id, "autopilot.desiredDedicated": str(TARGET),
                        "autopilot.desiredSpot": "0",
                        "autopilot.nodeDeallocationOption": "taskcompletion"}
            backend.create_pool(ACCOUNT, POOL_ID, image_id=image_id, vm_size=VM_SIZE, node_agent_sku_id=NODE_AGENT,
                                target_dedicated=min(TARGET, MAX_PER_RESIZE), resize_timeout=PIPELINE_RESIZE_TIMEOUT,
                                metadata=metadata)
        elif strategy == "oracle":  # starts like the app's pool: one step, a timeout the step never needs
            client = _batch_client(la)
            backend.create_pool(ACCOUNT, POOL_ID, image_id=image_id, vm_size=VM_SIZE, node_agent_sku_id=NODE_AGENT,
                                target_dedicated=min(TARGET, MAX_PER_RESIZE), resize_timeout=timedelta(minutes=20))
            controller = oracle_controller(client)
        else:
            client = _batch_client(la)
            backend.create_pool(ACCOUNT, POOL_ID, image_id=image_id, vm_size=VM_SIZE, node_agent_sku_id=NODE_AGENT,
                                target_dedicated=TARGET)
            if strategy == "naive_fixed_interval":
                controller = naive_controller(client)
            elif strategy != "batch_alone":
                raise ValueError(f"unknown strategy {strategy!r}")
        mark = len(emulator.log)
        trace = Trace()
        host = la.host
        host.pump()
        for minute in range(1, horizon + 1):
            # One minute of virtual time, as FunctionsHost.run_for steps it, with the pool observed after Batch's
            # minute and before anyone reacts to it (so no resize outcome goes unseen).
            emulator.clock.advance(timedelta(minutes=1))
            emulator.scheduler.run_due()
            pool = backend.find_pool(ACCOUNT, POOL_ID)
            trace.observe(pool, minute)
            if trace.reached_at is not None:
                break
            if strategy == "batch_alone" and pool.allocation_state == "steady":
                break  # its one resize is over: nothing will ever add a node again
            if is_app:
                host.pump()
                if host.fire_due_timers():
                    host.pump()
            elif controller is not None:
                controller(minute)
        requests = count_kinds(e for e in emulator.log.entries()[mark:] if e.caller != "operator@contoso.com"
                               or not is_app)
        failed_invocations = [f"{r.function}: {r.detail}" for r in la.host.invocations if not r.ok] if is_app else []
        alerts = [a["eventType"].rsplit(".", 1)[-1] for a in la.alerts()] if is_app else []
        final = backend.get_pool(ACCOUNT, POOL_ID)
        return {
            "strategy": strategy,
            "seed": seed,
            "minutes": trace.reached_at,
            "reached": trace.reached_at is not None,
            "final_nodes": final.current["dedicated"],
            "stopped_at_minute": len(trace.nodes),
            "resizes": trace.resizes,
            "failures": trace.failures,
            "failures_by_class": trace.failures_by_class,
            "retries_by_class": trace.retries_by_class,
            "waits_by_class": trace.waits_by_class,
            "stalled_minutes": trace.stalled_minutes,
            "waits_after_failure": trace.waits_after_failure,
            "requests": requests,
            "request_total": sum(requests.values()),
            "failed_invocations": failed_invocations[:5],
            "alerts": alerts,
            "nodes_by_minute": trace.nodes,
            "wall_s": time.perf_counter() - wall0,
        }


def run(*, seeds: tuple[int, ...] = (1, 2, 3, 4, 5), strategies: tuple[str, ...] | None = None,
        horizon: int = HORIZON_MINUTES,
        progress: Any = None) -> dict[str, Any]:
    strategies = strategies or ("batch_alone", "naive_fixed_interval", *APP_VARIANTS, "oracle")
    bound = ideal_bound()
    runs: dict[str, list[dict[str, Any]]] = {}
    for strategy in strategies:
        if progress:
            progress(f"time to target: {strategy} x {len(seeds)} seed(s)")
        runs[strategy] = [run_strategy(strategy, seed, horizon=horizon) for seed in seeds]
    rows = []
    for strategy, results in runs.items():
        reached = [r["minutes"] for r in results if r["reached"]]
        stats = summary(reached) if reached else {"n": 0}
        row = {
            "strategy": strategy,
            "label": LABELS.get(strategy, strategy),
            "seeds": len(results),
            "reached": len(reached),
            "minutes": stats,
            "ratio_to_ideal": {k: v / bound["minutes"] for k, v in stats.items() if k in ("median", "min", "max")}
            if reached else None,
            "final_nodes": summary(r["final_nodes"] for r in results),
            "resizes": summary(r["resizes"] for r in results),
            "failures": summary(sum(r["failures"].values()) for r in results),
            "stalled_minutes": {k: summary(r["stalled_minutes"][k] for r in results)
                                for k in results[0]["stalled_minutes"]},
            # The wait after the 1st, 2nd, ... unsuccessful resize of a run, over the seeds that had that many.
            "waits_after_failure": [summary(r["waits_after_failure"][i] for r in results
                                            if len(r["waits_after_failure"]) > i)
                                    for i in range(max((len(r["waits_after_failure"]) for r in results), default=0))],
            "requests": summary(r["request_total"] for r in results),
            "failed_invocations": sum(len(r["failed_invocations"]) for r in results),
            # Summed over the seeds: failures of each class and the resizes issued after them.
            "by_class": {k: {"failures": sum(r.get("failures_by_class", {}).get(k, 0) for r in results),
                             "resizes_after": sum(r.get("retries_by_class", {}).get(k, 0) for r in results),
                             "waits": summary(w for r in results for w in r.get("waits_by_class", {}).get(k, []))}
                         for k in FAILURE_CLASSES},
        }
        if strategy in APP_VARIANTS and reached:
            row["target_met"] = stats["median"] / bound["minutes"] <= TARGET_RATIO
        rows.append(row)
    oracle = {r["seed"]: r["minutes"] for r in runs.get("oracle", []) if r["reached"]}
    for row in rows:
        per_seed = [r["minutes"] / oracle[r["seed"]] for r in runs[row["strategy"]] if r["reached"]
                    and r["seed"] in oracle]
        row["ratio_to_oracle"] = summary(per_seed) if per_seed else None
        if row["strategy"] in APP_VARIANTS and per_seed and len(per_seed) == row["seeds"]:
            row["oracle_target_met"] = {"median": row["ratio_to_oracle"]["median"] <= ORACLE_MEDIAN_TARGET,
                                        "worst": row["ratio_to_oracle"]["max"] <= ORACLE_WORST_TARGET}
    return {
        "model": {"target_nodes": TARGET, "max_nodes_per_resize": MAX_PER_RESIZE, "dedicated_per_minute": PER_MINUTE,
                  "rate_jitter": 0.0,
                  "dedicated_failure_rate_per_minute": FAILURE_PER_MINUTE,
                  "failure_per_full_resize": bound["failure_per_full_resize"],
                  "vm_size": VM_SIZE, "region": REGION, "naive_interval_minutes": NAIVE_INTERVAL,
                  "horizon_minutes": horizon},
        "ideal": bound,
        "target_ratio": TARGET_RATIO,
        "oracle_targets": {"median": ORACLE_MEDIAN_TARGET, "worst": ORACLE_WORST_TARGET},
        "seeds": list(seeds),
        "rows": rows,
        "runs": runs,
    }


def quick() -> dict[str, Any]:
    return run(seeds=(1,), horizon=8, strategies=("batch_alone", "naive_fixed_interval", "app", "oracle"))
