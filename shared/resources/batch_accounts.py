"""Batch accounts (management plane): where each account lives and how to reach its data plane."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from shared.core.resource_ids import ResourceId
from shared.resources.clients import AzureClients

# Account endpoints and regions do not change while an account exists; re-reading them every
# tick would add one ARM call per account per tick for nothing. An hour bounds staleness.
ACCOUNT_CACHE_SECONDS = 3600


@dataclass(frozen=True)
class BatchAccount:
    id: str
    name: str
    resource_group: str
    subscription_id: str
    location: str  # normalised: lower-case, no spaces ("westeurope")
    endpoint: str  # accountEndpoint as ARM gives it (no scheme)
    pool_allocation_mode: str
    dedicated_core_quota: int | None
    low_priority_core_quota: int | None
    dedicated_core_quota_per_vm_family: tuple[tuple[str, int], ...] = ()
    dedicated_core_quota_per_vm_family_enforced: bool = False


def normalize_region(region: str) -> str:
    return region.replace(" ", "").lower()


_cache: dict[str, tuple[float, BatchAccount]] = {}
_cache_lock = threading.Lock()


def get_account(clients: AzureClients, account_id: str, *, use_cache: bool = True) -> BatchAccount:
    # Keyed by the ARM endpoint too: the cache is per process, and a process that talks to two clouds
    # (the local emulator started twice, a sovereign cloud next to public Azure) must never get the
    # other one's accountEndpoint back.
    key = f"{clients.settings.arm_endpoint.rstrip('/').lower()}|{account_id.lower()}"
    if use_cache:
        with _cache_lock:
            hit = _cache.get(key)
        if hit and time.monotonic() - hit[0] < ACCOUNT_CACHE_SECONDS and hit[1].endpoint:
            return hit[1]
    rid = ResourceId.parse(account_id)
    if not rid.is_type("Microsoft.Batch/batchAccounts") or rid.resource_group is None:
        raise ValueError(f"{account_id} is not a Batch account resource id")
    raw = clients.batch_management.batch_account.get(rid.resource_group, rid.name)
    account = BatchAccount(
        id=raw.id or account_id,
        name=raw.name or rid.name,
        resource_group=rid.resource_group,
        subscription_id=rid.subscription_id,
        location=normalize_region(raw.location or ""),
        endpoint=raw.account_endpoint or "",
        # the enum value, not its name
        pool_allocation_mode=str(getattr(raw.pool_allocation_mode, "value", raw.pool_allocation_mode)
                                 or "BatchService"),
        dedicated_core_quota=raw.dedicated_core_quota,
        low_priority_core_quota=raw.low_priority_core_quota,
        dedicated_core_quota_per_vm_family=tuple((q.name, int(q.core_quota))
                                                 for q in raw.dedicated_core_quota_per_vm_family or []
                                                 if q.name and q.core_quota is not None),
        dedicated_core_quota_per_vm_family_enforced=bool(raw.dedicated_core_quota_per_vm_family_enforced),
    )
    with _cache_lock:
        _cache[key] = (time.monotonic(), account)
    return account


def forget_accounts() -> None:
    with _cache_lock:
        _cache.clear()
