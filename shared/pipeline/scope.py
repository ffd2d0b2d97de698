"""Opt-in scope: which snapshots and images the app may act on at all, and who may opt a snapshot in.

A family names where its snapshots may live (``snapshotResourceGroups``, default its image resource group)
and may name who may opt them in (``allowedPrincipals``, checked against the claims of the event that
brought the snapshot: its writer, or the tagger for Tags-API writes). Anything outside every family's scope
is not the app's business: it is ignored *before* it is read, so an unreadable snapshot in some other team's
resource group (a 403) can never fail an invocation or become a dead letter. Each ignore is counted (per hour,
in the ``Ignored`` table) for ``autopilot status``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.core.resource_ids import InvalidResourceId, ResourceId, normalize
from shared.core.state import ConcurrencyConflict, safe_key

if TYPE_CHECKING:
    from shared.config.families import FamilyConfig
    from shared.core.context import AppContext

log = logging.getLogger("autopilot.scope")

IGNORED = "Ignored"  # per-hour counters of events ignored as out of scope: PK = hour, RK = reason
ADMISSIONS = "Admissions"  # snapshots admitted by an event's claims: PK = family, RK = snapshot id
OUT_OF_SCOPE = "out-of-scope"
UNREADABLE = "unreadable-out-of-scope"
SNAPSHOT_OUT_OF_SCOPE = "SNAPSHOT_OUT_OF_SCOPE"
PRINCIPAL_NOT_ALLOWED = "PRINCIPAL_NOT_ALLOWED"
CLAIM_APPID = "appid"
CLAIM_OIDS = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")


def _group(resource_id: str, subscription_id: str) -> str | None:
    """The resource group (lower case) of an id in the app's subscription; None for anything else."""
    try:
        rid = ResourceId.parse(resource_id)
    except InvalidResourceId:
        return None
    if rid.subscription_id.lower() != subscription_id.lower() or rid.resource_group is None:
        return None
    return rid.resource_group.lower()


def snapshot_groups(families: Iterable[FamilyConfig]) -> set[str]:
    return {g.lower() for f in families for g in f.snapshot_groups}


def image_groups(families: Iterable[FamilyConfig]) -> set[str]:
    """Where the app's own images live: image resource groups and galleries."""
    return {g.lower() for f in families for g in (f.image_resource_group or "", f.gallery.resource_group) if g}


def watched_groups(families: Iterable[FamilyConfig]) -> list[str]:
    """Every resource group the pipeline's event subscription must see (sorted; the Bicep filters on the same list)."""
    families = list(families)
    return sorted(snapshot_groups(families) | image_groups(families))


def in_family_scope(family: FamilyConfig, snapshot_id: str, subscription_id: str) -> bool:
    return _group(snapshot_id, subscription_id) in {g.lower() for g in family.snapshot_groups}


def in_any_snapshot_scope(families: Iterable[FamilyConfig], snapshot_id: str, subscription_id: str) -> bool:
    return _group(snapshot_id, subscription_id) in snapshot_groups(families)


def in_any_image_scope(families: Iterable[FamilyConfig], resource_id: str, subscription_id: str) -> bool:
    return _group(resource_id, subscription_id) in image_groups(families)


def principals_of(claims: Mapping[str, str]) -> set[str]:
    """The writer's application id and object id, lower case."""
    return {str(claims[k]).lower() for k in (CLAIM_APPID, *CLAIM_OIDS) if claims.get(k)}


def principal_refusal(context: AppContext, family: FamilyConfig, snapshot_id: str,
                      claims: Mapping[str, str] | None) -> str | None:
    """None when the snapshot may opt in to ``family``; else why not. Records admissions by events, so that a
    snapshot the sweep finds again later (no claims) is recognised as admitted."""
    if not family.allowed_principals:
        return None
    table = context.state.table(ADMISSIONS)
    row = safe_key(normalize(snapshot_id))
    if claims is None:
        if table.get(family.name, row) is not None:
            return None
        return "it was found without an event (no claims say who wrote it), and no earlier event admitted it"
    who = principals_of(claims)
    if who & set(family.allowed_principals):
        with contextlib.suppress(ConcurrencyConflict):  # admitted before
            table.insert(family.name, row, {"snapshotId": snapshot_id[:1024],
                                            "principal": sorted(who & set(family.allowed_principals))[0]})
        return None
    return f"its writer ({', '.join(sorted(who)) or 'unknown'}) is not in the family's allowedPrincipals"


def count_ignored(context: AppContext, reason: str, resource_id: str, detail: str = "") -> None:
    """One warning line and one count per ignored event (best effort: counting never fails the invocation)."""
    from shared.core.triggers import shown

    log.warning("ignored %s: %s%s", shown(resource_id), reason, f" ({detail})" if detail else "")
    now = context.clock.now()
    table = context.state.table(IGNORED)
    hour = now.strftime("%Y%m%d%H")
    for _ in range(3):
        try:
            record = table.get(hour, reason)
            data = {"count": int(record.data.get("count", 0)) + 1 if record else 1, "last": resource_id[:1024]}
            table.save(hour, reason, data, expected=record)
            return
        except ConcurrencyConflict:
            continue
        except Exception as exc:  # the count is for people; the ignore itself must stand
            log.warning("could not count an ignored event: %s", exc)
            return


def ignored_counts(context: AppContext, *, hours: int = 24) -> dict[str, int]:
    """Ignored events per reason over the last ``hours`` (for ``autopilot status``)."""
    now = context.clock.now()
    wanted = {(now - timedelta(hours=h)).strftime("%Y%m%d%H") for h in range(hours)}
    counts: dict[str, int] = {}
    for record in context.state.table(IGNORED).query():
        if record.partition in wanted:
            counts[record.row] = counts.get(record.row, 0) + int(record.data.get("count", 0))
    return counts


def scope_refusal_fix(family: FamilyConfig, snapshot_id: str) -> str:
    groups = ", ".join(family.snapshot_groups) or "(none)"
    return (f"take the snapshot in one of the family's snapshotResourceGroups ({groups}), or add its resource group to "
            f"families.{family.name}.snapshotResourceGroups (and to the deployment, which filters events and grants "
            "roles there); "
            f"otherwise remove the autopilot.* tags from {snapshot_id}")


def principal_refusal_fix(family: FamilyConfig) -> str:
    return (f"have someone listed in families.{family.name}.allowedPrincipals write (or re-tag) the snapshot, or add "
            "the writer's "
            "object or application id to allowedPrincipals")


def describe_claims(claims: Mapping[str, Any] | None) -> str:
    return ", ".join(sorted(principals_of(claims or {}))) or "none"


MAX_LIVE_VERSIONS = "MAX_LIVE_VERSIONS"


def live_version_findings(context: AppContext, family: FamilyConfig, key: Any, table_name: str, *,
                          counted: tuple[str, ...],
                          built: str) -> list[Any]:
    """A refusal when ``family.max_live_versions`` is set and the family already has that many live versions: being
    built (a ``counted`` stage other than ``built``), or built by the app and still present in the family's gallery
    image definition (its own tags say so; this also counts versions whose state rows have expired). A version is
    retired once its gallery image version is gone: deleted by retention (shared/lifecycle/version_retention.py, after a
    rollout moved its pools away) or by a person. One paged list of the definition's versions per check (once per
    version validated)."""
    from shared.core.ownership import MANAGED_BY, MANAGED_BY_TAG, TAG_FAMILY
    from shared.guard.lock_plan import LOCK_NAME
    from shared.pipeline import image_rules
    from shared.resources import compute

    if family.max_live_versions is None:
        return []
    building = {r.row for r in context.state.table(table_name).query(key.partition_key)
                if r.row != key.row_key and r.data.get("stage") in counted and r.data.get("stage") != built}
    g = family.gallery
    present = set()
    for version in compute.list_gallery_image_versions(context.clients, g.resource_group, g.name, g.image_definition,
                                                        g.subscription):
        tags = {str(k).lower(): str(v) for k, v in (version.get("tags") or {}).items()}
        name = str(version.get("name", ""))
        ours = (tags.get(MANAGED_BY_TAG.lower()) == MANAGED_BY
                and tags.get(TAG_FAMILY, "").lower() == family.name.lower())
        if ours and name != key.row_key:
            present.add(name)
    live = sorted(building | present)
    if len(live) < family.max_live_versions:
        return []
    g_id = f"{g.name}/{g.image_definition}"
    return [image_rules.Finding(
        image_rules.REFUSE, MAX_LIVE_VERSIONS, None,
        f"family {family.name} already has {len(live)} live version(s) ({', '.join(live[:10])}); maxLiveVersions is "
        f"{family.max_live_versions}",
        f"retire one: delete a version of gallery image {g_id} the family no longer needs (retention, "
        f"families.{family.name}.retention, deletes versions no pool uses; by hand, delete or move the pools "
        "that use it, "
        f"wait for the app to remove its lock {LOCK_NAME}, set safetyProfile.blockDeletionBeforeEndOfLife to false "
        "(az sig image-version update --set safetyProfile.blockDeletionBeforeEndOfLife=false) and delete the version), "
        f"or raise families.{family.name}.maxLiveVersions; then re-tag one snapshot of this set (a refused version is "
        "checked again when its snapshots change)")]
