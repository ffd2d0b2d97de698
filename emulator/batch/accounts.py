"""Azure Batch: accounts (create, update, quotas, look-up by name for the data plane, deletion with their pools)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from emulator.batch.base import _ACCOUNT_NAME, BatchCore
from emulator.batch.capacity import KINDS
from emulator.batch.exceptions import (
    AccountNameInvalid,
    AccountNameNotAvailable,
    AccountNotFound,
    InvalidPropertyValue,
    InvalidResourceLocation,
    PropertyCannotBeUpdated,
)
from emulator.exceptions import ResourceNotFound
from emulator.ids import key

if TYPE_CHECKING:
    from emulator.batch.pools import Pool


@dataclass(eq=False)
class BatchAccount:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    created: datetime
    pool_allocation_mode: str = "BatchService"
    dedicated_core_quota: int = 50_000
    low_priority_core_quota: int = 50_000
    pool_quota: int = 100
    active_job_and_job_schedule_quota: int = 300
    per_family_quota: dict[str, int] = field(default_factory=dict)
    per_family_enforced: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    auto_storage: dict[str, Any] | None = None
    key_vault_reference: dict[str, Any] | None = None
    public_network_access: str = "Enabled"
    allowed_authentication_modes: list[str] = field(
        default_factory=lambda: ["SharedKey", "AAD", "TaskAuthenticationToken"])
    identity: dict[str, Any] = field(default_factory=lambda: {"type": "None"})
    pools: dict[str, Pool] = field(default_factory=dict)  # lower-case pool id -> pool
    used_cores: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    used_family_cores: dict[str, int] = field(default_factory=dict)
    _sorted_ids: list[str] | None = None

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/Microsoft.Batch"
                f"/batchAccounts/{self.name}")

    @property
    def key(self) -> str:
        return key(self.id)

    @property
    def batch_service_mode(self) -> bool:
        return self.pool_allocation_mode == "BatchService"

    def sorted_pool_ids(self) -> list[str]:
        """Lower-case pool ids in order (cached until a pool is added or removed): listing is O(pools)."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.pools)
        return self._sorted_ids

    def iter_pool_keys(self, after: str | None = None, *, eq: str | None = None,
                       prefix: str | None = None) -> Iterator[str]:
        """Lower-case pool ids in order, strictly after ``after`` (a paging token), optionally only ``eq`` or
        ``prefix``."""
        after = after.lower() if after else None
        if eq is not None:
            k = eq.lower()
            if k in self.pools and (after is None or k > after):
                yield k
            return
        ids = self.sorted_pool_ids()
        start = bisect.bisect_right(ids, after) if after else 0
        if prefix:
            prefix = prefix.lower()
            start = max(start, bisect.bisect_left(ids, prefix))
        for i in range(start, len(ids)):
            if prefix and not ids[i].startswith(prefix):
                return
            yield ids[i]


class AccountsMixin(BatchCore):
    """Batch accounts: the management-plane PUT/GET/DELETE/list, and the look-up both planes use."""

    def set_account_quotas(self, account_name: str, *, dedicated_cores: int | None = None,
                           low_priority_cores: int | None = None,
                           pool_quota: int | None = None, per_vm_family: Mapping[str, int] | None = None,
                           per_vm_family_enforced: bool | None = None) -> BatchAccount:
        """Change an account's Batch quotas (they apply to BatchService-mode accounts only, as in Azure)."""
        with self._lock:
            account = self._account_by_name(account_name, "arm")
            if dedicated_cores is not None:
                account.dedicated_core_quota = int(dedicated_cores)
            if low_priority_cores is not None:
                account.low_priority_core_quota = int(low_priority_cores)
            if pool_quota is not None:
                account.pool_quota = int(pool_quota)
            if per_vm_family is not None:
                account.per_family_quota.update({k: int(v) for k, v in per_vm_family.items()})
            if per_vm_family_enforced is not None:
                account.per_family_enforced = bool(per_vm_family_enforced)
            return account

    # ------------------------------------------------------------------------------------------
    # accounts
    # ------------------------------------------------------------------------------------------
    def put_account(self, subscription_id: str, resource_group: str, name: str, location: str, *,
                    pool_allocation_mode: str | None = None, dedicated_core_quota: int | None = None,
                    low_priority_core_quota: int | None = None, pool_quota: int | None = None,
                    dedicated_core_quota_per_vm_family: Mapping[str, int] | None = None,
                    dedicated_core_quota_per_vm_family_enforced: bool | None = None,
                    tags: Mapping[str, str] | None = None,
                    auto_storage: Mapping[str, Any] | None = None, key_vault_reference: Mapping[str, Any] | None = None,
                    public_network_access: str | None = None, allowed_authentication_modes: list[str] | None = None,
                    identity: Mapping[str, Any] | None = None) -> tuple[BatchAccount, bool]:
        """Create or update an account (the management-plane PUT and scenario setup share this)."""
        now = self._now()
        if not _ACCOUNT_NAME.match(name):
            raise AccountNameInvalid(f"The Batch account name '{name}' is invalid: it must be 3 to 24 characters, "
                                     "lower-case letters and numbers only.", plane="arm")
        location = location.replace(" ", "").lower()
        mode = None
        if pool_allocation_mode is not None:
            mode = {"batchservice": "BatchService",
                    "usersubscription": "UserSubscription"}.get(str(pool_allocation_mode).lower())
            if mode is None:
                raise InvalidPropertyValue(f"poolAllocationMode '{pool_allocation_mode}' is invalid: use "
                                           "BatchService or UserSubscription.", plane="arm")
        group = self.emulator.resources.require_group(subscription_id, resource_group)
        with self._lock:
            account_id = (f"/subscriptions/{subscription_id}/resourceGroups/{group.name}/providers/Microsoft.Batch"
                          f"/batchAccounts/{name}")
            existing = self.accounts.get(key(account_id))
            other = self._by_name.get(name.lower())
            if other is not None and other is not existing:
                raise AccountNameNotAvailable(f"The Batch account name '{name}' is already in use.", plane="arm")
            if existing is not None:
                if existing.location != location:
                    raise InvalidResourceLocation(f"The resource '{name}' already exists in location "
                                                  f"'{existing.location}' in resource group '{resource_group}'. A "
                                                  "resource with the same name cannot be created in location "
                                                  f"'{location}'.", plane="arm")
                if mode is not None and mode != existing.pool_allocation_mode:
                    raise PropertyCannotBeUpdated("The poolAllocationMode of an existing Batch account cannot be "
                                                  "changed.", plane="arm")
                account, created = existing, False
            else:
                fam = {s.family: int(self.account_defaults["dedicated_core_quota"]) for s in self.vm_sizes.values()}
                account = BatchAccount(subscription_id, group.name, name, location, created=now,
                                       dedicated_core_quota=int(self.account_defaults["dedicated_core_quota"]),
                                       low_priority_core_quota=int(self.account_defaults["low_priority_core_quota"]),
                                       pool_quota=int(self.account_defaults["pool_quota"]), per_family_quota=fam,
                                       per_family_enforced=bool(
                                           self.account_defaults["dedicated_core_quota_per_vm_family_enforced"]))
                if mode is not None:
                    account.pool_allocation_mode = mode
                self.accounts[account.key] = account
                self._by_name[name.lower()] = account
                created = True
            if dedicated_core_quota is not None:
                account.dedicated_core_quota = int(dedicated_core_quota)
            if low_priority_core_quota is not None:
                account.low_priority_core_quota = int(low_priority_core_quota)
            if pool_quota is not None:
                account.pool_quota = int(pool_quota)
            if dedicated_core_quota_per_vm_family is not None:
                account.per_family_quota.update({k: int(v) for k, v in dedicated_core_quota_per_vm_family.items()})
            if dedicated_core_quota_per_vm_family_enforced is not None:
                account.per_family_enforced = bool(dedicated_core_quota_per_vm_family_enforced)
            if tags is not None:
                account.tags = dict(tags)
            if auto_storage is not None:
                account.auto_storage = {**dict(auto_storage),
                                        "lastKeySync": (account.auto_storage or {}).get("lastKeySync") or now}
            if key_vault_reference is not None:
                account.key_vault_reference = dict(key_vault_reference)
            if public_network_access is not None:
                account.public_network_access = public_network_access
            if allowed_authentication_modes is not None:
                account.allowed_authentication_modes = list(allowed_authentication_modes)
            if identity is not None:
                account.identity = dict(identity)
            return account, created

    def create_account(self, subscription_id: str, resource_group: str, name: str, location: str,
                       **properties: Any) -> BatchAccount:
        """Scenario setup: create (or update) an account. Keywords as :meth:`put_account`."""
        return self.put_account(subscription_id, resource_group, name, location, **properties)[0]

    def get_account(self, subscription_id: str, resource_group: str, name: str) -> BatchAccount:
        account = self.accounts.get(
            key(f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Batch"
                f"/batchAccounts/{name}"))
        if account is None:
            raise ResourceNotFound(f"The Resource 'Microsoft.Batch/batchAccounts/{name}' under resource group "
                                   f"'{resource_group}' was not found. For more details please go to "
                                   "https://aka.ms/ARMResourceNotFoundFix")
        return account

    def account_by_name(self, name: str) -> BatchAccount:
        return self._account_by_name(name, "arm")

    def _account_by_name(self, name: str, plane: str) -> BatchAccount:
        account = self._by_name.get(name.lower())
        if account is None:
            message = f"The Batch account '{name}' does not exist."
            raise AccountNotFound(message, plane=plane) if plane == "batch" else ResourceNotFound(message)
        return account

    def list_accounts(self, subscription_id: str, resource_group: str | None = None) -> list[BatchAccount]:
        with self._lock:
            out = [a for a in self.accounts.values() if a.subscription_id.lower() == subscription_id.lower()
                   and (resource_group is None or a.resource_group.lower() == resource_group.lower())]
        return sorted(out, key=lambda a: a.name)

    def delete_account(self, subscription_id: str, resource_group: str, name: str) -> bool:
        with self._lock:
            account = self.accounts.get(
                key(f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Batch"
                    f"/batchAccounts/{name}"))
            if account is None:
                return False
            self._remove_account(account)
            return True

    def _remove_account(self, account: BatchAccount) -> None:
        for pool in list(account.pools.values()):
            self._remove_pool(pool)
        self.accounts.pop(account.key, None)
        if self._by_name.get(account.name.lower()) is account:
            del self._by_name[account.name.lower()]

    def _on_group_deleted(self, subscription_id: str, resource_group: str) -> None:
        with self._lock:
            for account in list(self.accounts.values()):
                if (account.subscription_id.lower() == subscription_id.lower()
                    and account.resource_group.lower() == resource_group.lower()):
                    self._remove_account(account)
