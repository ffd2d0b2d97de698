"""The image guard's pure core: what pools use, and which locks that calls for.

The Batch custom-image doc: "The managed image resource should exist for the lifetime of the pool
to allow scale-up"; once it (or the snapshot under it) is deleted the next resize fails with
AllocationFailed. So every gallery image version, managed image and source snapshot that a managed
pool depends on carries a ``CanNotDelete`` lock owned by the app, and the lock goes away when the
last such pool does. A lock on an image does not protect its source snapshot (product brief), so
each level is locked separately.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core import pool_metadata
from shared.core.resource_ids import InvalidResourceId, ResourceId, normalize

LOCK_NAME = "batch-image-autopilot"  # recognisable, and the only lock name the app ever touches
NOTES_LIMIT = 512  # ManagementLockObject.notes: "Maximum of 512 characters"

GALLERY_VERSION = "Microsoft.Compute/galleries/images/versions"
MANAGED_IMAGE = "Microsoft.Compute/images"
SNAPSHOT = "Microsoft.Compute/snapshots"
GUARDED_TYPES = (GALLERY_VERSION, MANAGED_IMAGE, SNAPSHOT)


@dataclass(frozen=True, order=True)
class PoolRef:
    account_id: str
    pool_id: str

    @property
    def label(self) -> str:
        return f"{ResourceId.parse(self.account_id).name}/{self.pool_id}"

    @property
    def resource_id(self) -> str:
        return f"{self.account_id}/pools/{self.pool_id}"


@dataclass
class GuardedResource:
    resource_id: str
    kind: str  # one of GUARDED_TYPES
    pools: set[PoolRef] = field(default_factory=set)


@dataclass(frozen=True)
class PoolUse:
    """What one managed pool uses directly: its image reference, plus what its metadata records."""

    pool: PoolRef
    image_id: str | None
    recorded_sources: tuple[str, ...] = ()  # managed image / snapshot ids from the pool's metadata
    family: str = ""  # the pool's autopilot.family metadata (what shared/guard/trust.py trusts it to name)


def pool_use(account_id: str, pool: Mapping[str, Any]) -> PoolUse | None:
    """From a pool in either plane's JSON; None for pools the app does not manage."""
    props = pool.get("properties", pool)
    metadata = pool_metadata.as_dict(props.get("metadata"))
    if not pool_metadata.is_managed(metadata):
        return None
    vm = (props.get("virtualMachineConfiguration")
          or (props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {})
    image_id = ((vm.get("imageReference") or {}).get("id")
                or (vm.get("imageReference") or {}).get("virtualMachineImageId"))
    recorded = [metadata.get(pool_metadata.MANAGED_IMAGE_ID, "")]
    recorded += metadata.get(pool_metadata.SNAPSHOT_IDS, "").split(",")
    pool_id = pool.get("name") or pool.get("id", "")
    if "/" in pool_id:
        pool_id = pool_id.rsplit("/", 1)[-1]
    return PoolUse(PoolRef(account_id, pool_id), image_id, tuple(r.strip() for r in recorded if r and r.strip()),
                   metadata.get(pool_metadata.FAMILY, "").strip())


def image_sources(kind: str, resource: Mapping[str, Any] | None) -> list[str]:
    """The resources an image was built from, read from its own definition.

    Gallery version: ``storageProfile.source.id`` (a managed image) or ``osDiskImage.source.id`` /
    ``dataDiskImages[].source.id`` (snapshots). Managed image: ``storageProfile.osDisk.snapshot.id``
    and ``dataDisks[].snapshot.id``.
    """
    if not resource:
        return []
    profile = (resource.get("properties") or {}).get("storageProfile") or {}
    found: list[str | None] = []
    if kind == GALLERY_VERSION:
        found.append((profile.get("source") or {}).get("id"))
        found.append(((profile.get("osDiskImage") or {}).get("source") or {}).get("id"))
        found += [((d.get("source") or {}).get("id")) for d in profile.get("dataDiskImages") or []]
    elif kind == MANAGED_IMAGE:
        found.append(((profile.get("osDisk") or {}).get("snapshot") or {}).get("id"))
        found += [((d.get("snapshot") or {}).get("id")) for d in profile.get("dataDisks") or []]
    return [f for f in found if isinstance(f, str) and f]


def kind_of(resource_id: str) -> str | None:
    try:
        rid = ResourceId.parse(resource_id)
    except InvalidResourceId:
        return None
    for kind in GUARDED_TYPES:
        if rid.is_type(kind):
            return kind
    return None


def build_graph(uses: Iterable[PoolUse], sources_of: Mapping[str, list[str]]) -> dict[str, GuardedResource]:
    """Every guarded resource (by normalised id) with the pools that depend on it, transitively.

    ``sources_of`` maps a normalised image id to the ids it was built from (from
    :func:`image_sources`); it is followed through managed images down to snapshots.
    """
    graph: dict[str, GuardedResource] = {}

    def hold(resource_id: str, pool: PoolRef, depth: int = 0) -> None:
        kind = kind_of(resource_id)
        if kind is None or depth > 3:
            return
        key = normalize(resource_id)
        entry = graph.setdefault(key, GuardedResource(resource_id, kind))
        if pool in entry.pools:
            return
        entry.pools.add(pool)
        for source in sources_of.get(key, []):
            hold(source, pool, depth + 1)

    for use in uses:
        for rid in (use.image_id, *use.recorded_sources):
            if rid:
                hold(rid, use.pool)
    return graph


_NOTES_HEAD = "Batch Image Autopilot: in use by Batch pool(s) "
_NOTES_TAIL = ". Deleting it would stop them from scaling. The lock is removed when no pool uses it."
NOTES_HEAD = _NOTES_HEAD  # how every lock note the app writes begins (checked before a removal)
_NOTES_MORE = re.compile(r"^(?P<shown>.*?)(?: and (?P<more>\d+) more)?$")


def lock_notes(pools: Iterable[PoolRef]) -> str:
    """Who depends on the resource, within the 512-character limit."""
    labels = sorted(p.label for p in pools)
    head, tail = _NOTES_HEAD, _NOTES_TAIL
    shown: list[str] = []
    for i, label in enumerate(labels):
        rest = len(labels) - i - 1
        more = f" and {rest} more" if rest else ""
        candidate = ", ".join([*shown, label]) + more
        if len(head) + len(candidate) + len(tail) > NOTES_LIMIT:
            remaining = len(labels) - len(shown)
            listed = ", ".join(shown) + f" and {remaining} more" if shown else f"{remaining} pools"
            return (head + listed + tail)[:NOTES_LIMIT]
        shown.append(label)
    return (head + ", ".join(shown) + tail)[:NOTES_LIMIT]


def noted_pools(notes: str) -> tuple[frozenset[str], bool]:
    """The pool labels a lock's notes name (the inverse of :func:`lock_notes`), and whether that list
    is complete: False when it was cut short ("... and 3 more") or the notes are not the app's text."""
    if not notes.startswith(_NOTES_HEAD) or not notes.endswith(_NOTES_TAIL):
        return frozenset(), False
    m = _NOTES_MORE.match(notes[len(_NOTES_HEAD):len(notes) - len(_NOTES_TAIL)])
    assert m is not None  # the pattern matches any text
    shown = frozenset(label for label in m["shown"].split(", ") if label)
    return shown, m["more"] is None and bool(shown)


def held_for_missing(notes: str, broken: Collection[str]) -> bool:
    """Whether to keep a lock the graph no longer calls for, because a pool it was placed for depends on an image that
    is gone.

    A deleted gallery version (or managed image) takes with it the only record of what it was built
    from, so its sources drop out of the graph exactly when a rebuild needs them. The lock's notes
    remember which pools it was for: while one of those pools (``broken``: labels of pools that
    depend on a missing image) still exists, the lock stays. Notes that are cut short count as
    naming every pool.
    """
    if not broken:
        return False
    named, complete = noted_pools(notes)
    return not complete or not named.isdisjoint(broken)


def broken_pools(graph: Mapping[str, GuardedResource], missing: Iterable[str]) -> set[str]:
    """Labels of the pools that depend (transitively) on any of the ``missing`` normalised ids."""
    return {pool.label for key in missing if key in graph for pool in graph[key].pools}


@dataclass(frozen=True)
class LockAction:
    kind: str  # "put" (missing), "refresh" (notes changed), "remove" (nothing uses it any more)
    resource_id: str
    notes: str = ""


def plan_locks(graph: Mapping[str, GuardedResource], our_locks: Mapping[str, str], *, taken: Collection[str] = (),
               lock_scopes: Mapping[str, str] | None = None) -> list[LockAction]:
    """Compare what is referenced with the app's own locks (normalised id -> current notes).

    Only the app's own lock (``LOCK_NAME``, owned by the app) is ever put or removed; locks anyone
    else placed are not in ``our_locks`` and so are never touched. ``taken``: normalised ids where
    a lock *named* ``LOCK_NAME`` exists that the app does not own - putting ours there would
    overwrite it (lock names are unique per scope), so those are left alone (the other lock
    already blocks deletes). ``lock_scopes``: normalised id -> the locked scope as listed, so a
    removal addresses the resource in its own casing.
    """
    actions: list[LockAction] = []
    for key, resource in sorted(graph.items()):
        notes = lock_notes(resource.pools)
        if key not in our_locks:
            if key not in taken:
                actions.append(LockAction("put", resource.resource_id, notes))
        elif our_locks[key] != notes:
            actions.append(LockAction("refresh", resource.resource_id, notes))
    for key in sorted(our_locks):
        if key not in graph:
            actions.append(LockAction("remove", (lock_scopes or {}).get(key) or key))
    return actions


def dependants(graph: Mapping[str, GuardedResource], resource_id: str) -> list[PoolRef]:
    entry = graph.get(normalize(resource_id))
    return sorted(entry.pools) if entry else []
