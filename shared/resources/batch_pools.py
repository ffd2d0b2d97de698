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
from datetime import timedelta
from typing import Any

from shared.clients import AzureClients
from shared.resources.batch_accounts import BatchAccount

# The data-plane api-version azure-batch 15.1.0 sends (contracts §4); the resize request below must match it.
BATCH_API_VERSION = "2025-06-01"

# Exactly the fields the watch reads: the list call stays one small page per 1,000 pools.
POOL_LIST_SELECT = [
    "id", "eTag", "allocationState", "allocationStateTransitionTime", "currentDedicatedNodes",
    "currentLowPriorityNodes", "targetDedicatedNodes", "targetLowPriorityNodes", "enableAutoScale",
    "resizeErrors", "resizeTimeout", "metadata", "vmSize", "virtualMachineConfiguration",
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


def get_pool(clients: AzureClients, account: BatchAccount, pool_id: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return clients.batch_account(account.endpoint).get_pool(pool_id, select=POOL_LIST_SELECT).as_dict()
    except ResourceNotFoundError:
        return None


def iso_duration(delta: timedelta) -> str:
    minutes, seconds = divmod(int(delta.total_seconds()), 60)
    return f"PT{minutes}M{seconds}S" if seconds else f"PT{minutes}M"


def resize_pool(clients: AzureClients, account: BatchAccount, pool_id: str, *, etag: str | None, target_dedicated: int,
                target_spot: int, resize_timeout: timedelta, node_deallocation_option: str | None = None) -> ResizeResult:
    from urllib.parse import quote

    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    body: dict[str, Any] = {
        "targetDedicatedNodes": target_dedicated,
        "targetLowPriorityNodes": target_spot,
        "resizeTimeout": iso_duration(resize_timeout),
    }
    if node_deallocation_option:
        body["nodeDeallocationOption"] = node_deallocation_option.lower()
    headers = {"Content-Type": "application/json; odata=minimalmetadata"}
    if etag:
        # If-Match makes the resize conditional on the pool we decided on: if another instance
        # (or a person) acted in between, Batch answers 412 and nothing is done twice.
        headers["If-Match"] = etag
    request = HttpRequest("POST", f"/pools/{quote(pool_id, safe='')}/resize?api-version={BATCH_API_VERSION}", json=body, headers=headers)
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


def create_pool(clients: AzureClients, account: BatchAccount, pool_id: str, body: dict[str, Any]) -> bool:
    """Create-only (``If-None-Match: *``): True when created, False when the pool already existed.

    A redelivered event must never overwrite a pool a team may have changed since.
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
        raise
    return True


def list_pools_management(clients: AzureClients, account: BatchAccount) -> list[dict[str, Any]]:
    """Pools as the management plane shows them (for the guard's reference graph: image ids)."""
    return [pool.as_dict() for pool in clients.batch_management.pool.list_by_batch_account(account.resource_group, account.name)]


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
            return UpdateResult.REFUSED, f"{status} {code}: {getattr(getattr(exc, 'error', None), 'message', None) or exc}"
        raise
    return UpdateResult.ACCEPTED, ""


def start_pool_delete(clients: AzureClients, account: BatchAccount, pool_id: str) -> None:
    """Start deleting a pool (management plane); not awaited - the pool disappears when its nodes are gone."""
    clients.batch_management.pool.begin_delete(account.resource_group, account.name, pool_id, polling=False)


def active_jobs_on(clients: AzureClients, account: BatchAccount, pool_id: str) -> list[str]:
    """Ids of the account's active jobs whose ``poolInfo`` names the pool (their queued tasks would be stranded by its deletion)."""
    client = clients.batch_account(account.endpoint)
    jobs = client.list_jobs(filter="state eq 'active'", select=["id", "poolInfo", "state"])
    return [job.id for job in jobs if job.pool_info is not None and (job.pool_info.pool_id or "").lower() == pool_id.lower()]
