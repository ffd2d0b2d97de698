"""Observe what managed pools use, across every configured Batch account (I/O; decisions are elsewhere).

One data-plane list call per account gives every pool's image reference and metadata; each distinct
image is then read once to follow it to what it was built from. The app's own locks come from one
subscription-level list call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from shared.core.context import AppContext
from shared.core.resource_ids import normalize
from shared.guard.lock_plan import (
    GALLERY_VERSION,
    LOCK_NAME,
    MANAGED_IMAGE,
    GuardedResource,
    PoolUse,
    build_graph,
    image_sources,
    kind_of,
    pool_use,
)
from shared.resources import batch_accounts, batch_pools, compute, locks
from shared.resources.locks import Lock

log = logging.getLogger("autopilot.references")


@dataclass
class Inventory:
    pools: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # account id -> pools (data-plane JSON)
    uses: list[PoolUse] = field(default_factory=list)
    sources_of: dict[str, list[str]] = field(default_factory=dict)
    missing_images: set[str] = field(default_factory=set)  # normalised ids of referenced images that do not exist
    # Missing managed images reached only as the source of an existing gallery version: the pipeline's dropped
    # intermediates. The version is an independent copy, so no pool is broken by their absence.
    dropped_sources: set[str] = field(default_factory=set)
    unreadable_accounts: dict[str, str] = field(default_factory=dict)
    subscription_id: str = ""  # resources elsewhere cannot be read or locked by the app: left out
    # ... except gallery resources in a family gallery's subscription (AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY)
    gallery_subscriptions: tuple[str, ...] = ()
    # ids pool metadata named that the guard ignores (shared/guard/trust.py)
    untrusted: dict[str, str] = field(default_factory=dict)

    @property
    def graph(self) -> dict[str, GuardedResource]:
        graph = build_graph(self.uses, self.sources_of)
        if not self.subscription_id:
            return graph
        prefix = f"/subscriptions/{self.subscription_id.lower()}/"
        galleries = tuple(f"/subscriptions/{s.lower()}/" for s in self.gallery_subscriptions)
        return {key: entry for key, entry in graph.items() if key.startswith(prefix)
                or (galleries and key.startswith(galleries) and "/providers/microsoft.compute/galleries/" in key)}


def account_ids(context: AppContext) -> list[str]:
    """The accounts the app watches: the setting, plus every account a family creates pools in."""
    seen: dict[str, str] = {a.lower(): a for a in context.settings.batch_accounts}
    families_json = context.settings.families_json
    if families_json:
        from shared.config.families import parse_families

        for family in parse_families(families_json).families.values():
            for pool in family.pools:
                seen.setdefault(pool.account.lower(), pool.account)
    return list(seen.values())


def observe(context: AppContext, *, follow_sources: bool = True) -> Inventory:
    inventory = Inventory(subscription_id=context.settings.subscription_id,
                          gallery_subscriptions=tuple(gallery_subscriptions(context)))
    for account_id in account_ids(context):
        try:
            account = batch_accounts.get_account(context.clients, account_id)
            pools = batch_pools.list_pools(context.clients, account)
        except Exception as exc:  # one unreachable account must not blind the app to the others
            log.warning("cannot list pools of %s: %s", account_id, exc)
            inventory.unreadable_accounts[account_id] = str(exc)
            continue
        inventory.pools[account.id] = pools
        for pool in pools:
            use = pool_use(account.id, pool)
            if use is not None:
                inventory.uses.append(use)
    from shared.guard.trust import filter_uses

    # pool metadata may point the guard only at the family's own places or the app's builds
    filter_uses(context, inventory)
    if follow_sources:
        _follow_sources(context, inventory)
    return inventory


def _follow_sources(context: AppContext, inventory: Inventory) -> None:
    pending = [(rid, False) for use in inventory.uses for rid in (use.image_id, *use.recorded_sources) if rid]
    seen: set[str] = set()
    direct = {normalize(rid) for rid, _ in pending}
    while pending:
        rid, from_version = pending.pop()
        key = normalize(rid)
        kind = kind_of(rid)
        if key in seen or kind not in (GALLERY_VERSION, MANAGED_IMAGE):
            continue
        seen.add(key)
        try:
            resource = compute.get_any_image(context.clients, rid)
        except compute.ForeignSubscription as exc:
            log.warning("not guarding %s", exc)
            continue
        if resource is None:
            inventory.missing_images.add(key)
            if from_version and key not in direct:
                inventory.dropped_sources.add(key)
            continue
        sources = image_sources(kind, resource)
        inventory.sources_of[key] = sources
        # Only the app's own versions had their intermediate image dropped on purpose (pipeline, keepManagedImage:
        # false; with keepManagedImage the pool records the image, so it counts as used directly). Anyone else's missing
        # source is breakage.
        app_built = (kind == GALLERY_VERSION
                     and str((resource.get("tags") or {}).get("autopilot.managedBy", "")) == "batch-image-autopilot")
        pending.extend((source, app_built) for source in sources)


def lock_owner(context: AppContext) -> str | None:
    """The application id the app records as its locks' owner (``owners[].applicationId``).

    The app's own identity (``AZURE_CLIENT_ID``); with the emulator credential, its app id. None
    when the app cannot tell who it is (a system-assigned identity without ``AZURE_CLIENT_ID``):
    its locks then carry no owner.
    """
    settings = context.settings
    if settings.identity_client_id:
        return settings.identity_client_id
    return min(settings.app_ids) if settings.app_ids else None


def is_ours(owners: tuple[str, ...], owner: str | None) -> bool:
    """Whether a lock named ``LOCK_NAME`` with these owners is the app's own.

    A lock that names another owner (or none, when the app knows its id) was placed by someone
    else under the same name: the app never removes or overwrites it.
    """
    if owner is None:
        return not owners
    return owner.lower() in {o.lower() for o in owners}


@dataclass
class AppLocks:
    ours: dict[str, Lock] = field(default_factory=dict)  # normalised resource id -> the app's lock
    taken: set[str] = field(default_factory=set)  # normalised ids holding someone else's lock named LOCK_NAME


def gallery_subscriptions(context: AppContext) -> list[str]:
    """Other subscriptions that hold a family's gallery (AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY), whose locks the
    guard lists too (one more list call each)."""
    if not context.settings.allow_cross_subscription_gallery or not context.settings.families_json:
        return []
    from shared.config.families import FamilyConfigError, parse_families

    try:
        families = parse_families(context.settings.families_json)
    except FamilyConfigError:
        return []
    own = context.settings.subscription_id.lower()
    return sorted({f.gallery.subscription.lower() for f in families
                   if f.gallery.subscription and f.gallery.subscription.lower() != own})


def app_locks(context: AppContext) -> AppLocks:
    """The app's own locks in the subscription (one list call), and the scopes where its lock name is taken."""
    from shared.core.resource_ids import lock_target

    owner = lock_owner(context)
    found = AppLocks()
    listed = [lock for sub in (None, *gallery_subscriptions(context))
              for lock in locks.list_subscription_locks(context.clients, sub)]
    for lock in listed:
        target = lock_target(lock.id or "")
        if target is None or target[1].lower() != LOCK_NAME or kind_of(target[0]) is None:
            continue
        owners = tuple(o.application_id for o in (lock.owners or []) if o.application_id)
        key = normalize(target[0])
        if not is_ours(owners, owner):
            found.taken.add(key)
            continue
        found.ours[key] = Lock(lock.name or "", str(lock.level), lock.notes or "", owners, target[0])
    return found


def our_locks(context: AppContext) -> dict[str, Lock]:
    """The app's own locks in the subscription, by normalised resource id."""
    return app_locks(context).ours
