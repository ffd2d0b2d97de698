"""HTTP <-> BatchBackend for the Batch data plane (``https://{accountEndpoint}``, api-version 2025-06-01).

Shapes follow azure-batch 15.1.0's models: lower-case enums, ``eTag`` (bare ``0x...``) in the body and the
``ETag`` header, ``nodeAgentSKUId``, ``virtualMachineImageId``, ``resizeErrors[{code, message, values[{name,
value}]}]`` (only while steady), ``odata.nextLink`` paging. Errors are ``BatchServiceError``. Nothing here
raises Event Grid events: data-plane calls never do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from emulator.batch.base import DATA_API_VERSION
from emulator.batch.capacity import DEDICATED, LOW_PRIORITY
from emulator.batch.exceptions import (
    InvalidAutoScalingSettings,
    InvalidMetadata,
    InvalidPropertyValue,
    InvalidQueryParameterValue,
    MissingRequiredProperty,
    OutOfRangeQueryParameterValue,
)
from emulator.batch.formats import (
    FilterError,
    compile_filter,
    format_duration,
    iso,
    parse_duration,
    parse_rfc1123,
    rfc1123,
    simple_key_filter,
)
from emulator.batch.mgmt_responses import page_of
from emulator.batch.models import BatchAccount, Pool, PoolSpec
from emulator.batch.nodes import node_json
from emulator.batch.shapes import (
    deallocation_from_wire,
    fill_type_from_wire,
    fill_type_to_wire,
    image_from_wire,
    image_to_wire,
    network_from_wire,
    network_to_wire,
)
from emulator.core import Request, Response, json_response

if TYPE_CHECKING:
    from emulator.azure import Emulator

DEFAULT_PAGE = 1000
# "Pool - List Node Counts": an older data-plane spec caps maxresults at 10, a newer one at 1,000. Plan for the
# smaller until measured (issue 16): the emulator pages node counts at 10, whatever maxresults asks.
NODE_COUNTS_PAGE = 10
CONTENT_TYPE = "application/json;odata=minimalmetadata"


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def pool_url(base_url: str, pool: Pool) -> str:
    return f"{base_url}/batch/{pool.account.name}/pools/{pool.id}"


def pool_json(pool: Pool, base_url: str) -> dict[str, Any]:
    spec = pool.spec
    body: dict[str, Any] = {"id": pool.id}
    if spec.display_name is not None:
        body["displayName"] = spec.display_name
    vm_config: dict[str, Any] = {"imageReference": image_to_wire(spec.image_reference, "batch"),
                                 "nodeAgentSKUId": spec.node_agent_sku_id}
    vm_config.update(spec.extra.get("virtualMachineConfiguration") or {})
    body.update({
        "url": pool_url(base_url, pool),
        "eTag": pool.etag,
        "lastModified": iso(pool.last_modified),
        "creationTime": iso(pool.created),
        "state": pool.state,
        "stateTransitionTime": iso(pool.state_time or pool.created),
        "allocationState": pool.allocation_state,
        "allocationStateTransitionTime": iso(pool.allocation_state_time or pool.created),
        "vmSize": spec.vm_size.lower(),
        "virtualMachineConfiguration": vm_config,
        "resizeTimeout": format_duration(pool.resize_timeout),
    })
    if pool.allocation_state == "steady" and pool.resize_errors:
        body["resizeErrors"] = [
            {"code": e.code, "message": e.message,
             **({"values": [{"name": n, "value": v} for n, v in e.values]} if e.values else {})}
            for e in pool.resize_errors
        ]
    body.update({
        "currentDedicatedNodes": pool.current[DEDICATED],
        "currentLowPriorityNodes": pool.current[LOW_PRIORITY],
        "targetDedicatedNodes": pool.target[DEDICATED],
        "targetLowPriorityNodes": pool.target[LOW_PRIORITY],
        "enableAutoScale": pool.auto_scale,
    })
    if pool.auto_scale:
        body["autoScaleFormula"] = spec.auto_scale_formula
        if spec.auto_scale_evaluation_interval is not None:
            body["autoScaleEvaluationInterval"] = format_duration(spec.auto_scale_evaluation_interval)
        if pool.auto_scale_run:
            body["autoScaleRun"] = {"timestamp": iso(pool.auto_scale_run["timestamp"]),
                                    "results": pool.auto_scale_run["results"]}
    body["enableInterNodeCommunication"] = spec.inter_node_communication
    network = network_to_wire(spec.network_configuration, "batch")
    if network:
        body["networkConfiguration"] = network
    if spec.start_task is not None:
        body["startTask"] = spec.start_task
    body["taskSlotsPerNode"] = spec.task_slots_per_node
    body["taskSchedulingPolicy"] = fill_type_to_wire(spec.task_scheduling_policy, "batch")
    if spec.metadata:
        body["metadata"] = [dict(m) for m in spec.metadata]
    return body


def _select(body: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if not select:
        return body
    wanted = {s.strip().lower() for s in select}
    return {k: v for k, v in body.items() if k.lower() in wanted}


def _node_counts_json(backend: Any, pool: Pool) -> dict[str, Any]:
    counts = backend.node_counts(pool)
    return {"poolId": pool.id, "dedicated": counts[DEDICATED], "lowPriority": counts[LOW_PRIORITY]}


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------


def _int_prop(body: dict[str, Any], name: str, default: int = 0) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPropertyValue.of(name, value, f"{name} must be an integer.", plane="batch")
    return value


def _duration_prop(body: dict[str, Any], name: str) -> timedelta | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidPropertyValue.of(name, value, str(exc), plane="batch") from None


def _metadata_prop(body: dict[str, Any]) -> list[dict[str, str]] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidMetadata("metadata must be a list of {name, value} objects.", plane="batch")
    return [dict(m) if isinstance(m, dict) else m for m in value]


def parse_create(body: dict[str, Any]) -> tuple[str, PoolSpec]:
    pool_id = body.get("id")
    if not isinstance(pool_id, str) or not pool_id:
        raise MissingRequiredProperty.of("id", plane="batch")
    vm = body.get("virtualMachineConfiguration")
    if not isinstance(vm, dict):
        raise MissingRequiredProperty.of("virtualMachineConfiguration", plane="batch")
    auto = bool(body.get("enableAutoScale"))
    if auto and (body.get("targetDedicatedNodes") is not None or body.get("targetLowPriorityNodes") is not None):
        raise InvalidAutoScalingSettings("targetDedicatedNodes and targetLowPriorityNodes must not be set when "
                                         "enableAutoScale is true.", plane="batch")
    vm_extra = {k: v for k, v in vm.items() if k not in {"imageReference", "nodeAgentSKUId"}}
    spec = PoolSpec(
        vm_size=body.get("vmSize") or "",
        image_reference=image_from_wire(vm.get("imageReference"), "batch"),
        node_agent_sku_id=vm.get("nodeAgentSKUId") or "",
        target_dedicated=_int_prop(body, "targetDedicatedNodes"),
        target_low_priority=_int_prop(body, "targetLowPriorityNodes"),
        resize_timeout=_duration_prop(body, "resizeTimeout"),
        auto_scale_formula=(body.get("autoScaleFormula") or "") if auto else None,
        auto_scale_evaluation_interval=(_duration_prop(body, "autoScaleEvaluationInterval")
                                        or timedelta(minutes=15)) if auto else None,
        metadata=_metadata_prop(body) or [],
        display_name=body.get("displayName"),
        network_configuration=network_from_wire(body.get("networkConfiguration"), "batch"),
        task_slots_per_node=_int_prop(body, "taskSlotsPerNode", 1),
        inter_node_communication=bool(body.get("enableInterNodeCommunication", False)),
        task_scheduling_policy=fill_type_from_wire(body.get("taskSchedulingPolicy"), "batch"),
        start_task=body.get("startTask"),
        extra={"virtualMachineConfiguration": vm_extra} if vm_extra else {},
    )
    return pool_id, spec


# ---------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------


class BatchDataResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backend = emulator.batch

    # --- helpers -------------------------------------------------------------------------------
    def _base(self, request: Request) -> str:
        return request.base_url or self.emulator.base_url

    @staticmethod
    def _headers(request: Request, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"request-id": str(uuid.uuid4())}
        if request.headers.get("client-request-id"):
            headers["client-request-id"] = request.headers["client-request-id"]
        headers.update(extra or {})
        return headers

    def _json(self, request: Request, body: Any, status: int = 200, extra: dict[str, str] | None = None) -> Response:
        response = json_response(body, status, self._headers(request, extra))
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    def _pool_headers(self, request: Request, pool: Pool) -> dict[str, str]:
        return {"ETag": pool.etag, "Last-Modified": rfc1123(pool.last_modified),
                "DataServiceId": pool_url(self._base(request), pool)}

    def _account(self, request: Request) -> BatchAccount:
        return self.backend._account_by_name(request.params["accountName"], "batch")

    def _conditions(self, request: Request) -> dict[str, Any]:
        h = request.headers
        since, unmodified = h.get("if-modified-since"), h.get("if-unmodified-since")
        return {"if_match": h.get("if-match"), "if_none_match": h.get("if-none-match"),
                "if_modified_since": parse_rfc1123(since) if since else None,
                "if_unmodified_since": parse_rfc1123(unmodified) if unmodified else None}

    @staticmethod
    def _page_size(request: Request) -> int:
        raw = request.query.get("maxresults")
        try:
            page = int(raw) if raw else DEFAULT_PAGE
        except ValueError:
            raise InvalidQueryParameterValue("Value for one of the query parameters specified in the request URI is "
                                             "invalid.",
                                             values={"QueryParameterName": "maxresults",
                                                     "QueryParameterValue": raw or ""},
                                             plane="batch") from None
        if page < 1:
            raise OutOfRangeQueryParameterValue("A query parameter specified in the request URI is outside the "
                                                "permissible range.",
                                                values={"QueryParameterName": "maxresults",
                                                        "QueryParameterValue": str(page)},
                                                plane="batch")
        return min(page, DEFAULT_PAGE)

    @staticmethod
    def _filter(request: Request) -> tuple[str | None, Callable[[dict[str, Any]], bool] | None]:
        text = request.query.get("$filter")
        if not text:
            return None, None
        try:
            return text, compile_filter(text)
        except FilterError as exc:
            raise InvalidQueryParameterValue("Value for one of the query parameters specified in the request URI is "
                                             f"invalid: $filter ({exc}).",
                                             values={"QueryParameterName": "$filter", "QueryParameterValue": text},
                                             plane="batch") from None

    def _next_link(self, request: Request, page: int, token: str) -> str:
        params = {"api-version": request.api_version or DATA_API_VERSION, "maxresults": str(page), "$skiptoken": token}
        for name in ("$filter", "$select", "$expand"):
            if request.query.get(name):
                params[name] = request.query[name]
        return f"{self._base(request)}{request.path}?{urlencode(params, quote_via=quote)}"

    # --- pools ---------------------------------------------------------------------------------
    def list_pools(self, request: Request) -> Response:
        account = self._account(request)
        page = self._page_size(request)
        filter_text, predicate = self._filter(request)
        select = [s for s in (request.query.get("$select") or "").split(",") if s.strip()] or None
        fast = simple_key_filter(filter_text, {"id"})
        base = self._base(request)
        self.backend._sync()
        with self.backend._lock:
            keys = account.iter_pool_keys(request.query.get("$skiptoken") or None,
                                          eq=fast[1] if fast and fast[0] == "eq" else None,
                                          prefix=fast[1] if fast and fast[0] == "prefix" else None)
            items, token = page_of(keys, lambda k: pool_json(account.pools[k], base), predicate, page)
            body: dict[str, Any] = {"odata.metadata": f"{base}/batch/{account.name}/$metadata#pools",
                                    "value": [_select(i, select) for i in items]}
        if token is not None:
            body["odata.nextLink"] = self._next_link(request, page, token)
        return self._json(request, body)

    def get_pool(self, request: Request) -> Response:
        account = self._account(request)
        select = [s for s in (request.query.get("$select") or "").split(",") if s.strip()] or None
        conditions = self._conditions(request)
        self.backend._sync()
        with self.backend._lock:
            pool = self.backend._pool(account, request.params["poolId"], "batch")
            headers = self._pool_headers(request, pool)
            if not self.backend.check_conditions(pool, "batch", read=True, **conditions):
                return Response(304, None, self._headers(request, headers))
            body = _select(pool_json(pool, self._base(request)), select)
        body = {"odata.metadata": f"{self._base(request)}/batch/{account.name}/$metadata#pools/@Element", **body}
        return self._json(request, body, 200, headers)

    def pool_exists(self, request: Request) -> Response:
        account = self._account(request)
        self.backend._sync()
        with self.backend._lock:
            pool = account.pools.get(request.params["poolId"].lower())
            if pool is None:
                return Response(404, None, self._headers(request))
            return Response(200, None, self._headers(request, self._pool_headers(request, pool)))

    def create_pool(self, request: Request) -> Response:
        account = self._account(request)
        pool_id, spec = parse_create(request.json())
        pool = self.backend.create_pool(account.name, pool_id, spec, plane="batch", api_version=request.api_version)
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(201, None, self._headers(request, headers))

    def update_pool(self, request: Request) -> Response:
        account = self._account(request)
        body = request.json()
        pool = self.backend.update_pool(account.name, request.params["poolId"], metadata=_metadata_prop(body),
                                        start_task=body.get("startTask"),
                                        display_name=body.get("displayName"), plane="batch",
                                        **{k: v for k, v in self._conditions(request).items() if k != "if_none_match"})
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(200, None, self._headers(request, headers))

    def replace_pool_properties(self, request: Request) -> Response:
        account = self._account(request)
        body = request.json()
        metadata = _metadata_prop(body)
        if metadata is None:
            raise MissingRequiredProperty.of("metadata", plane="batch")
        pool = self.backend.update_pool(account.name, request.params["poolId"], metadata=metadata,
                                        start_task=body.get("startTask"),
                                        replace=True, plane="batch")
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(204, None, self._headers(request, headers))

    def delete_pool(self, request: Request) -> Response:
        account = self._account(request)
        self.backend.delete_pool(account.name, request.params["poolId"], plane="batch",
                                 if_match=request.headers.get("if-match"))
        return Response(202, None, self._headers(request))

    def resize_pool(self, request: Request) -> Response:
        account = self._account(request)
        body = request.json()
        timeout = _duration_prop(body, "resizeTimeout")
        pool = self.backend.resize_pool(
            account.name, request.params["poolId"], _int_prop(body, "targetDedicatedNodes"),
            _int_prop(body, "targetLowPriorityNodes"),
            resize_timeout=timeout,
            node_deallocation_option=deallocation_from_wire(body.get("nodeDeallocationOption"), "batch"),
            if_match=request.headers.get("if-match"), plane="batch")
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(202, None, self._headers(request, headers))

    def stop_resize(self, request: Request) -> Response:
        account = self._account(request)
        pool = self.backend.stop_resize(account.name, request.params["poolId"],
                                        if_match=request.headers.get("if-match"), plane="batch")
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(202, None, self._headers(request, headers))

    def enable_auto_scale(self, request: Request) -> Response:
        account = self._account(request)
        body = request.json()
        now = self.backend._now()
        self.backend._sync()
        with self.backend._lock:
            pool = self.backend._pool(account, request.params["poolId"], "batch")
            self.backend.check_conditions(pool, "batch", if_match=request.headers.get("if-match"))
            self.backend.enable_auto_scale(pool, body.get("autoScaleFormula") or pool.spec.auto_scale_formula or "",
                                           _duration_prop(body, "autoScaleEvaluationInterval"), "batch", now)
            self.backend._touch(pool, now)
            headers = self._pool_headers(request, pool)
        return Response(200, None, self._headers(request, headers))

    def disable_auto_scale(self, request: Request) -> Response:
        account = self._account(request)
        pool = self.backend.disable_auto_scale(account.name, request.params["poolId"], plane="batch")
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(200, None, self._headers(request, headers))

    # --- account-level -------------------------------------------------------------------------
    def list_supported_images(self, request: Request) -> Response:
        self._account(request)
        page = self._page_size(request)
        _, predicate = self._filter(request)
        with self.backend._lock:
            images = [dict(i) for i in self.backend.supported_images]
        if predicate is not None:
            images = [i for i in images if predicate(i)]
        try:
            start = int(request.query.get("$skiptoken") or 0)
        except ValueError:
            start = 0
        body: dict[str, Any] = {"odata.metadata": f"{self._base(request)}/batch/{request.params['accountName']}"
                                                  "/$metadata#supportedimages",
                                "value": images[start:start + page]}
        if start + page < len(images):
            body["odata.nextLink"] = self._next_link(request, page, str(start + page))
        return self._json(request, body)

    def list_pool_node_counts(self, request: Request) -> Response:
        account = self._account(request)
        page = min(self._page_size(request), NODE_COUNTS_PAGE)
        filter_text, predicate = self._filter(request)
        fast = simple_key_filter(filter_text, {"poolid"})
        self.backend._sync()
        with self.backend._lock:
            keys = account.iter_pool_keys(request.query.get("$skiptoken") or None,
                                          eq=fast[1] if fast and fast[0] == "eq" else None,
                                          prefix=fast[1] if fast and fast[0] == "prefix" else None)
            items, token = page_of(keys, lambda k: _node_counts_json(self.backend, account.pools[k]), predicate, page)
        body: dict[str, Any] = {
            "odata.metadata": f"{self._base(request)}/batch/{account.name}/$metadata#poolnodecounts", "value": items}
        if token is not None:
            body["odata.nextLink"] = self._next_link(request, page, token)
        return self._json(request, body)

    # --- nodes ---------------------------------------------------------------------------------
    def list_nodes(self, request: Request) -> Response:
        """GET /pools/{poolId}/nodes ("Compute Node - List"): BatchNode items, paged (maxresults up to 1,000),
        $filter/$select."""
        account = self._account(request)
        page = self._page_size(request)
        _, predicate = self._filter(request)
        select = [s for s in (request.query.get("$select") or "").split(",") if s.strip()] or None
        base = self._base(request)
        now = self.backend._now()
        self.backend._sync()
        with self.backend._lock:
            pool = self.backend._pool(account, request.params["poolId"], "batch")
            nodes = [node_json(pool, n, now, base) for n in pool.nodes.values()]
        if predicate is not None:
            nodes = [n for n in nodes if predicate(n)]
        try:
            start = int(request.query.get("$skiptoken") or 0)
        except ValueError:
            start = 0
        body: dict[str, Any] = {"odata.metadata": f"{base}/batch/{account.name}/$metadata#nodes",
                                "value": [_select(n, select) for n in nodes[start:start + page]]}
        if start + page < len(nodes):
            body["odata.nextLink"] = self._next_link(request, page, str(start + page))
        return self._json(request, body)

    def remove_nodes(self, request: Request) -> Response:
        """POST /pools/{poolId}/removenodes with BatchNodeRemoveOptions {nodeList, resizeTimeout,
        nodeDeallocationOption}: 202."""
        account = self._account(request)
        body = request.json()
        node_list = body.get("nodeList")
        if not isinstance(node_list, list) or not all(isinstance(n, str) for n in node_list):
            raise MissingRequiredProperty.of("nodeList", plane="batch")
        pool = self.backend.remove_nodes(account.name, request.params["poolId"], node_list,
                                         resize_timeout=_duration_prop(body, "resizeTimeout"),
                                         node_deallocation_option=deallocation_from_wire(
                                             body.get("nodeDeallocationOption"), "batch"),
                                         if_match=request.headers.get("if-match"), plane="batch")
        with self.backend._lock:
            headers = self._pool_headers(request, pool)
        return Response(202, None, self._headers(request, headers))
