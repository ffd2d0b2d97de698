"""Snapshot-set assembly: collecting the OS and data-disk snapshots of one image version.

The snapshots of one (family, version) arrive as separate ``snapshots/write`` events, in any order,
each possibly more than once (Event Grid delivers at least once, and writing tags raises another
write event). The stored set is the join of everything seen so far; :func:`merge` is idempotent,
commutative and associative over members, so the order of delivery never matters, and a set
becomes complete exactly once - the moment its last missing disk arrives - which is when the image
is built. A *different* snapshot claiming a disk the set already has is a conflict a person must
resolve: guessing which one is meant would build the wrong image.

Everything here is pure. The handler reads the stored set (with its ETag), merges, and writes it
back with If-Match, so two concurrent invocations cannot both see the incomplete->complete step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.resource_ids import ResourceId, normalize, same_id
from shared.pipeline.snapshot_tags import (
    MAX_DISK_COUNT,
    MAX_LUN,
    SnapshotTags,
    canonical_family,
    family_problem,
    version_problem,
)

ROLE_OS = "os"
ROLE_DATA = "data"
ENTITY_FORMAT = 1  # bump when the stored shape changes; from_entity refuses formats it does not know


class SnapshotSetConflict(ValueError):
    """Two snapshots disagree about the set. ``key`` names the set; the message says what to do."""

    def __init__(self, key: SnapshotSetKey, message: str, fix: str, snapshot_ids: tuple[str, ...] = ()) -> None:
        self.key = key
        self.fix = fix
        self.snapshot_ids = snapshot_ids
        super().__init__(f"snapshot set {key.family} {key.version}: {message}; {fix}")


class SnapshotSetFormatError(ValueError):
    """A stored set cannot be read back (corrupt or written by a newer version of the app)."""


@dataclass(frozen=True)
class SnapshotSetKey:
    family: str  # folded, as snapshot_tags.parse_tags returns it
    version: str

    def __post_init__(self) -> None:
        if canonical_family(self.family) != self.family or family_problem(self.family):
            raise ValueError(f"snapshot set family {self.family!r} is not a canonical family name")
        if version_problem(self.version):
            raise ValueError(f"snapshot set version {self.version!r} is not a gallery image version")

    @property
    def partition_key(self) -> str:
        return self.family

    @property
    def row_key(self) -> str:
        return self.version

    def __str__(self) -> str:
        return f"{self.family} {self.version}"


@dataclass(frozen=True)
class SnapshotMember:
    """One snapshot of a set, as read from Azure (the handler re-reads the snapshot, never trusting the event)."""

    snapshot_id: str
    role: str  # ROLE_OS | ROLE_DATA
    lun: int | None  # None for the OS disk
    disk_count: int
    region: str
    subscription_id: str
    source_disk_id: str | None = None
    hyper_v_generation: str | None = None  # V1 | V2, from the snapshot
    os_type: str | None = None  # Linux | Windows, set on OS-disk snapshots
    time_created: datetime | None = None

    def __post_init__(self) -> None:
        if self.role not in (ROLE_OS, ROLE_DATA):
            raise ValueError(f"snapshot member role must be {ROLE_OS!r} or {ROLE_DATA!r}, not {self.role!r}")
        if (self.role == ROLE_OS) != (self.lun is None):
            raise ValueError("an OS-disk member has no LUN and a data-disk member has one")
        if self.lun is not None and not 0 <= self.lun <= MAX_LUN:
            raise ValueError(f"LUN {self.lun} is outside 0-{MAX_LUN}")
        if not 1 <= self.disk_count <= MAX_DISK_COUNT:
            raise ValueError(f"disk count {self.disk_count} is outside 1-{MAX_DISK_COUNT}")
        if self.lun is not None and self.disk_count < 2:
            raise ValueError("a data-disk member belongs to a set of at least 2 disks")
        if self.time_created is not None and self.time_created.tzinfo is None:
            raise ValueError("time_created must be timezone-aware")

    @property
    def slot(self) -> str:
        """Which disk of the set this is: ``os`` or ``lun:N``."""
        return ROLE_OS if self.lun is None else f"lun:{self.lun}"

    @property
    def label(self) -> str:
        return "the OS disk" if self.lun is None else f"data disk LUN {self.lun}"

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshotId": self.snapshot_id, "role": self.role, "lun": self.lun, "diskCount": self.disk_count,
            "region": self.region,
            "subscriptionId": self.subscription_id, "sourceDiskId": self.source_disk_id,
            "hyperVGeneration": self.hyper_v_generation,
            "osType": self.os_type, "timeCreated": self.time_created.isoformat() if self.time_created else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotMember:
        created = data.get("timeCreated")
        return cls(snapshot_id=data["snapshotId"], role=data["role"], lun=data.get("lun"),
                   disk_count=int(data["diskCount"]),
                   region=data["region"], subscription_id=data["subscriptionId"],
                   source_disk_id=data.get("sourceDiskId"),
                   hyper_v_generation=data.get("hyperVGeneration"), os_type=data.get("osType"),
                   time_created=datetime.fromisoformat(created) if created else None)


def _slot_order(member: SnapshotMember) -> int:
    return -1 if member.lun is None else member.lun


@dataclass(frozen=True)
class Candidate:
    """A snapshot whose tags claim a disk of the set now, and whether it can be built from yet.

    Ready means ``provisioningState`` Succeeded and, where the snapshot reports one (a CopyStart copy),
    ``completionPercent`` 100. A snapshot that is not ready is remembered, and the sweep looks again."""

    member: SnapshotMember
    ready: bool = True
    state: str = ""  # why it is not ready, in words: "Creating", "copying (40% done)"

    @property
    def snapshot_id(self) -> str:
        return self.member.snapshot_id

    def to_json(self) -> dict[str, Any]:
        return {**self.member.to_json(), "ready": self.ready, "state": self.state}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(SnapshotMember.from_json(data), bool(data.get("ready", True)), str(data.get("state") or ""))


# Conflict codes: the tags of the snapshots claiming one set contradict each other.
LUN_CLASH = "DISK_CLAIMED_TWICE"
DISK_COUNT_MISMATCH = "DISK_COUNT_MISMATCH"
TOO_MANY_DISKS = "TOO_MANY_DISKS"


@dataclass(frozen=True)
class MembershipConflict:
    code: str
    message: str
    fix: str
    snapshot_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "fix": self.fix, "snapshotIds": list(self.snapshot_ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MembershipConflict:
        return cls(str(data["code"]), str(data["message"]), str(data["fix"]),
                   tuple(str(i) for i in data.get("snapshotIds") or ()))


def resolve(key: SnapshotSetKey, candidates: tuple[Candidate, ...] | list[Candidate], started_at: datetime | None,
            now: datetime) -> SnapshotSet | None:
    """The set as the snapshots' tags say it is now (None: no snapshot claims it any more).

    Pure, and independent of the order of ``candidates``: the same snapshots always give the same set.
    Conflicts are judged on these candidates only, so a conflict ends as soon as a person re-tags, untags or
    deletes the wrong snapshot. A slot claimed twice, disagreeing disk counts or too many data disks block the
    set (it is never complete while they last); only ready, unambiguous candidates become members.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    unique: dict[str, Candidate] = {}
    for c in candidates:
        unique[normalize(c.snapshot_id)] = c
    ordered = tuple(sorted(unique.values(), key=lambda c: (_slot_order(c.member), normalize(c.snapshot_id))))
    if not ordered:
        return None
    conflicts: list[MembershipConflict] = []
    counts: dict[int, list[str]] = {}
    for c in ordered:
        counts.setdefault(c.member.disk_count, []).append(c.snapshot_id)
    # The most claimed count (ties: the smaller) names the set; any other count is a conflict.
    disk_count = sorted(counts, key=lambda n: (-len(counts[n]), n))[0]
    if len(counts) > 1:
        said = "; ".join(f"{', '.join(ids)} say{'s' if len(ids) == 1 else ''} {n}" for n, ids in sorted(counts.items()))
        conflicts.append(MembershipConflict(
            DISK_COUNT_MISMATCH, f"the snapshots disagree on autopilot.diskCount: {said}",
            "correct the autopilot.diskCount tag so that all snapshots of the version agree (or tag the odd ones "
            "with another "
            "autopilot.version); the set is checked again as soon as the tag is written",
            tuple(i for n, ids in sorted(counts.items()) for i in ids)))
    by_slot: dict[str, list[Candidate]] = {}
    for c in ordered:
        by_slot.setdefault(c.member.slot, []).append(c)
    clashing = {slot for slot, cs in by_slot.items() if len(cs) > 1}
    for slot in sorted(clashing, key=lambda s: -1 if s == ROLE_OS else int(s.split(":")[1])):
        cs = by_slot[slot]
        conflicts.append(MembershipConflict(
            LUN_CLASH,
            f"{cs[0].member.label} is claimed by {len(cs)} snapshots: {', '.join(c.snapshot_id for c in cs)}",
            "remove the autopilot.* tags from the wrong snapshot (or delete it): the set then takes the other one. "
            "If both are "
            "right, they belong to different versions: give one of them another autopilot.version",
            tuple(c.snapshot_id for c in cs)))
    data_slots = sorted(slot for slot in by_slot if slot != ROLE_OS)
    if len(data_slots) > disk_count - 1:
        ids = tuple(c.snapshot_id for slot in data_slots for c in by_slot[slot])
        conflicts.append(MembershipConflict(
            TOO_MANY_DISKS, f"autopilot.diskCount says {disk_count} disks, so {disk_count - 1} data disk(s), but "
                            "snapshots claim "
                            f"{len(data_slots)} data disks "
            f"({', '.join(s.replace('lun:', 'LUN ') for s in data_slots)})",
            "remove the autopilot.* tags from the snapshot that does not belong to this version, or correct "
            "autopilot.diskCount "
            "on every snapshot of the set", ids))
    members = tuple(c.member for c in ordered if c.ready and c.member.slot not in clashing
                    and c.member.disk_count == disk_count)
    seen = [c.member.time_created for c in ordered if c.member.time_created is not None]
    starts = [t for t in (*seen, started_at) if t is not None]
    started = min(starts) if starts else now
    return SnapshotSet(key, disk_count, members, started, candidates=ordered, conflicts=tuple(conflicts))


def same_membership(a: SnapshotSet | None, b: SnapshotSet | None) -> bool:
    """Whether two versions of a set hold the same candidates, members and conflicts (nothing worth writing)."""
    if a is None or b is None:
        return a is b
    return (a.disk_count, a.members, a.all_candidates, a.conflicts, a.frozen) == (b.disk_count, b.members,
                                                                                  b.all_candidates, b.conflicts,
                                                                                  b.frozen)


@dataclass(frozen=True)
class SnapshotSet:
    """What has been seen of one (family, version): members sorted OS first, then by LUN."""

    key: SnapshotSetKey
    disk_count: int
    members: tuple[SnapshotMember, ...]
    started_at: datetime  # the earliest snapshot creation (or first sighting): the overdue clock starts here
    # Every snapshot whose tags claim this set now (members, snapshots still copying, and the ones in a
    # conflict); () for sets stored before membership was re-read: then the members are the candidates.
    candidates: tuple[Candidate, ...] = ()
    conflicts: tuple[MembershipConflict, ...] = ()  # a set with a conflict is never complete
    frozen: bool = False  # the image is being built from these members: they never change again

    @property
    def all_candidates(self) -> tuple[Candidate, ...]:
        return self.candidates or tuple(Candidate(m) for m in self.members)

    @property
    def pending(self) -> tuple[Candidate, ...]:
        """Candidates that are not ready yet (still creating, or still copying)."""
        return tuple(c for c in self.all_candidates if not c.ready)

    @property
    def os_member(self) -> SnapshotMember | None:
        return next((m for m in self.members if m.lun is None), None)

    @property
    def data_members(self) -> tuple[SnapshotMember, ...]:
        return tuple(m for m in self.members if m.lun is not None)

    @property
    def snapshot_ids(self) -> tuple[str, ...]:
        return tuple(m.snapshot_id for m in self.members)

    def member(self, snapshot_id: str) -> SnapshotMember | None:
        return next((m for m in self.members if same_id(m.snapshot_id, snapshot_id)), None)


@dataclass(frozen=True)
class MergeResult:
    set: SnapshotSet
    changed: bool  # False for a duplicate: nothing to write back
    became_complete: bool  # True only on the merge that completed the set: build the image now


def merge(stored: SnapshotSet | None, key: SnapshotSetKey, member: SnapshotMember, now: datetime) -> MergeResult:
    """Add ``member`` to the stored set (None: the first snapshot of this version).

    Raises :class:`SnapshotSetConflict` when the member contradicts the set: a different disk
    count, or a different snapshot for a disk the set already has, or more disks than announced.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    seen_at = member.time_created or now
    if stored is None:
        first = SnapshotSet(key, member.disk_count, (member,), seen_at)
        return MergeResult(first, changed=True, became_complete=is_complete(first))
    if stored.key != key:
        raise ValueError(f"member of {key} merged into the set {stored.key}")

    if member.disk_count != stored.disk_count:
        raise SnapshotSetConflict(
            key, f"snapshot {member.snapshot_id} says the set has {member.disk_count} disks, but "
                 f"{stored.members[0].snapshot_id} "
                 f"says {stored.disk_count}",
            "correct the autopilot.diskCount tag so all snapshots of the version agree, or tag the new snapshots with "
            "a new version",
            (member.snapshot_id, stored.members[0].snapshot_id))

    started = min(stored.started_at, seen_at)
    existing = stored.member(member.snapshot_id)
    if existing is not None:
        if existing.slot != member.slot:
            raise SnapshotSetConflict(
                key, f"snapshot {member.snapshot_id} is already in the set as {existing.label} and is now tagged as "
                f"{member.label}",
                "a set's disks cannot move once seen: tag the snapshots with a new version instead",
                (member.snapshot_id,))
        # A duplicate delivery (or a tag write on the same snapshot): the set is unchanged.
        if started == stored.started_at:
            return MergeResult(stored, changed=False, became_complete=False)
        return MergeResult(replace(stored, started_at=started), changed=True, became_complete=False)

    holder = next((m for m in stored.members if m.slot == member.slot), None)
    if holder is not None:
        raise SnapshotSetConflict(
            key, f"{member.label} is claimed by two snapshots, {holder.snapshot_id} and {member.snapshot_id}",
            "remove the autopilot.* tags from the wrong one (or delete it); if both are right, they belong to "
            "different versions",
            (holder.snapshot_id, member.snapshot_id))
    if len(stored.members) >= stored.disk_count:
        raise SnapshotSetConflict(
            key, f"the set is already complete with {stored.disk_count} disks "
                 f"({', '.join(m.label for m in stored.members)}), "
                 f"and snapshot {member.snapshot_id} adds {member.label}",
            "tag the snapshots of a new VM state with a new version; if the set really has more disks, correct "
            "autopilot.diskCount on a new version",
            (member.snapshot_id,))
    if member.lun is not None and len(stored.data_members) >= stored.disk_count - 1:
        raise SnapshotSetConflict(
            key, f"the set has {stored.disk_count} disks, so {stored.disk_count - 1} data disk(s), and all "
                 "are present; "
                 f"snapshot {member.snapshot_id} adds {member.label}",
            "check the autopilot.disk and autopilot.diskCount tags", (member.snapshot_id,))

    members = tuple(sorted((*stored.members, member), key=_slot_order))
    merged = SnapshotSet(key, stored.disk_count, members, started)
    was = is_complete(stored)
    return MergeResult(merged, changed=True, became_complete=(not was) and is_complete(merged))


def is_complete_members(disk_count: int, members: tuple[SnapshotMember, ...]) -> bool:
    return len(members) == disk_count and any(m.lun is None for m in members)


def is_complete(snapshot_set: SnapshotSet) -> bool:
    """The OS disk and ``disk_count - 1`` data disks are present, all ready, and no conflict blocks the set."""
    return not snapshot_set.conflicts and is_complete_members(snapshot_set.disk_count, snapshot_set.members)


def missing(snapshot_set: SnapshotSet) -> list[str]:
    """What the set still waits for, in words for an alert: ``["the OS disk", "data disk LUN 2"]``.

    The tags give the number of data disks, not their LUNs. When every LUN seen so far lies in
    0..n-1 (n data disks), the set is assumed to use LUNs 0..n-1, as VMs usually do, and the
    missing ones are named; otherwise only their number is given.
    """
    out: list[str] = []
    if snapshot_set.os_member is None:
        out.append("the OS disk")
    for c in snapshot_set.pending:
        out.append(f"{c.member.label} ({c.snapshot_id} is {c.state or 'not ready'})")
    data_expected = snapshot_set.disk_count - 1
    present = {m.lun for m in snapshot_set.data_members} | {c.member.lun for c in snapshot_set.pending
                                                            if c.member.lun is not None}
    wanted = data_expected - len(present)
    if wanted <= 0:
        return out
    if all(lun is not None and lun < data_expected for lun in present):
        out.extend(f"data disk LUN {lun}" for lun in range(data_expected) if lun not in present)
    else:
        seen = ", ".join(str(lun) for lun in sorted(x for x in present if x is not None))
        out.append(f"{wanted} more data disk{'s' if wanted > 1 else ''} (LUNs seen so far: {seen})")
    return out


def is_overdue(snapshot_set: SnapshotSet, now: datetime, timeout: timedelta) -> bool:
    """Still incomplete ``timeout`` after its first snapshot: time to alert with :func:`missing`."""
    return not is_complete(snapshot_set) and now - snapshot_set.started_at > timeout


def describe(snapshot_set: SnapshotSet) -> str:
    """One line for logs and alerts."""
    have = ", ".join(m.label for m in snapshot_set.members) or "nothing"
    state = "complete" if is_complete(snapshot_set) else "waiting for " + ", ".join(missing(snapshot_set))
    if snapshot_set.conflicts:
        state = "blocked: " + "; ".join(c.message for c in snapshot_set.conflicts)
    return f"snapshot set {snapshot_set.key} ({snapshot_set.disk_count} disks): has {have}; {state}"


# --- Table storage -----------------------------------------------------------------------------------


OPEN_COLUMN = "open"


def to_entity(snapshot_set: SnapshotSet) -> dict[str, str | int | bool]:
    """A flat Table storage entity: scalar values only, the members as one JSON string.

    One JSON column (Table allows 64 KiB per string property) keeps a set one entity, so it is
    read and replaced atomically with a single ETag.
    """
    return {
        "PartitionKey": snapshot_set.key.partition_key,
        "RowKey": snapshot_set.key.row_key,
        "format": ENTITY_FORMAT,
        "family": snapshot_set.key.family,
        "version": snapshot_set.key.version,
        "diskCount": snapshot_set.disk_count,
        "memberCount": len(snapshot_set.members),
        "complete": is_complete(snapshot_set),
        "startedAt": snapshot_set.started_at.astimezone(UTC).isoformat(),
        "snapshotIds": ",".join(normalize(m.snapshot_id) for m in snapshot_set.members),
        "members": json.dumps([m.to_json() for m in snapshot_set.members], separators=(",", ":")),
        # Membership as the tags say it now (read by this version and later; older readers ignore the columns).
        "candidateIds": ",".join(normalize(c.snapshot_id) for c in snapshot_set.all_candidates),
        "candidates": json.dumps([c.to_json() for c in snapshot_set.candidates], separators=(",", ":")),
        "conflicts": json.dumps([c.to_json() for c in snapshot_set.conflicts], separators=(",", ":")),
        "frozen": snapshot_set.frozen,
        # Open work for the sweep, which reads only rows with open=true (a server-side filter): every membership write
        # opens the row; the pipeline closes it when the version reaches a terminal stage (shared/pipeline/stages.py).
        OPEN_COLUMN: True,
    }


def from_entity(entity: Mapping[str, Any]) -> SnapshotSet:
    """Read back what :func:`to_entity` wrote (extra columns such as etag/Timestamp are ignored)."""
    try:
        fmt = int(entity.get("format", ENTITY_FORMAT))
        if fmt != ENTITY_FORMAT:
            raise SnapshotSetFormatError(f"stored snapshot set has format {fmt}; this version of the app reads format "
                                         f"{ENTITY_FORMAT}")
        key = SnapshotSetKey(str(entity["family"]), str(entity["version"]))
        members = tuple(sorted((SnapshotMember.from_json(m) for m in json.loads(entity["members"])), key=_slot_order))
        started = datetime.fromisoformat(str(entity["startedAt"]))
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        candidates = tuple(Candidate.from_json(c) for c in json.loads(entity.get("candidates") or "[]"))
        conflicts = tuple(MembershipConflict.from_json(c) for c in json.loads(entity.get("conflicts") or "[]"))
        result = SnapshotSet(key, int(entity["diskCount"]), members, started, candidates=candidates,
                             conflicts=conflicts,
                             frozen=bool(entity.get("frozen", False)))
    except SnapshotSetFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotSetFormatError(f"stored snapshot set {entity.get('family')!r} {entity.get('version')!r} cannot "
                                     f"be read: {exc}") from exc
    if not members and not candidates:
        raise SnapshotSetFormatError(f"stored snapshot set {key} has no members")
    return result


# --- from Azure's snapshot JSON ----------------------------------------------------------------------


def member_from_snapshot(snapshot: Mapping[str, Any], tags: SnapshotTags) -> SnapshotMember:
    """A member from a snapshot as ``GET .../snapshots/{name}`` returns it (REST shape, ``properties`` nested).

    The handler re-reads the snapshot rather than trusting the event, then hands the JSON here.
    Raises ValueError when the JSON lacks an id or location.
    """
    props = snapshot.get("properties") if isinstance(snapshot.get("properties"), Mapping) else snapshot
    snapshot_id = snapshot.get("id")
    location = snapshot.get("location")
    if not isinstance(snapshot_id, str) or not isinstance(location, str):
        raise ValueError("the snapshot JSON has no id or location")
    rid = ResourceId.parse(snapshot_id)
    creation = props.get("creationData") if isinstance(props.get("creationData"), Mapping) else {}
    created = props.get("timeCreated")
    time_created = None
    if isinstance(created, str):
        try:
            time_created = datetime.fromisoformat(created)
        except ValueError:
            time_created = None
        if time_created is not None and time_created.tzinfo is None:
            time_created = time_created.replace(tzinfo=UTC)
    elif isinstance(created, datetime):
        time_created = created if created.tzinfo else created.replace(tzinfo=UTC)

    def text(value: object) -> str | None:
        return value if isinstance(value, str) and value else None

    return SnapshotMember(
        snapshot_id=rid.raw, role=tags.role, lun=tags.lun, disk_count=tags.disk_count, region=location,
        subscription_id=rid.subscription_id, source_disk_id=text(creation.get("sourceResourceId")),
        hyper_v_generation=text(props.get("hyperVGeneration")), os_type=text(props.get("osType")),
        time_created=time_created)
