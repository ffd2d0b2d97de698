"""What the reliability tests share: the local Azure they run on, how they observe it, and the ledger of figures.

Everything here observes; nothing here stands in for Azure or the SDKs. The app runs unchanged on
:class:`autopilot.local.LocalAzure` (the HTTPS emulator, Azurite and the local Functions host), and the
tests judge it only by what reached the emulator (its request log and its Event Grid topics), by what
the Functions host recorded (invocations, retries, dead letters) and by what the app logged.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from emulator.core import LoggedRequest
from emulator.exceptions import AzureError
from emulator.faults import FaultRule
from emulator.functions_host import Delivery, FunctionsHost
from emulator.table_faults import TableFaultProxy
from shared.core.resource_ids import batch_account_id
from shared.resources import batch_accounts

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "out" / "reliability"

APP = "batch-image-autopilot"  # the caller name the emulator logs for the app's own requests
WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})
ACCOUNT = "renderweu"
ACCOUNT_ID = batch_account_id(SUBSCRIPTION_ID, "batch-rg", ACCOUNT)
GALLERY = "autopilotGallery"
MARKETPLACE_UBUNTU = {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}
UBUNTU_AGENT = "batch.node.ubuntu 24.04"

# ---------------------------------------------------------------------------------------------
# Scale: `make test` runs the quick profile; `make chaos` (AUTOPILOT_CHAOS=long) runs ~10x the cases.
# ---------------------------------------------------------------------------------------------

CHAOS = os.environ.get("AUTOPILOT_CHAOS", "").strip().lower() == "long"


def scaled(quick: int, long: int | None = None) -> int:
    """A count for this run's profile: ``quick`` in `make test`, ``long`` (default 10x) in `make chaos`."""
    return (long if long is not None else quick * 10) if CHAOS else quick


# ---------------------------------------------------------------------------------------------
# The ledger: the figures the suite prints at the end (conftest.py writes them out)
# ---------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    cases: Counter[str] = field(default_factory=Counter)  # test -> cases (hypothesis examples, seeds, rounds) run
    invariants: Counter[str] = field(default_factory=Counter)  # invariant name -> times checked and held
    faults: Counter[str] = field(default_factory=Counter)  # fault label -> injected
    numbers: Counter[str] = field(default_factory=Counter)  # other figures: deliveries, duplicates, resizes, ...
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def case(self, test: str) -> None:
        with self._lock:
            self.cases[test] += 1

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.numbers[name] += n

    def held(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.invariants[name] += n

    def add_faults(self, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            for rule in rules:
                label = f"{rule.plane or 'any'}:{rule.kind}" + (f":{rule.status}" if rule.kind == "error" else "")
                self.faults[label] += rule.injected

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "profile": "chaos" if CHAOS else "quick",
                "cases": sum(self.cases.values()),
                "cases_by_test": dict(sorted(self.cases.items())),
                "faults_injected": sum(self.faults.values()),
                "faults_by_kind": dict(sorted(self.faults.items())),
                "invariant_checks_held": sum(self.invariants.values()),
                "invariants": dict(sorted(self.invariants.items())),
                "figures": dict(sorted(self.numbers.items())),
            }


LEDGER = Ledger()


def check(name: str, condition: bool, message: str) -> None:
    """Assert an invariant and count it in the ledger when it holds."""
    assert condition, f"[{name}] {message}"
    LEDGER.held(name)


# ---------------------------------------------------------------------------------------------
# Local Azure
# ---------------------------------------------------------------------------------------------


@contextmanager
def local_azure(azurite: str, tls: Any, *, seed: int = 1, families: Mapping[str, Any] | None = None,
                accounts: list[str] | None = None,
                settings: Mapping[str, str] | None = None) -> Iterator[LocalAzure]:
    """A fresh LocalAzure (own emulator, own table prefix) with fast SDK retries.

    The Batch account cache in ``shared.resources.batch_accounts`` is process-wide while each LocalAzure
    serves on its own port: it is emptied around every run, so no run can ever see another run's accounts.
    """
    env = {"AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS": "0.01", "AUTOPILOT_HTTP_RETRY_BACKOFF_MAX_SECONDS": "1"}
    env.update(settings or {})
    batch_accounts.forget_accounts()
    la = LocalAzure(azurite_connection=azurite, seed=seed, families=families, accounts=accounts, settings=env, tls=tls)
    try:
        yield la
    finally:
        la.close()
        batch_accounts.forget_accounts()


def family_config(*, pools: list[dict[str, Any]], keep_managed_image: bool = False,
                  account_id: str = ACCOUNT_ID) -> dict[str, Any]:
    return {"families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": GALLERY, "imageDefinition": "gpu-render", "osType": "Linux",
                    "osState": "Generalized", "hyperVGeneration": "V2", "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "keepManagedImage": keep_managed_image,
        "pools": [{"account": account_id, "vmSize": "Standard_D4ds_v5", "spot": 0, **p} for p in pools],
    }}}


def custom_image(la: LocalAzure, name: str = "base") -> str:
    """A gallery image version (from a snapshot of a Marketplace disk), built at once; returns its id."""
    disk = la.add_prepared_disk(f"{name}-osdisk")
    snapshot = la.emulator.compute.create_snapshot(SUBSCRIPTION_ID, "images-rg", f"{name}-os", source_resource_id=disk)
    compute = la.emulator.compute
    try:
        compute.get_gallery(SUBSCRIPTION_ID, "images-rg", GALLERY)
    except AzureError:  # 404: not there yet
        compute.create_gallery(SUBSCRIPTION_ID, "images-rg", GALLERY, location="westeurope")
    compute.create_gallery_image(SUBSCRIPTION_ID, "images-rg", GALLERY, name, hyper_v_generation="V2")
    return compute.create_gallery_image_version(SUBSCRIPTION_ID, "images-rg", GALLERY, name, "1.0.0",
                                                os_snapshot_id=snapshot.id,
                                                instant=True).id


def managed_pool(la: LocalAzure, pool_id: str, *, target: int, desired: int, account: str = ACCOUNT,
                 image_id: str | None = None) -> None:
    """A pool the app manages (autopilot metadata) whose target is below what the app wants: the watch must grow it.

    With ``image_id`` (a gallery image version) it is a custom-image pool, which the watch grows in steps of
    ``AUTOPILOT_GROWTH_STEP_NODES``; without, a Marketplace pool, resized straight to its size.
    """
    metadata = {"autopilot.managed": "true", "autopilot.desiredDedicated": str(desired), "autopilot.desiredSpot": "0"}
    if image_id:
        metadata["autopilot.imageId"] = image_id
    la.emulator.batch.create_pool(account, pool_id, vm_size="Standard_D2s_v5",
                                  image_reference={"id": image_id} if image_id else dict(MARKETPLACE_UBUNTU),
                                  node_agent_sku_id=UBUNTU_AGENT, target_dedicated=target,
                                  resize_timeout=timedelta(minutes=15),
                                  metadata=metadata)


def step(la: LocalAzure, minutes: float = 1) -> None:
    """Move virtual time on and run what fell due (LRO completions, resize minutes, Event Grid retries)."""
    la.emulator.clock.advance(timedelta(minutes=minutes))
    la.emulator.scheduler.run_due()


# ---------------------------------------------------------------------------------------------
# Delivery control: take what Event Grid would deliver, and deliver it in an order of our choosing
# ---------------------------------------------------------------------------------------------


def take_pending(host: FunctionsHost) -> list[Delivery]:
    """Everything queued for delivery, removed from the host's queue (so the test decides order and copies).

    The host has no public "peek"; its queue and lock are read here and nowhere else.
    """
    with host._lock:
        pending = list(host._queue)
        host._queue.clear()
    return pending


def deliver(host: FunctionsHost, deliveries: list[Delivery]) -> None:
    """Hand these deliveries to the host, in this order, as Event Grid would (retries and dead-letters included)."""
    with host._lock:
        host._queue.extend(deliveries)
    host.pump(max_deliveries=len(deliveries))


def copy_delivery(d: Delivery, now: datetime) -> Delivery:
    """Another delivery of the same event to the same subscription (at-least-once: Event Grid may send it again)."""
    return Delivery(d.subscription, d.event, now)


# ---------------------------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------------------------


def app_requests(la: LocalAzure, since: int = 0) -> list[LoggedRequest]:
    return [e for e in la.emulator.log.entries()[since:] if e.caller == APP]


def app_writes(la: LocalAzure, since: int = 0) -> list[LoggedRequest]:
    return [e for e in app_requests(la, since) if e.method in WRITE_METHODS and not e.path.startswith("/_emulator/")]


def ok(entry: LoggedRequest) -> bool:
    """The call took effect: answered 2xx, or served 2xx and then its answer was lost (acted_drop / acted_error)."""
    if entry.served_status is not None:
        return 200 <= entry.served_status < 300
    return entry.fault is None and 200 <= entry.status < 300


def successful_writes(la: LocalAzure, action: str, plane: str = "arm") -> list[LoggedRequest]:
    """The app's answered writes of one ARM action on one plane (Batch resizes map to pools/write on the data plane)."""
    return [e for e in app_writes(la) if ok(e) and e.plane == plane and (e.action or "").lower() == action.lower()]


def resize_posts(la: LocalAzure, *, accepted_only: bool = False) -> list[LoggedRequest]:
    """The app's data-plane resize calls (POST /batch/{account}/pools/{id}/resize), answered or not."""
    out = [e for e in app_requests(la) if e.method == "POST" and e.plane == "batch"
           and e.path.lower().endswith("/resize")]
    return [e for e in out if ok(e)] if accepted_only else out


def pool_of_resize(entry: LoggedRequest) -> str:
    return entry.path.rstrip("/").split("/")[-2]


def resizes_per_cycle(la: LocalAzure, tick_times: list[datetime], *, accepted_only: bool) -> dict[tuple[int, str], int]:
    """(cycle index, pool id) -> resize calls; cycle i runs from watch tick i up to (not including) tick i+1."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for entry in resize_posts(la, accepted_only=accepted_only):
        cycle = bisect_right(tick_times, entry.time) - 1
        counts[(cycle, pool_of_resize(entry))] += 1
    return dict(counts)


def watch_tick_times(la: LocalAzure) -> list[datetime]:
    return sorted({inv.time for inv in la.host.invocations if inv.function == "pool_watch"})


def alert_keys(la: LocalAzure) -> Counter[tuple[str, str]]:
    """(subject, alert type) -> alert events published on the custom topic."""
    return Counter((str(e.get("subject", "")).lower(), str(e.get("eventType"))) for e in la.alerts())


def duplicated_alerts(la: LocalAzure) -> dict[tuple[str, str], int]:
    return {k: n for k, n in alert_keys(la).items() if n > 1}


def failed_invocations(la: LocalAzure) -> list[Any]:
    return [inv for inv in la.host.invocations if not inv.ok]


def nontransient_failures(la: LocalAzure) -> list[str]:
    """Invocation failures that are not transient Azure errors, i.e. that Event Grid redelivery (or the next tick)
    cannot fix."""
    return [f"{inv.function} at {inv.time.isoformat()}: {inv.detail}" for inv in failed_invocations(la)
            if not is_transient(inv.function, inv.detail)]


@functools.cache
def transient_error_names() -> frozenset[str]:
    """Names of the exception classes a function may let escape so that Event Grid redelivers: azure-core's
    HttpResponseError, ServiceRequestError and ServiceResponseError families (every subclass the SDKs in use
    define), and the app's own ConcurrencyConflict. The host records only ``"TypeName: message"``."""
    # Load the SDKs the app uses, so that their subclasses of the azure-core errors are known.
    import azure.batch
    import azure.data.tables
    import azure.eventgrid
    import azure.mgmt.batch
    import azure.mgmt.compute
    import azure.mgmt.resource.locks  # noqa: F401
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    names = {"ConcurrencyConflict"}
    todo = [HttpResponseError, ServiceRequestError, ServiceResponseError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


# The statuses that make a response error transient: throttling and server-side failures. A 4xx other
# than 408/409/412/429 escaping a function would be retried by Event Grid for a day to no effect.
_TRANSIENT_CODES = ("TooManyRequests", "ServiceUnavailable", "InternalServerError", "Injected fault", "(429)", "(500)",
                    "(502)", "(503)",
                    "(504)", "Connection", "connection", "timed out", "RemoteDisconnected", "Max retries", "aborted")
# Not transient even though they are HttpResponseError subclasses: retrying cannot fix them.
_PERMANENT_NAMES = frozenset({"ClientAuthenticationError", "ResourceNotFoundError", "ResourceExistsError",
                              "ResourceNotModifiedError",
                              "DecodeError", "SerializationError", "DeserializationError"})


def is_transient(function: str, detail: str) -> bool:
    name, _, message = detail.partition(": ")
    if name == "ConcurrencyConflict":
        return True
    if name == "RuntimeError":
        # Some functions fail on purpose, with a RuntimeError that names what could not be done, so that Event Grid
        # redelivers (or the failure shows in the Functions monitor and the next tick retries). That is meant only
        # for transient causes: the message must carry the transient Azure error it wraps.
        if function == "image_guard_reconcile" and message.startswith("could not update locks on:"):
            # the guard's timer: lock calls that failed after the SDK's retries (this message names no cause)
            return True
        return _mentions_transient_error(message)
    if name in _PERMANENT_NAMES or name not in transient_error_names():
        return False
    if name in ("ServiceRequestError", "ServiceResponseError", "ServiceRequestTimeoutError",
                "ServiceResponseTimeoutError",
                "IncompleteReadError"):
        return True
    return any(code in message for code in _TRANSIENT_CODES)


def _mentions_transient_error(message: str) -> bool:
    families = ("HttpResponseError", "ServiceRequestError", "ServiceResponseError", "ConcurrencyConflict")
    return any(f in message for f in families) or any(code in message for code in _TRANSIENT_CODES)


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

PLANES = ("arm", "batch", "eventgrid")


def chaos_rules(total_rate: float = 0.2, *, retry_after_s: int = 0) -> list[FaultRule]:
    """``total_rate`` of the calls on every Azure surface (ARM, the Batch data plane, the Event Grid topic) fail:
    429 with Retry-After, 500, 503, or a dropped connection, in equal shares. Azurite (Table storage) is not
    behind the emulator, so it gets no faults."""
    per_kind = 1 - (1 - total_rate) ** (1 / 4)  # four rules tried in turn: P(any) = total_rate
    rules = []
    for plane in PLANES:
        rules += [
            FaultRule(kind="throttle", rate=per_kind, plane=plane, retry_after_s=retry_after_s),
            FaultRule(kind="error", rate=per_kind, plane=plane, status=500, retry_after_s=0),
            FaultRule(kind="error", rate=per_kind, plane=plane, status=503, retry_after_s=0),
            FaultRule(kind="drop", rate=per_kind, plane=plane),
        ]
    return rules


# Table storage (Azurite) behind emulator.table_faults.TableFaultProxy. The app's read timeout is shortened to
# TABLE_READ_TIMEOUT_S in these runs (AUTOPILOT_HTTP_READ_TIMEOUT_SECONDS), so that an injected timeout costs a
# second, not the production 60 s, and the quick profile stays quick.
TABLE_READ_TIMEOUT_S = 0.3
TABLE_FAULT_SETTINGS = {"AUTOPILOT_HTTP_READ_TIMEOUT_SECONDS": str(TABLE_READ_TIMEOUT_S)}


def table_chaos_rules(total_rate: float = 0.2) -> list[FaultRule]:
    """``total_rate`` of the Table storage calls fail: 503 ServerBusy, 500 InternalError, a dropped connection,
    a timeout (the call took effect, the answer never came) and, on writes, the two lost answers after the
    write committed (dropped; 503): an SDK retry of an insert then meets 409, of an update 412. Timeouts get
    a third of the other kinds' share (each costs the read timeout in real time). Plus 10 ms of latency on
    another fifth of the calls."""
    weights = {"error503": 1.0, "error500": 1.0, "drop": 1.0, "timeout": 1 / 3, "acted_drop": 1.0, "acted_error": 1.0}
    # The rules are tried in turn: P(some fault) = 1 - prod(1 - rate_k) = total_rate with rate_k = 1 -
    # (1-total)^(w_k/sum w).
    rate = {k: 1 - (1 - total_rate) ** (w / sum(weights.values())) for k, w in weights.items()}
    writes = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
    return [
        FaultRule(kind="error", rate=rate["error503"], status=503, retry_after_s=0),
        FaultRule(kind="error", rate=rate["error500"], status=500, retry_after_s=0),
        FaultRule(kind="drop", rate=rate["drop"]),
        FaultRule(kind="timeout", rate=rate["timeout"], latency_s=TABLE_READ_TIMEOUT_S + 0.1),
        FaultRule(kind="acted_drop", rate=rate["acted_drop"], methods=writes),
        FaultRule(kind="acted_error", rate=rate["acted_error"], status=503, retry_after_s=0, methods=writes),
        FaultRule(kind="latency", rate=0.2, latency_s=0.01),
    ]


@contextmanager
def table_fault_proxy(azurite: str, seed: int) -> Iterator[TableFaultProxy]:
    """A fault-injecting proxy in front of the session's Azurite; pass ``proxy.connection_string`` as the app's
    storage."""
    with TableFaultProxy(azurite, seed=seed) as proxy:
        yield proxy


@contextmanager
def storage(azurite: str, seed: int, *, faults: bool) -> Iterator[tuple[str, TableFaultProxy | None]]:
    """(connection string, proxy): Azurite behind the fault proxy with :func:`table_chaos_rules` on, or Azurite as
    is."""
    if not faults:
        yield azurite, None
        return
    with table_fault_proxy(azurite, seed) as proxy:
        for rule in table_chaos_rules(0.2):
            proxy.add(rule)
        try:
            yield proxy.connection_string, proxy
        finally:
            record_table_faults(proxy)


def record_table_faults(proxy: TableFaultProxy) -> None:
    with LEDGER._lock:
        for label, n in proxy.calls.items():
            if label.startswith("fault:") and not label.startswith("fault:latency"):
                LEDGER.faults[f"table:{label.removeprefix('fault:')}"] += n
            elif not label.startswith("fault:"):
                LEDGER.numbers["table storage calls through the fault proxy"] += n


def dump(name: str, payload: Any) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path
