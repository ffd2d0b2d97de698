"""Management locks at resource level.

The ``*_by_scope`` methods percent-encode the scope's slashes (contracts §6.4), which ARM may not
accept; the ``*_at_resource_level`` methods keep the path intact, so the app uses those, splitting the
resource id into provider namespace, parent path, type and name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core.resource_ids import ResourceId, lock_target, same_id
from shared.resources.clients import AzureClients


@dataclass(frozen=True)
class Lock:
    name: str
    level: str
    notes: str
    owners: tuple[str, ...]
    scope: str = ""  # the locked resource id, as listed


def _parts(clients: AzureClients, resource_id: str) -> tuple[Any, str, str, str, str, str]:
    """The lock client for the resource's subscription, and the id split for the ``*_at_resource_level`` calls."""
    rid = ResourceId.parse(resource_id)
    if not rid.namespace or not rid.types or rid.resource_group is None:
        raise ValueError(f"{resource_id} is not a resource inside a resource group")
    # The *_at_resource_level calls take the subscription from the client, not from the id: a resource in another
    # subscription would silently address a namesake in the app's own. Only a family's gallery may be elsewhere
    # (AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY), and then through a client bound to its subscription.
    client = clients.locks
    if rid.subscription_id.lower() != clients.settings.subscription_id.lower():
        if not (clients.settings.allow_cross_subscription_gallery and rid.namespace.lower() == "microsoft.compute"
                and rid.types[0].lower() == "galleries"):
            raise ValueError(f"{resource_id} is in subscription {rid.subscription_id}, "
                             f"not the app's ({clients.settings.subscription_id})")
        client = clients.locks_in(rid.subscription_id)
    return client, rid.resource_group, rid.namespace, rid.parent_path, rid.types[-1], rid.names[-1]


def list_locks(clients: AzureClients, resource_id: str) -> list[Lock]:
    """Locks *directly on* the resource (inherited ones from the group or subscription are not listed here)."""
    client, rg, ns, parent, rtype, name = _parts(clients, resource_id)
    locks = []
    for lock in client.management_locks.list_at_resource_level(rg, ns, parent, rtype, name):
        target = lock_target(lock.id or "")
        # The list call also returns locks inherited from parents; keep the ones on this resource.
        if lock.id and (target is None or not same_id(target[0], resource_id)):
            continue
        owners = tuple(o.application_id for o in (lock.owners or []) if o.application_id)
        locks.append(Lock(lock.name or "", str(lock.level), lock.notes or "", owners, resource_id))
    return locks


def put_lock(clients: AzureClients, resource_id: str, lock_name: str, notes: str,
             owner_app_id: str | None = None) -> None:
    from azure.mgmt.resource.locks.models import LockLevel, ManagementLockObject, ManagementLockOwner

    client, rg, ns, parent, rtype, name = _parts(clients, resource_id)
    lock = ManagementLockObject(level=LockLevel.CAN_NOT_DELETE, notes=notes,
                                owners=[ManagementLockOwner(application_id=owner_app_id)] if owner_app_id else None)
    client.management_locks.create_or_update_at_resource_level(rg, ns, parent, rtype, name, lock_name, lock)


def delete_lock(clients: AzureClients, resource_id: str, lock_name: str) -> None:
    client, rg, ns, parent, rtype, name = _parts(clients, resource_id)
    client.management_locks.delete_at_resource_level(rg, ns, parent, rtype, name, lock_name)


def list_subscription_locks(clients: AzureClients, subscription: str | None = None) -> list[Any]:
    """Every lock in the app's subscription, or in a cross-subscription gallery's (one paged call), as SDK
    ``ManagementLockObject`` items."""
    client = clients.locks if subscription is None else clients.locks_in(subscription)
    return list(client.management_locks.list_at_subscription_level())


def get_lock(clients: AzureClients, resource_id: str, lock_name: str) -> Lock | None:
    """One lock directly on the resource, re-read just before acting on it; None when there is none."""
    from azure.core.exceptions import ResourceNotFoundError

    client, rg, ns, parent, rtype, name = _parts(clients, resource_id)
    try:
        lock = client.management_locks.get_at_resource_level(rg, ns, parent, rtype, name, lock_name)
    except ResourceNotFoundError:
        return None
    owners = tuple(o.application_id for o in (lock.owners or []) if o.application_id)
    return Lock(lock.name or "", str(lock.level), lock.notes or "", owners, resource_id)
