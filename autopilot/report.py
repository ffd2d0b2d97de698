"""The simulation report: what the run ended with and what happened on the way, as one JSON document.

``REPORT_SCHEMA`` (autopilot/schemas/report.schema.json) is the contract (docs/cli.md shows it; a test keeps them in
step). Scenario expectations are checked against the report (autopilot/expectations.py), so whatever an expectation
can say, the report shows.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopilot.messages import without_class_names
from autopilot.scenario import format_duration, format_offset
from shared.core.clock import iso_z as iso

if TYPE_CHECKING:
    from autopilot.simulate import Simulation

REPORT_VERSION = 1
APP_CALLER = "batch-image-autopilot"  # shared.resources.clients.EmulatorCredential's name: how the request log
# names the app
ALERT_PREFIX = "BatchImageAutopilot."


def parse_time(when: str) -> datetime:
    return datetime.fromisoformat(when.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def build_report(sim: Simulation, wall_seconds: float) -> dict[str, Any]:
    from autopilot.expectations import check_expectations

    scenario, emulator, recorder, host = sim.scenario, sim.local.emulator, sim.recorder, sim.local.host
    now = emulator.now()
    pool_paths = _pool_paths(recorder)
    resize_requests = _resize_requests(sim)
    alerts = _alerts(sim.local, pool_paths)
    stalls = _stalls(sim.local, pool_paths)
    pools, deleted = _pools(emulator, recorder, resize_requests)
    locks, images, snapshots = _guarded_resources(emulator)
    invocations, dead = _invocations(host)
    actions = [{"at": format_offset(r.action.at), "time": iso(r.time), "action": r.action.kind, "by": r.by,
                "target": r.target,
                "outcome": r.outcome, "expectedOutcome": r.action.spec.get("expectOutcome"), "ok": r.ok,
                "detail": r.detail}
               for r in sim.results]

    report: dict[str, Any] = {
        "reportVersion": REPORT_VERSION,
        "scenario": {"name": scenario.name, "description": scenario.description, "file": scenario.source,
                     "seed": scenario.seed},
        "virtualTime": {"start": iso(scenario.start), "end": iso(now),
                        "duration": format_duration(now - scenario.start),
                        "step": format_duration(scenario.step)},
        "wallSeconds": round(wall_seconds, 2),
        "result": {"ok": True, "problems": []},
        "expectations": [],
        "actions": actions,
        "pools": sorted(pools, key=lambda p: (p["account"], p["id"].lower())),
        "deletedPools": deleted,
        "images": images,
        "snapshots": snapshots,
        "locks": locks,
        "alerts": alerts,
        "alertCounts": dict(sorted(Counter(a["type"] for a in alerts).items())),
        "teamsMessages": len(emulator.teams_messages),
        "stallEvents": stalls,
        "resizeRequests": resize_requests,
        "resizeFailures": sorted(({"time": iso(when), "pool": key, "errors": codes}
                                  for key, series in recorder.pools.items()
                                  for when, codes in series.failures), key=lambda f: f["time"]),
        "events": {"delivered": host.delivered, "retried": host.retried, "deadLettered": len(dead),
                   "deadLetters": dead},
        "invocations": dict(sorted(invocations.items())),
        "requests": {"total": len(emulator.log), "byAction": emulator.log.count_by_action(),
                     "appByAction": app_requests_by_action(emulator),
                     "faultsInjected": emulator.faults.injected},
        "timeline": _timeline(sim, alerts, stalls),
        "charts": {"png": None, "html": None},
    }
    expectations = check_expectations(report, scenario)
    report["expectations"] = expectations
    problems = [f"action {a['action']} at {a['at']}: outcome {a['outcome']}"
                + (f", expected {a['expectedOutcome']}" if a["expectedOutcome"] else "")
                + (f" ({a['detail']})" if a["detail"] and a["outcome"] != "ok" else "") for a in actions if not a["ok"]]
    problems += [f"expectation failed: {e['description']} — {e['detail']}" for e in expectations if not e["ok"]]
    report["result"] = {"ok": not problems, "problems": problems}
    return report


def _pool_paths(recorder: Any) -> dict[str, str]:
    """Normalised pool resource id -> "account/pool", for naming the pools that events are about."""
    from shared.core.resource_ids import normalize

    return {normalize(f"{series.account_id}/pools/{key.split('/', 1)[1]}"): key
            for key, series in recorder.pools.items()}


def _resize_requests(sim: Simulation) -> list[dict[str, Any]]:
    """Every resize asked for: the app's and the data plane's from the emulator's request log, people's from the
    actions (they go through the management plane: PATCH fixedScale)."""
    from autopilot.simulate import RESIZE_PATH

    recorder = sim.recorder
    resize_requests = []
    for entry in sim.local.emulator.log.entries(method="POST", path_contains="/resize"):
        m = RESIZE_PATH.search(entry.path)
        if m is None:
            continue
        pool_key = next((k for k in recorder.pools if k.lower() == f"{m['account']}/{m['pool']}".lower()),
                        f"{m['account']}/{m['pool']}")
        asked = _asked_for(recorder, pool_key, entry.time) if 200 <= entry.status < 300 else (None, None)
        resize_requests.append({"time": iso(entry.time), "pool": pool_key, "caller": entry.caller or "unknown",
                                "status": entry.status,
                                "dedicated": asked[0], "spot": asked[1]})
    for result in sim.results:
        if result.action.kind == "resizePool" and result.outcome == "ok":
            asked = _asked_for(recorder, result.action.spec["pool"], result.time)
            resize_requests.append({"time": iso(result.time), "pool": result.action.spec["pool"],
                                    "caller": result.by or "unknown", "status": 200,
                                    "dedicated": asked[0], "spot": asked[1]})
    resize_requests.sort(key=lambda r: r["time"])
    return resize_requests


def _alerts(local: Any, pool_paths: dict[str, str]) -> list[dict[str, Any]]:
    from shared.core.resource_ids import normalize

    alerts = []
    for event in local.alerts():
        data = event.get("data") or {}
        subject = str(event.get("subject") or data.get("subject") or "")
        alerts.append({
            "time": iso(parse_time(event["eventTime"])) if isinstance(event.get("eventTime"), str)
            else str(event.get("eventTime")),
            "type": str(data.get("alertType") or str(event.get("eventType", "")).removeprefix(ALERT_PREFIX)),
            "severity": str(data.get("severity") or "info"),
            "subject": subject,
            "pool": pool_paths.get(normalize(subject)) if subject.startswith("/") else None,
            "title": str(data.get("title") or ""),
            "diagnosis": str(data.get("diagnosis") or ""),
            "fix": str(data.get("fix") or ""),
            "codes": [str(c) for c in data.get("codes") or [] if c] if isinstance(data.get("codes"), list) else [],
        })
    return alerts


def _stalls(local: Any, pool_paths: dict[str, str]) -> list[dict[str, Any]]:
    from shared.core.resource_ids import normalize

    stalls = []
    for event in local.stall_events():
        data = event.get("data") or {}
        subject = str(event.get("subject") or "")
        stalls.append({"time": iso(parse_time(event["eventTime"])), "pool": pool_paths.get(normalize(subject), subject),
                       "action": str(data.get("action") or ""), "reason": str(data.get("reason") or ""),
                       "kind": stall_kind(data),
                       "label": stall_label(data)})
    return stalls


def _pools(emulator: Any, recorder: Any,
           resize_requests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pools at the end, and those deleted on the way."""
    pools = []
    final_keys = set()
    for account in emulator.batch.accounts.values():
        for pool in emulator.batch.list_pools(account.name):
            key = f"{account.name}/{pool.id}"
            final_keys.add(key)
            pools.append(_pool(emulator, account, pool, recorder.pools.get(key), resize_requests))
    deleted = [{"account": k.split("/", 1)[0], "id": k.split("/", 1)[1], "firstSeen": iso(s.first_seen),
                "deletedAt": iso(s.deleted_at)}
               for k, s in recorder.pools.items() if k not in final_keys]
    return pools, deleted


def _pool(emulator: Any, account: Any, pool: Any, series: Any,
          resize_requests: list[dict[str, Any]]) -> dict[str, Any]:
    key = f"{account.name}/{pool.id}"
    desired = (_last(series.desired_dedicated) if series else None,
               _last(series.desired_spot) if series else None)
    metadata = pool.metadata
    at_target = desired[0] is not None and (pool.current["dedicated"], pool.current["low"]) == desired
    states: dict[str, int] = {}
    for row in emulator.batch.node_counts(pool).values():
        for state, n in row.items():
            states[state] = states.get(state, 0) + n
    return {
        "account": account.name, "accountId": account.id, "id": pool.id,
        "managed": metadata.get("autopilot.managed", "").lower() == "true",
        "family": metadata.get("autopilot.family"), "version": metadata.get("autopilot.version"),
        "image": pool.image_id, "vmSize": pool.spec.vm_size,
        "desired": {"dedicated": desired[0], "spot": desired[1]} if desired[0] is not None else None,
        "current": {"dedicated": pool.current["dedicated"], "spot": pool.current["low"]},
        "target": {"dedicated": pool.target["dedicated"], "spot": pool.target["low"]},
        "allocationState": pool.allocation_state,
        "resizeErrors": [{"code": e.code, "message": e.message} for e in pool.resize_errors],
        "atTarget": at_target,
        "targetReachedAt": iso(series.reached_since) if series and at_target else None,
        "firstReachedAt": iso(series.first_reached) if series else None,
        "resizeRequests": sum(1 for r in resize_requests if r["pool"] == key),
        "resizeFailures": len(series.failures) if series else 0,
        "usableNodes": states.get("idle", 0) + states.get("running", 0),
        "unhealthyNodes": states.get("unusable", 0) + states.get("startTaskFailed", 0),
    }


def _guarded_resources(emulator: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Locks, images (managed images and gallery versions) and snapshots, each with the pools using it and its
    locks."""
    from shared.core.resource_ids import normalize
    from shared.guard.lock_plan import LOCK_NAME

    locks = []
    locks_on: dict[str, list[dict[str, Any]]] = {}
    for lock in emulator.locks.all_locks():
        entry = {"scope": lock.scope, "name": lock.name, "level": lock.level,
                 "owner": "app" if lock.name.lower() == LOCK_NAME else "other",
                 "notes": lock.notes or ""}
        locks.append(entry)
        locks_on.setdefault(normalize(lock.scope), []).append(entry)
    locks.sort(key=lambda entry: (entry["scope"].lower(), entry["name"]))

    users: dict[str, list[str]] = {}
    for pool in emulator.batch.accounts.values():
        for p in emulator.batch.list_pools(pool.name):
            for ref in (p.image_id, p.metadata.get("autopilot.managedImageId"),
                        *p.metadata.get("autopilot.snapshotIds", "").split(",")):
                if ref:
                    users.setdefault(normalize(ref), []).append(f"{pool.name}/{p.id}")
    images = []
    for kind, store in (("managedImage", emulator.compute.images),
                        ("galleryImageVersion", emulator.compute.gallery_image_versions)):
        for resource in store.values():
            images.append({"kind": kind, "id": resource.id, "name": resource.name,
                           "provisioningState": resource.provisioning_state,
                           "pools": sorted(set(users.get(normalize(resource.id), []))),
                           "locks": [{"name": lk["name"], "owner": lk["owner"]}
                                     for lk in locks_on.get(normalize(resource.id), [])]})
    images.sort(key=lambda i: i["id"].lower())
    snapshots = [{"id": s.id, "name": s.name, "tags": dict(s.tags),
                  "pools": sorted(set(users.get(normalize(s.id), []))),
                  "locks": [{"name": lk["name"], "owner": lk["owner"]} for lk in locks_on.get(normalize(s.id), [])]}
                 for s in sorted(emulator.compute.snapshots.values(), key=lambda s: s.id.lower())]
    return locks, images, snapshots


def _invocations(host: Any) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Invocations per function (the first failures' details) and the dead-lettered events."""
    invocations: dict[str, dict[str, Any]] = {}
    for inv in host.invocations:
        row = invocations.setdefault(inv.function, {"ok": 0, "failed": 0, "failures": []})
        if inv.ok:
            row["ok"] += 1
        else:
            row["failed"] += 1
            if len(row["failures"]) < 5:
                row["failures"].append({"time": iso(inv.time), "detail": without_class_names(inv.detail)[:500]})
    dead = [{"function": d.subscription.function,
             "eventType": str(d.event.get("eventType") or d.event.get("type") or ""),
             "subject": str(d.event.get("subject") or ""), "attempts": d.attempts,
             "lastError": without_class_names(d.errors[-1] if d.errors else "")[:500]}
            for d in host.dead_letters]
    return invocations, dead


def _timeline(sim: Simulation, alerts: list[dict[str, Any]], stalls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the recorder saw, the alerts, the watch's events and the host's failures, in time order."""
    scenario, recorder, host = sim.scenario, sim.recorder, sim.local.host
    timeline = [{"time": iso(e.time), "offset": format_offset(e.time - scenario.start), "kind": e.kind, "text": e.text,
                 "pool": e.pool,
                 "severity": e.severity, "diagnosis": None, "fix": None} for e in recorder.timeline]
    timeline += [{"time": a["time"], "offset": format_offset(parse_time(a["time"]) - scenario.start),
                  "kind": "alert",
                  "text": f"{a['type']}: {a['title']}", "pool": a["pool"], "severity": a["severity"],
                  "diagnosis": a["diagnosis"] or None, "fix": a["fix"] or None} for a in alerts]
    timeline += [{"time": s["time"], "offset": format_offset(parse_time(s["time"]) - scenario.start),
                  "kind": s["kind"],
                  "text": f"{s['label']} {s['pool']}" + (f" ({s['action']})" if s["kind"] == "stall" else "")
                  + f": {s['reason']}",
                  "pool": s["pool"] if s["pool"] in recorder.pools else None,
                  "severity": None, "diagnosis": None, "fix": None} for s in stalls]
    timeline += [{"time": iso(inv.time), "offset": format_offset(inv.time - scenario.start), "kind": "host",
                  "text": f"function {inv.function} failed: {without_class_names(inv.detail)[:200]}", "pool": None,
                  "severity": "error",
                  "diagnosis": None, "fix": None}
                 for inv in host.invocations if not inv.ok]
    order = {"action": 0, "mark": 0, "host": 1, "image": 2, "lock": 3, "pool": 4, "step": 5, "stall": 5, "alert": 6}
    timeline.sort(key=lambda e: (e["time"], order.get(e["kind"], 9)))
    return timeline


def _asked_for(recorder: Any, pool_key: str, when: datetime) -> tuple[int | None, int | None]:
    """The size an accepted resize asked for: the resize Batch started on the pool at that moment (None if none did)."""
    series = next((s for k, s in recorder.pools.items() if k.lower() == pool_key.lower()), None)
    if series is None:
        return None, None
    started = [r for r in series.resizes.values() if r[0] <= when]
    if not started:
        return None, None
    latest = max(started, key=lambda r: r[0])
    return (latest[1], latest[2]) if when - latest[0] <= timedelta(seconds=1) else (None, None)


def stall_kind(data: dict[str, Any]) -> str:
    """``step`` for a resize the watch planned (the pool is steady at its own target with no resize errors: the last
    step completed, or a person changed the desired target), ``stall`` for one that re-issues a failed or stuck resize.

    The watch publishes both as PoolResizeStalled events (docs/events.md); only the second is a stall to a person."""
    errors = data.get("resizeErrors") or []
    at_own_target = (data.get("currentDedicatedNodes"), data.get("currentLowPriorityNodes")) == (
        data.get("targetDedicatedNodes"), data.get("targetLowPriorityNodes"))
    steady = str(data.get("allocationState") or "steady").lower() == "steady"
    return "step" if data.get("action") == "resize" and not errors and at_own_target and steady else "stall"


def stall_label(data: dict[str, Any]) -> str:
    """How the timeline names a watch event: ``grow step`` / ``shrink step`` for a planned step, else ``stall``."""
    if stall_kind(data) == "stall":
        return "stall"
    current = (data.get("currentDedicatedNodes") or 0) + (data.get("currentLowPriorityNodes") or 0)
    desired = (data.get("desiredDedicatedNodes") or 0) + (data.get("desiredLowPriorityNodes") or 0)
    return "shrink step" if desired < current else "grow step"


def _last(values: list[Any]) -> Any:
    return values[-1] if values else None


# ---------------------------------------------------------------------------------------------
# Writing and validating
# ---------------------------------------------------------------------------------------------


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def validate_report(report: dict[str, Any]) -> list[str]:
    from jsonschema import Draft202012Validator

    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in Draft202012Validator(REPORT_SCHEMA).iter_errors(report)]


# The contract, a JSON file beside the code like every other schema of the project (docs/cli.md shows it).
REPORT_SCHEMA: dict[str, Any] = json.loads((Path(__file__).resolve().parent / "schemas" / "report.schema.json")
                                           .read_text(encoding="utf-8"))


def offset_of(report: dict[str, Any], when: str | None) -> str:
    if when is None:
        return "-"
    return format_offset(parse_time(when) - parse_time(report["virtualTime"]["start"]))


__all__ = ["REPORT_SCHEMA", "build_report", "offset_of", "parse_time", "validate_report", "write_report"]



def app_requests_by_action(emulator: Any) -> dict[str, int]:
    """The ARM actions the app itself performed (not the scenario's people): what its roles must grant."""
    counts: dict[str, int] = {}
    for entry in emulator.log.entries():
        if entry.caller == APP_CALLER and entry.action and entry.plane != "admin":
            counts[entry.action] = counts.get(entry.action, 0) + 1
    return dict(sorted(counts.items()))
