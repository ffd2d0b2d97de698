"""A child process that plays one Function App instance for the watch benchmark.

The benchmark runs the emulator (and the local Functions host) in its own process and this worker
in another, so the worker's CPU time and memory are the app's alone, as on a Functions instance.
It reads the app settings from its environment (the ones :class:`autopilot.local.LocalAzure` gives
the app), builds the app's context with a clock the parent sets to the emulator's virtual time,
and answers one JSON command per stdin line with one JSON line on stdout:

* ``{"cmd": "tick", "now": iso, "trace": bool}`` - run the ``pool_watch`` function as the worker
  indexes it (``function_app.app.get_functions()``), timed; with ``trace`` under tracemalloc.
* ``{"cmd": "naive", "now": iso, "trace": bool}`` - the per-pool-GET baseline (:func:`naive_scan`).
* ``{"cmd": "floor", "now": iso}`` - the CPU floor (:func:`decode_floor`): ``json.loads`` of the same list pages' bytes.
* ``{"cmd": "exit"}``.

With ``BENCH_TICK_PROFILE=<path>`` in its environment, every tick runs under ``cProfile`` and its statistics are written
to ``<path>.<n>`` (n counts the ticks): how the watch's CPU per pool was taken apart (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class SettableClock:
    """The app's Clock protocol, set by the parent to the emulator's virtual time before each command."""

    def __init__(self) -> None:
        self.moment: datetime | None = None

    def now(self) -> datetime:
        if self.moment is None:
            raise RuntimeError("the parent has not set the time yet")
        return self.moment


class _Capture(logging.Handler):
    """Keeps the pool_watch handler's summary line (its arguments are the TickReport's counts)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.args: tuple[Any, ...] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("pool_watch:"):
            self.args = tuple(record.args or ())


def naive_scan(context: Any) -> dict[str, Any]:
    """The naive strategy: list each account's pool ids, then GET every pool, through the same SDK client.

    It decides like the app (desired target from the pool's metadata; a steady pool off its target
    needs a resize) so that both strategies can be checked to find the same stalled pools.
    """
    from shared.guard.references import account_ids
    from shared.resources import batch_accounts
    from shared.watch.pool_policy import PoolView, at_target, desired_target

    now = context.clock.now()
    pools = managed = 0
    stalled: list[str] = []
    for account_id in account_ids(context):
        account = batch_accounts.get_account(context.clients, account_id)  # the same cached account lookup as the app
        client = context.clients.batch_account(account.endpoint)
        ids = [p.id for p in client.list_pools(select=["id"], max_results=1000)]
        for pool_id in ids:
            raw = client.get_pool(pool_id).as_dict()
            pools += 1
            view = PoolView.from_dict(raw, account.id)
            desired = desired_target(view, now)
            if desired is None:
                continue
            managed += 1
            if view.is_steady and not at_target(view, desired):
                stalled.append(f"{account.id}/pools/{view.pool_id}")
    return {"pools": pools, "managed": managed, "stalled": sorted(stalled)}


def decode_floor(context: Any) -> dict[str, Any]:
    """The least CPU any tick can spend on the pool list: decoding its pages' JSON. The pages are fetched (untimed) with
    the request the tick makes (:func:`shared.resources.batch_pools.iter_pool_pages`: same client, same ``$select``,
    same page size), kept as bytes, then timed through ``json.loads`` alone, in this process, as the tick's CPU is."""
    from azure.core.rest import HttpRequest

    from shared.guard.references import account_ids
    from shared.resources import batch_accounts, batch_pools

    bodies: list[bytes] = []
    for account_id in account_ids(context):
        account = batch_accounts.get_account(context.clients, account_id)
        client = context.clients.batch_account(account.endpoint)
        url: str | None = (f"/pools?api-version={batch_pools.BATCH_API_VERSION}&maxresults={batch_pools.LIST_PAGE_SIZE}"
                           "&$select=" + ",".join(batch_pools.POOL_LIST_SELECT))
        while url:
            body = client.send_request(HttpRequest("GET", url, headers={"Accept": "application/json"})).content
            bodies.append(body)
            url = json.loads(body).get("odata.nextLink")
    samples = []
    pools = 0
    for _ in range(3):
        cpu0 = time.process_time()
        pools = sum(len(json.loads(body)["value"]) for body in bodies)
        samples.append(time.process_time() - cpu0)
    return {"pools": pools, "pages": len(bodies), "bytes": sum(map(len, bodies)), "cpu_s": sorted(samples)[1]}


_PROFILE = os.environ.get("BENCH_TICK_PROFILE")
_profiles = 0


def _profiled(run: Any) -> None:
    """Run one tick, under cProfile when ``BENCH_TICK_PROFILE`` names where to write its statistics."""
    global _profiles
    if not _PROFILE:
        run()
        return
    import cProfile

    profiler = cProfile.Profile(time.process_time)  # CPU, as the benchmark counts it: waiting on a socket is not cost
    profiler.runcall(run)
    _profiles += 1
    profiler.dump_stats(f"{_PROFILE}.{_profiles}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    capture = _Capture()
    watch_log = logging.getLogger("autopilot.handlers.pool_watch")
    watch_log.setLevel(logging.INFO)
    watch_log.addHandler(capture)
    watch_log.propagate = False

    started = time.perf_counter()
    from azure.functions.timer import TimerRequest

    import function_app
    from shared.config.settings import load_settings
    from shared.core.context import AppContext, install_context

    clock = SettableClock()
    context = AppContext.from_settings(load_settings(dict(os.environ)), clock=clock)
    install_context(context)
    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    pool_watch = functions["pool_watch"].get_user_function()
    arg_name = functions["pool_watch"].get_trigger().name
    print(json.dumps({"ready": True, "import_s": time.perf_counter() - started}), flush=True)

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        clock.moment = datetime.fromisoformat(command["now"])
        trace = bool(command.get("trace"))
        if trace:
            tracemalloc.start()
        capture.args = None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        error = None
        detail: dict[str, Any] = {}
        try:
            if command["cmd"] == "tick":
                _profiled(lambda: pool_watch(**{arg_name: TimerRequest(past_due=False)}))
                if capture.args:
                    accounts, pools, managed, stalled, alerts = capture.args[:5]
                    detail = {"accounts": accounts, "pools": pools, "managed": managed, "stalled": stalled,
                              "alerts": alerts}
            elif command["cmd"] == "floor":
                detail = decode_floor(context)
            elif command["cmd"] == "naive":
                detail = naive_scan(context)
            else:
                raise ValueError(f"unknown command {command['cmd']!r}")
        except Exception as exc:  # report, do not die: the parent decides
            error = f"{type(exc).__name__}: {exc}"
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        peak = None
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_bytes": peak, "error": error, "detail": detail,
                          "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)


if __name__ == "__main__":
    main()
