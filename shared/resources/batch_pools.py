"""Batch pools: list, read, resize (data plane) and create (management plane).

Why resizes go through ``BatchClient.send_request``: azure-batch 15.1's only public resize is
``begin_resize_pool``, whose LROPoller starts a background thread that polls ``get_pool`` every few
seconds until the pool is steady - up to the whole resize timeout, long after the function has
returned. The app never waits on a resize (the timer observes the outcome), so it sends the same
documented REST call (POST /pools/{id}/resize) through the client's own pipeline (authentication,
retry policy, TLS) and reads the status code itself.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from shared.core.durations import format_iso_duration
from shared.resources.batch_accounts import BatchAccount
from shared.resources.clients import BATCH_API_VERSION, AzureClients

# Exactly the fields the watch reads: the list call stays one small page per 1,000 pools.
POOL_LIST_SELECT = [
    "id", "eTag", "allocationState", "allocationStateTransitionTime", "currentDedicatedNodes",
    "currentLowPriorityNodes", "targetDedicatedNodes", "targetLowPriorityNodes", "enableAutoScale",
    "resizeErrors", "resizeTimeout", "metadata", "vmSize", "virtualMachineConfiguration",
    "networkConfiguration",  # inbound NAT pools lower the managed-image node cap (shared/watch/pool_limits.py)
]
LIST_PAGE_SIZE = 1000  # the service maximum: fewest round trips per account


class ResizeResult(enum.Enum):
    ACCEPTED = "accepted"  # 202: Batch took the new target
    BUSY = "busy"  # 409: someone else is resizing, or autoscale is on - benign, look again next tick
    CHANGED = "changed"  # 412: the pool changed since we read it (another instance acted) - do nothing
    GONE = "gone"  # 404: the pool was deleted


# The refusals a resize may meet that are part of the watch's normal life (nothing was done; look again next tick).
_RESIZE_REFUSALS = {409: ResizeResult.BUSY, 412: ResizeResult.CHANGED, 404: ResizeResult.GONE}


def list_pools(clients: AzureClients, account: BatchAccount) -> list[dict[str, Any]]:
    """Every pool of the account in one paged list call, as data-plane JSON dicts."""
    client = clients.batch_account(account.endpoint)
    return [pool.as_dict() for pool in client.list_pools(select=POOL_LIST_SELECT, max_results=LIST_PAGE_SIZE)]


def iter_pool_pages(clients: AzureClients, account: BatchAccount) -> Iterator[list[dict[str, Any]]]:
    """The account's pools, one list page at a time, as the data-plane JSON the service sent (the same dicts as
    ``BatchPool.as_dict()``, the shape :meth:`PoolView.from_dict` reads).

    Same request as :func:`list_pools` (``GET /pools`` with ``$select`` and ``maxresults``, following
    ``odata.nextLink``: Batch "List Pools" REST reference), through the client's ``send_request``, so the pipeline
    (authentication, retries, BatchExceptionPolicy) is the SDK's own; but each page is decoded with ``json.loads``
    straight into dicts, once: no SDK model is built per pool (that costs ~260 us a pool, 35x the JSON decoding, and
    was most of a tick's CPU at 10,000 pools), and only one page is held at a time.
    """
    import json
    from urllib.parse import parse_qsl, urlencode, urlsplit

    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    client = clients.batch_account(account.endpoint)
    query = urlencode({"api-version": BATCH_API_VERSION, "maxresults": LIST_PAGE_SIZE,
                       "$select": ",".join(POOL_LIST_SELECT)}, safe="$,")
    url: str | None = f"/pools?{query}"
    while url:
        # stream=True: the pipeline's ContentDecodePolicy would otherwise json-decode every page a second time (it fills
        # the response's deserialized data for non-streamed answers), which doubled the decoding cost of a tick.
        try:
            response = client.send_request(HttpRequest("GET", url, headers={"Accept": "application/json"}), stream=True)
        except HttpResponseError as exc:
            raise _with_error_body(exc) from None
        try:
            response.raise_for_status()  # the client's BatchExceptionPolicy has raised already for an error answer
            body = json.loads(response.read())
        finally:
            response.close()
        yield list(body.get("value") or [])
        url = body.get("odata.nextLink")
        if url and "api-version" not in dict(parse_qsl(urlsplit(url).query)):
            url += ("&" if "?" in url else "?") + f"api-version={BATCH_API_VERSION}"


def _with_error_body(exc: Any) -> Exception:
    """The same error, with Batch's code and message: on a streamed answer the SDK raises before the body is read."""
    import json

    try:
        exc.response.read()
        error = json.loads(exc.response.content or b"{}")
        message = error.get("message")
        text = message.get("value") if isinstance(message, dict) else message
        described = f"({error.get('code') or exc.status_code}) {text or exc.reason}"
    except Exception:  # the body is gone or not Batch's error shape: keep what the SDK said
        return exc
    # Built without ``response=`` (which would make azure-core re-render the body's OData error over this message),
    # then given the status and response back so callers can still branch on them.
    error_out = type(exc)(message=f"{described} (HTTP {exc.status_code})")
    error_out.status_code, error_out.reason, error_out.response = exc.status_code, exc.reason, exc.response
    return error_out


def get_pool(clients: AzureClients, account: BatchAccount, pool_id: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return clients.batch_account(account.endpoint).get_pool(pool_id, select=POOL_LIST_SELECT).as_dict()
    except ResourceNotFoundError:
        return None


def resize_pool(clients: AzureClients, account: BatchAccount, pool_id: str, *, etag: str | None, target_dedicated: int,
                target_spot: int, resize_timeout: timedelta,
                node_deallocation_option: str | None = None) -> ResizeResult:
    from urllib.parse import quote

    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    body: dict[str, Any] = {
        "targetDedicatedNodes": target_dedicated,
        "targetLowPriorityNodes": target_spot,
        "resizeTimeout": format_iso_duration(resize_timeout),
    }
    if node_deallocation_option:
        body["nodeDeallocationOption"] = node_deallocation_option.lower()
    headers = {"Content-Type": "application/json; odata=minimalmetadata"}
    if etag:
        # If-Match makes the resize conditional on the pool we decided on: if another instance
        # (or a person) acted in between, Batch answers 412 and nothing is done twice.
        headers["If-Match"] = etag
    request = HttpRequest("POST", f"/pools/{quote(pool_id, safe='')}/resize?api-version={BATCH_API_VERSION}", json=body,
                          headers=headers)
    if etag:
        return _resize_settling_lost_answers(clients, account, pool_id, request, etag, target_dedicated, target_spot)
    try:
        response = clients.batch_account(account.endpoint).send_request(request)
    except HttpResponseError as exc:
        # azure-batch's BatchExceptionPolicy (in the client's pipeline, so also under send_request) raises for every
        # non-2xx answer, and with If-Match set it raises ResourceModifiedError whatever the status (409 and 404
        # included): the status code is the only reliable signal.
        result = _RESIZE_REFUSALS.get(exc.status_code or 0)
        if result is None:
            raise
        return result
    if response.status_code in (200, 202):
        return ResizeResult.ACCEPTED
    result = _RESIZE_REFUSALS.get(response.status_code)
    if result is not None:
        return result
    response.raise_for_status()
    raise RuntimeError(f"unexpected status {response.status_code} resizing pool {pool_id} in {account.id}")


def list_supported_images(clients: AzureClients, account: BatchAccount) -> list[dict[str, Any]]:
    return [image.as_dict() for image in clients.batch_account(account.endpoint).list_supported_images()]


class PoolCreateRefused(Exception):
    """Batch refused the pool outright (400): retrying the same request cannot succeed. Carries Batch's own words."""

    def __init__(self, pool_id: str, status: int, code: str, message: str) -> None:
        super().__init__(f"Batch refused to create pool {pool_id} ({status} {code}): {message}")
        self.pool_id, self.status, self.code, self.message = pool_id, status, code, message


# Answers to a create that no retry can change: the request itself is wrong (an invalid or unsupported property, a
# managed image at the app's API version). 409/412 mean "exists"; 429/5xx and the SDK's own retries are transient;
# 401/403 are the app's permissions, reported elsewhere.
_PERMANENT_CREATE_STATUSES = frozenset({400, 422})


def create_pool(clients: AzureClients, account: BatchAccount, pool_id: str, body: dict[str, Any]) -> bool:
    """Create-only (``If-None-Match: *``): True when created, False when the pool already existed.

    A redelivered event must never overwrite a pool a team may have changed since. Raises
    :class:`PoolCreateRefused` when Batch refuses the request itself (400), so that it is reported once, not retried.
    """
    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError

    try:
        clients.batch_management.pool.create(account.resource_group, account.name, pool_id, body,
                                             match_condition=MatchConditions.IfMissing)
    except (ResourceExistsError, ResourceModifiedError):
        return False
    except HttpResponseError as exc:
        if exc.status_code in (409, 412):
            return False
        if exc.status_code in _PERMANENT_CREATE_STATUSES:
            error = getattr(exc, "error", None)
            raise PoolCreateRefused(pool_id, exc.status_code, str(getattr(error, "code", None) or "BadRequest"),
                                    str(getattr(error, "message", None) or exc.message or exc)) from exc
        raise
    return True


def list_pools_management(clients: AzureClients, account: BatchAccount) -> list[dict[str, Any]]:
    """Pools as the management plane shows them (for the guard's reference graph: image ids)."""
    return [pool.as_dict()
            for pool in clients.batch_management.pool.list_by_batch_account(account.resource_group, account.name)]


_AMBIGUOUS = (500, 502, 503, 504)  # the resize may or may not have taken effect


def _resize_settling_lost_answers(clients: AzureClients, account: BatchAccount, pool_id: str, request: Any, etag: str,
                                  target_dedicated: int, target_spot: int) -> ResizeResult:
    """A conditional resize, retried here rather than by the SDK, so that a lost answer is settled by looking.

    A resize is a POST: azure-core does not retry it after a dropped connection, and after a 5xx it retries it
    blindly, into a 412 when the first attempt did take effect (our own resize changed the pool's ETag). So the
    SDK's retries are off for this call; after a dropped connection or a 5xx the pool is read again: our target in
    place under a new ETag means the resize took effect (ACCEPTED); the ETag unchanged means it did not, and the
    same conditional resize is sent again (If-Match keeps it at most once); anything else is someone else's change.
    """
    import time

    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    retry = clients.settings.retry
    client = clients.batch_account(account.endpoint)
    for attempt in range(retry.total + 1):
        last = attempt == retry.total
        error: Exception | None = None
        try:
            response = client.send_request(request, retry_total=0)
            status = response.status_code
        except ServiceRequestError as exc:
            status, error = None, exc  # never reached Batch: send again
        except ServiceResponseError as exc:
            status, error = -1, exc  # sent, answer lost
        except HttpResponseError as exc:
            status, error = exc.status_code or 0, exc
            if status not in _AMBIGUOUS and status != 429 and status not in _RESIZE_REFUSALS:
                raise
        if status in (200, 202):
            return ResizeResult.ACCEPTED
        if status in _RESIZE_REFUSALS:
            return _RESIZE_REFUSALS[status]
        if status == -1 or status in _AMBIGUOUS:
            pool = get_pool(clients, account, pool_id)
            if pool is None:
                return ResizeResult.GONE
            if _bare(pool.get("eTag")) != _bare(etag):
                ours = (pool.get("targetDedicatedNodes") == target_dedicated
                        and pool.get("targetLowPriorityNodes") == target_spot)
                return ResizeResult.ACCEPTED if ours else ResizeResult.CHANGED
        if last:
            if error is not None:
                # still not taken effect after the last try: transient, the next tick (or redelivery) looks again
                raise error
            response.raise_for_status()
            raise RuntimeError(f"unexpected status {status} resizing pool {pool_id} in {account.id}")
        time.sleep(min(retry.backoff_max, retry.backoff_factor * (2 ** attempt)))
    raise AssertionError("unreachable")


def _bare(etag: Any) -> str:
    text = str(etag or "").strip()
    return (text[2:] if text.startswith("W/") else text).strip('"')


class UpdateResult(enum.Enum):
    ACCEPTED = "accepted"
    CHANGED = "changed"  # 412: the pool changed since it was read (another instance, a person, a resize) - read again
    REFUSED = "refused"  # any other 4xx: e.g. an image change while the pool still has nodes; the code is in the detail
    GONE = "gone"  # 404


def get_pool_management(clients: AzureClients, account: BatchAccount, pool_id: str) -> dict[str, Any] | None:
    """The pool as the management plane has it (its ETag guards Pool - Update)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return clients.batch_management.pool.get(account.resource_group, account.name, pool_id).as_dict()
    except ResourceNotFoundError:
        return None


def update_pool_management(clients: AzureClients, account: BatchAccount, pool_id: str, body: dict[str, Any],
                           etag: str | None) -> tuple[UpdateResult, str]:
    """Pool - Update (management PATCH) with If-Match. Returns the outcome and, for a refusal, Batch's code and message.

    Batch changes the image only when the pool is steady with zero nodes and does not publish the error code for
    that refusal (contracts §9.6): every 4xx other than 404/412 is reported as REFUSED, never raised, so the
    rollout simply looks again at the next tick.
    """
    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError

    kwargs: dict[str, Any] = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
    try:
        clients.batch_management.pool.update(account.resource_group, account.name, pool_id, body, **kwargs)
    except HttpResponseError as exc:
        status = exc.status_code or 0
        code = getattr(getattr(exc, "error", None), "code", None) or ""
        if status == 412:
            return UpdateResult.CHANGED, "the pool changed since it was read"
        if status == 404:
            return UpdateResult.GONE, "the pool no longer exists"
        if 400 <= status < 500:
            return (UpdateResult.REFUSED,
                    f"{status} {code}: {getattr(getattr(exc, 'error', None), 'message', None) or exc}")
        raise
    return UpdateResult.ACCEPTED, ""


def start_pool_delete(clients: AzureClients, account: BatchAccount, pool_id: str) -> None:
    """Start deleting a pool (management plane); not awaited - the pool disappears when its nodes are gone."""
    clients.batch_management.pool.begin_delete(account.resource_group, account.name, pool_id, polling=False)


def running_tasks(clients: AzureClients, account: BatchAccount, pool_id: str) -> int:
    """Tasks running on the pool's nodes: the sum of each node's ``runningTasksCount`` (Batch has no pool-level
    counter). One data-plane request per 1,000 nodes; called only for a pool the rollout drains that still has nodes."""
    client = clients.batch_account(account.endpoint)
    nodes = client.list_nodes(pool_id, select=["id", "state", "runningTasksCount"])
    return sum(node.running_tasks_count or 0 for node in nodes)


def active_jobs_on(clients: AzureClients, account: BatchAccount, pool_id: str) -> list[str]:
    """Ids of the account's active jobs whose ``poolInfo`` names the pool (their queued tasks would be stranded by its
    deletion)."""
    client = clients.batch_account(account.endpoint)
    jobs = client.list_jobs(filter="state eq 'active'", select=["id", "poolInfo", "state"])
    return [job.id for job in jobs if job.pool_info is not None
            and (job.pool_info.pool_id or "").lower() == pool_id.lower()]
