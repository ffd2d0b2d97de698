"""Set assembly: one image per snapshot set, whatever the order and duplication of the events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.pipeline.snapshot_sets import (
    ROLE_DATA,
    ROLE_OS,
    SnapshotMember,
    SnapshotSet,
    SnapshotSetConflict,
    SnapshotSetFormatError,
    SnapshotSetKey,
    describe,
    from_entity,
    is_complete,
    is_overdue,
    member_from_snapshot,
    merge,
    missing,
    to_entity,
)
from shared.pipeline.snapshot_tags import parse_tags

SUB = "00000000-0000-4000-8000-000000000001"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
KEY = SnapshotSetKey("gpu", "1.4.0")


def snap_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots/{name}"


def member(name: str, lun: int | None, disk_count: int = 3, minutes: int = 0) -> SnapshotMember:
    return SnapshotMember(
        snapshot_id=snap_id(name), role=ROLE_OS if lun is None else ROLE_DATA, lun=lun, disk_count=disk_count,
        region="westeurope",
        subscription_id=SUB,
        source_disk_id=f"/subscriptions/{SUB}/resourceGroups/vm-rg/providers/Microsoft.Compute/disks/{name}-disk",
        hyper_v_generation="V2" if lun is None else None, os_type="Linux" if lun is None else None,
        time_created=T0 + timedelta(minutes=minutes))


OS, D0, D1 = member("os", None), member("data0", 0, minutes=1), member("data1", 1, minutes=2)


def merge_all(members: list[SnapshotMember], now: datetime = T0) -> tuple[SnapshotSet | None, int]:
    stored: SnapshotSet | None = None
    completions = 0
    for m in members:
        result = merge(stored, KEY, m, now)
        stored = result.set
        completions += result.became_complete
    return stored, completions


def test_a_set_completes_when_its_last_disk_arrives() -> None:
    r1 = merge(None, KEY, D1, T0)
    assert r1.changed and not r1.became_complete
    r2 = merge(r1.set, KEY, OS, T0)
    assert r2.changed and not r2.became_complete
    assert missing(r2.set) == ["data disk LUN 0"]
    r3 = merge(r2.set, KEY, D0, T0)
    assert r3.became_complete and is_complete(r3.set)
    assert [m.slot for m in r3.set.members] == ["os", "lun:0", "lun:1"]
    assert missing(r3.set) == []


def test_a_single_disk_set_completes_on_its_first_event() -> None:
    result = merge(None, KEY, member("only", None, disk_count=1), T0)
    assert result.became_complete


def test_duplicates_change_nothing_and_never_complete_again() -> None:
    stored, completions = merge_all([OS, D0, D1])
    assert completions == 1
    # ids vary in case
    again = merge(stored, KEY, SnapshotMember(**{**D0.__dict__, "snapshot_id": D0.snapshot_id.upper()}), T0)
    assert (again.changed, again.became_complete, again.set) == (False, False, stored)


def test_missing_names_the_os_disk_and_expected_luns() -> None:
    stored, _ = merge_all([D1])
    assert missing(stored) == ["the OS disk", "data disk LUN 0"]


def test_missing_counts_data_disks_when_luns_are_not_contiguous() -> None:
    stored, _ = merge_all([OS, member("data5", 5)])
    assert missing(stored) == ["1 more data disk (LUNs seen so far: 5)"]


def test_a_second_snapshot_for_the_same_disk_is_a_conflict() -> None:
    stored, _ = merge_all([OS])
    with pytest.raises(SnapshotSetConflict) as info:
        merge(stored, KEY, member("os-again", None), T0)
    assert "the OS disk is claimed by two snapshots" in str(info.value)
    assert snap_id("os") in str(info.value) and snap_id("os-again") in str(info.value)
    assert "remove the autopilot.* tags" in info.value.fix


def test_disagreeing_disk_counts_are_a_conflict() -> None:
    stored, _ = merge_all([OS])
    with pytest.raises(SnapshotSetConflict, match="says the set has 2 disks"):
        merge(stored, KEY, member("data0", 0, disk_count=2), T0)


def test_a_snapshot_moving_to_another_disk_is_a_conflict() -> None:
    stored, _ = merge_all([D0])
    with pytest.raises(SnapshotSetConflict, match="now tagged as data disk LUN 1"):
        merge(stored, KEY, SnapshotMember(**{**D0.__dict__, "lun": 1}), T0)


def test_more_data_disks_than_announced_is_a_conflict() -> None:
    stored, _ = merge_all([D0, D1])
    with pytest.raises(SnapshotSetConflict, match="all are present"):
        merge(stored, KEY, member("data2", 2), T0)
    complete, _ = merge_all([OS, D0, D1])
    with pytest.raises(SnapshotSetConflict, match="already complete"):
        merge(complete, KEY, member("data2", 2), T0)


def test_merging_into_another_sets_record_is_a_bug() -> None:
    stored, _ = merge_all([OS])
    with pytest.raises(ValueError, match="merged into"):
        merge(stored, SnapshotSetKey("gpu", "2.0.0"), D0, T0)


def test_overdue_runs_from_the_earliest_snapshot() -> None:
    stored, _ = merge_all([D1, OS])  # OS created at T0, D1 two minutes later
    assert stored is not None and stored.started_at == T0
    assert not is_overdue(stored, T0 + timedelta(minutes=59), timedelta(hours=1))
    assert is_overdue(stored, T0 + timedelta(minutes=61), timedelta(hours=1))
    complete, _ = merge_all([D1, OS, D0])
    assert not is_overdue(complete, T0 + timedelta(days=9), timedelta(hours=1))


def test_members_without_a_creation_time_start_the_clock_when_seen() -> None:
    m = SnapshotMember(**{**OS.__dict__, "time_created": None})
    stored = merge(None, KEY, m, T0 + timedelta(hours=2)).set
    assert stored.started_at == T0 + timedelta(hours=2)


def test_describe_reads_well() -> None:
    stored, _ = merge_all([OS])
    assert describe(stored) == ("snapshot set gpu 1.4.0 (3 disks): has the OS disk; waiting for data disk LUN 0, data "
                                "disk LUN 1")


def test_entity_round_trip_is_flat() -> None:
    stored, _ = merge_all([D1, OS])
    entity = to_entity(stored)
    assert all(isinstance(v, str | int | bool) for v in entity.values())
    assert (entity["PartitionKey"], entity["RowKey"], entity["complete"]) == ("gpu", "1.4.0", False)
    assert from_entity({**entity, "etag": 'W/"1"', "Timestamp": "x"}) == stored


def test_unreadable_entities_raise_a_format_error() -> None:
    stored, _ = merge_all([OS])
    entity = to_entity(stored)
    with pytest.raises(SnapshotSetFormatError, match="format 2"):
        from_entity({**entity, "format": 2})
    with pytest.raises(SnapshotSetFormatError, match="cannot be read"):
        from_entity({**entity, "members": "not json"})
    with pytest.raises(SnapshotSetFormatError, match="no members"):
        from_entity({**entity, "members": json.dumps([])})


def test_invalid_members_and_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        SnapshotMember(**{**OS.__dict__, "lun": 0})
    with pytest.raises(ValueError):
        SnapshotMember(**{**D0.__dict__, "disk_count": 1})
    with pytest.raises(ValueError):
        SnapshotSetKey("GPU", "1.0.0")
    with pytest.raises(ValueError):
        SnapshotSetKey("gpu", "1.0")


SNAPSHOT_GET = {  # shaped like compute_Snapshot_Get_2025-01-02.json, for this app's tags
    "properties": {
        "osType": "Linux", "hyperVGeneration": "V2",
        "creationData": {"createOption": "Copy",
                         "sourceResourceId": f"/subscriptions/{SUB}/resourceGroups/vm-rg/providers"
                                             "/Microsoft.Compute/disks/os"},
        "diskSizeGB": 64, "timeCreated": "2026-05-04T09:00:00.079872+00:00", "provisioningState": "Succeeded",
    },
    "type": "Microsoft.Compute/snapshots", "location": "westeurope",
    "tags": {"autopilot.family": "gpu", "autopilot.version": "1.4.0", "autopilot.disk": "os",
             "autopilot.diskCount": "3"},
    "id": f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots/gpu-os",
    "name": "gpu-os",
}


def test_member_from_the_snapshot_json() -> None:
    tags = parse_tags(SNAPSHOT_GET["tags"])  # type: ignore[arg-type]
    assert tags is not None
    m = member_from_snapshot(SNAPSHOT_GET, tags)
    assert (m.role, m.lun, m.disk_count, m.region, m.subscription_id) == ("os", None, 3, "westeurope", SUB)
    assert (m.hyper_v_generation, m.os_type) == ("V2", "Linux")
    assert m.source_disk_id and m.source_disk_id.endswith("/disks/os")
    assert m.time_created == datetime(2026, 5, 4, 9, 0, 0, 79872, tzinfo=UTC)


# --- properties ---------------------------------------------------------------------------------------


@st.composite
def snapshot_sets(draw: st.DrawFn) -> list[SnapshotMember]:
    """The members of one complete set: the OS disk plus 0-6 data disks on distinct LUNs."""
    luns = draw(st.lists(st.integers(0, 63), unique=True, max_size=6))
    count = len(luns) + 1
    minutes = draw(st.lists(st.integers(0, 600), min_size=count, max_size=count))
    members = [member(f"os-{count}", None, count, minutes[0])]
    members += [member(f"lun{lun}", lun, count, minutes[i + 1]) for i, lun in enumerate(luns)]
    return members


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_one_image_per_snapshot_set(data: st.DataObject) -> None:
    members = data.draw(snapshot_sets())
    # Any interleaving with duplicates: every member at least once, some several times, in any order.
    deliveries = data.draw(st.lists(st.sampled_from(members), max_size=3 * len(members)))
    deliveries = data.draw(st.permutations(deliveries + members))
    nows = data.draw(st.lists(st.sampled_from([T0, T0 + timedelta(hours=1)]), min_size=len(deliveries),
                              max_size=len(deliveries)))

    stored: SnapshotSet | None = None
    completions = 0
    seen: set[str] = set()
    for m, now in zip(deliveries, nows, strict=True):
        result = merge(stored, KEY, m, now)
        seen.add(m.snapshot_id)
        # Complete exactly when every member has been seen, and the transition happens once.
        assert is_complete(result.set) == (len(seen) == len(members))
        if result.became_complete:
            assert stored is None or not is_complete(stored)
            assert len(seen) == len(members)
        completions += result.became_complete
        stored = result.set
    assert completions == 1

    # The same complete set whatever the order: compare with members merged in canonical order.
    reference, _ = merge_all(sorted(members, key=lambda m: -1 if m.lun is None else m.lun))
    assert stored == reference
    assert from_entity(to_entity(stored)) == stored


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_an_incomplete_set_never_completes(data: st.DataObject) -> None:
    members = data.draw(snapshot_sets())
    absent = data.draw(st.sampled_from(members))
    present = [m for m in members if m is not absent]
    extra = data.draw(st.lists(st.sampled_from(present), max_size=3 * len(present))) if present else []
    stored, completions = merge_all(data.draw(st.permutations(present + extra)))
    assert completions == 0
    if stored is not None:
        assert not is_complete(stored)
        texts = missing(stored)
        # Exactly one disk is described as missing: the OS disk by name, a data disk by (assumed) LUN or by count.
        assert sum(int(t.split()[0]) if t[0].isdigit() else 1 for t in texts) == 1
        assert (absent.lun is None) == ("the OS disk" in texts)
