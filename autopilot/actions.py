"""Timeline actions: people act through SDK clients with their own identity (their writes raise events and meet
locks as in Azure); the world (capacity, quotas, failures, faults) changes through the emulator's knobs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from autopilot.initial_state import CAPACITY_FIELDS, configure_capacity, prepared_disk, snapshot_set_tags
from autopilot.recorder import short_id
from autopilot.scenario import (
    BATCH_RG,
    DEFAULT_REGION,
    IMAGES_RG,
    Action,
    Scenario,
    identity_of,
    parse_duration,
)
from shared.core.durations import format_iso_duration


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
            return short_id(self.scenario.resource(spec["resource"]))
        if "image" in spec and action.kind == "setImageHealth":
            return short_id(self.scenario.resource(spec["image"]))
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
            disk = prepared_disk(self.local, f"{name}-disk", rg, location, spec.get("image") if role == "os" else None,
                                  None if role == "os" else 128)
            self._snapshot(identity, rg, name, disk, location, tags)
            made.append(name)
        return "snapshots " + ", ".join(made)

    def _create_snapshot(self, spec: dict[str, Any], identity: dict[str, str]) -> str:
        rg = spec.get("resourceGroup", IMAGES_RG)
        location = spec.get("location", DEFAULT_REGION)
        disk = prepared_disk(self.local, f"{spec['name']}-disk", rg, location, spec.get("image"),
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


def error_code_of(exc: BaseException) -> str:
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

