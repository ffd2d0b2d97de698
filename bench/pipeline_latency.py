"""Pipeline latency: snapshot set complete -> image requested -> gallery version -> pools created, in virtual time.

Two families run through the real pipeline on the local Functions host:

* ``viaimage`` (``source: managedImage``): snapshots -> managed image -> gallery image version -> pool;
* ``direct`` (``source: snapshots``): snapshots straight into a gallery image version -> pool.

Each family has an OS snapshot and one data-disk snapshot (LUN 0) and one pool of 10 dedicated nodes.
The operator takes the snapshots through ARM at t = 0; the host then runs in 5-second virtual steps
(Event Grid delivers within seconds in Azure), firing the app's timers on their default schedules.

Milestones come from the emulator itself: the system events' ``eventTime`` (the set's last snapshot
write; the managed image's and the gallery version's completion events) and the request log's times
(the app's PUTs of the image, the gallery version, the pool; the guard's lock on the version), and the
pool's node count. The emulator's virtual durations are ``image_create_duration`` (3 min) and
``version_base_duration`` (5 min, + 1 min per extra replica); everything else is the app's reaction time.

CPU: every function the host invokes is wrapped with ``time.thread_time()`` (the host calls functions
in its caller's thread; the emulator answers from its own threads, so they are not counted), which
gives the app's own CPU per invocation, SDK work included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bench.common import local_azure, summary

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
APP = "batch-image-autopilot"
REGION = "westeurope"
STEP = timedelta(seconds=5)
HORIZON = timedelta(minutes=60)
DEDICATED = 10


def _families(accounts: dict[str, str]) -> dict[str, Any]:
    def family(name: str, source: str, account: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "gallery": {"resourceGroup": "images-rg", "name": "autopilotGallery", "imageDefinition": f"{name}-def",
                        "osType": "Linux",
                        "osState": "Generalized", "hyperVGeneration": "V2", "location": REGION},
            "source": source,
            "pools": [{"account": accounts[account], "vmSize": "Standard_D4ds_v5", "dedicated": DEDICATED, "spot": 0}],
        }
        if source == "managedImage":
            body["imageResourceGroup"] = "images-rg"
        else:
            # where its snapshots may live (required without an image group)
            body["snapshotResourceGroups"] = ["images-rg"]
        return body

    return {"families": {"viaimage": family("viaimage", "managedImage", "pipeweu"),
                         "direct": family("direct", "snapshots", "pipeweu2")}}


class CpuMeter:
    """Wraps the host's functions to record each invocation's thread CPU time and wall time."""

    def __init__(self, host: Any, clock: Callable[[], datetime]) -> None:
        self.records: list[dict[str, Any]] = []
        for registry in (host.event_functions, host.timer_functions):
            for function in registry.values():
                function.call = self._wrap(function.name, function.call, clock)

    def _wrap(self, name: str, call: Callable[..., Any], clock: Callable[[], datetime]) -> Callable[..., Any]:
        def timed(**kwargs: Any) -> Any:
            cpu0, wall0, at = time.thread_time(), time.perf_counter(), clock()
            ok = False
            try:
                result = call(**kwargs)
                ok = True
                return result
            finally:
                self.records.append({"function": name, "at": at, "cpu_s": time.thread_time() - cpu0,
                                     "wall_s": time.perf_counter() - wall0, "ok": ok})

        return timed


def _minutes(t: datetime | None, t0: datetime) -> float | None:
    return None if t is None else round((t - t0).total_seconds() / 60, 3)


def _event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["eventTime"]).replace("Z", "+00:00"))


def run_once(seed: int = 1) -> dict[str, Any]:
    from shared.core.resource_ids import batch_account_id

    accounts = {name: batch_account_id(SUBSCRIPTION_ID, "batch-rg", name) for name in ("pipeweu", "pipeweu2")}
    wall0 = time.perf_counter()
    with local_azure(seed=seed, families=_families(accounts), accounts=list(accounts.values())) as la:
        for name in accounts:
            la.add_batch_account(name)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, "images-rg", "autopilotGallery", location=REGION)
        meter = CpuMeter(la.host, la.emulator.now)
        t0 = la.emulator.now()
        sets = {family: la.snapshot_set(family, "1.0.0", data_luns=(0,)) for family in ("viaimage", "direct")}
        at_target: dict[str, datetime] = {}
        pool_ids = {"viaimage": ("pipeweu", "viaimage-1-0-0"), "direct": ("pipeweu2", "direct-1-0-0")}
        end = t0 + HORIZON
        la.host.pump()
        while la.emulator.now() < end and len(at_target) < len(pool_ids):
            la.host.run_for(STEP, STEP)
            for family, (account, pool_id) in pool_ids.items():
                if family in at_target:
                    continue
                try:
                    pool = la.emulator.batch.find_pool(account, pool_id)
                except Exception:  # not created yet
                    continue
                if pool.current["dedicated"] >= DEDICATED:
                    at_target[family] = la.emulator.now()

        system = la.emulator.eventgrid.events("system")
        log = la.emulator.log.entries()
        families: dict[str, Any] = {}
        for family, ids in sets.items():
            snapshot_ids = {i.lower() for i in ids.values()}
            version_path = f"/galleries/autopilotgallery/images/{family}-def/versions/1.0.0"
            image_path = f"/images/{family}-1.0.0"

            def first_request(action: str, contains: str, method: str = "PUT") -> datetime | None:
                hits = [e.time for e in log if e.caller == APP and e.method == method
                        and (e.action or "").lower() == action.lower()
                        and contains in e.path.lower()]
                return min(hits) if hits else None

            def completion(contains: str) -> datetime | None:
                hits = [_event_time(e) for e in system if e["eventType"].endswith("ResourceWriteSuccess")
                        and e["subject"].lower().endswith(contains)
                        and (e.get("data") or {}).get("claims", {}).get("name") == APP]
                return max(hits) if hits else None

            set_complete = max(_event_time(e) for e in system if e["subject"].lower() in snapshot_ids)
            milestones = {
                "set_complete": set_complete,
                "image_requested": first_request("Microsoft.Compute/images/write", image_path),
                "image_ready": completion(image_path),
                "version_requested": first_request("Microsoft.Compute/galleries/images/versions/write", version_path),
                "version_ready": completion(version_path),
                "pool_created": first_request("Microsoft.Batch/batchAccounts/pools/write",
                                              f"/pools/{pool_ids[family][1]}"),
                "version_locked": first_request("Microsoft.Authorization/locks/write", version_path),
                "pool_at_target": at_target.get(family),
            }
            families[family] = {"minutes": {k: _minutes(v, set_complete) for k, v in milestones.items()}}

        per_function: dict[str, Any] = {}
        for record in meter.records:
            per_function.setdefault(record["function"], []).append(record)
        cpu = {name: {"invocations": len(rs), "failed": sum(not r["ok"] for r in rs),
                      "cpu_ms": summary(r["cpu_s"] * 1000 for r in rs),
                      "wall_ms": summary(r["wall_s"] * 1000 for r in rs),
                      "cpu_total_ms": sum(r["cpu_s"] for r in rs) * 1000}
               for name, rs in sorted(per_function.items())}
        pipeline_events = [r for r in meter.records if r["function"] == "image_pipeline"]
        return {
            "seed": seed,
            "families": families,
            "cpu": cpu,
            "pipeline_event_cpu_ms": summary(r["cpu_s"] * 1000 for r in pipeline_events),
            "virtual_minutes_run": _minutes(la.emulator.now(), t0),
            "alerts": [a["eventType"].rsplit(".", 1)[-1] for a in la.alerts()],
            "dead_letters": len(la.host.dead_letters),
            "failed_invocations": [f"{r.function}: {r.detail}" for r in la.host.invocations if not r.ok][:5],
            "wall_s": time.perf_counter() - wall0,
        }


def run(*, seeds: tuple[int, ...] = (1, 2, 3), progress: Any = None) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        if progress:
            progress(f"pipeline latency: seed {seed}")
        runs.append(run_once(seed))
    milestones: dict[str, dict[str, Any]] = {}
    for family in runs[0]["families"]:
        keys = runs[0]["families"][family]["minutes"].keys()
        milestones[family] = {k: summary(r["families"][family]["minutes"][k] for r in runs
                                         if r["families"][family]["minutes"][k] is not None)
                              for k in keys}
    cpu: dict[str, Any] = {}
    for name in sorted({n for r in runs for n in r["cpu"]}):
        samples = [r["cpu"][name] for r in runs if name in r["cpu"]]
        cpu[name] = {"invocations_per_run": summary(s["invocations"] for s in samples),
                     "cpu_ms_median": summary(s["cpu_ms"]["median"] for s in samples),
                     "cpu_ms_max": max(s["cpu_ms"]["max"] for s in samples),
                     "cpu_total_ms": summary(s["cpu_total_ms"] for s in samples),
                     "wall_ms_median": summary(s["wall_ms"]["median"] for s in samples),
                     "failed": sum(s["failed"] for s in samples)}
    return {"step_seconds": STEP.total_seconds(), "pool_dedicated": DEDICATED, "milestones": milestones, "cpu": cpu,
            "runs": runs}


def quick() -> dict[str, Any]:
    return run(seeds=(1,))
