"""Guard trust: what a pool's ``autopilot.*`` metadata may point the image guard at.

Anyone who can write a pool in a watched Batch account can write its metadata. The pool's image reference is
Batch's truth (the pool really uses that image, and Batch checked the creator could read it), but the metadata's
extra ids (``autopilot.managedImageId``, ``autopilot.snapshotIds``) are only claims. The guard follows them only
to resources in the pool's family's image resource group, gallery or snapshot resource groups, or to images the
app built (its tags); anything else is ignored with a warning and listed in ``autopilot status``, so nobody can
lead the app to lock another team's snapshot against its owner's delete.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from shared.core import ownership
from shared.core.resource_ids import InvalidResourceId, ResourceId
from shared.guard.lock_plan import GALLERY_VERSION, MANAGED_IMAGE, kind_of

if TYPE_CHECKING:
    from shared.core.context import AppContext
    from shared.guard.references import Inventory

log = logging.getLogger("autopilot.guard.trust")


def family_groups(context: AppContext, family_name: str) -> set[str]:
    from shared.config.families import parse_families

    families = parse_families(context.settings.families_json) if context.settings.families_json else None
    family = families.get(family_name) if families is not None and family_name else None
    if family is None:
        return set()
    return {g.lower() for g in (*family.snapshot_groups, family.image_resource_group or "",
                                family.gallery.resource_group) if g}


def untrusted_reason(context: AppContext, resource_id: str, family_name: str, groups: set[str]) -> str | None:
    """None when the guard may follow ``resource_id`` from pool metadata; else why not."""
    try:
        rid = ResourceId.parse(resource_id)
    except InvalidResourceId:
        return "not a resource id"
    if (rid.subscription_id.lower() == context.settings.subscription_id.lower()
        and (rid.resource_group or "").lower() in groups):
        return None
    if kind_of(resource_id) in (GALLERY_VERSION, MANAGED_IMAGE):
        from shared.resources import compute

        try:
            resource = compute.get_any_image(context.clients, resource_id)
        except Exception as exc:  # unreadable: certainly not provably the app's
            return f"it cannot be read ({type(exc).__name__})"
        tags = {str(k).lower(): str(v) for k, v in ((resource or {}).get("tags") or {}).items()}
        if resource is not None and tags.get(ownership.MANAGED_BY_TAG.lower()) == ownership.MANAGED_BY:
            return None
    where = (f"family {family_name!r}'s resource groups" if groups else "any configured family's resource groups (the "
             "pool names no known family)")
    return f"it is outside {where} and not built by the app"


def filter_uses(context: AppContext, inventory: Inventory) -> None:
    """Drop the metadata-named ids the guard does not trust from ``inventory.uses``; record them in
    ``inventory.untrusted``."""
    cache: dict[tuple[str, str], str | None] = {}
    kept = []
    for use in inventory.uses:
        groups = family_groups(context, use.family)
        trusted = []
        for rid in use.recorded_sources:
            key = (rid.lower(), use.family.lower())
            if key not in cache:
                cache[key] = untrusted_reason(context, rid, use.family, groups)
            why = cache[key]
            if why is None:
                trusted.append(rid)
            else:
                inventory.untrusted[rid] = f"named by pool {use.pool.label}'s metadata: {why}"
                log.warning("guard: not following %s from pool %s metadata: %s", rid, use.pool.label, why)
        kept.append(replace(use, recorded_sources=tuple(trusted)))
    inventory.uses = kept
