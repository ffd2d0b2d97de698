"""Bad input: malformed, mistyped, oversized, foreign and hostile events, delivered through the Functions host
to every Event Grid function, must each be answered with one clear log line and nothing else.

The world is real: a snapshot set has been built into an image, a gallery version and two pools, and the
guard has locked what they use, so hostile events can name (variants of) resources that exist. Hypothesis
then builds events that Event Grid would route to each function (the subscription filters of
``shared/core/event_routing.py`` hold: event type, and ``data.operationName`` on the system topic), in the
Event Grid schema or as CloudEvents, each with at least one defect:

* malformed shapes and wrong types: ``data`` not an object, fields of the wrong JSON type, ids missing;
* huge strings: 10 kB ids, 100 kB statuses, thousands of claims;
* foreign subscriptions, and a ``subject`` that disagrees with ``data.resourceUri``, ``data.subscriptionId``
  or the ``topic`` (system events), or with ``data.accountId``/``data.poolId`` (stall events);
* odd or hostile resource ids: path traversal (``..``), encoded slashes (``%2F``), control characters and
  line breaks, unicode (RTL overrides, zero-width and full-width characters), 10 kB ids.

For each event: the invocation succeeds (no exception: Event Grid would otherwise retry it for a day);
the app makes no write (no PUT/PATCH/POST/DELETE from the app in the emulator's request log, which
includes publishing to the Event Grid topic) and creates no Table row (except in the de-duplication
table of processed event ids); and the function's own logger writes exactly one line for it, at WARNING
or DEBUG, on one line and of bounded length.

The envelope fields Event Grid itself guarantees are kept valid: ``eventTime`` parses as a time (the
worker's converter decodes it before the function runs), and the routing fields match a subscription.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopilot.local import LocalAzure
from emulator.eventgrid.models import to_cloud_event
from shared.core.event_routing import POOL_RESIZE_STALLED, SUBSCRIPTIONS

from .harness import (
    ACCOUNT,
    ACCOUNT_ID,
    CHAOS,
    GALLERY,
    LEDGER,
    SUBSCRIPTION_ID,
    app_requests,
    app_writes,
    check,
    family_config,
    local_azure,
    scaled,
)

FOREIGN = "11111111-2222-4333-8444-555555555555"
LOG_LIMIT = 4096  # a "clear" line: one line, not an attacker's 10 kB id echoed back
DEDUP_TABLE = "Events"  # processed event ids: the only table a rejected event may add a row to
LOCK = "batch-image-autopilot"

FUNCTIONS = ("image_pipeline", "image_guard_events", "resize_stalled")
SETTINGS = settings(max_examples=scaled(40, 400), deadline=None, database=None, derandomize=not CHAOS,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------
# The world the events are about
# ---------------------------------------------------------------------------------------------


class World:
    def __init__(self, la: LocalAzure, snapshots: dict[str, str]) -> None:
        sub = SUBSCRIPTION_ID
        self.la = la
        self.version = (f"/subscriptions/{sub}/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/{GALLERY}"
                        "/images/gpu-render/versions/1.0.0")
        self.image = f"/subscriptions/{sub}/resourceGroups/images-rg/providers/Microsoft.Compute/images/gpu-1.0.0"
        self.snapshots = list(snapshots.values())
        self.pools = [f"{ACCOUNT_ID}/pools/gpu-a-1-0-0", f"{ACCOUNT_ID}/pools/gpu-b-1-0-0"]
        self.locks = [f"{r}/providers/Microsoft.Authorization/locks/{LOCK}" for r in (self.version, *self.snapshots)]

    def ids_for(self, operation: str) -> list[str]:
        op = operation.lower()
        if "locks" in op:
            return self.locks
        if "pools" in op:
            return self.pools
        if "snapshots" in op:
            return self.snapshots
        if "versions" in op:
            return [self.version]
        return [self.image]


# ---------------------------------------------------------------------------------------------
# Hostile and odd ids
# ---------------------------------------------------------------------------------------------

UNICODE = st.lists(st.sampled_from(["\u202e", "\u200b", "\ufeff", "ｓｎａｐ", "é", "ß", "𝔘", "\u0301", "日本", "Ω",
                                    "\u2028", "\u00a0"]),
                   min_size=1, max_size=6).map("".join)


def _swap_name(rid: str, name: str) -> str:
    return rid.rsplit("/", 1)[0] + "/" + name


@st.composite
def hostile_id(draw: Any, real: str) -> str:
    """A variant of a real id that no ARM id can be: every one of these must be refused, never read or written."""
    kind = draw(st.sampled_from(["traversal", "traversal-up", "encoded-slash", "double-encoded", "control", "newline",
                                 "huge", "double-slash",
                                 "backslash", "query", "quote", "not-an-id", "empty", "dots-name"]))
    name = real.rsplit("/", 1)[1]
    return {
        "traversal": f"{real}/../../{name}",
        "traversal-up": real.replace("/providers/", "/providers/../../../providers/", 1),
        "encoded-slash": _swap_name(real, f"..%2F..%2F{name}"),
        "double-encoded": _swap_name(real, f"{name}%252F..%252Fx"),
        "control": _swap_name(real, f"{name}\x00"),
        "newline": _swap_name(real, f"{name}\nINFO forged log line"),
        "huge": _swap_name(real, name + "a" * 10_240),
        "double-slash": real.replace("/resourceGroups/", "//resourceGroups/", 1),
        "backslash": _swap_name(real, f"..\\..\\{name}"),
        "query": _swap_name(real, f"{name}?api-version=2020-01-01#x"),
        "quote": _swap_name(real, f"{name}'\"<script>"),
        "not-an-id": draw(st.sampled_from(["hello", "https://management.azure.com/", "/subscriptions/", "/",
                                           "providers/Microsoft.Compute"])),
        "empty": draw(st.sampled_from(["", "   "])),
        "dots-name": _swap_name(real, ".."),
    }[kind]


def foreign(rid: str) -> str:
    return rid.replace(SUBSCRIPTION_ID, FOREIGN)


NOT_OBJECTS = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=3))
WRONG_TYPES = st.one_of(NOT_OBJECTS, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


# ---------------------------------------------------------------------------------------------
# System-topic events (image_pipeline, image_guard_events)
# ---------------------------------------------------------------------------------------------

SYSTEM_DEFECTS = ("hostile-subject", "unicode-subject", "foreign-subscription", "resource-uri-mismatch",
                  "data-subscription-mismatch",
                  "topic-mismatch", "data-field-wrong-type", "subject-wrong-type", "bad-id", "huge-data")


def _system_routes(function: str) -> list[tuple[str, str]]:
    sub = next(s for s in SUBSCRIPTIONS if s.function == function)
    return [(t, op) for t in sub.included_event_types for op in sub.operation_names]


@st.composite
def system_event(draw: Any, world: World, function: str) -> tuple[dict[str, Any], list[str], bool]:
    """(event, its defects, whether its subject is a hostile id that no request may carry)."""
    event_type, operation = draw(st.sampled_from(_system_routes(function)))
    real = draw(st.sampled_from(world.ids_for(operation)))
    subject: Any = real
    data: dict[str, Any] = {
        "operationName": draw(st.sampled_from([operation, operation.lower(), operation.upper()])),
        "resourceUri": real, "subscriptionId": SUBSCRIPTION_ID, "tenantId": "72f988bf-0000-4000-8000-00000000e001",
        "status": "Succeeded", "correlationId": "c0ffee00-0000-4000-8000-000000000001",
        "claims": {"name": "mallory@contoso.com", "appid": "mallory"},
        "authorization": {"scope": real, "action": operation},
    }
    event: dict[str, Any] = {"id": draw(st.uuids()).hex, "topic": f"/subscriptions/{SUBSCRIPTION_ID}",
                             "eventType": event_type,
                             "eventTime": "2026-11-02T06:00:00.1234567Z", "dataVersion": "2", "metadataVersion": "1"}
    defects = draw(st.lists(st.sampled_from(SYSTEM_DEFECTS), min_size=1, max_size=3, unique=True))
    hostile = None
    for defect in defects:
        if defect == "hostile-subject":
            subject = hostile = draw(hostile_id(real))
            data["resourceUri"] = draw(st.sampled_from([subject, real, None]))
        elif defect == "unicode-subject":
            subject = _swap_name(real, draw(UNICODE))
            data["resourceUri"] = subject
        elif defect == "foreign-subscription":
            subject = foreign(real)
            data["resourceUri"], data["subscriptionId"] = subject, FOREIGN
            event["topic"] = f"/subscriptions/{FOREIGN}"
        elif defect == "resource-uri-mismatch":
            data["resourceUri"] = draw(
                st.sampled_from([r for r in (world.version, *world.snapshots, *world.pools) if r != real]))
        elif defect == "data-subscription-mismatch":
            data["subscriptionId"] = FOREIGN
        elif defect == "topic-mismatch":
            event["topic"] = draw(st.sampled_from([f"/subscriptions/{FOREIGN}",
                                                   f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/other-rg"]))
        elif defect == "data-field-wrong-type":
            field = draw(
                st.sampled_from(["resourceUri", "claims", "httpRequest", "subscriptionId", "status", "correlationId"]))
            # claims and httpRequest are objects (or, in an older spec, JSON strings of objects): anything else is
            # wrong.
            data[field] = draw(
                st.one_of(NOT_OBJECTS, st.just("{not json")) if field in ("claims", "httpRequest") else WRONG_TYPES)
        elif defect == "subject-wrong-type":
            subject = draw(st.one_of(st.none(), st.just(""), WRONG_TYPES))
        elif defect == "bad-id":
            event["id"] = draw(st.one_of(st.none(), st.just(""), WRONG_TYPES, st.just("x" * 10_240),
                                         st.just("id\nINFO forged")))
        elif defect == "huge-data":
            field = draw(st.sampled_from(["status", "correlationId", "claims", "resourceUri"]))
            data[field] = ({f"c{i}": "v" for i in range(5_000)} if field == "claims"
                           else real + "/" + "x" * 10_240 if field == "resourceUri" else "s" * 100_000)
    event["subject"] = subject
    event["data"] = data
    return event, defects, hostile is not None and subject == hostile


# ---------------------------------------------------------------------------------------------
# Custom-topic events (resize_stalled)
# ---------------------------------------------------------------------------------------------

STALL_DEFECTS = ("data-not-object", "account-wrong-type", "pool-wrong-type", "account-missing", "pool-missing",
                 "account-too-long",
                 "pool-too-long", "foreign-account", "unwatched-account", "hostile-account", "hostile-pool",
                 "unicode-pool",
                 "subject-mismatch")
# Pool ids Batch would never issue (ids are 1-64 letters, digits, '-' and '_'), aimed at the data-plane URL the app
# builds.
HOSTILE_POOLS = ("..", "../gpu-a-1-0-0", "gpu-a-1-0-0/../x", "../../other/pools/victim", "a%2Fb", "a/b",
                 "gpu-a-1-0-0\nINFO forged", "\x00",
                 "gpu-a-1-0-0?$select=id", "gpu-a-1-0-0#", "..%2F..", " ")


@st.composite
def stall_event(draw: Any, world: World) -> tuple[dict[str, Any], list[str], bool]:
    """(event, its defects, whether its account or pool id is a hostile id that no request may carry).

    Event Grid's input schema makes ``id`` a string on the custom topic, so a bad id (huge, with a line break)
    only ever comes on top of a real defect."""
    pool_path = draw(st.sampled_from(world.pools))
    pool_id = pool_path.rsplit("/", 1)[1]
    data: Any = {"accountId": ACCOUNT_ID, "poolId": pool_id, "reason": "stalled", "action": "resize",
                 "eTag": "0x8DD0000000000000",
                 "allocationState": "steady", "currentDedicatedNodes": 0, "targetDedicatedNodes": 0}
    event: dict[str, Any] = {"id": draw(st.uuids()).hex, "subject": pool_path, "eventTime": "2026-11-02T06:00:00Z",
                             "dataVersion": "1.0",
                             "eventType": draw(st.sampled_from([POOL_RESIZE_STALLED, POOL_RESIZE_STALLED.lower()]))}
    defects = draw(st.lists(st.sampled_from(STALL_DEFECTS), min_size=1, max_size=3, unique=True))
    hostile: list[Any] = []
    for defect in defects:
        if not isinstance(data, dict):
            break
        if defect == "data-not-object":
            data = draw(st.one_of(st.none(), WRONG_TYPES, st.text(max_size=20), st.just("d" * 100_000)))
        elif defect == "account-wrong-type":
            data["accountId"] = draw(WRONG_TYPES)
        elif defect == "pool-wrong-type":
            data["poolId"] = draw(WRONG_TYPES)
        elif defect == "account-missing":
            data["accountId"] = draw(st.sampled_from([None, ""]))
        elif defect == "pool-missing":
            data["poolId"] = draw(st.sampled_from([None, ""]))
        elif defect == "account-too-long":
            data["accountId"] = ACCOUNT_ID + "x" * 10_240
        elif defect == "pool-too-long":
            data["poolId"] = "p" * draw(st.sampled_from([65, 1000, 10_240]))
        elif defect == "foreign-account":
            data["accountId"] = foreign(ACCOUNT_ID)
        elif defect == "unwatched-account":
            data["accountId"] = ACCOUNT_ID.replace("/renderweu", "/someoneelse")
        elif defect == "hostile-account":
            data["accountId"] = draw(hostile_id(ACCOUNT_ID))
            hostile.append(("accountId", data["accountId"]))
        elif defect == "hostile-pool":
            data["poolId"] = draw(st.sampled_from(HOSTILE_POOLS))
            hostile.append(("poolId", data["poolId"]))
        elif defect == "unicode-pool":
            data["poolId"] = pool_id + draw(UNICODE)
        elif defect == "subject-mismatch":
            event["subject"] = draw(st.sampled_from([f"{ACCOUNT_ID}/pools/other", foreign(pool_path), "/", "pools/x"]))
    if draw(st.booleans()):
        event["id"] = draw(st.sampled_from(["x" * 10_240, "id\nINFO forged", "id\r\n\x1b[31mred"]))
        defects.append("bad-id")
    effective = isinstance(data, dict) and any(data.get(k) == v for k, v in hostile)
    event["data"] = data
    return event, defects, effective


# ---------------------------------------------------------------------------------------------
# Observing one delivery
# ---------------------------------------------------------------------------------------------


def table_rows(la: LocalAzure) -> dict[str, int]:
    service = la.context.clients.tables
    prefix = la.settings.table_prefix
    rows = {}
    for table in service.list_tables():
        if table.name.startswith(prefix):
            rows[table.name[len(prefix):]] = sum(
                1 for _ in service.get_table_client(table.name).list_entities(select=["RowKey"]))
    return rows


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:297] + "..."


def deliver_one(la: LocalAzure, caplog: pytest.LogCaptureFixture, function: str, topic: str, event: dict[str, Any],
                defects: list[str], cloud: bool, hostile: bool) -> None:
    payload = to_cloud_event(event) if cloud else event
    log_mark, inv_mark, rows_before = len(la.emulator.log), len(la.host.invocations), table_rows(la)
    caplog.clear()
    la.host.publish(topic, payload)
    la.host.pump()
    what = f"{function} <- {'CloudEvent' if cloud else 'Event Grid event'} with {defects}: {_short(payload)}"

    invocations = la.host.invocations[inv_mark:]
    # Some events are routed to two functions (a snapshot's delete: the pipeline, as it leaves its set, and the guard):
    # each function the subscriptions route it to gets it once, and answers it as a bad event.
    functions = _routed(topic, payload)
    check("each bad event reaches its function once", function in functions
          and sorted(i.function for i in invocations) == sorted(functions),
          f"{what}\n  routed to {functions}; invocations: {[(i.function, i.ok) for i in invocations]}")
    check("a bad event never fails the invocation", all(i.ok for i in invocations),
          f"{what}\n  failed: {[i.detail for i in invocations if not i.ok]}")
    writes = app_writes(la, since=log_mark)
    check("a bad event makes no write", not writes,
          f"{what}\n  writes: {[(e.method, e.path[:200], e.status) for e in writes]}")
    if hostile:
        sent = app_requests(la, since=log_mark)
        check("a hostile id never reaches a request URL", not sent,
              f"{what}\n  the app sent requests for it: {[(e.method, e.path[:200], e.status) for e in sent]}")
    rows_after = table_rows(la)
    grown = {t: (rows_before.get(t, 0), n) for t, n in rows_after.items() if n > rows_before.get(t, 0)
             and t != DEDUP_TABLE}
    check("a bad event creates no Table row", not grown, f"{what}\n  table rows (before, after): {grown}")
    for routed in functions:
        _one_clear_line(caplog, routed, what)


def _routed(topic: str, payload: dict[str, Any]) -> list[str]:
    """The functions the app's subscriptions deliver ``payload`` to, as ``LocalFunctionsHost.publish`` routes it."""
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    subject = payload.get("subject") if isinstance(payload.get("subject"), str) else None
    return [s.function for s in SUBSCRIPTIONS if s.topic == topic
            and s.matches(payload.get("eventType") or payload.get("type"), data.get("operationName"), subject)]


def _one_clear_line(caplog: pytest.LogCaptureFixture, function: str, what: str) -> None:
    lines = [r for r in caplog.records if r.name == f"autopilot.handlers.{function}"]
    check("one log line per bad event", len(lines) == 1,
          f"{what}\n  lines from autopilot.handlers.{function}: {[(r.levelname, r.getMessage()[:300]) for r in lines]}")
    line = lines[0]
    check("the line is WARNING or DEBUG", line.levelno in (logging.WARNING, logging.DEBUG),
          f"{what}\n  logged at {line.levelname}: {line.getMessage()[:500]}")
    message = line.getMessage()
    check("the line is one clear line", "\n" not in message and "\r" not in message and len(message) <= LOG_LIMIT,
          f"{what}\n  line ({len(message)} characters, {message.count(chr(10))} line break(s)): {message[:500]!r}")
    LEDGER.count(f"bad input: {function} at {line.levelname}")


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(azurite: str, tls_material) -> Any:
    families = family_config(pools=[{"poolId": "gpu-a-{versionDashed}", "dedicated": 4},
                                    {"poolId": "gpu-b-{versionDashed}", "dedicated": 2}])
    with local_azure(azurite, tls_material, families=families, accounts=[ACCOUNT_ID]) as la:
        la.add_batch_account(ACCOUNT)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, "images-rg", GALLERY, location="westeurope")
        snapshots = la.snapshot_set("gpu", "1.0.0", data_luns=(0,))
        la.run(timedelta(minutes=45))  # built, pools at size, locks in place; the world is quiet
        assert [p.id for p in la.emulator.batch.list_pools(ACCOUNT)] == ["gpu-a-1-0-0", "gpu-b-1-0-0"]
        assert all(i.ok for i in la.host.invocations), [i.detail for i in la.host.invocations if not i.ok]
        yield World(la, snapshots)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_bad_events_are_answered_with_one_line_and_nothing_else(world: World, caplog: pytest.LogCaptureFixture,
                                                                function: str) -> None:
    la = world.la
    for name in FUNCTIONS:
        caplog.set_level(logging.DEBUG, logger=f"autopilot.handlers.{name}")
    events = stall_event(world) if function == "resize_stalled" else system_event(world, function)
    topic = "custom" if function == "resize_stalled" else "system"

    @SETTINGS
    @given(case=events, cloud=st.booleans())
    def deliver(case: tuple[dict[str, Any], list[str], bool], cloud: bool) -> None:
        LEDGER.case(f"bad input: {function}")
        event, defects, hostile = case
        for defect in defects:
            LEDGER.count(f"bad input: defect {defect}")
        deliver_one(la, caplog, function, topic, event, defects, cloud, hostile)

    deliver()


# ---------------------------------------------------------------------------------------------
# Named cases: one per kind of answer, so that each shows up (and is fixed) on its own
# ---------------------------------------------------------------------------------------------


def _system(world: World, event_type: str, operation: str, subject: str, **changes: Any) -> dict[str, Any]:
    event = {"id": "c8a3d2a0-0000-4000-8000-000000000001", "topic": f"/subscriptions/{SUBSCRIPTION_ID}",
             "subject": subject,
             "eventType": f"Microsoft.Resources.{event_type}", "eventTime": "2026-11-02T06:00:00.1234567Z",
             "dataVersion": "2",
             "metadataVersion": "1", "data": {"operationName": operation, "resourceUri": subject,
                                              "subscriptionId": SUBSCRIPTION_ID,
                                              "status": "Succeeded",
                                              "claims": {"name": "mallory@contoso.com", "appid": "mallory"}}}
    for key, value in changes.items():
        if key.startswith("data_"):
            event["data"][key[5:]] = value
        else:
            event[key] = value
    return event


def _stall(world: World, subject: str | None = None, **data: Any) -> dict[str, Any]:
    body = {"accountId": ACCOUNT_ID, "poolId": "gpu-a-1-0-0", "reason": "stalled", "action": "resize",
            "eTag": "0x8DD0000000000000"}
    body.update(data)
    return {"id": "c8a3d2a0-0000-4000-8000-000000000002", "subject": subject or f"{ACCOUNT_ID}/pools/{body['poolId']}",
            "eventType": POOL_RESIZE_STALLED, "eventTime": "2026-11-02T06:00:00Z", "dataVersion": "1.0", "data": body}


NAMED: dict[str, tuple[str, Any, bool]] = {
    # name: (function, event builder, hostile id that no request may carry)
    "pipeline: path traversal in the subject": (
        "image_pipeline", lambda w: _system(w, "ResourceWriteSuccess", "Microsoft.Compute/snapshots/write",
                                            w.snapshots[0] + "/../../../x"), True),
    "pipeline: encoded slashes in the subject": (
        "image_pipeline", lambda w: _system(w, "ResourceWriteSuccess", "Microsoft.Compute/snapshots/write",
                                            _swap_name(w.snapshots[0], "..%2F..%2Fx")), True),
    "pipeline: 10 kB subject": (
        "image_pipeline",
        lambda w: _system(w, "ResourceWriteSuccess", "Microsoft.Compute/images/write", w.image + "x" * 10_240), True),
    "pipeline: subject and resourceUri disagree": (
        "image_pipeline", lambda w: _system(w, "ResourceWriteSuccess", "Microsoft.Compute/snapshots/write",
                                            w.snapshots[0],
                                            data_resourceUri=w.version), False),
    "pipeline: event id with a line break (log forging)": (
        "image_pipeline", lambda w: _system(w, "ResourceWriteSuccess", "Microsoft.Compute/snapshots/write",
                                            w.snapshots[0],
                                            id="x\nERROR forged line"), False),
    "guard: foreign subscription": (
        "image_guard_events", lambda w: _system(w, "ResourceDeleteFailure", "Microsoft.Compute/snapshots/delete",
                                                foreign(w.snapshots[0]),
                                                data_subscriptionId=FOREIGN), False),
    "guard: claims of the wrong type": (
        "image_guard_events", lambda w: _system(w, "ResourceDeleteFailure", "Microsoft.Compute/snapshots/delete",
                                                w.snapshots[0],
                                                data_claims=[1, 2, 3]), False),
    "guard: unicode (RTL override) image name in the app's subscription": (
        "image_guard_events", lambda w: _system(w, "ResourceDeleteSuccess", "Microsoft.Compute/images/delete",
                                                _swap_name(w.image, "gpu\u202e0.1.1")), False),
    "stall: account the app does not watch": (
        "resize_stalled", lambda w: _stall(w, accountId=foreign(ACCOUNT_ID)), False),
    "stall: poolId '..' (the URL collapses to the account)": ("resize_stalled", lambda w: _stall(w, poolId=".."), True),
    "stall: poolId with path traversal": ("resize_stalled", lambda w: _stall(w, poolId="../../other/pools/victim"),
                                          True),
    "stall: poolId with a line break (log forging)": ("resize_stalled",
                                                      lambda w: _stall(w, poolId="gpu-a-1-0-0\nERROR forged line"),
                                                      True),
    "stall: 10 kB event id": ("resize_stalled",
                              lambda w: {**_stall(w, accountId=foreign(ACCOUNT_ID)), "id": "x" * 10_240}, False),
    "stall: subject names another pool than data": (
        "resize_stalled", lambda w: _stall(w, subject=f"{foreign(ACCOUNT_ID)}/pools/elsewhere"), False),
}


@pytest.mark.parametrize("name", list(NAMED))
def test_named_bad_event(world: World, caplog: pytest.LogCaptureFixture, name: str) -> None:
    LEDGER.case("bad input: named cases")
    for fn in FUNCTIONS:
        caplog.set_level(logging.DEBUG, logger=f"autopilot.handlers.{fn}")
    function, build, hostile = NAMED[name]
    deliver_one(world.la, caplog, function, "custom" if function == "resize_stalled" else "system", build(world),
                [name], False, hostile)
