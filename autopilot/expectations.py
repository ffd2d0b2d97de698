"""A scenario's expectations, checked against the simulation report: one checker per ``expect`` kind.

Each checker reads the report (never the emulator), so whatever an expectation can say, the report shows. It
returns whether the expectation held, what was observed (``detail``) and the expectation in words (``text``);
docs/scenarios.md lists the kinds and their keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autopilot.report import APP_CALLER, parse_time
from autopilot.scenario import Scenario, format_offset, parse_duration


@dataclass(frozen=True)
class Look:
    """One expectation and what a checker may read: the report, the scenario, and the pool it names (if any)."""

    spec: dict[str, Any]
    report: dict[str, Any]
    scenario: Scenario
    pool_ref: str | None
    pool: dict[str, Any] | None  # the report's pool at the end, None when it names none or the pool is gone

    @property
    def start(self) -> datetime:
        return self.scenario.start


Verdict = tuple[bool, str, str]  # ok, detail (what was observed), text (the expectation in words)
NO_POOL = "the pool does not exist at the end"


def check_expectations(report: dict[str, Any], scenario: Scenario) -> list[dict[str, Any]]:
    pools = {f"{p['account']}/{p['id']}".lower(): p for p in report["pools"]}
    results = []
    for spec in scenario.expectations:
        kind = spec["expect"]
        pool_ref = spec.get("pool")
        look = Look(spec, report, scenario, pool_ref, pools.get(pool_ref.lower()) if pool_ref else None)
        checker = CHECKERS.get(kind)
        ok, detail, text = checker(look) if checker else (False, "", kind)
        if spec.get("description"):
            text = f"{spec['description']} ({text})"
        results.append({"expect": kind, "description": text, "ok": bool(ok), "detail": detail})
    return results


# ---------------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------------


def _pool_at_target(look: Look) -> Verdict:
    spec, pool, start = look.spec, look.pool, look.start
    by = start + parse_duration(spec["by"]) if "by" in spec else None
    text = (f"pool {look.pool_ref} at its desired target at the end"
            + (f", continuously since {format_offset(by - start)} or earlier" if by else ""))
    if pool is None:
        return False, NO_POOL, text
    if pool["desired"] is None:
        return False, ("the pool has no desired target (not managed by the autopilot, or no "
                       "autopilot.desired* metadata)"), text
    if not pool["atTarget"]:
        return False, (f"it has {pool['current']['dedicated']} dedicated / {pool['current']['spot']} Spot, desired "
                       f"{pool['desired']['dedicated']} / {pool['desired']['spot']} ({pool['allocationState']})"), text
    reached = parse_time(pool["targetReachedAt"]) if pool["targetReachedAt"] else None
    ok = by is None or (reached is not None and reached <= by)
    return ok, f"at target since {format_offset(reached - start)}" if reached else "at target", text


def _pool_reached_target(look: Look) -> Verdict:
    spec, pool, start = look.spec, look.pool, look.start
    by = start + parse_duration(spec["by"]) if "by" in spec else None
    text = f"pool {look.pool_ref} reached its desired target" + (f" by {format_offset(by - start)}" if by else "")
    first = pool["firstReachedAt"] if pool else None
    if first is None:
        deleted = next((d for d in look.report["deletedPools"]
                        if f"{d['account']}/{d['id']}".lower() == (look.pool_ref or "").lower()), None)
        return False, "the pool was deleted before reaching it" if deleted else "it never did", text
    ok = by is None or parse_time(first) <= by
    return ok, f"first reached at {format_offset(parse_time(first) - start)}", text


def _pool_exists(look: Look) -> Verdict:
    wanted = look.spec.get("exists", True)
    text = f"pool {look.pool_ref} {'exists' if wanted else 'does not exist'} at the end"
    return (look.pool is not None) == wanted, "it exists" if look.pool is not None else "it does not exist", text


def _pool_nodes(look: Look) -> Verdict:
    spec, pool = look.spec, look.pool
    wanted = " and ".join(f"{spec[k]} {'dedicated' if k == 'dedicated' else 'Spot'}"
                          for k in ("dedicated", "spot") if k in spec)
    text = f"pool {look.pool_ref} has {wanted}"
    if pool is None:
        return False, NO_POOL, text
    ok = all(pool["current"][k] == spec[k] for k in ("dedicated", "spot") if k in spec)
    return ok, f"it has {pool['current']['dedicated']} dedicated / {pool['current']['spot']} Spot", text


def _usable_nodes(look: Look) -> Verdict:
    spec, pool = look.spec, look.pool
    text = (f"pool {look.pool_ref} has "
            + " and ".join(f"{label} {spec[k]}" for k, label in (("min", "at least"), ("count", "exactly"))
                           if k in spec)
            + " usable (idle or running) nodes at the end")
    if pool is None:
        return False, NO_POOL, text
    usable = pool["usableNodes"]
    ok = usable >= spec.get("min", 0) and ("count" not in spec or usable == spec["count"])
    return ok, (f"{usable} usable, {pool['unhealthyNodes']} unhealthy of "
                f"{pool['current']['dedicated'] + pool['current']['spot']} nodes"), text


def _pool_image(look: Look) -> Verdict:
    from shared.core.resource_ids import normalize

    spec, pool = look.spec, look.pool
    wanted_id = normalize(look.scenario.resource(spec["image"])) if "image" in spec else None
    wanted_version = spec.get("version")
    text = f"pool {look.pool_ref} references " + (f"version {wanted_version}" if wanted_version else "")
    text += (" and " if wanted_version and wanted_id else "")
    text += spec["image"].rsplit("/providers/", 1)[-1] if wanted_id else ""
    text += " at the end"
    if pool is None:
        return False, NO_POOL, text
    image = str(pool["image"] or "")
    ok = (wanted_id is None or normalize(image) == wanted_id) and (
        wanted_version is None or image.rstrip("/").rsplit("/", 1)[-1] == wanted_version)
    return ok, f"it references {image.rsplit('/providers/', 1)[-1] or 'no image'}", text


# ---------------------------------------------------------------------------------------------
# Images and locks
# ---------------------------------------------------------------------------------------------


def _image_exists(look: Look) -> Verdict:
    from shared.core.resource_ids import normalize

    spec = look.spec
    wanted = spec.get("exists", True)
    image_id = normalize(look.scenario.resource(spec["image"]))
    found = next((i for i in look.report["images"] if normalize(i["id"]) == image_id), None)
    text = (f"image {spec['image'].rsplit('/providers/', 1)[-1]} {'exists' if wanted else 'does not exist'} "
            "at the end")
    detail = f"it exists ({found['provisioningState']})" if found else "it does not exist"
    return (found is not None) == wanted, detail, text


def _locks(look: Look) -> Verdict:
    from shared.core.resource_ids import normalize

    spec = look.spec
    owner = spec.get("owner", "any")
    on = normalize(look.scenario.resource(spec["on"])) if "on" in spec else None
    matching = [lk for lk in look.report["locks"] if (owner == "any" or lk["owner"] == owner)
                and (on is None or normalize(lk["scope"]) == on)]
    ok, detail = _count_ok(spec, len(matching))
    text = f"{'the app' if owner == 'app' else 'other' if owner == 'other' else 'all'} locks" + (
        f" on {spec['on'].rsplit('/providers/', 1)[-1]}" if on else "")
    return ok, detail, text


# ---------------------------------------------------------------------------------------------
# What happened on the way: alerts, resizes, watch events, the host
# ---------------------------------------------------------------------------------------------


def _alerts(look: Look) -> Verdict:
    spec = look.spec
    matching = [a for a in look.report["alerts"] if ("type" not in spec or a["type"].lower() == spec["type"].lower())
                and ("subjectContains" not in spec or spec["subjectContains"].lower() in a["subject"].lower())
                and _alert_words_match(spec, a) and _window(spec, look.start, a["time"])]
    ok, detail = _count_ok(spec, len(matching))
    about = f" about *{spec['subjectContains']}*" if "subjectContains" in spec else ""
    if spec.get("codes"):
        about += f" with code {' or '.join(spec['codes'])}"
    if "diagnosisContains" in spec:
        about += f" whose diagnosis or fix says \"{spec['diagnosisContains']}\""
    if "fixContains" in spec:
        about += f" whose fix says \"{spec['fixContains']}\""
    text = f"{spec.get('type', 'any')} alerts{about}{_window_text(spec)}"
    detail += f": {', '.join(a['time'][11:16] + ' ' + a['type'] for a in matching[:5])}" if matching else ""
    return ok, detail, text


def _resize_requests(look: Look) -> Verdict:
    spec, pool_ref = look.spec, look.pool_ref
    by = spec.get("by", "app")
    requests = look.report["resizeRequests"]
    matching = [r for r in requests if r["pool"].lower() == pool_ref.lower()
                and (by == "anyone" or r["caller"] == APP_CALLER)
                and all(r[k] == spec[k] for k in ("dedicated", "spot") if k in spec)
                and _window(spec, look.start, r["time"])]
    ok, detail = _count_ok(spec, len(matching))
    size = " and ".join(f"{spec[k]} {'dedicated' if k == 'dedicated' else 'Spot'}"
                        for k in ("dedicated", "spot") if k in spec)
    text = (f"resize requests for {pool_ref}{' asking for ' + size if size else ''} by "
            f"{'the app' if by == 'app' else 'anyone'}{_window_text(spec)}")
    if matching or size:
        asked = [f"{r['time'][11:16]} {r['dedicated']}/{r['spot']}" for r in requests
                 if r["pool"].lower() == pool_ref.lower() and (by == "anyone" or r["caller"] == APP_CALLER)][:8]
        detail += f": {', '.join(asked)}" if asked else ""
    return ok, detail, text


def _resize_failures(look: Look) -> Verdict:
    spec, pool_ref = look.spec, look.pool_ref
    code = spec.get("code", "").lower()
    matching = [f for f in look.report["resizeFailures"]
                if (pool_ref is None or f["pool"].lower() == pool_ref.lower())
                and code in f["errors"].lower() and _window(spec, look.start, f["time"])]
    ok, detail = _count_ok(spec, len(matching))
    text = (f"resizes that ended short{' of ' + pool_ref if pool_ref else ''}"
            f"{' with ' + spec['code'] if code else ''}{_window_text(spec)}")
    detail += (f": {', '.join(f['time'][11:16] + ' ' + f['errors'].split(' (')[0] for f in matching[:6])}"
               if matching else "")
    return ok, detail, text


def _stall_events(look: Look) -> Verdict:
    spec, pool_ref = look.spec, look.pool_ref
    wanted_kind = spec.get("kind")
    matching = [s for s in look.report["stallEvents"] if (pool_ref is None or s["pool"].lower() == pool_ref.lower())
                and (wanted_kind is None or s["kind"] == wanted_kind) and _window(spec, look.start, s["time"])]
    ok, detail = _count_ok(spec, len(matching))
    what = {"step": "planned resize steps", "stall": "stalls"}.get(wanted_kind or "",
                                                                   "watch resize events (steps and stalls)")
    return ok, detail, f"{what}{' for ' + pool_ref if pool_ref else ''}{_window_text(spec)}"


def _dead_letters(look: Look) -> Verdict:
    ok, detail = _count_ok(look.spec, look.report["events"]["deadLettered"])
    return ok, detail, "dead-lettered events"


def _failed_invocations(look: Look) -> Verdict:
    fn = look.spec.get("function")
    n = sum(v["failed"] for k, v in look.report["invocations"].items() if fn is None or k == fn)
    ok, detail = _count_ok(look.spec, n)
    return ok, detail, f"failed invocations{' of ' + fn if fn else ''}"


CHECKERS: dict[str, Callable[[Look], Verdict]] = {
    "poolAtTarget": _pool_at_target,
    "poolReachedTarget": _pool_reached_target,
    "poolExists": _pool_exists,
    "poolNodes": _pool_nodes,
    "usableNodes": _usable_nodes,
    "alerts": _alerts,
    "poolImage": _pool_image,
    "imageExists": _image_exists,
    "locks": _locks,
    "resizeRequests": _resize_requests,
    "resizeFailures": _resize_failures,
    "stallEvents": _stall_events,
    "deadLetters": _dead_letters,
    "failedInvocations": _failed_invocations,
}


# ---------------------------------------------------------------------------------------------
# Counting and windows
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
    t = parse_time(when)
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
