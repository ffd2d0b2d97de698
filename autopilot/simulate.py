"""Run a scenario: the subscription it describes on the local emulator, the app on the local Functions host, and
the scenario's timeline of actions on the virtual clock.

The app runs unchanged: it sees only its settings (emulator endpoints, Azurite, a fresh table prefix) and
the events and timers the local host delivers. People act through real SDK clients with their own
identity (``EmulatorCredential(name=..., appid=...)``), so their writes raise Event Grid events and hit
management locks exactly as in Azure; "the world" (regional capacity, quotas, failures) changes through
the emulator's scenario knobs. A :class:`Recorder` samples every pool at every step for the report and
the chart.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from autopilot.scenario import (
    BATCH_RG,
    DEFAULT_REGION,
    IMAGES_RG,
    Action,
    Scenario,
    ScenarioError,
    format_duration,
    format_offset,
    identity_of,
    parse_duration,
)
from shared.core.durations import format_iso_duration

log = logging.getLogger("autopilot.simulate")

DEFAULT_IMAGE = "Canonical:ubuntu-24_04-lts:server"
DEFAULT_NODE_AGENT = "batch.node.ubuntu 24.04"

CAPACITY_FIELDS = {
    "dedicatedAvailable": "dedicated_available", "spotAvailable": "low_priority_available",
    "dedicatedPerMinute": "dedicated_per_minute", "spotPerMinute": "low_priority_per_minute",
    "maxNodesPerResize": "max_nodes_per_resize", "dedicatedFailureRate": "dedicated_failure_rate",
    "spotFailureRate": "low_priority_failure_rate", "internalErrorShare": "internal_error_share",
    "rateJitter": "rate_jitter",
}
RESIZE_PATH = re.compile(r"/batch/(?P<account>[^/]+)/pools/(?P<pool>[^/]+)/resize$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# What happened
# ---------------------------------------------------------------------------------------------


@dataclass
class TimelineEntry:
    time: datetime
    kind: str  # action | alert | stall | pool | image | lock | mark | host
    text: str
    pool: str | None = None  # "account/pool" when the entry is about one pool
    severity: str | None = None
    ok: bool = True


@dataclass
class ActionResult:
    action: Action
    time: datetime
    by: str | None
    target: str | None
    outcome: str  # "ok" or an error code
    ok: bool  # as the scenario expected
    detail: str

    def describe(self) -> str:
        who = f" as {self.by}" if self.by else ""
        what = f" {self.target}" if self.target else ""
        expected = self.action.spec.get("expectOutcome")
        verdict = self.outcome if expected is None or self.ok else f"{self.outcome} (expected {expected})"
        # An outcome the scenario expected needs no explanation; anything else shows what Azure (or the emulator) said.
        tail = (f": {self.detail[:200]}" if self.detail and self.outcome != "ok"
                and (expected is None or not self.ok) else "")
        return f"{self.action.kind}{what}{who} → {verdict}{tail}"


@dataclass
class PoolSeries:
    key: str  # "account/pool"
    account_id: str
    times: list[datetime] = field(default_factory=list)
    current_dedicated: list[int | None] = field(default_factory=list)
    current_spot: list[int | None] = field(default_factory=list)
    target_dedicated: list[int | None] = field(default_factory=list)
    target_spot: list[int | None] = field(default_factory=list)
    desired_dedicated: list[int | None] = field(default_factory=list)
    desired_spot: list[int | None] = field(default_factory=list)
    usable: list[int | None] = field(default_factory=list)  # idle or running nodes (dedicated + Spot)
    first_seen: datetime | None = None
    deleted_at: datetime | None = None
    first_reached: datetime | None = None
    reached_since: datetime | None = None  # start of the current stretch at the desired counts
    last_transition: datetime | None = None
    last_target: tuple[int, int] | None = None
    failures: list[tuple[datetime, str]] = field(default_factory=list)
    # every resize Batch started on the pool, by its number: (when, dedicated, Spot asked for). A resize needs a steady
    # pool, so two never start within one step and sampling each step sees them all.
    resizes: dict[int, tuple[datetime, int, int]] = field(default_factory=dict)
    # rollout steps seen on the pool itself (the image changed in place, held for a drain, retired): (when, label)
    rollout: list[tuple[datetime, str]] = field(default_factory=list)
    last_image: str | None = None
    last_hold: str | None = None


class Recorder:
    """Samples the emulated subscription at every step (in-process reads: nothing shows in the request log)."""

    def __init__(self, local: Any, scenario: Scenario) -> None:
        self.local = local
        self.scenario = scenario
        self.times: list[datetime] = []
        self.pools: dict[str, PoolSeries] = {}
        self.timeline: list[TimelineEntry] = []
        self._images: dict[str, str] = {}  # key -> "managed image"/"gallery image version" + provisioning state
        self._image_ids: dict[str, str] = {}  # key -> the id as Azure spells it
        self._locks: dict[tuple[str, str], Any] = {}

    # --------------------------------------------------------------------------------------
    def sample(self, now: datetime) -> None:
        from shared.watch.pool_policy import PoolIntentError, PoolView, desired_target

        emulator = self.local.emulator
        self.times.append(now)
        seen: set[str] = set()
        for account in list(emulator.batch.accounts.values()):
            for pool in emulator.batch.list_pools(account.name):
                key = f"{account.name}/{pool.id}"
                seen.add(key)
                series = self.pools.get(key)
                if series is None:
                    series = self.pools[key] = PoolSeries(key, account.id)
                    self._pad(series)
                    series.first_seen = now
                    self.add(now, "pool", f"pool {key} created ({pool.spec.vm_size}, target {pool.target['dedicated']} "
                                          "dedicated / "
                                          f"{pool.target['low']} Spot)", pool=key)
                view = PoolView(account_id=account.id, pool_id=pool.id, allocation_state=pool.allocation_state,
                                current_dedicated=pool.current["dedicated"], current_spot=pool.current["low"],
                                target_dedicated=pool.target["dedicated"], target_spot=pool.target["low"],
                                metadata=pool.metadata)
                try:
                    desired = desired_target(view, now)
                except PoolIntentError:
                    desired = None
                series.times.append(now)
                series.current_dedicated.append(pool.current["dedicated"])
                series.current_spot.append(pool.current["low"])
                series.target_dedicated.append(pool.target["dedicated"])
                series.target_spot.append(pool.target["low"])
                series.desired_dedicated.append(desired.dedicated if desired else None)
                series.desired_spot.append(desired.spot if desired else None)
                op = pool.op
                if op is not None and op.number not in series.resizes:
                    series.resizes[op.number] = (op.start, op.target["dedicated"], op.target["low"])
                series.usable.append(sum(row.get("idle", 0) + row.get("running", 0)
                                         for row in emulator.batch.node_counts(pool).values()))
                self._transitions(series, pool, desired, now)
                self._rollout_steps(series, pool, now)
        for key, series in self.pools.items():
            if key not in seen:
                if series.deleted_at is None:
                    series.deleted_at = now
                    series.reached_since = None
                    self.add(now, "pool", f"pool {key} deleted", pool=key)
                series.times.append(now)
                for values in (series.current_dedicated, series.current_spot, series.target_dedicated,
                               series.target_spot,
                               series.desired_dedicated, series.desired_spot, series.usable):
                    values.append(None)
        self.observe_resources(now)

    def observe_resources(self, now: datetime) -> None:
        """Note images and locks that appeared, changed or went since the last look."""
        self._watch_images(now)
        self._watch_locks(now)

    def _pad(self, series: PoolSeries) -> None:
        for t in self.times[:-1]:
            series.times.append(t)
            for values in (series.current_dedicated, series.current_spot, series.target_dedicated, series.target_spot,
                           series.desired_dedicated, series.desired_spot, series.usable):
                values.append(None)

    def _rollout_steps(self, series: PoolSeries, pool: Any, now: datetime) -> None:
        """The image a pool references changing (an in-place rollout's Pool - Update), and the rollout's hold on it."""
        from shared.lifecycle.rollout import HOLD, hold_of

        image = pool.image_id or None
        if series.last_image is not None and image and image.lower() != series.last_image.lower():
            version = image.rstrip("/").rsplit("/", 1)[-1]
            series.rollout.append((now, f"patched → {version}"))
            self.add(now, "pool", f"pool {series.key} image changed in place to {_short_id(image)}", pool=series.key)
        series.last_image = image or series.last_image
        hold = hold_of(pool.metadata)
        if hold != series.last_hold and hold is not None:
            label = {"drain": "draining", "retired": "retired"}[hold]
            series.rollout.append((now, label))
            self.add(now, "pool", f"pool {series.key} {label} by the rollout ({HOLD}={hold}): it goes to 0 nodes with "
                                  "taskcompletion", pool=series.key)
        series.last_hold = hold

    def _transitions(self, series: PoolSeries, pool: Any, desired: Any, now: datetime) -> None:
        target = (pool.target["dedicated"], pool.target["low"])
        if series.last_target is not None and target != series.last_target:
            self.add(now, "pool", f"pool {series.key} resizing to {target[0]} dedicated / {target[1]} Spot "
                                  f"(from {pool.current['dedicated']} / {pool.current['low']})", pool=series.key)
        series.last_target = target
        transition = pool.allocation_state_time
        if pool.allocation_state == "steady" and transition is not None:
            if transition != series.last_transition and pool.resize_errors:  # a resize just ended short
                codes = ", ".join(_error_label(e) for e in pool.resize_errors)
                series.failures.append((transition, codes))
                self.add(transition, "pool", f"pool {series.key} resize ended short at {pool.current['dedicated']} / "
                                             f"{pool.current['low']}: "
                                             f"{codes}", pool=series.key, severity="warning")
            series.last_transition = transition
        at = (desired is not None and pool.current["dedicated"] == desired.dedicated
              and pool.current["low"] == desired.spot)
        if at and series.reached_since is None:
            series.reached_since = now
            if series.first_reached is None:
                series.first_reached = now
            if desired.total > 0:
                self.add(now, "pool", f"pool {series.key} at its desired target: {desired.dedicated} dedicated / "
                         f"{desired.spot} Spot", pool=series.key)
        elif not at:
            series.reached_since = None

    def _watch_images(self, now: datetime) -> None:
        compute = self.local.emulator.compute
        current: dict[str, str] = {}
        names: dict[str, str] = {}
        for kind, store in (("managed image", compute.images),
                            ("gallery image version", compute.gallery_image_versions)):
            for key, resource in list(store.items()):
                current[key] = f"{kind}|{resource.provisioning_state}"
                names[key] = resource.id
        for key, value in current.items():
            kind, state = value.split("|")
            before = self._images.get(key)
            if before is None:
                self.add(now, "image",
                         f"{kind} {_short_id(names[key])} "
                         f"{'requested' if state in ('Creating', 'Updating') else state.lower()}")
            elif before != value:
                self.add(now, "image", f"{kind} {_short_id(names[key])} {state.lower()}",
                         severity="warning" if state == "Failed" else None)
        for key, value in self._images.items():
            if key not in current:
                self.add(now, "image", f"{value.split('|')[0]} {_short_id(self._image_ids.get(key, key))} deleted",
                         severity="warning")
        self._images = current
        self._image_ids.update(names)

    def _watch_locks(self, now: datetime) -> None:
        from shared.guard.lock_plan import LOCK_NAME

        current = {(lock.scope.lower(), lock.name.lower()): lock for lock in self.local.emulator.locks.all_locks()}
        for k, lock in current.items():
            if k not in self._locks:
                owner = "the app's" if lock.name.lower() == LOCK_NAME else f"{lock.name!r}"
                self.add(now, "lock", f"{owner} {lock.level} lock placed on {_short_id(lock.scope)}")
        for k, lock in self._locks.items():
            if k not in current:
                owner = "the app's" if lock.name.lower() == LOCK_NAME else f"{lock.name!r}"
                self.add(now, "lock", f"{owner} lock on {_short_id(lock.scope)} removed")
        self._locks = current

    def add(self, when: datetime, kind: str, text: str, *, pool: str | None = None, severity: str | None = None,
            ok: bool = True) -> None:
        self.timeline.append(TimelineEntry(when, kind, text, pool, severity, ok))


def _error_label(error: Any) -> str:
    reason = next((v for k, v in error.values if k.lower() == "reason"), None)
    return f"{error.code} ({reason})" if reason else error.code


def _short_id(resource_id: str) -> str:
    """The readable tail of an ARM id: 'galleries/autopilotGallery/images/gpu-render/versions/1.0.0'."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "providers" in lowered:
        i = len(lowered) - 1 - lowered[::-1].index("providers")
        return "/".join(parts[i + 2:])
    return resource_id


# ---------------------------------------------------------------------------------------------
# The initial state
# ---------------------------------------------------------------------------------------------


def local_azure_for(scenario: Scenario, azurite_connection: str, *, tls: Any = None) -> Any:
    """A LocalAzure configured as the scenario says (families, settings, seed, start), before its initial state."""
    from autopilot.local import LocalAzure

    return LocalAzure(azurite_connection=azurite_connection, seed=scenario.seed, start=scenario.start,
                      families=scenario.families,
                      accounts=scenario.watched_accounts() or None, settings=scenario.settings, tls=tls)


def apply_initial_state(local: Any, scenario: Scenario) -> None:
    """Put the subscription in the state the scenario starts from. No Event Grid events: this is what already
    existed."""
    raw = scenario.raw
    emulator = local.emulator
    sub = scenario.subscription_id
    compute, batch = emulator.compute, emulator.batch
    compute.retry_after_seconds = 0  # nothing in a simulation should wait in real time for an SDK poller

    timings = raw.get("timings") or {}
    for key, attr in (("imageCreate", "image_create_duration"), ("galleryVersionBase", "version_base_duration"),
                      ("galleryVersionPerExtraReplica", "version_per_extra_replica"),
                      ("galleryVersionPerRemoteRegion", "version_per_remote_region")):
        if key in timings:
            setattr(compute, attr, parse_duration(timings[key]))
    if "poolShrink" in timings:
        batch.timings.shrink = parse_duration(timings["poolShrink"])
    if "poolDelete" in timings:
        batch.timings.pool_delete = parse_duration(timings["poolDelete"])
    for size in raw.get("vmSizes") or []:
        batch.register_vm_size(size["name"], size["cores"], size["family"], hyperv_gen2=size.get("hyperVGen2", True))
    for entry in raw.get("capacity") or []:
        configure_capacity(local, entry)
    for group in raw.get("resourceGroups") or []:
        emulator.resources.put_group(sub, group["name"], group.get("location", DEFAULT_REGION))
    for account in scenario.accounts:
        props: dict[str, Any] = {}
        for key, prop in (("poolAllocationMode", "pool_allocation_mode"), ("dedicatedCores", "dedicated_core_quota"),
                          ("spotCores", "low_priority_core_quota"), ("pools", "pool_quota"),
                          ("perVmFamily", "dedicated_core_quota_per_vm_family"),
                          ("perVmFamilyEnforced", "dedicated_core_quota_per_vm_family_enforced")):
            if key in account:
                props[prop] = account[key]
        local.add_batch_account(account["name"], resource_group=account.get("resourceGroup", BATCH_RG),
                                location=account.get("location", DEFAULT_REGION), **props)
    for gallery in raw.get("galleries") or []:
        rg = gallery.get("resourceGroup", IMAGES_RG)
        _ensure_group(local, rg, gallery.get("location", DEFAULT_REGION))
        compute.create_gallery(sub, rg, gallery["name"], location=gallery.get("location", DEFAULT_REGION))
        for image in gallery.get("images") or []:
            compute.create_gallery_image(sub, rg, gallery["name"], image["name"], os_type=image.get("osType", "Linux"),
                                         os_state=image.get("osState", "Generalized"),
                                         hyper_v_generation=image.get("hyperVGeneration", "V2"))
    for snap in raw.get("snapshots") or []:
        rg = snap.get("resourceGroup", IMAGES_RG)
        location = snap.get("location", DEFAULT_REGION)
        disk = _prepared_disk(local, f"{snap['name']}-disk", rg, location, snap.get("image"), snap.get("dataDiskGb"))
        compute.create_snapshot(sub, rg, snap["name"], source_resource_id=disk, location=location,
                                tags=dict(snap.get("tags") or {}))
    for snapshot_set in raw.get("snapshotSets") or []:
        rg = snapshot_set.get("resourceGroup", IMAGES_RG)
        location = snapshot_set.get("location", DEFAULT_REGION)
        prefix = f"{snapshot_set['family']}-{snapshot_set['version'].replace('.', '-')}"
        luns = list(snapshot_set.get("dataLuns") or [])
        for role, tags in snapshot_set_tags(snapshot_set["family"], snapshot_set["version"], luns).items():
            name = f"{prefix}-os" if role == "os" else f"{prefix}-data{role}"
            disk = _prepared_disk(local, f"{name}-disk", rg, location,
                                  snapshot_set.get("image") if role == "os" else None,
                                  None if role == "os" else 128)
            compute.create_snapshot(sub, rg, name, source_resource_id=disk, location=location, tags=tags)
    for image in raw.get("managedImages") or []:
        rg = image.get("resourceGroup", IMAGES_RG)
        data = {int(lun): _compute_ref(scenario, ref, rg, "snapshots")
                for lun, ref in (image.get("dataSnapshots") or {}).items()}
        compute.create_image(sub, rg, image["name"],
                             os_snapshot_id=_compute_ref(scenario, image["osSnapshot"], rg, "snapshots"),
                             data_snapshot_ids=data, hyper_v_generation=image.get("hyperVGeneration"), instant=True)
    for gallery in raw.get("galleries") or []:
        rg = gallery.get("resourceGroup", IMAGES_RG)
        for version in gallery.get("versions") or []:
            data = {int(lun): _compute_ref(scenario, ref, rg, "snapshots")
                    for lun, ref in (version.get("dataSnapshots") or {}).items()}
            compute.create_gallery_image_version(
                sub, rg, gallery["name"], version["image"], version["name"],
                source_image_id=_compute_ref(scenario, version["managedImage"], rg, "images")
                if version.get("managedImage") else None,
                os_snapshot_id=_compute_ref(scenario, version["osSnapshot"], rg, "snapshots")
                if version.get("osSnapshot") else None,
                data_snapshot_ids=data, target_regions=version.get("regions"), instant=True,
                end_of_life=_date_time(version["endOfLifeDate"]) if version.get("endOfLifeDate") else None)
    for pool in raw.get("pools") or []:
        metadata = dict(pool.get("metadata") or {})
        image_id = scenario.resource(pool["image"])
        if pool.get("managed", True):
            metadata["autopilot.managed"] = "true"
            metadata.setdefault("autopilot.imageId", image_id)
        if "desiredDedicated" in pool:
            metadata["autopilot.desiredDedicated"] = str(pool["desiredDedicated"])
        if "desiredSpot" in pool:
            metadata["autopilot.desiredSpot"] = str(pool["desiredSpot"])
        if pool.get("schedule"):
            metadata["autopilot.schedule"] = json.dumps(pool["schedule"], separators=(",", ":"))
        fields: dict[str, Any] = {"vm_size": pool["vmSize"],
                                  "node_agent_sku_id": pool.get("nodeAgentSkuId", DEFAULT_NODE_AGENT),
                                  "target_dedicated": pool.get("dedicated", 0),
                                  "target_low_priority": pool.get("spot", 0)}
        if "resizeTimeout" in pool:
            fields["resize_timeout"] = parse_duration(pool["resizeTimeout"])
        if pool.get("autoScale"):  # Batch sizes an autoscale pool with its formula (the app never resizes it)
            fields["auto_scale_formula"] = pool["autoScale"]["formula"]
            fields["auto_scale_evaluation_interval"] = parse_duration(
                pool["autoScale"].get("evaluationInterval", "15m"))
        if pool.get("inboundNatPools"):
            fields["network_configuration"] = {"natPools": [{**nat, "protocol": str(nat.get("protocol", "tcp")).lower()}
                                                            for nat in pool["inboundNatPools"]]}
        # A pool of the initial state predates the run: one on a managed image was created with an API version that took
        # managed images (up to 2019-08-01); the app itself can no longer create such pools.
        api_version = "2019-08-01" if "/providers/microsoft.compute/images/" in image_id.lower() else None
        batch.create_pool(pool["account"], pool["id"], image_id=image_id, metadata=metadata, api_version=api_version,
                          **fields)


def _date_time(text: str) -> datetime:
    """An ISO 8601 date-time with a time zone (the schema checks the shape)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def initial_state_error(scenario: Scenario, exc: Exception) -> ScenarioError:
    """What the emulator said when the initial state could not be created, as a scenario problem (exit 2)."""
    from emulator.core import AzureError

    text = " ".join(str(exc).split()) or "the emulator refused it without a message"
    if isinstance(exc, AzureError):
        body = exc.body()
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        message = error.get("message")
        text = f"{error.get('code')}: {message.get('value') if isinstance(message, dict) else message}"
    return ScenarioError(scenario.source, [f"$: the initial state cannot be created: {text}"])


def snapshot_set_tags(family: str, version: str, data_luns: list[int]) -> dict[Any, dict[str, str]]:
    """The tags of each snapshot of a set (role "os" or the LUN), as the image pipeline expects them."""
    count = str(1 + len(data_luns))
    out: dict[Any, dict[str, str]] = {"os": {"autopilot.family": family, "autopilot.version": version,
                                             "autopilot.disk": "os", "autopilot.diskCount": count}}
    for lun in data_luns:
        out[lun] = {"autopilot.family": family, "autopilot.version": version, "autopilot.disk": str(lun),
                    "autopilot.diskCount": count}
    return out


def configure_capacity(local: Any, entry: dict[str, Any]) -> None:
    changes = {CAPACITY_FIELDS[k]: v for k, v in entry.items() if k in CAPACITY_FIELDS}
    local.emulator.batch.configure_capacity(entry.get("region"), entry.get("vmSize"), **changes)


def _ensure_group(local: Any, name: str, location: str) -> None:
    from emulator.core import AzureError

    try:
        local.emulator.resources.require_group(local.subscription_id, name)
    except AzureError:
        local.emulator.resources.put_group(local.subscription_id, name, location)


def _prepared_disk(local: Any, name: str, rg: str, location: str, image: str | None, data_disk_gb: int | None) -> str:
    _ensure_group(local, rg, location)
    if data_disk_gb is not None:
        return local.add_prepared_disk(name, resource_group=rg, location=location, data_disk_gb=data_disk_gb)
    return local.add_prepared_disk(name, image=image or DEFAULT_IMAGE, resource_group=rg, location=location)


def _compute_ref(scenario: Scenario, ref: str, rg: str, collection: str) -> str:
    """A snapshot / image given by name (in ``rg``) or by id."""
    if ref.startswith("/"):
        return scenario.resource(ref)
    return (f"/subscriptions/{scenario.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute"
            f"/{collection}/{ref}")


# ---------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------


class ActionRunner:
    """Carries out timeline actions: people through SDK clients with their own identity, the world through the
    emulator."""

    def __init__(self, local: Any, scenario: Scenario) -> None:
        self.local = local
        self.scenario = scenario
        self._clients: dict[tuple[str, str], Any] = {}
        self._resource_clients: dict[tuple[str, str, str], Any] = {}

    def close(self) -> None:
        for clients in [*self._clients.values(), *self._resource_clients.values()]:
            clients.close()
        self._clients.clear()
        self._resource_clients.clear()

    def clients(self, identity: dict[str, str]) -> Any:
        from shared.resources.clients import AzureClients, EmulatorCredential

        key = (identity["name"], identity["appid"])
        if key not in self._clients:
            self._clients[key] = AzureClients(self.local.settings,
                                              credential=EmulatorCredential(
                                                  name=identity["name"], appid=identity["appid"]))
        return self._clients[key]

    def run(self, action: Action) -> ActionResult:
        from azure.core.exceptions import HttpResponseError

        spec = action.spec
        now = self.local.emulator.now()
        people = action.kind in PERSON_ACTIONS
        identity = identity_of(spec.get("as")) if people else None
        target = self._target(action)
        try:
            detail = getattr(self, "_" + _snake(action.kind))(spec, identity)
            outcome = "ok"
        except HttpResponseError as exc:
            outcome = _error_code(exc)
            detail = _error_message(exc)
            if not people:
                raise
        expected = spec.get("expectOutcome")
        ok = outcome == expected if expected is not None else True
        return ActionResult(action, now, identity["name"] if identity else None, target, outcome, ok, detail or "")

    def _target(self, action: Action) -> str | None:
        spec = action.spec
        if "pool" in spec:
            return spec["pool"]
        if "resource" in spec:
            return _short_id(self.scenario.resource(spec["resource"]))
        if "image" in spec and action.kind == "setImageHealth":
            return _short_id(self.scenario.resource(spec["image"]))
        if action.kind == "createSnapshotSet":
            return f"{spec['family']} {spec['version']}"
        if action.kind == "createSnapshot":
            return spec["name"]
        if action.kind in ("setCapacity", "setFailureRates"):
            return "/".join(x for x in (spec.get("region"), spec.get("vmSize")) if x) or "default capacity"
        if action.kind == "setQuotas":
            return spec["account"]
        if action.kind == "runTimer":
            return spec["function"]
        if action.kind == "setFamily":
            return f"family {spec['family']}"
        return None

    # --- people ---------------------------------------------------------------------------
    def _create_snapshot_set(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        rg = spec.get("resourceGroup", IMAGES_RG)
        location = spec.get("location", DEFAULT_REGION)
        prefix = spec.get("prefix") or f"{spec['family']}-{spec['version'].replace('.', '-')}"
        luns = list(spec.get("dataLuns") or [])
        omitted = set(spec.get("omitLuns") or [])
        made = []
        for role, tags in snapshot_set_tags(spec["family"], spec["version"], luns).items():
            if role != "os" and role in omitted:
                continue
            name = f"{prefix}-os" if role == "os" else f"{prefix}-data{role}"
            disk = _prepared_disk(self.local, f"{name}-disk", rg, location, spec.get("image") if role == "os" else None,
                                  None if role == "os" else 128)
            self._snapshot(identity, rg, name, disk, location, tags)
            made.append(name)
        return "snapshots " + ", ".join(made)

    def _create_snapshot(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        rg = spec.get("resourceGroup", IMAGES_RG)
        location = spec.get("location", DEFAULT_REGION)
        disk = _prepared_disk(self.local, f"{spec['name']}-disk", rg, location, spec.get("image"),
                              spec.get("dataDiskGb"))
        self._snapshot(identity, rg, spec["name"], disk, location, dict(spec.get("tags") or {}))
        return f"snapshot {spec['name']}"

    def _snapshot(self, identity: dict[str, str], rg: str, name: str, disk_id: str, location: str,
                  tags: dict[str, str]) -> None:
        body = {"location": location, "tags": tags,
                "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}}}
        self.clients(identity).compute.snapshots.begin_create_or_update(rg, name, body).result()

    def _delete_resource(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        from shared.core.resource_ids import ResourceId

        rid = ResourceId.parse(self.scenario.resource(spec["resource"]))
        clients = self.clients(identity)
        kind = rid.resource_type.lower()
        rg = rid.resource_group
        if kind == "microsoft.compute/snapshots":
            clients.compute.snapshots.begin_delete(rg, rid.name, polling=False)
        elif kind == "microsoft.compute/disks":
            clients.compute.disks.begin_delete(rg, rid.name, polling=False)
        elif kind == "microsoft.compute/images":
            clients.compute.images.begin_delete(rg, rid.name, polling=False)
        elif kind == "microsoft.compute/galleries/images/versions":
            clients.compute.gallery_image_versions.begin_delete(rg, *rid.names, polling=False)
        elif kind == "microsoft.compute/galleries/images":
            clients.compute.gallery_images.begin_delete(rg, *rid.names, polling=False)
        elif kind == "microsoft.compute/galleries":
            clients.compute.galleries.begin_delete(rg, rid.name, polling=False)
        elif kind == "microsoft.batch/batchaccounts/pools":
            clients.batch_management.pool.begin_delete(rg, rid.names[0], rid.names[1], polling=False)
        else:  # the loader refuses other types; this is a bug guard
            raise ValueError(f"cannot delete {rid.resource_type}")
        return "deleted"

    def _put_lock(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        from shared.core.resource_ids import ResourceId

        rid = ResourceId.parse(self.scenario.resource(spec["resource"]))
        parent = "/".join(f"{t}/{n}" for t, n in zip(rid.types[:-1], rid.names[:-1], strict=True))
        lock = {"properties": {"level": spec.get("level", "CanNotDelete"),
                               "notes": spec.get("notes", f"placed by {identity['name']}")}}
        self.clients(identity).locks.management_locks.create_or_update_at_resource_level(
            rid.resource_group, rid.namespace, parent, rid.types[-1], rid.name, spec.get("name", "team-lock"), lock)
        return f"{spec.get('level', 'CanNotDelete')} lock {spec.get('name', 'team-lock')!r}"

    def _remove_lock(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        from shared.guard.lock_plan import LOCK_NAME
        from shared.resources.locks import delete_lock

        name = spec.get("name", LOCK_NAME)
        delete_lock(self.clients(identity), self.scenario.resource(spec["resource"]), name)
        return f"lock {name!r} removed"

    def _pool_parts(self, ref: str) -> tuple[str, str, str]:
        account, pool_id = ref.split("/", 1)
        group = next((a.get("resourceGroup", BATCH_RG) for a in self.scenario.accounts if a["name"] == account),
                     BATCH_RG)
        return group, account, pool_id

    def _update_metadata(self, spec: dict[str, Any], identity: dict[str, str], changes: dict[str, str | None]) -> str:
        group, account, pool_id = self._pool_parts(spec["pool"])
        pools = self.clients(identity).batch_management.pool
        current = pools.get(group, account, pool_id)
        metadata = {m.name: m.value for m in current.metadata or []}
        for name, value in changes.items():
            if value is None:
                metadata.pop(name, None)
            else:
                metadata[name] = value
        pools.update(group, account, pool_id,
                     {"properties": {"metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())]}})
        return ", ".join(f"{k}={v}" if v is not None else f"{k} removed" for k, v in changes.items())

    def _set_pool_target(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        changes: dict[str, str | None] = {}
        if "dedicated" in spec:
            changes["autopilot.desiredDedicated"] = str(spec["dedicated"])
        if "spot" in spec:
            changes["autopilot.desiredSpot"] = str(spec["spot"])
        return self._update_metadata(spec, identity, changes)

    def _set_pool_schedule(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        value = json.dumps(spec["schedule"], separators=(",", ":")) if spec["schedule"] is not None else None
        return self._update_metadata(spec, identity, {"autopilot.schedule": value})

    def _set_pool_metadata(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        return self._update_metadata(spec, identity, dict(spec["metadata"]))

    def _resize_pool(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        group, account, pool_id = self._pool_parts(spec["pool"])
        pools = self.clients(identity).batch_management.pool
        current = pools.get(group, account, pool_id)
        fixed = (current.scale_settings.fixed_scale if current.scale_settings else None)
        dedicated = spec.get("dedicated", fixed.target_dedicated_nodes if fixed else 0)
        spot = spec.get("spot", fixed.target_low_priority_nodes if fixed else 0)
        scale: dict[str, Any] = {"targetDedicatedNodes": dedicated, "targetLowPriorityNodes": spot}
        if "resizeTimeout" in spec:
            minutes = int(parse_duration(spec["resizeTimeout"]).total_seconds() // 60)
            scale["resizeTimeout"] = format_iso_duration(timedelta(minutes=minutes))
        pools.update(group, account, pool_id, {"properties": {"scaleSettings": {"fixedScale": scale}}})
        return f"resize to {dedicated} dedicated / {spot} Spot"

    def _stop_resize(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        group, account, pool_id = self._pool_parts(spec["pool"])
        self.clients(identity).batch_management.pool.stop_resize(group, account, pool_id)
        return "resize stopped"

    def _delete_pool(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        group, account, pool_id = self._pool_parts(spec["pool"])
        self.clients(identity).batch_management.pool.begin_delete(group, account, pool_id, polling=False)
        return "deleted"

    # --- the world ------------------------------------------------------------------------
    def _set_capacity(self, spec: dict[str, Any], identity: None) -> str:
        configure_capacity(self.local, spec)
        return ", ".join(f"{k}={v}" for k, v in spec.items() if k in CAPACITY_FIELDS)

    def _set_failure_rates(self, spec: dict[str, Any], identity: None) -> str:
        self.local.emulator.batch.set_failure_rates(spec.get("region"), spec.get("vmSize"),
                                                    dedicated=spec.get("dedicated"),
                                                    low_priority=spec.get("spot"),
                                                    internal_error_share=spec.get("internalErrorShare"))
        return ", ".join(f"{k}={spec[k]}" for k in ("dedicated", "spot", "internalErrorShare") if k in spec)

    def _set_quotas(self, spec: dict[str, Any], identity: None) -> str:
        self.local.emulator.batch.set_account_quotas(spec["account"], dedicated_cores=spec.get("dedicatedCores"),
                                                     low_priority_cores=spec.get("spotCores"),
                                                     pool_quota=spec.get("pools"),
                                                     per_vm_family=spec.get("perVmFamily"),
                                                     per_vm_family_enforced=spec.get("perVmFamilyEnforced"))
        return ", ".join(f"{k}={spec[k]}" for k in ("dedicatedCores", "spotCores", "pools", "perVmFamily",
                                                    "perVmFamilyEnforced") if k in spec)

    def _set_image_health(self, spec: dict[str, Any], identity: None) -> str:
        image = self.scenario.resource(spec["image"])
        self.local.emulator.batch.set_image_health(image, start_task_failed_share=spec.get("startTaskFailedShare", 0.0),
                                                   unusable_share=spec.get("unusableShare", 0.0))
        return ", ".join(f"{k}={spec[k]}" for k in ("startTaskFailedShare", "unusableShare") if k in spec) or "healthy"

    def _inject_pool_failure(self, spec: dict[str, Any], identity: None) -> str:
        account, pool_id = spec["pool"].split("/", 1)
        count = spec.get("count", 1)
        self.local.emulator.batch.inject_failure(account, pool_id, spec["kind"], count=count, code=spec.get("code"),
                                                 message=spec.get("message"))
        return (f"{spec['kind']} on the next {count} growing resize(s)" if count else f"{spec['kind']} on every "
                "growing resize")

    def _clear_pool_failures(self, spec: dict[str, Any], identity: None) -> str:
        account, pool_id = spec["pool"].split("/", 1)
        self.local.emulator.batch.clear_failures(account, pool_id)
        return "cleared"

    def _add_fault(self, spec: dict[str, Any], identity: None) -> str:
        from emulator.faults import FaultRule

        rule = FaultRule(kind=spec["kind"], rate=spec.get("rate", 1.0), path_pattern=spec.get("pathPattern", ".*"),
                         methods=frozenset(spec.get("methods") or ("GET", "PUT", "PATCH", "POST", "DELETE")),
                         status=spec.get("status", 503),
                         retry_after_s=spec.get("retryAfterSeconds", 1), latency_s=spec.get("latencySeconds", 0.0),
                         plane=spec.get("plane"),
                         max_count=spec.get("maxCount"))
        self.local.emulator.faults.add(rule)
        return (f"{rule.kind} on {rule.rate:.0%} of calls matching {rule.path_pattern!r}"
                + (f" (at most {rule.max_count})" if rule.max_count else ""))

    def _clear_faults(self, spec: dict[str, Any], identity: None) -> str:
        self.local.emulator.faults.clear()
        return "cleared"

    def _run_timer(self, spec: dict[str, Any], identity: None) -> str:
        ok = self.local.host.fire_timer(spec["function"])
        if not ok:
            detail = self.local.host.invocations[-1].detail if self.local.host.invocations else "failed"
            raise RuntimeError(f"the {spec['function']} invocation failed: {detail}")
        return "ran"

    def _tag_resource(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        """The Tags API, as the portal's Tags blade and az tag update|delete use it (azure-mgmt-resource
        TagsOperations).

        Merge | Replace | Delete (the given names, or name/value pairs); Delete without ``tags`` removes every tag
        (a DELETE of the tags resource, az tag delete --resource-id)."""
        from azure.mgmt.resource.resources import ResourceManagementClient

        resource_id = self.scenario.resource(spec["resource"])
        clients = self.clients(identity)
        key = (identity["name"], identity["appid"], "tags")
        if key not in self._resource_clients:
            self._resource_clients[key] = ResourceManagementClient(clients.credential, self.local.subscription_id,
                                                                   **clients._arm_kwargs())
        tags_client = self._resource_clients[key].tags
        operation = spec["operation"]
        if operation == "Delete" and "tags" not in spec:
            tags_client.begin_delete_at_scope(resource_id).result()
            return "removed every tag"
        tags_client.begin_update_at_scope(resource_id, {"operation": operation,
                                                        "properties": {"tags": dict(spec.get("tags") or {})}}).result()
        return f"tags {operation.lower()}d" if operation != "Merge" else "tags merged"

    def _run_tasks(self, spec: dict[str, Any], identity: None) -> str:
        account, pool_id = spec["pool"].split("/", 1)
        started = self.local.emulator.batch.run_tasks(account, pool_id, spec["nodes"], parse_duration(spec["duration"]))
        return f"{started} node(s) run a task for {spec['duration']}"

    def _set_family(self, spec: dict[str, Any], identity: None) -> str:
        """The team changes the app's families setting (AUTOPILOT_FAMILIES); the app reads it from its next
        invocation."""
        from autopilot.scenario import families_with

        document = families_with(self.scenario, spec["family"], spec["config"])
        self.scenario.families = document
        self.local.set_families(document)
        config = spec["config"]
        shown = [f"{k}={json.dumps(config[k], separators=(',', ':'))}" for k in ("rollout", "retention", "pinVersion")
                 if k in config]
        return "configuration replaced" + (f" ({', '.join(shown)})" if shown else "")

    def _mark(self, spec: dict[str, Any], identity: None) -> str:
        return spec["text"]


PERSON_ACTIONS = frozenset({"createSnapshotSet", "createSnapshot", "deleteResource", "tagResource", "putLock",
                            "removeLock", "setPoolTarget",
                            "setPoolSchedule", "setPoolMetadata", "resizePool", "stopResize", "deletePool"})


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _error_code(exc: Any) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except Exception:  # not JSON
        body = None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner.get("code"), str):
            return inner["code"]
    return f"HTTP{getattr(exc, 'status_code', '') or ''}"


def _error_code_of(exc: BaseException) -> str:
    """What an action that could not apply ended with: the Azure error code if it carries one, else ``failed``."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    if getattr(exc, "response", None) is not None or getattr(exc, "error", None) is not None:
        return _error_code(exc)
    return "failed"


def _error_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or str(exc)
    return " ".join(str(message).split())[:300]


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulationResult:
    scenario: Scenario
    report: dict[str, Any]
    recorder: Recorder
    actions: list[ActionResult]
    wall_seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.report["result"]["ok"])


class Simulation:
    """One scenario run. Use as a context manager: the emulator server and SDK clients are closed on exit."""

    def __init__(self, scenario: Scenario, azurite_connection: str, *, tls: Any = None,
                 on_progress: Callable[[Simulation, datetime], None] | None = None) -> None:
        self.scenario = scenario
        self.local = local_azure_for(scenario, azurite_connection, tls=tls)
        try:
            apply_initial_state(self.local, scenario)
        except Exception as exc:
            self.local.close()
            raise initial_state_error(scenario, exc) from exc
        self.recorder = Recorder(self.local, scenario)
        self.runner = ActionRunner(self.local, scenario)
        self.results: list[ActionResult] = []
        self.on_progress = on_progress

    def close(self) -> None:
        self.runner.close()
        self.local.close()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def elapsed(self, now: datetime | None = None) -> timedelta:
        return (now or self.local.emulator.now()) - self.scenario.start

    def run(self) -> SimulationResult:
        from autopilot.report import build_report

        started = time.perf_counter()
        scenario = self.scenario
        local = self.local
        end = scenario.end
        pending = list(scenario.timeline)
        self.recorder.sample(local.emulator.now())

        def on_step(now: datetime) -> None:
            self.recorder.sample(now)
            if self.on_progress is not None:
                self.on_progress(self, now)

        while True:
            now = local.emulator.now()
            acted = False
            while pending and scenario.start + pending[0].at <= now:
                self._do(pending.pop(0))
                self.recorder.observe_resources(now)  # e.g. a lock removed, then put back by the app in the same minute
                acted = True
            if acted:
                local.host.pump()  # deliver what the actions raised, at the moment they happened
                self.recorder.observe_resources(now)
            if now >= end:
                break
            stop = min(scenario.start + pending[0].at, end) if pending else end
            local.host.run_for(stop - now, scenario.step, on_step=on_step)
        local.host.pump()  # whatever the last actions raised
        if self.recorder.times and self.recorder.times[-1] != local.emulator.now():
            self.recorder.sample(local.emulator.now())
        elif self.results and scenario.start + self.results[-1].action.at >= end:
            # actions at the very end changed something after the last sample
            self.recorder.sample(local.emulator.now())
        wall = time.perf_counter() - started
        report = build_report(self, wall)
        return SimulationResult(scenario, report, self.recorder, self.results, wall)

    def _do(self, action: Action) -> None:
        try:
            result = self.runner.run(action)
        except Exception as exc:  # a knob that cannot apply (e.g. the pool does not exist yet) is a scenario problem
            # the outcome is the Azure error code when there is one (e.g. PoolNotFound), never a Python class name
            result = ActionResult(action, self.local.emulator.now(), None, self.runner._target(action),
                                  _error_code_of(exc), False,
                                  " ".join(str(exc).split())[:300])
        self.results.append(result)
        text = result.describe() if action.kind != "mark" else f"mark: {action.spec['text']}"
        if action.note:
            text += f" — {action.note}"
        self.recorder.add(result.time, "action" if action.kind != "mark" else "mark", text,
                          pool=action.spec.get("pool"), ok=result.ok, severity=None if result.ok else "error")
        if self.on_progress is not None:
            self.on_progress(self, result.time)


def describe_run(scenario: Scenario) -> str:
    return (f"{scenario.name}: {format_duration(scenario.duration)} of virtual time from "
            f"{scenario.start:%Y-%m-%d %H:%M} UTC "
            f"in {format_duration(scenario.step)} steps, seed {scenario.seed}, {len(scenario.timeline)} action(s)")


__all__ = ["ActionResult", "Recorder", "Simulation", "SimulationResult", "TimelineEntry", "apply_initial_state",
           "describe_run",
           "format_offset", "local_azure_for"]
