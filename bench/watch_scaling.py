"""Watch economy and scaling: what one ``pool_watch`` tick costs over 100 / 1,000 / 10,000 managed pools.

Set-up (per configuration): ``accounts`` Batch accounts on the emulator, ``pools`` pools created
directly in the Batch backend the way the image pipeline creates them (a Compute Gallery image
version, the app's full metadata: ``autopilot.managed=true``, ``desiredDedicated``, family, version,
image and snapshot ids, deallocation option), spread round-robin over the accounts. Every pool is
allocated and steady at its desired size; 1 % of them (at least one) are *stalled*: steady, below
their desired size, no resize in flight - exactly the pools a tick must resize.

The app runs in a child process (:mod:`bench._tick_worker`), as a Functions instance would, against
the emulator in this process; its CPU time and memory are therefore the app's alone. Each tick is
the real ``pool_watch`` function as the worker indexes it. Requests are counted from the emulator's
request log (ARM + Batch + Event Grid; Table storage goes to Azurite and is not in that log).

Per configuration:

1. a **cold** tick (fresh instance: it reads each Batch account once; the app caches them),
2. ``reps`` **warm** ticks, each over a fresh set of stalled pools, each followed by the
   ``resize_stalled`` deliveries of its ``PoolResizeStalled`` events (run by the local host here),
3. one warm tick under ``tracemalloc`` (peak Python heap of the tick), then the **CPU floor**: ``json.loads`` of the
   same list pages' bytes in the same process (:func:`bench._tick_worker.decode_floor`),
4. the **per-pool-GET baseline** (:func:`bench._tick_worker.naive_scan`) in the same instance, over
   the same pools and stalls: list pool ids, then GET each pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

from bench.common import ROOT, count_kinds, local_azure, summary

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
REGION = "westeurope"
VM_SIZE = "Standard_D2ds_v5"
NODE_AGENT = "batch.node.ubuntu 24.04"
POOLS_PER_IMAGE = 2000  # Batch allows 2,500 dedicated nodes per custom image: several versions for 10,000 pools
STALL_FRACTION = 0.01
DEFAULT_MATRIX = [(p, a) for p in (100, 1_000, 10_000) for a in (1, 10, 50)]


class Worker:
    """The child process playing the Function App instance."""

    def __init__(self, env: dict[str, str]) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the worker; closed in close()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench._tick_worker"], cwd=ROOT, env={**os.environ, **env},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     bufsize=1)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._stderr.seek(0)
            raise RuntimeError(f"the tick worker exited: {self._stderr.read()[-3000:]}")
        return json.loads(line)

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if answer.get("error"):
            raise RuntimeError(f"worker {command['cmd']} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def _metadata(image_id: str, snapshot_ids: str, desired: int) -> dict[str, str]:
    return {
        "autopilot.managed": "true",
        "autopilot.family": "render",
        "autopilot.version": "1.0.0",
        "autopilot.imageId": image_id,
        "autopilot.snapshotIds": snapshot_ids,
        "autopilot.desiredDedicated": str(desired),
        "autopilot.desiredSpot": "0",
        "autopilot.nodeDeallocationOption": "taskcompletion",
    }


def _images(la: Any, count: int) -> tuple[list[str], str]:
    """``count`` gallery image versions (ready at once) a pool can use, and the snapshot ids they came from."""
    compute = la.emulator.compute
    disk = la.add_prepared_disk("watch-osdisk")
    snapshot = compute.create_snapshot(SUBSCRIPTION_ID, "images-rg", "watch-os", source_resource_id=disk)
    compute.create_gallery(SUBSCRIPTION_ID, "images-rg", "benchGallery", location=REGION)
    compute.create_gallery_image(SUBSCRIPTION_ID, "images-rg", "benchGallery", "render", hyper_v_generation="V2")
    ids = []
    for i in range(count):
        version = compute.create_gallery_image_version(SUBSCRIPTION_ID, "images-rg", "benchGallery", "render",
                                                       f"1.0.{i}",
                                                       os_snapshot_id=snapshot.id, instant=True)
        ids.append(version.id)
    return ids, f"{snapshot.id},{snapshot.id.replace('watch-os', 'watch-data0')}"


def measure(pools: int, accounts: int, *, reps: int = 5, naive: bool = True,
            stall_fraction: float = STALL_FRACTION) -> dict[str, Any]:
    """One configuration of the matrix (see the module docstring)."""
    from shared.core.resource_ids import batch_account_id

    stalls_per_set = max(1, round(pools * stall_fraction))
    sets_needed = reps + 2  # cold tick, warm ticks, traced tick (the baseline reuses the traced tick's set)
    stride = pools // stalls_per_set
    if stride < sets_needed:
        raise ValueError(f"{pools} pools are too few for {sets_needed} disjoint sets of {stalls_per_set} stalled pools")
    names = [f"watch{a:02d}" for a in range(accounts)]
    account_ids = [batch_account_id(SUBSCRIPTION_ID, "batch-rg", n) for n in names]
    per_account = -(-pools // accounts)
    t_setup = time.perf_counter()
    with local_azure(accounts=account_ids, seed=7) as la:
        emulator, backend = la.emulator, la.emulator.batch
        backend.configure_capacity(REGION, VM_SIZE, dedicated_failure_rate=0.0, low_priority_failure_rate=0.0,
                                   rate_jitter=0.0)
        for name in names:
            la.add_batch_account(name, pool_quota=per_account + 10, dedicated_core_quota=10_000_000,
                                 low_priority_core_quota=10_000_000)
        images, snapshot_ids = _images(la, -(-pools // POOLS_PER_IMAGE))
        where: dict[int, tuple[str, str, str]] = {}  # pool index -> (account name, pool id, image id)
        stall_sets = [[k + j * stride for j in range(stalls_per_set)] for k in range(sets_needed)]
        for i in range(pools):
            account, pool_id, image = names[i % accounts], f"pool-{i:05d}", images[i // POOLS_PER_IMAGE]
            where[i] = (account, pool_id, image)
            desired = 2 if i in stall_sets[0] else 1
            backend.create_pool(account, pool_id, image_id=image, vm_size=VM_SIZE, node_agent_sku_id=NODE_AGENT,
                                target_dedicated=1,
                                resize_timeout=timedelta(minutes=20), metadata=_metadata(image, snapshot_ids, desired))
        emulator.clock.advance(timedelta(minutes=2))  # every pool allocates its node
        not_ready = [p.id for a in names for p in backend.list_pools(a) if p.allocation_state != "steady"
                     or p.current["dedicated"] != 1]
        if not_ready:
            raise RuntimeError(f"set-up: {len(not_ready)} pools did not reach their first node, e.g. {not_ready[:3]}")
        setup_s = time.perf_counter() - t_setup

        def stall(indices: list[int]) -> None:
            for i in indices:
                account, pool_id, image = where[i]
                backend.update_pool(account, pool_id, metadata=_metadata(image, snapshot_ids, 2), plane="arm")

        def expected(indices: list[int]) -> list[str]:
            return sorted(f"{batch_account_id(SUBSCRIPTION_ID, 'batch-rg', where[i][0])}/pools/{where[i][1]}"
                          for i in indices)

        def handle_stalls(indices: list[int]) -> dict[str, Any]:
            mark, invocations = len(emulator.log), len(la.host.invocations)
            started = time.perf_counter()
            la.host.pump()
            wall = time.perf_counter() - started
            runs = la.host.invocations[invocations:]
            failed = [r.detail for r in runs if not r.ok]
            resized = [i for i in indices if backend.find_pool(where[i][0], where[i][1]).target["dedicated"] == 2]
            return {"requests": count_kinds(emulator.log.entries()[mark:]), "wall_s": wall, "invocations": len(runs),
                    "failed": failed, "resized": len(resized), "expected": len(indices)}

        def tick(indices: list[int], *, trace: bool = False) -> dict[str, Any]:
            mark = len(emulator.log)
            answer = worker.call(cmd="tick", now=emulator.now().isoformat(), trace=trace)
            answer["requests"] = count_kinds(emulator.log.entries()[mark:])
            answer["expected_stalled"] = len(indices)
            return answer

        # Every measured tick is a *full* scan (all accounts listed): the costly kind, which runs every
        # AUTOPILOT_WATCH_FULL_SCAN_MINUTES; the ticks between list only accounts with open episodes.
        worker = Worker({**la.env, "AUTOPILOT_WATCH_FULL_SCAN_MINUTES": "1"})
        try:
            ticks: list[dict[str, Any]] = []
            handlers: list[dict[str, Any]] = []
            for n, indices in enumerate(stall_sets[: reps + 1]):
                if n > 0:
                    stall(indices)
                ticks.append(tick(indices))
                handlers.append(handle_stalls(indices))
                emulator.clock.advance(timedelta(minutes=2))  # the resized pools reach their new size: healthy again
            traced_set = stall_sets[reps + 1]
            stall(traced_set)
            traced = tick(traced_set, trace=True)
            floor = worker.call(cmd="floor", now=emulator.now().isoformat())["detail"]
            baseline: dict[str, Any] | None = None
            if naive:
                mark = len(emulator.log)
                baseline = worker.call(cmd="naive", now=emulator.now().isoformat())
                baseline["requests"] = count_kinds(emulator.log.entries()[mark:])
                baseline["same_stalls_as_app"] = baseline["detail"]["stalled"] == expected(traced_set)
                baseline["stalled"] = len(baseline["detail"].pop("stalled"))
            la.host.pump()
        finally:
            worker.close()

    cold, warm = ticks[0], ticks[1:]
    warm_requests = warm[0]["requests"]
    tick_total = sum(warm_requests.values())
    result: dict[str, Any] = {
        "pools": pools,
        "accounts": accounts,
        "stalled_per_tick": stalls_per_set,
        "setup_s": setup_s,
        "worker_import_s": worker.ready.get("import_s"),
        "cold_tick": {"requests": cold["requests"], "wall_s": cold["wall_s"], "cpu_s": cold["cpu_s"],
                      "detail": cold["detail"]},
        "warm_ticks": [{"requests": t["requests"], "wall_s": t["wall_s"], "cpu_s": t["cpu_s"], "detail": t["detail"]}
                       for t in warm],
        "warm_tick_wall_s": summary(t["wall_s"] for t in warm),
        "warm_tick_cpu_s": summary(t["cpu_s"] for t in warm),
        "warm_tick_requests": warm_requests,
        "warm_tick_request_total": tick_total,
        "stall_handling": handlers,
        "traced_tick": {"peak_bytes": traced["peak_bytes"], "wall_s": traced["wall_s"],
                        "maxrss_kb": traced["maxrss_kb"],
                        "requests": traced["requests"]},
        # The CPU floor: json.loads of the same list pages' bytes in the same process (median of 3), per pool.
        "floor": {**floor, "cpu_us_per_pool": floor["cpu_s"] * 1e6 / max(1, floor["pools"])},
        "warm_tick_cpu_us_per_pool": None,
        "all_stalls_found": all(t["detail"].get("stalled") == t["expected_stalled"] for t in [*ticks, traced]),
        "all_stalls_resized": all(h["resized"] == h["expected"] and not h["failed"] for h in handlers),
    }
    result["warm_tick_cpu_us_per_pool"] = result["warm_tick_cpu_s"]["median"] * 1e6 / pools
    # What the app should cost, from first principles: list pages per account, one account GET per account on a full
    # scan (its core quotas, read afresh; every measured tick is a full scan), the publish calls for the stalled pools,
    # and - in resize_stalled - one GET and one resize per stalled pool.
    pages = sum(-(-(pools // accounts + (1 if a < pools % accounts else 0)) // 1000) or 1 for a in range(accounts))
    result["expected"] = {"list_pages": pages, "account_gets_cold": accounts, "account_gets_full": accounts,
                          "publish_calls": -(-stalls_per_set // 100), "stall_get_and_resize": 2 * stalls_per_set}
    if baseline is not None:
        result["baseline"] = {"requests": baseline["requests"], "request_total": sum(baseline["requests"].values()),
                              "wall_s": baseline["wall_s"], "cpu_s": baseline["cpu_s"], "stalled": baseline["stalled"],
                              "same_stalls_as_app": baseline["same_stalls_as_app"]}
        reads_app = sum(v for k, v in warm_requests.items() if k.startswith(("Batch", "ARM GET")))
        reads_naive = sum(v for k, v in baseline["requests"].items() if k.startswith(("Batch", "ARM GET")))
        result["ratio"] = {
            "reads_naive_over_app": reads_naive / reads_app if reads_app else None,
            "requests_naive_over_app_tick": result["baseline"]["request_total"] / tick_total if tick_total else None,
            "wall_naive_over_app_tick": baseline["wall_s"] / result["warm_tick_wall_s"]["median"],
        }
    return result


def run(*, matrix: list[tuple[int, int]] | None = None, reps: int = 5, naive_max_pools: int = 10_000,
        budget_s: float = 480.0, progress: Any = None) -> dict[str, Any]:
    """The matrix, smallest first; a configuration whose forecast would overrun ``budget_s`` is skipped and listed.

    The per-pool-GET baseline runs up to ``naive_max_pools`` pools: beyond that its request count is
    known by construction and its wall time (one HTTPS round trip per pool) would not fit ``make bench``.
    """
    matrix = sorted(matrix or DEFAULT_MATRIX, key=lambda pa: (pa[0], pa[1]))
    rows, skipped = [], []
    started = time.perf_counter()
    app_s_per_pool = naive_s_per_pool = 0.0  # from the largest configuration measured so far (fixed costs amortised)
    largest = 0
    for pools, accounts in matrix:
        naive = pools <= naive_max_pools
        spent = time.perf_counter() - started
        forecast = pools * (app_s_per_pool + (naive_s_per_pool if naive else 0.0))
        if rows and spent + forecast > budget_s:
            skipped.append({"pools": pools, "accounts": accounts,
                            "reason": f"forecast {forecast:.0f} s after {spent:.0f} s would overrun the "
                                      f"{budget_s:.0f} s budget"})
            continue
        if progress:
            progress(f"watch: {pools:,} pools over {accounts} account(s){' + per-pool-GET baseline' if naive else ''}")
        t0 = time.perf_counter()
        row = measure(pools, accounts, reps=reps, naive=naive)
        row["elapsed_s"] = time.perf_counter() - t0
        naive_s = row.get("baseline", {}).get("wall_s", 0.0)
        if pools > largest:  # a bigger size amortises fixed costs better: forecast from it alone
            largest, app_s_per_pool = pools, 0.0
        if pools == largest:
            app_s_per_pool = max(app_s_per_pool, (row["elapsed_s"] - naive_s) / pools)
        if naive:
            naive_s_per_pool = max(naive_s_per_pool, naive_s / pools)
        rows.append(row)
    return {"rows": rows, "skipped": skipped, "reps": reps, "stall_fraction": STALL_FRACTION, "vm_size": VM_SIZE,
            "naive_max_pools": naive_max_pools, "budget_s": budget_s, "elapsed_s": time.perf_counter() - started}


def quick() -> dict[str, Any]:
    return run(matrix=[(12, 2)], reps=1)
