"""Membership as the tags say it now (shared.pipeline.snapshot_sets.resolve), Tags-API events
(shared.core.system_events), the routing table's subject filter (shared.core.event_routing) and the emulator's Tags API
patch rule - all pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.resources.models import patched_tags
from shared.core import system_events
from shared.core.event_routing import SUBSCRIPTIONS
from shared.pipeline.set_membership import readiness, situation_key
from shared.pipeline.snapshot_sets import (
    DISK_COUNT_MISMATCH,
    LUN_CLASH,
    TOO_MANY_DISKS,
    Candidate,
    SnapshotMember,
    SnapshotSetKey,
    from_entity,
    is_complete,
    missing,
    resolve,
    same_membership,
    to_entity,
)

SUB = "00000000-0000-4000-8000-000000000001"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
KEY = SnapshotSetKey("gpu", "1.4.0")


def snap_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots/{name}"


def cand(name: str, lun: int | None, count: int = 3, *, ready: bool = True, state: str = "") -> Candidate:
    member = SnapshotMember(snap_id(name), "os" if lun is None else "data", lun, count, "westeurope", SUB,
                            time_created=T0)
    return Candidate(member, ready, state)


def test_unique_ready_candidates_make_a_complete_set() -> None:
    s = resolve(KEY, [cand("d1", 1), cand("os", None), cand("d0", 0)], None, T0)
    assert s is not None and is_complete(s) and [m.slot for m in s.members] == ["os", "lun:0", "lun:1"]
    assert resolve(KEY, [], None, T0) is None  # nothing claims it: the set is gone


def test_a_slot_claimed_twice_blocks_the_set_and_names_both() -> None:
    s = resolve(KEY, [cand("os", None), cand("wrong", 0), cand("right", 0), cand("d1", 1)], None, T0)
    assert s is not None and not is_complete(s)
    assert [c.code for c in s.conflicts] == [LUN_CLASH]
    assert set(s.conflicts[0].snapshot_ids) == {snap_id("wrong"), snap_id("right")}
    assert "remove the autopilot.* tags from the wrong snapshot" in s.conflicts[0].fix
    assert [m.slot for m in s.members] == ["os", "lun:1"]  # neither claimant is a member while they clash
    # Judged on current candidates only: once the wrong one is gone, the right one is in and the set complete.
    fixed = resolve(KEY, [cand("os", None), cand("right", 0), cand("d1", 1)], s.started_at, T0)
    assert fixed is not None and is_complete(fixed) and fixed.member(snap_id("right")) is not None


def test_disagreeing_disk_counts_and_too_many_disks_are_conflicts() -> None:
    counts = resolve(KEY, [cand("os", None, 2), cand("d0", 0, 3)], None, T0)
    assert (counts is not None and [c.code for c in counts.conflicts] == [DISK_COUNT_MISMATCH]
            and not is_complete(counts))
    many = resolve(KEY, [cand("os", None, 2), cand("d0", 0, 2), cand("d5", 5, 2)], None, T0)
    assert many is not None and [c.code for c in many.conflicts] == [TOO_MANY_DISKS] and not is_complete(many)


def test_a_candidate_not_ready_is_remembered_but_not_a_member() -> None:
    s = resolve(KEY, [cand("os", None, 2), cand("d0", 0, 2, ready=False, state="still copying (40% done)")], None, T0)
    assert s is not None and not is_complete(s) and len(s.members) == 1 and len(s.pending) == 1
    assert any("still copying (40% done)" in m for m in missing(s))
    back = from_entity(to_entity(s))
    assert same_membership(back, s) and back.pending == s.pending


def test_old_entities_without_candidates_read_as_their_members() -> None:
    s = resolve(KEY, [cand("os", None, 1)], None, T0)
    assert s is not None
    entity = to_entity(s)
    for column in ("candidates", "candidateIds", "conflicts", "frozen"):
        entity.pop(column)
    old = from_entity(entity)
    assert [c.snapshot_id for c in old.all_candidates] == [snap_id("os")] and not old.frozen


claims = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from([None, 0, 1, 2]),
                            st.sampled_from([2, 3]),
                            st.booleans()), max_size=6, unique_by=lambda t: t[0])


@settings(max_examples=200, deadline=None)
@given(claims=claims, seed=st.randoms())
def test_resolve_does_not_depend_on_order_and_never_completes_with_a_conflict(claims: list, seed) -> None:
    cands = [cand(n, lun, count, ready=ready) for n, lun, count, ready in claims]
    shuffled = list(cands)
    seed.shuffle(shuffled)
    one, two = resolve(KEY, cands, None, T0), resolve(KEY, shuffled, None, T0)
    assert same_membership(one, two)
    if one is not None and is_complete(one):
        assert not one.conflicts and not one.pending
        assert len({m.slot for m in one.members}) == len(one.members) == one.disk_count


def test_readiness_needs_succeeded_and_a_finished_copy() -> None:
    assert readiness({"properties": {"provisioningState": "Succeeded"}}) == (True, "")
    assert readiness({"properties": {"provisioningState": "Creating"}}) == (False, "Creating")
    assert (readiness({"properties": {"provisioningState": "Succeeded", "completionPercent": 42.0}})
            == (False, "still copying (42% done)"))
    assert readiness({"properties": {"provisioningState": "Succeeded", "completionPercent": 100.0}}) == (True, "")


def test_situation_keys_are_bounded_and_change_with_the_situation() -> None:
    big = situation_key("BAD_TAGS", "x" * 10_000)
    assert len(big) < 40 and big == situation_key("BAD_TAGS", "x" * 10_000)
    assert situation_key("C", "a", "b") != situation_key("C", "a", "c")


def _tags_event(subject: str, *, operation: str = "Microsoft.Resources/tags/write",
                kind: str = "ResourceWriteSuccess") -> object:
    return system_events.parse_envelope({
        "id": "e1", "topic": f"/subscriptions/{SUB}", "subject": subject, "eventType": f"Microsoft.Resources.{kind}",
        "eventTime": "2026-05-04T09:00:00Z",
        "data": {"operationName": operation, "resourceUri": subject, "subscriptionId": SUB}})


def test_tags_events_name_the_snapshot_in_either_form() -> None:
    plain = _tags_event(snap_id("s1"))
    scoped = _tags_event(snap_id("s1") + "/providers/Microsoft.Resources/tags/default")
    for event in (plain, scoped):
        assert system_events.is_snapshot_tags_write(event)
        tagged = system_events.tagged_resource(event)
        assert tagged is not None and tagged.key == snap_id("s1").lower()
    deleted = _tags_event(snap_id("s1"), operation="Microsoft.Resources/tags/delete", kind="ResourceDeleteSuccess")
    assert system_events.is_snapshot_tags_delete(deleted) and not system_events.is_snapshot_tags_write(deleted)
    disk = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/disks/d1"
    assert not system_events.is_snapshot_tags_write(_tags_event(disk))


def test_the_snapshot_tags_subscription_filters_on_the_subject() -> None:
    sub = next(s for s in SUBSCRIPTIONS if s.name == "snapshot-tags")
    ws = "Microsoft.Resources.ResourceWriteSuccess"
    assert sub.matches(ws, "Microsoft.Resources/tags/write", snap_id("s1"))
    assert sub.matches(ws, "microsoft.resources/tags/write", snap_id("s1").upper())  # case-insensitive
    assert sub.matches(ws, "Microsoft.Resources/tags/write",
                       snap_id("s1") + "/providers/Microsoft.Resources/tags/default")
    assert not sub.matches(ws, "Microsoft.Resources/tags/write", snap_id("s1").replace("snapshots", "disks"))
    assert not sub.matches(ws, "Microsoft.Resources/tags/write", None)
    pipeline = next(s for s in SUBSCRIPTIONS if s.name == "image-pipeline")
    assert not pipeline.matches(ws, "Microsoft.Resources/tags/write", snap_id("s1"))
    assert pipeline.matches(ws, "Microsoft.Compute/images/write",
                            "/subscriptions/x/resourceGroups/g/providers/Microsoft.Compute/images/i")


def test_tags_api_patch_rule() -> None:
    current = {"Owner": "a", "keep": "1", "x": "1"}
    assert patched_tags(current, "Merge", {"owner": "b"}) == {"keep": "1", "x": "1", "owner": "b"}
    assert patched_tags(current, "Replace", {"only": "y"}) == {"only": "y"}
    assert patched_tags(current, "Delete", {"x": "2", "keep": ""}) == {"Owner": "a", "x": "1"}


def test_started_at_is_the_earliest_creation() -> None:
    later = Candidate(SnapshotMember(snap_id("b"), "data", 0, 2, "westeurope", SUB,
                                     time_created=T0 + timedelta(hours=1)))
    s = resolve(KEY, [later], T0 - timedelta(minutes=5), T0 + timedelta(hours=2))
    assert s is not None and s.started_at == T0 - timedelta(minutes=5)
