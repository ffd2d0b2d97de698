"""The simulation report: what the run ended with and what happened on the way, as one JSON document.

``REPORT_SCHEMA`` (autopilot/schemas/report.schema.json) is the contract (docs/cli.md shows it; a test keeps them in
step). Scenario expectations are checked against the report, so whatever an expectation can say, the report shows.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopilot.messages import without_class_names
from autopilot.scenario import Scenario, format_duration, format_offset, parse_duration
from shared.core.clock import iso_z as iso

if TYPE_CHECKING:
    from autopilot.simulate import Simulation

REPORT_VERSION = 1
APP_CALLER = "batch-image-autopilot"  # the app's EmulatorCredential name: how the request log names the app
ALERT_PREFIX = "BatchImageAutopilot."


def _parse(when: str) -> datetime:
    return datetime.fromisoformat(when.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def build_report(sim: Simulation, wall_seconds: float) -> dict[str, Any]:
    from shared.core.resource_ids import normalize
    from shared.guard.lock_plan import LOCK_NAME

    scenario = sim.scenario
    local = sim.local
    emulator = local.emulator
    recorder = sim.recorder
    now = emulator.now()

    pool_paths: dict[str, str] = {}  # normalised pool resource id -> "account/pool"
    for key, series in recorder.pools.items():
        pool_paths[normalize(f"{series.account_id}/pools/{key.split('/', 1)[1]}")] = key

    # requests: resizes per pool, from the emulator's request log
    resize_requests = []
    from autopilot.simulate import RESIZE_PATH

    for entry in emulator.log.entries(method="POST", path_contains="/resize"):
        m = RESIZE_PATH.search(entry.path)
        if m is None:
            continue
        pool_key = next((k for k in recorder.pools if k.lower() == f"{m['account']}/{m['pool']}".lower()),
                        f"{m['account']}/{m['pool']}")
        asked = _asked_for(recorder, pool_key, entry.time) if 200 <= entry.status < 300 else (None, None)
        resize_requests.append({"time": iso(entry.time), "pool": pool_key, "caller": entry.caller or "unknown",
                                "status": entry.status,
                                "dedicated": asked[0], "spot": asked[1]})

    # people's resizes go through the management plane (PATCH fixedScale): taken from the actions
    for result in sim.results:
        if result.action.kind == "resizePool" and result.outcome == "ok":
            asked = _asked_for(recorder, result.action.spec["pool"], result.time)
            resize_requests.append({"time": iso(result.time), "pool": result.action.spec["pool"],
                                    "caller": result.by or "unknown", "status": 200,
                                    "dedicated": asked[0], "spot": asked[1]})
    resize_requests.sort(key=lambda r: r["time"])

    alerts = []
    for event in local.alerts():
        data = event.get("data") or {}
        subject = str(event.get("subject") or data.get("subject") or "")
        alerts.append({
            "time": iso(_parse(event["eventTime"])) if isinstance(event.get("eventTime"), str)
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
    stalls = []
    for event in local.stall_events():
        data = event.get("data") or {}
        subject = str(event.get("subject") or "")
        stalls.append({"time": iso(_parse(event["eventTime"])), "pool": pool_paths.get(normalize(subject), subject),
                       "action": str(data.get("action") or ""), "reason": str(data.get("reason") or ""),
                       "kind": stall_kind(data),
                       "label": stall_label(data)})

    pools = []
    final_keys = set()
    for account in emulator.batch.accounts.values():
        for pool in emulator.batch.list_pools(account.name):
            key = f"{account.name}/{pool.id}"
            final_keys.add(key)
            series = recorder.pools.get(key)
            desired = (_last(series.desired_dedicated) if series else None,
                       _last(series.desired_spot) if series else None)
            metadata = pool.metadata
            at_target = desired[0] is not None and (pool.current["dedicated"], pool.current["low"]) == desired
            states: dict[str, int] = {}
            for row in emulator.batch.node_counts(pool).values():
                for state, n in row.items():
                    states[state] = states.get(state, 0) + n
            pools.append({
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
            })
    deleted = [{"account": k.split("/", 1)[0], "id": k.split("/", 1)[1], "firstSeen": iso(s.first_seen),
                "deletedAt": iso(s.deleted_at)}
               for k, s in recorder.pools.items() if k not in final_keys]

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

    host = local.host
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

    actions = [{"at": format_offset(r.action.at), "time": iso(r.time), "action": r.action.kind, "by": r.by,
                "target": r.target,
                "outcome": r.outcome, "expectedOutcome": r.action.spec.get("expectOutcome"), "ok": r.ok,
                "detail": r.detail}
               for r in sim.results]

    timeline = [{"time": iso(e.time), "offset": format_offset(e.time - scenario.start), "kind": e.kind, "text": e.text,
                 "pool": e.pool,
                 "severity": e.severity, "diagnosis": None, "fix": None} for e in recorder.timeline]
    timeline += [{"time": a["time"], "offset": format_offset(_parse(a["time"]) - scenario.start), "kind": "alert",
                  "text": f"{a['type']}: {a['title']}", "pool": a["pool"], "severity": a["severity"],
                  "diagnosis": a["diagnosis"] or None, "fix": a["fix"] or None} for a in alerts]
    timeline += [{"time": s["time"], "offset": format_offset(_parse(s["time"]) - scenario.start), "kind": s["kind"],
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
        "timeline": timeline,
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
# Expectations
# ---------------------------------------------------------------------------------------------


def _count_ok(spec: dict[str, Any], n: int) -> tuple[bool, str]:
    wanted = []
    ok = True
    if "count" in spec:
        ok &= n == spec["count"]
        wanted.append(f"exactly {spec['count']}")
    if "min" in spec:
        ok &= n >= spec["min"]
        wanted.append(f"at least {spec['min']}")
    if "max" in spec:
        ok &= n <= spec["max"]
        wanted.append(f"at most {spec['max']}")
    return ok, f"{n} (wanted {' and '.join(wanted)})"


def _alert_words_match(spec: dict[str, Any], alert: dict[str, Any]) -> bool:
    """``codes``: the alert carries one of these error codes; ``diagnosisContains``: these words appear in its diagnosis
    or its fix; ``fixContains``: in its fix. All case-insensitive."""
    if spec.get("codes") and not {c.lower() for c in spec["codes"]} & {c.lower() for c in alert.get("codes") or []}:
        return False
    if ("diagnosisContains" in spec
        and spec["diagnosisContains"].lower() not in f"{alert['diagnosis']}\n{alert['fix']}".lower()):
        return False
    return not ("fixContains" in spec and spec["fixContains"].lower() not in alert["fix"].lower())


def _window(spec: dict[str, Any], start: datetime, when: str) -> bool:
    t = _parse(when)
    if "after" in spec and t < start + parse_duration(spec["after"]):
        return False
    return not ("before" in spec and t > start + parse_duration(spec["before"]))


def _window_text(spec: dict[str, Any]) -> str:
    parts = []
    if "after" in spec:
        parts.append(f"after {format_offset(parse_duration(spec['after']))}")
    if "before" in spec:
        parts.append(f"before {format_offset(parse_duration(spec['before']))}")
    return (" " + " and ".join(parts)) if parts else ""


def check_expectations(report: dict[str, Any], scenario: Scenario) -> list[dict[str, Any]]:
    from shared.core.resource_ids import normalize

    start = scenario.start
    results = []
    pools = {f"{p['account']}/{p['id']}".lower(): p for p in report["pools"]}
    for spec in scenario.expectations:
        kind = spec["expect"]
        ok, detail, text = False, "", kind
        pool_ref = spec.get("pool")
        pool = pools.get(pool_ref.lower()) if pool_ref else None
        if kind == "poolAtTarget":
            by = start + parse_duration(spec["by"]) if "by" in spec else None
            text = (f"pool {pool_ref} at its desired target at the end"
                    + (f", continuously since {format_offset(by - start)} or earlier" if by else ""))
            if pool is None:
                detail = "the pool does not exist at the end"
            elif pool["desired"] is None:
                detail = ("the pool has no desired target (not managed by the autopilot, or no "
                          "autopilot.desired* metadata)")
            elif not pool["atTarget"]:
                detail = (f"it has {pool['current']['dedicated']} dedicated / {pool['current']['spot']} Spot, desired "
                          f"{pool['desired']['dedicated']} / {pool['desired']['spot']} ({pool['allocationState']})")
            else:
                reached = _parse(pool["targetReachedAt"]) if pool["targetReachedAt"] else None
                ok = by is None or (reached is not None and reached <= by)
                detail = f"at target since {format_offset(reached - start)}" if reached else "at target"
        elif kind == "poolReachedTarget":
            by = start + parse_duration(spec["by"]) if "by" in spec else None
            text = f"pool {pool_ref} reached its desired target" + (f" by {format_offset(by - start)}" if by else "")
            first = pool["firstReachedAt"] if pool else None
            if first is None:
                deleted = next((d for d in report["deletedPools"]
                                if f"{d['account']}/{d['id']}".lower() == (pool_ref or "").lower()), None)
                detail = "the pool was deleted before reaching it" if deleted else "it never did"
            else:
                ok = by is None or _parse(first) <= by
                detail = f"first reached at {format_offset(_parse(first) - start)}"
        elif kind == "poolExists":
            wanted = spec.get("exists", True)
            text = f"pool {pool_ref} {'exists' if wanted else 'does not exist'} at the end"
            ok = (pool is not None) == wanted
            detail = "it exists" if pool is not None else "it does not exist"
        elif kind == "poolNodes":
            wanted = " and ".join(f"{spec[k]} {'dedicated' if k == 'dedicated' else 'Spot'}"
                                  for k in ("dedicated", "spot") if k in spec)
            text = f"pool {pool_ref} has {wanted}"
            if pool is None:
                detail = "the pool does not exist at the end"
            else:
                ok = all(pool["current"][k] == spec[k] for k in ("dedicated", "spot") if k in spec)
                detail = f"it has {pool['current']['dedicated']} dedicated / {pool['current']['spot']} Spot"
        elif kind == "usableNodes":
            text = f"pool {pool_ref} has " + " and ".join(f"{label} {spec[k]}"
                                                          for k, label in (("min", "at least"), ("count", "exactly"))
                                                            if k in spec) + " usable (idle or running) nodes at the end"
            if pool is None:
                detail = "the pool does not exist at the end"
            else:
                usable = pool["usableNodes"]
                ok = usable >= spec.get("min", 0) and ("count" not in spec or usable == spec["count"])
                detail = (f"{usable} usable, {pool['unhealthyNodes']} unhealthy of "
                          f"{pool['current']['dedicated'] + pool['current']['spot']} nodes")
        elif kind == "alerts":
            matching = [a for a in report["alerts"] if ("type" not in spec or a["type"].lower() == spec["type"].lower())
                        and ("subjectContains" not in spec or spec["subjectContains"].lower() in a["subject"].lower())
                        and _alert_words_match(spec, a) and _window(spec, start, a["time"])]
            ok, detail = _count_ok(spec, len(matching))
            about = f" about *{spec['subjectContains']}*" if "subjectContains" in spec else ""
            if spec.get("codes"):
                about += f" with code {' or '.join(spec['codes'])}"
            if "diagnosisContains" in spec:
                about += f" whose diagnosis or fix says \"{spec['diagnosisContains']}\""
            if "fixContains" in spec:
                about += f" whose fix says \"{spec['fixContains']}\""
            text = f"{spec.get('type', 'any')} alerts{about}{_window_text(spec)}"
            detail = f"{detail}" + (f": {', '.join(a['time'][11:16] + ' ' + a['type'] for a in matching[:5])}"
                                    if matching else "")
        elif kind == "poolImage":
            wanted_id = normalize(scenario.resource(spec["image"])) if "image" in spec else None
            wanted_version = spec.get("version")
            text = f"pool {pool_ref} references " + (f"version {wanted_version}" if wanted_version else "")
            text += (" and " if wanted_version and wanted_id else "")
            text += spec["image"].rsplit("/providers/", 1)[-1] if wanted_id else ""
            text += " at the end"
            image = str(pool["image"] or "") if pool else ""
            if pool is None:
                detail = "the pool does not exist at the end"
            else:
                ok = (wanted_id is None or normalize(image) == wanted_id) and (
                    wanted_version is None or image.rstrip("/").rsplit("/", 1)[-1] == wanted_version)
                detail = f"it references {image.rsplit('/providers/', 1)[-1] or 'no image'}"
        elif kind == "imageExists":
            wanted = spec.get("exists", True)
            image_id = normalize(scenario.resource(spec["image"]))
            found = next((i for i in report["images"] if normalize(i["id"]) == image_id), None)
            text = (f"image {spec['image'].rsplit('/providers/', 1)[-1]} {'exists' if wanted else 'does not exist'} "
                    "at the end")
            ok = (found is not None) == wanted
            detail = f"it exists ({found['provisioningState']})" if found else "it does not exist"
        elif kind == "locks":
            owner = spec.get("owner", "any")
            on = normalize(scenario.resource(spec["on"])) if "on" in spec else None
            matching = [lk for lk in report["locks"] if (owner == "any" or lk["owner"] == owner)
                        and (on is None or normalize(lk["scope"]) == on)]
            ok, detail = _count_ok(spec, len(matching))
            text = f"{'the app' if owner == 'app' else 'other' if owner == 'other' else 'all'} locks" + (
                f" on {spec['on'].rsplit('/providers/', 1)[-1]}" if on else "")
        elif kind == "resizeRequests":
            by = spec.get("by", "app")
            matching = [r for r in report["resizeRequests"] if r["pool"].lower() == pool_ref.lower()
                        and (by == "anyone" or r["caller"] == APP_CALLER)
                        and all(r[k] == spec[k] for k in ("dedicated", "spot") if k in spec)
                        and _window(spec, start, r["time"])]
            ok, detail = _count_ok(spec, len(matching))
            size = " and ".join(f"{spec[k]} {'dedicated' if k == 'dedicated' else 'Spot'}"
                                for k in ("dedicated", "spot") if k in spec)
            text = (f"resize requests for {pool_ref}{' asking for ' + size if size else ''} by "
                    f"{'the app' if by == 'app' else 'anyone'}{_window_text(spec)}")
            if matching or size:
                asked = [f"{r['time'][11:16]} {r['dedicated']}/{r['spot']}" for r in report["resizeRequests"]
                         if r["pool"].lower() == pool_ref.lower() and (by == "anyone" or r["caller"] == APP_CALLER)][:8]
                detail += f": {', '.join(asked)}" if asked else ""
        elif kind == "resizeFailures":
            code = spec.get("code", "").lower()
            matching = [f for f in report["resizeFailures"]
                        if (pool_ref is None or f["pool"].lower() == pool_ref.lower())
                        and code in f["errors"].lower() and _window(spec, start, f["time"])]
            ok, detail = _count_ok(spec, len(matching))
            text = (f"resizes that ended short{' of ' + pool_ref if pool_ref else ''}"
                    f"{' with ' + spec['code'] if code else ''}{_window_text(spec)}")
            detail += (f": {', '.join(f['time'][11:16] + ' ' + f['errors'].split(' (')[0] for f in matching[:6])}"
                       if matching else "")
        elif kind == "stallEvents":
            wanted_kind = spec.get("kind")
            matching = [s for s in report["stallEvents"] if (pool_ref is None or s["pool"].lower() == pool_ref.lower())
                        and (wanted_kind is None or s["kind"] == wanted_kind) and _window(spec, start, s["time"])]
            ok, detail = _count_ok(spec, len(matching))
            what = {"step": "planned resize steps", "stall": "stalls"}.get(wanted_kind or "",
                                                                           "watch resize events (steps and stalls)")
            text = f"{what}{' for ' + pool_ref if pool_ref else ''}{_window_text(spec)}"
        elif kind == "deadLetters":
            ok, detail = _count_ok(spec, report["events"]["deadLettered"])
            text = "dead-lettered events"
        elif kind == "failedInvocations":
            fn = spec.get("function")
            n = sum(v["failed"] for k, v in report["invocations"].items() if fn is None or k == fn)
            ok, detail = _count_ok(spec, n)
            text = f"failed invocations{' of ' + fn if fn else ''}"
        if spec.get("description"):
            text = f"{spec['description']} ({text})"
        results.append({"expect": kind, "description": text, "ok": bool(ok), "detail": detail})
    return results


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
    return format_offset(_parse(when) - _parse(report["virtualTime"]["start"]))


__all__ = ["REPORT_SCHEMA", "build_report", "check_expectations", "offset_of", "validate_report", "write_report"]


APP_CALLER = "batch-image-autopilot"  # the name shared.resources.clients.EmulatorCredential puts in the app's tokens


def app_requests_by_action(emulator: Any) -> dict[str, int]:
    """The ARM actions the app itself performed (not the scenario's people): what its roles must grant."""
    counts: dict[str, int] = {}
    for entry in emulator.log.entries():
        if entry.caller == APP_CALLER and entry.action and entry.plane != "admin":
            counts[entry.action] = counts.get(entry.action, 0) + 1
    return dict(sorted(counts.items()))
