"""HTTP <-> BatchBackend for the management plane (``Microsoft.Batch``, api-version 2025-06-01).

Shapes follow the 2025-06-01 spec examples (``batchmgmt_*.json``): PascalCase enums, ``nodeAgentSkuId``,
weak ETags (``W/"0x..."``) in the ``ETag`` header and the body ``etag``, ``resizeOperationStatus.errors``
with ``details[{code, message}]``. Pool create/update are synchronous (200), pool delete is a 202 with a
``Location`` to poll; its ``ResourceDeleteSuccess`` event is raised when the deletion completes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from emulator.batch.base import MGMT_API_VERSION
from emulator.batch.capacity import DEDICATED, LOW_PRIORITY
from emulator.batch.exceptions import (
    InvalidAutoScalingSettings,
    InvalidMetadata,
    InvalidPropertyValue,
    InvalidQueryParameterValue,
    MissingRequiredProperty,
    OperationNotFound,
)
from emulator.batch.formats import FilterError, compile_filter, format_duration, iso, parse_duration, simple_key_filter
from emulator.batch.models import BatchAccount, Pool, PoolSpec, PoolUpdate, ResizeErrorRecord
from emulator.batch.shapes import (
    ALLOCATION_TO_MGMT,
    deallocation_from_wire,
    deallocation_to_wire,
    fill_type_from_wire,
    fill_type_to_wire,
    image_from_wire,
    image_to_wire,
    network_from_wire,
    network_to_wire,
)
from emulator.core import Request, Response, json_response
from emulator.exceptions import InvalidRequestContent, LocationRequired

if TYPE_CHECKING:
    from emulator.azure import Emulator

DEFAULT_PAGE = 1000
POOL_TYPE = "Microsoft.Batch/batchAccounts/pools"

# properties the model understands; anything else a client sends under "properties" is kept and echoed
_KNOWN_POOL_PROPERTIES = {
    "displayName", "vmSize", "deploymentConfiguration", "scaleSettings", "interNodeCommunication",
    "networkConfiguration",
    "taskSlotsPerNode", "taskSchedulingPolicy", "metadata", "startTask",
    # read-only: ignored on input
    "lastModified", "creationTime", "provisioningState", "provisioningStateTransitionTime", "allocationState",
    "allocationStateTransitionTime", "currentDedicatedNodes", "currentLowPriorityNodes", "autoScaleRun",
    "resizeOperationStatus",
}


def weak_etag(pool: Pool) -> str:
    return f'W/"{pool.etag}"'


def account_endpoint(emulator: Emulator, account: BatchAccount) -> str:
    """``127.0.0.1:{port}/batch/{name}``: no scheme, as Azure answers (the app prefixes https://)."""
    return f"{urlsplit(emulator.base_url).netloc}/batch/{account.name}"


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def account_json(emulator: Emulator, account: BatchAccount) -> dict[str, Any]:
    props: dict[str, Any] = {
        "accountEndpoint": account_endpoint(emulator, account),
        "nodeManagementEndpoint": f"{urlsplit(emulator.base_url).netloc}/batch/{account.name}/nodemanagement",
        "provisioningState": "Succeeded",
        "poolAllocationMode": account.pool_allocation_mode,
    }
    if account.batch_service_mode:  # "For UserSubscription accounts quota is managed on the subscription: not returned"
        props["dedicatedCoreQuota"] = account.dedicated_core_quota
        props["lowPriorityCoreQuota"] = account.low_priority_core_quota
        props["dedicatedCoreQuotaPerVMFamily"] = [{"name": k, "coreQuota": v}
                                                  for k, v in sorted(account.per_family_quota.items())]
        props["dedicatedCoreQuotaPerVMFamilyEnforced"] = account.per_family_enforced
    props["poolQuota"] = account.pool_quota
    props["activeJobAndJobScheduleQuota"] = account.active_job_and_job_schedule_quota
    if account.auto_storage:
        storage = dict(account.auto_storage)
        if not isinstance(storage.get("lastKeySync"), str) and storage.get("lastKeySync") is not None:
            storage["lastKeySync"] = iso(storage["lastKeySync"])
        props["autoStorage"] = storage
    if account.key_vault_reference:
        props["keyVaultReference"] = account.key_vault_reference
    props["publicNetworkAccess"] = account.public_network_access
    props["allowedAuthenticationModes"] = list(account.allowed_authentication_modes)
    body: dict[str, Any] = {"id": account.id, "name": account.name, "type": "Microsoft.Batch/batchAccounts",
                            "location": account.location, "properties": props, "identity": account.identity}
    if account.tags:
        body["tags"] = account.tags
    return body


def _errors_json(errors: list[ResizeErrorRecord]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item: dict[str, Any] = {"code": e.code, "message": e.message}
        if e.values:
            item["details"] = [{"code": name, "message": value} for name, value in e.values]
        out.append(item)
    return out


def pool_json(pool: Pool) -> dict[str, Any]:
    spec = pool.spec
    vm_config: dict[str, Any] = {"imageReference": image_to_wire(spec.image_reference, "arm"),
                                 "nodeAgentSkuId": spec.node_agent_sku_id}
    vm_config.update(spec.extra.get("virtualMachineConfiguration") or {})
    props: dict[str, Any] = {}
    if spec.display_name is not None:
        props["displayName"] = spec.display_name
    props.update({
        "lastModified": iso(pool.last_modified),
        "creationTime": iso(pool.created),
        "provisioningState": "Deleting" if pool.state == "deleting" else "Succeeded",
        "provisioningStateTransitionTime": iso(pool.state_time or pool.created),
        "allocationState": ALLOCATION_TO_MGMT[pool.allocation_state],
        "allocationStateTransitionTime": iso(pool.allocation_state_time or pool.created),
        "vmSize": spec.vm_size,
        "interNodeCommunication": "Enabled" if spec.inter_node_communication else "Disabled",
        "taskSlotsPerNode": spec.task_slots_per_node,
        "taskSchedulingPolicy": fill_type_to_wire(spec.task_scheduling_policy, "arm"),
        "deploymentConfiguration": {"virtualMachineConfiguration": vm_config},
    })
    if pool.auto_scale:
        auto: dict[str, Any] = {"formula": spec.auto_scale_formula}
        if spec.auto_scale_evaluation_interval is not None:
            auto["evaluationInterval"] = format_duration(spec.auto_scale_evaluation_interval)
        props["scaleSettings"] = {"autoScale": auto}
        if pool.auto_scale_run:
            props["autoScaleRun"] = {"evaluationTime": iso(pool.auto_scale_run["timestamp"]),
                                     "results": pool.auto_scale_run["results"]}
    else:
        fixed: dict[str, Any] = {"targetDedicatedNodes": pool.target[DEDICATED],
                                 "targetLowPriorityNodes": pool.target[LOW_PRIORITY]}
        if pool.op is not None or spec.resize_timeout is not None:
            fixed["resizeTimeout"] = format_duration(pool.resize_timeout)
        if pool.node_deallocation_option is not None:
            fixed["nodeDeallocationOption"] = deallocation_to_wire(pool.node_deallocation_option, "arm")
        props["scaleSettings"] = {"fixedScale": fixed}
    props["currentDedicatedNodes"] = pool.current[DEDICATED]
    props["currentLowPriorityNodes"] = pool.current[LOW_PRIORITY]
    op = pool.op
    if op is not None:
        status: dict[str, Any] = {"startTime": iso(op.start), "targetDedicatedNodes": op.target[DEDICATED]}
        if op.target[LOW_PRIORITY]:
            status["targetLowPriorityNodes"] = op.target[LOW_PRIORITY]
        if op.deallocation is not None:
            status["nodeDeallocationOption"] = deallocation_to_wire(op.deallocation, "arm")
        status["resizeTimeout"] = format_duration(op.timeout)
        if pool.allocation_state == "steady" and pool.resize_errors:
            status["errors"] = _errors_json(pool.resize_errors)
        props["resizeOperationStatus"] = status
    network = network_to_wire(spec.network_configuration, "arm")
    if network:
        props["networkConfiguration"] = network
    if spec.metadata:
        props["metadata"] = [dict(m) for m in spec.metadata]
    if spec.start_task is not None:
        props["startTask"] = spec.start_task
    for k, v in spec.extra.items():
        if k != "virtualMachineConfiguration":
            props[k] = v
    body: dict[str, Any] = {"id": pool.arm_id, "name": pool.id, "type": POOL_TYPE, "etag": weak_etag(pool),
                            "properties": props}
    if spec.identity:
        body["identity"] = spec.identity
    if spec.tags:
        body["tags"] = spec.tags
    return body


def page_of(keys: Iterator[str], render: Callable[[str], dict[str, Any]],
            predicate: Callable[[dict[str, Any]], bool] | None,
            page: int) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``page`` rendered items passing ``predicate``, and the token to continue after (None at the end)."""
    out: list[dict[str, Any]] = []
    last = None
    for k in keys:
        if len(out) >= page:
            return out, last
        body = render(k)
        last = k
        if predicate is None or predicate(body):
            out.append(body)
    return out, None


def _select(body: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if not select:
        return body
    wanted = {s.strip().lower().removeprefix("properties/") for s in select if s.strip()}
    out = {k: v for k, v in body.items() if k in {"id", "name", "type", "etag"}}
    out["properties"] = {k: v for k, v in body["properties"].items() if k.lower() in wanted}
    return out


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------


def _int(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPropertyValue(f"{name} must be an integer, got {value!r}.", plane="arm")
    return value


def _duration(value: Any, name: str) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidPropertyValue(f"{name}: {exc}.", plane="arm") from None


def _metadata(value: Any) -> list[dict[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidMetadata("metadata must be a list of {name, value} objects.", plane="arm")
    return [dict(m) if isinstance(m, dict) else m for m in value]


def _scale(props: dict[str, Any]) -> tuple[tuple[int, int, timedelta | None, str | None] | None,
                                           tuple[str, timedelta | None] | None]:
    scale = props.get("scaleSettings")
    if scale is None:
        return None, None
    if not isinstance(scale, dict):
        raise InvalidRequestContent("scaleSettings must be an object.")
    fixed, auto = scale.get("fixedScale"), scale.get("autoScale")
    if fixed is not None and auto is not None:
        raise InvalidPropertyValue("scaleSettings: fixedScale and autoScale are mutually exclusive.", plane="arm")
    if fixed is not None:
        if not isinstance(fixed, dict):
            raise InvalidRequestContent("fixedScale must be an object.")
        if fixed.get("targetDedicatedNodes") is None and fixed.get("targetLowPriorityNodes") is None:
            raise InvalidPropertyValue("fixedScale: at least one of targetDedicatedNodes and targetLowPriorityNodes "
                                       "must be set.", plane="arm")
        return (_int(fixed.get("targetDedicatedNodes"), "targetDedicatedNodes"),
                _int(fixed.get("targetLowPriorityNodes"), "targetLowPriorityNodes"),
                _duration(fixed.get("resizeTimeout"), "resizeTimeout"),
                deallocation_from_wire(fixed.get("nodeDeallocationOption"), "arm")), None
    if auto is not None:
        if not isinstance(auto, dict) or not isinstance(auto.get("formula"), str):
            raise InvalidAutoScalingSettings("autoScale.formula is required.", plane="arm")
        return None, (auto["formula"], _duration(auto.get("evaluationInterval"), "evaluationInterval"))
    return None, None


def parse_pool_update(body: dict[str, Any]) -> PoolUpdate:
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidRequestContent("'properties' must be an object.")
    fixed, auto = _scale(props)
    vm = ((props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {})
    inter = props.get("interNodeCommunication")
    extra = {k: v for k, v in props.items() if k not in _KNOWN_POOL_PROPERTIES}
    if inter is not None and inter not in {"Enabled", "Disabled"}:
        raise InvalidPropertyValue("interNodeCommunication must be Enabled or Disabled.", plane="arm")
    return PoolUpdate(
        fixed_scale=fixed, auto_scale=auto, metadata=_metadata(props.get("metadata")),
        start_task=props.get("startTask"),
        display_name=props.get("displayName"),
        network_configuration=network_from_wire(props.get("networkConfiguration"), "arm"),
        vm_size=props.get("vmSize"),
        image_reference=image_from_wire(vm.get("imageReference"), "arm") if vm.get("imageReference") else None,
        tags=body.get("tags"), extra=extra,
    )


def parse_pool_spec(body: dict[str, Any]) -> PoolSpec:
    props = body.get("properties")
    if not isinstance(props, dict):
        raise MissingRequiredProperty("A required property was not specified in the request body: properties.",
                                      plane="arm")
    deployment = props.get("deploymentConfiguration") or {}
    vm = deployment.get("virtualMachineConfiguration") if isinstance(deployment, dict) else None
    if not isinstance(vm, dict):
        raise MissingRequiredProperty("A required property was not specified in the request body: "
                                      "deploymentConfiguration.virtualMachineConfiguration.", plane="arm")
    fixed, auto = _scale(props)
    vm_extra = {k: v for k, v in vm.items() if k not in {"imageReference", "nodeAgentSkuId"}}
    extra: dict[str, Any] = {k: v for k, v in props.items() if k not in _KNOWN_POOL_PROPERTIES}
    if vm_extra:
        extra["virtualMachineConfiguration"] = vm_extra
    tsp = props.get("taskSlotsPerNode", 1)
    inter = props.get("interNodeCommunication", "Disabled")
    if inter not in {"Enabled", "Disabled"}:
        raise InvalidPropertyValue("interNodeCommunication must be Enabled or Disabled.", plane="arm")
    return PoolSpec(
        vm_size=props.get("vmSize") or "",
        image_reference=image_from_wire(vm.get("imageReference"), "arm"),
        node_agent_sku_id=vm.get("nodeAgentSkuId") or "",
        target_dedicated=fixed[0] if fixed else 0,
        target_low_priority=fixed[1] if fixed else 0,
        resize_timeout=fixed[2] if fixed else None,
        node_deallocation_option=fixed[3] if fixed else None,
        auto_scale_formula=auto[0] if auto else None,
        auto_scale_evaluation_interval=(auto[1] or timedelta(minutes=15)) if auto else None,
        metadata=_metadata(props.get("metadata")) or [],
        display_name=props.get("displayName"),
        network_configuration=network_from_wire(props.get("networkConfiguration"), "arm"),
        task_slots_per_node=_int(tsp, "taskSlotsPerNode") if tsp is not None else 1,
        inter_node_communication=inter == "Enabled",
        task_scheduling_policy=fill_type_from_wire(props.get("taskSchedulingPolicy"), "arm"),
        start_task=props.get("startTask"),
        tags=dict(body.get("tags") or {}),
        identity=body.get("identity"),
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------


class BatchManagementResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backend = emulator.batch

    # --- accounts ------------------------------------------------------------------------------
    def _account(self, request: Request) -> BatchAccount:
        p = request.params
        return self.backend.get_account(p["subscriptionId"], p["resourceGroupName"], p["accountName"])

    def put_account(self, request: Request) -> Response:
        p = request.params
        body = request.json()
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise LocationRequired("The 'location' property is required for a Batch account.")
        props = body.get("properties") or {}
        mode = props.get("poolAllocationMode")
        if isinstance(mode, str) and mode.lower() == "usersubscription" and not props.get("keyVaultReference"):
            raise MissingRequiredProperty("keyVaultReference is required for a Batch account in UserSubscription "
                                          "pool allocation mode.", plane="arm")
        account, _created = self.backend.put_account(
            p["subscriptionId"], p["resourceGroupName"], p["accountName"], location, pool_allocation_mode=mode,
            tags=body.get("tags"), auto_storage=props.get("autoStorage"),
            key_vault_reference=props.get("keyVaultReference"),
            public_network_access=props.get("publicNetworkAccess"),
            allowed_authentication_modes=props.get("allowedAuthenticationModes"),
            identity=body.get("identity"))
        # Azure answers 202 + Location first; answering the finished account at once lets begin_create().result()
        # return.
        return json_response(account_json(self.emulator, account), 200)

    def patch_account(self, request: Request) -> Response:
        account = self._account(request)
        body = request.json()
        props = body.get("properties") or {}
        account, _ = self.backend.put_account(
            account.subscription_id, account.resource_group, account.name, account.location, tags=body.get("tags"),
            auto_storage=props.get("autoStorage"), public_network_access=props.get("publicNetworkAccess"),
            allowed_authentication_modes=props.get("allowedAuthenticationModes"), identity=body.get("identity"))
        return json_response(account_json(self.emulator, account))

    def get_account(self, request: Request) -> Response:
        return json_response(account_json(self.emulator, self._account(request)))

    def delete_account(self, request: Request) -> Response:
        p = request.params
        deleted = self.backend.delete_account(p["subscriptionId"], p["resourceGroupName"], p["accountName"])
        return Response(200 if deleted else 204)

    def list_accounts_by_group(self, request: Request) -> Response:
        p = request.params
        self.emulator.resources.require_group(p["subscriptionId"], p["resourceGroupName"])
        accounts = self.backend.list_accounts(p["subscriptionId"], p["resourceGroupName"])
        return json_response({"value": [account_json(self.emulator, a) for a in accounts]})

    def list_accounts(self, request: Request) -> Response:
        accounts = self.backend.list_accounts(request.params["subscriptionId"])
        return json_response({"value": [account_json(self.emulator, a) for a in accounts]})

    # --- pools ---------------------------------------------------------------------------------
    def _pool_response(self, pool: Pool, status: int = 200) -> Response:
        return json_response(pool_json(pool), status, {"ETag": weak_etag(pool)})

    def get_pool(self, request: Request) -> Response:
        self.backend._sync()
        account = self._account(request)
        with self.backend._lock:
            return self._pool_response(self.backend._pool(account, request.params["poolName"], "arm"))

    def put_pool(self, request: Request) -> Response:
        account = self._account(request)
        body = request.json()
        spec = parse_pool_spec(body)
        update = parse_pool_update(body)
        pool, _created = self.backend.put_pool_mgmt(account, request.params["poolName"], spec, update,
                                                    if_match=request.headers.get("if-match"),
                                                    if_none_match=request.headers.get("if-none-match"),
                                                    api_version=request.api_version)
        with self.backend._lock:
            return self._pool_response(pool)

    def patch_pool(self, request: Request) -> Response:
        account = self._account(request)
        update = parse_pool_update(request.json())
        pool = self.backend.update_pool_mgmt(account, request.params["poolName"], update,
                                             if_match=request.headers.get("if-match"),
                                             if_none_match=request.headers.get("if-none-match"),
                                             api_version=request.api_version)
        with self.backend._lock:
            return self._pool_response(pool)

    def delete_pool(self, request: Request) -> Response:
        account = self._account(request)
        pool_id = request.params["poolName"]
        correlation = request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        url = f"{request.base_url or self.emulator.base_url}{request.path}?api-version={request.api_version}"
        with self.backend._lock:
            pool = account.pools.get(pool_id.lower())
            if pool is None:
                return Response(204)  # ARM: deleting what does not exist succeeds
            subject = pool.arm_id
        event = {
            "event_type": "Microsoft.Resources.ResourceDeleteSuccess", "subject": subject,
            "operation_name": "Microsoft.Batch/batchAccounts/pools/delete", "claims": request.caller,
            "status": "Succeeded",
            "http_request": {"clientRequestId": request.headers.get("x-ms-client-request-id", ""),
                             "clientIpAddress": "127.0.0.1",
                             "method": "DELETE", "url": url},
            "correlation_id": correlation,
        }
        operation = self.backend.delete_pool(account.name, pool_id, plane="arm", event=event)
        location = (f"{request.base_url or self.emulator.base_url}{account.id}/poolOperationResults/{operation.id}"
                    f"?api-version={quote(request.api_version or MGMT_API_VERSION)}")
        # The event is raised by the model when the deletion completes (ARM raises it when the LRO ends).
        return Response(202, None, {"Location": location, "x-ms-correlation-request-id": correlation}, emit_event=False)

    def pool_operation_result(self, request: Request) -> Response:
        self._account(request)
        operation = self.backend.delete_operation(request.params["operationId"])
        if operation is None or operation.account_id.lower() != self._account(request).id.lower():
            raise OperationNotFound(f"The operation '{request.params['operationId']}' was not found.", plane="arm")
        if not operation.done:
            return Response(202, None,
                            {"Location": f"{request.base_url or self.emulator.base_url}{request.path}"
                                         f"?api-version={request.api_version}"})
        return Response(204)

    def list_pools(self, request: Request) -> Response:
        account = self._account(request)
        q = request.query
        try:
            page = min(int(q.get("maxresults") or DEFAULT_PAGE), DEFAULT_PAGE)
        except ValueError:
            raise InvalidQueryParameterValue("maxresults must be an integer.", plane="arm") from None
        if page <= 0:
            raise InvalidQueryParameterValue("maxresults must be positive.", plane="arm")
        select = [s for s in (q.get("$select") or "").split(",") if s.strip()] or None
        filter_text = q.get("$filter")
        try:
            predicate = compile_filter(filter_text or "")
        except FilterError as exc:
            raise InvalidQueryParameterValue(f"Invalid $filter: {exc}.", plane="arm") from None
        token = q.get("$skiptoken") or None
        fast = simple_key_filter(filter_text, {"name"})
        self.backend._sync()
        with self.backend._lock:
            keys = account.iter_pool_keys(token, eq=fast[1] if fast and fast[0] == "eq" else None,
                                          prefix=fast[1] if fast and fast[0] == "prefix" else None)
            out, next_token = page_of(keys, lambda k: pool_json(account.pools[k]), predicate if filter_text else None,
                                      page)
            out = [_select(body, select) for body in out]
        result: dict[str, Any] = {"value": out}
        if next_token is not None:
            params = {"api-version": request.api_version or MGMT_API_VERSION, "maxresults": str(page),
                      "$skiptoken": next_token}
            if select:
                params["$select"] = ",".join(select)
            if filter_text:
                params["$filter"] = filter_text
            result["nextLink"] = (
                f"{request.base_url or self.emulator.base_url}{request.path}?{urlencode(params, quote_via=quote)}")
        return json_response(result)

    def stop_resize(self, request: Request) -> Response:
        account = self._account(request)
        pool = self.backend.stop_resize(account.name, request.params["poolName"], plane="arm")
        with self.backend._lock:
            return self._pool_response(pool)

    def disable_auto_scale(self, request: Request) -> Response:
        account = self._account(request)
        pool = self.backend.disable_auto_scale(account.name, request.params["poolName"], plane="arm")
        with self.backend._lock:
            return self._pool_response(pool)
