"""The image guard's pure core: pool uses, image sources, the reference graph, lock notes and the lock plan."""

from __future__ import annotations

import pytest

from shared.core import pool_metadata
from shared.core.resource_ids import lock_target, normalize
from shared.guard.lock_plan import (
    GALLERY_VERSION,
    LOCK_NAME,
    MANAGED_IMAGE,
    NOTES_LIMIT,
    SNAPSHOT,
    GuardedResource,
    LockAction,
    PoolRef,
    PoolUse,
    broken_pools,
    build_graph,
    dependants,
    held_for_missing,
    image_sources,
    kind_of,
    lock_notes,
    noted_pools,
    plan_locks,
    pool_use,
)
from shared.guard.references import is_ours

SUB = "00000000-0000-4000-8000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/renderweu"
OTHER_ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/rendereus"
VERSION = f"{RG}/galleries/gal/images/def/versions/1.0.0"
DIRECT_VERSION = f"{RG}/galleries/gal/images/def/versions/2.0.0"
IMAGE = f"{RG}/images/img-1"
OS_SNAP = f"{RG}/snapshots/os-1"
DATA_SNAP = f"{RG}/snapshots/data-1"
DEFINITION = f"{RG}/galleries/gal/images/def"


def pool(pool_id: str, account: str = ACCOUNT) -> PoolRef:
    return PoolRef(account, pool_id)


def version_body(source_image: str | None = None, os_snapshot: str | None = None,
                 data_snapshots: tuple[str, ...] = ()) -> dict:
    storage: dict = {}
    if source_image:
        storage["source"] = {"id": source_image}
    if os_snapshot:
        storage["osDiskImage"] = {"source": {"id": os_snapshot}}
        storage["dataDiskImages"] = [{"lun": i, "source": {"id": s}} for i, s in enumerate(data_snapshots)]
    return {"id": VERSION, "properties": {"storageProfile": storage}}


def image_body(os_snapshot: str, data_snapshots: tuple[str, ...] = ()) -> dict:
    return {"id": IMAGE, "properties": {"storageProfile": {
        "osDisk": {"osType": "Linux", "osState": "Generalized", "snapshot": {"id": os_snapshot}},
        "dataDisks": [{"lun": i, "snapshot": {"id": s}} for i, s in enumerate(data_snapshots)]}}}


# ----------------------------------------------------------------------------------------------
# pool_use
# ----------------------------------------------------------------------------------------------


def test_pool_use_reads_a_management_plane_pool_and_its_recorded_sources() -> None:
    pool_json = {
        "id": f"{ACCOUNT}/pools/gpu-1-0-0", "name": "gpu-1-0-0",
        "properties": {
            "deploymentConfiguration": {"virtualMachineConfiguration": {"imageReference": {"id": VERSION}}},
            "metadata": [{"name": pool_metadata.MANAGED, "value": "True"},
                         {"name": pool_metadata.MANAGED_IMAGE_ID, "value": IMAGE},
                         {"name": pool_metadata.SNAPSHOT_IDS, "value": f" {OS_SNAP} ,,{DATA_SNAP}"}],
        },
    }
    use = pool_use(ACCOUNT, pool_json)
    assert use == PoolUse(pool("gpu-1-0-0"), VERSION, (IMAGE, OS_SNAP, DATA_SNAP))


def test_pool_use_reads_a_data_plane_pool() -> None:
    pool_json = {"id": "team-pool",
                 "virtualMachineConfiguration": {"imageReference": {"virtualMachineImageId": VERSION}},
                 "metadata": [{"name": pool_metadata.MANAGED, "value": "true"}]}
    assert pool_use(ACCOUNT, pool_json) == PoolUse(pool("team-pool"), VERSION, ())


@pytest.mark.parametrize("metadata", [None, [], [{"name": pool_metadata.MANAGED, "value": "false"}],
                                      [{"name": "team", "value": "render"}]])
def test_pools_the_app_does_not_manage_have_no_use(metadata: list | None) -> None:
    pool_json = {"id": "theirs", "virtualMachineConfiguration": {"imageReference": {"virtualMachineImageId": VERSION}},
                 "metadata": metadata}
    assert pool_use(ACCOUNT, pool_json) is None


def test_a_managed_pool_on_a_marketplace_image_uses_no_guarded_resource() -> None:
    pool_json = {"id": "plain",
                 "virtualMachineConfiguration": {
                     "imageReference": {"publisher": "canonical", "offer": "x", "sku": "y"}},
                 "metadata": [{"name": pool_metadata.MANAGED, "value": "true"}]}
    use = pool_use(ACCOUNT, pool_json)
    assert use is not None and use.image_id is None
    assert build_graph([use], {}) == {}


# ----------------------------------------------------------------------------------------------
# image_sources and kind_of
# ----------------------------------------------------------------------------------------------


def test_image_sources_of_a_version_built_from_a_managed_image() -> None:
    assert image_sources(GALLERY_VERSION, version_body(source_image=IMAGE)) == [IMAGE]


def test_image_sources_of_a_version_built_from_snapshots() -> None:
    assert image_sources(GALLERY_VERSION,
                         version_body(os_snapshot=OS_SNAP, data_snapshots=(DATA_SNAP,))) == [OS_SNAP, DATA_SNAP]


def test_image_sources_of_a_managed_image() -> None:
    assert image_sources(MANAGED_IMAGE, image_body(OS_SNAP, (DATA_SNAP,))) == [OS_SNAP, DATA_SNAP]


@pytest.mark.parametrize(("kind", "body"), [(GALLERY_VERSION, None), (GALLERY_VERSION, {}),
                                            (MANAGED_IMAGE, {"properties": {}}),
                                            (SNAPSHOT,
                                             {"properties": {
                                                 "storageProfile": {"osDisk": {"snapshot": {"id": OS_SNAP}}}}}),
                                            (GALLERY_VERSION,
                                             {"properties": {
                                                 "storageProfile": {"source": {"id": None}, "dataDiskImages": None}}})])
def test_image_sources_of_nothing_readable_are_empty(kind: str, body: dict | None) -> None:
    assert image_sources(kind, body) == []


@pytest.mark.parametrize(("resource_id", "kind"), [
    (VERSION, GALLERY_VERSION), (VERSION.upper().replace("/SUBSCRIPTIONS", "/subscriptions"), GALLERY_VERSION),
    (IMAGE, MANAGED_IMAGE),
    (OS_SNAP, SNAPSHOT), (DEFINITION, None), (ACCOUNT, None), ("not an id", None),
    (f"/subscriptions/{SUB}/resourceGroups/images-rg", None),
])
def test_kind_of(resource_id: str, kind: str | None) -> None:
    assert kind_of(resource_id) == kind


# ----------------------------------------------------------------------------------------------
# build_graph
# ----------------------------------------------------------------------------------------------


def test_graph_follows_version_to_managed_image_to_snapshots_for_every_pool() -> None:
    uses = [PoolUse(pool("a"), VERSION), PoolUse(pool("b", OTHER_ACCOUNT), VERSION)]
    sources = {normalize(VERSION): [IMAGE], normalize(IMAGE): [OS_SNAP, DATA_SNAP]}
    graph = build_graph(uses, sources)
    assert set(graph) == {normalize(r) for r in (VERSION, IMAGE, OS_SNAP, DATA_SNAP)}
    for key, resource in graph.items():
        assert resource.pools == {pool("a"), pool("b", OTHER_ACCOUNT)}
        assert kind_of(resource.resource_id) == resource.kind
        assert normalize(resource.resource_id) == key
    assert graph[normalize(IMAGE)].kind == MANAGED_IMAGE
    assert dependants(
        graph, OS_SNAP.upper().replace("/SUBSCRIPTIONS", "/subscriptions")) == [pool("b", OTHER_ACCOUNT), pool("a")]


def test_graph_holds_each_resource_only_for_the_pools_that_reach_it() -> None:
    uses = [PoolUse(pool("a"), VERSION), PoolUse(pool("b"), DIRECT_VERSION)]
    sources = {normalize(VERSION): [IMAGE], normalize(IMAGE): [OS_SNAP, DATA_SNAP],
               normalize(DIRECT_VERSION): [OS_SNAP]}
    graph = build_graph(uses, sources)
    assert graph[normalize(VERSION)].pools == {pool("a")}
    assert graph[normalize(DATA_SNAP)].pools == {pool("a")}
    assert graph[normalize(DIRECT_VERSION)].pools == {pool("b")}
    assert graph[normalize(OS_SNAP)].pools == {pool("a"), pool("b")}
    assert dependants(graph, f"{RG}/snapshots/unrelated") == []


def test_graph_uses_recorded_sources_when_an_image_can_no_longer_be_read() -> None:
    # The version was deleted (no sources_of entry): the pool's metadata still names its snapshots.
    graph = build_graph([PoolUse(pool("a"), VERSION, (OS_SNAP, DATA_SNAP))], {})
    assert set(graph) == {normalize(VERSION), normalize(OS_SNAP), normalize(DATA_SNAP)}


def test_graph_is_case_insensitive_and_ignores_unguarded_ids() -> None:
    shouty = VERSION.replace("resourceGroups", "resourcegroups").replace("Microsoft.Compute", "MICROSOFT.COMPUTE")
    uses = [PoolUse(pool("a"), VERSION), PoolUse(pool("b"), shouty),
            PoolUse(pool("c"), DEFINITION, ("", "  ", "garbage"))]
    graph = build_graph(uses, {normalize(VERSION): [IMAGE, "nonsense", DEFINITION]})
    assert set(graph) == {normalize(VERSION), normalize(IMAGE)}
    assert graph[normalize(VERSION)].pools == {pool("a"), pool("b")}


def test_graph_terminates_on_cyclic_sources() -> None:
    sources = {normalize(VERSION): [IMAGE], normalize(IMAGE): [VERSION, OS_SNAP]}
    graph = build_graph([PoolUse(pool("a"), VERSION)], sources)
    assert set(graph) == {normalize(VERSION), normalize(IMAGE), normalize(OS_SNAP)}


# ----------------------------------------------------------------------------------------------
# lock notes
# ----------------------------------------------------------------------------------------------


def test_notes_name_every_pool_in_order_when_they_fit() -> None:
    notes = lock_notes([pool("b"), pool("a"), pool("c", OTHER_ACCOUNT)])
    assert "rendereus/c, renderweu/a, renderweu/b" in notes
    assert "more" not in notes
    assert noted_pools(notes) == (frozenset({"renderweu/a", "renderweu/b", "rendereus/c"}), True)


@pytest.mark.parametrize("count", [12, 40, 500])
def test_notes_stay_within_512_characters_and_count_the_pools_left_out(count: int) -> None:
    pools = [pool(f"render-farm-nightly-{i:03d}-" + "x" * 40) for i in range(count)]
    notes = lock_notes(pools)
    assert len(notes) <= NOTES_LIMIT
    named, complete = noted_pools(notes)
    assert not complete
    assert named == {p.label for p in sorted(pools)[:len(named)]} and len(named) >= 1
    assert f"and {count - len(named)} more." in notes
    assert lock_notes(list(reversed(pools))) == notes, "the same pools always give the same notes (no needless refresh)"


def test_notes_with_one_label_too_long_to_show_still_fit() -> None:
    notes = lock_notes([pool("p" * 500), pool("q" * 500)])
    assert len(notes) <= NOTES_LIMIT
    assert "2 pools" in notes and "  " not in notes


def test_noted_pools_of_text_the_app_did_not_write_is_incomplete() -> None:
    assert noted_pools("finance keeps this") == (frozenset(), False)
    assert noted_pools("") == (frozenset(), False)


# ----------------------------------------------------------------------------------------------
# keeping locks for pools whose image is gone
# ----------------------------------------------------------------------------------------------


def test_broken_pools_are_those_that_reach_a_missing_image() -> None:
    uses = [PoolUse(pool("a"), VERSION), PoolUse(pool("b"), DIRECT_VERSION)]
    graph = build_graph(uses, {normalize(DIRECT_VERSION): [OS_SNAP]})
    assert broken_pools(graph, {normalize(VERSION)}) == {"renderweu/a"}
    assert broken_pools(graph, {normalize(f"{RG}/images/not-referenced")}) == set()
    assert broken_pools(graph, set()) == set()


def test_held_for_missing_keeps_only_locks_placed_for_a_broken_pool() -> None:
    notes = lock_notes([pool("a"), pool("b")])
    assert held_for_missing(notes, {"renderweu/a"})
    assert not held_for_missing(notes, {"renderweu/c"})
    assert not held_for_missing(notes, set())
    assert not held_for_missing(lock_notes([pool("ab")]), {"renderweu/a"}), "labels are matched whole"
    many = lock_notes([pool(f"pool-{i:02d}-" + "x" * 50) for i in range(20)])
    assert held_for_missing(many, {"renderweu/somewhere-in-the-rest"}), "cut-short notes may name any pool"
    assert held_for_missing("edited by hand", {"renderweu/a"})


# ----------------------------------------------------------------------------------------------
# plan_locks
# ----------------------------------------------------------------------------------------------


def graph_of(*entries: tuple[str, set[PoolRef]]) -> dict[str, GuardedResource]:
    return {normalize(rid): GuardedResource(rid, kind_of(rid) or "", pools) for rid, pools in entries}


def test_plan_puts_missing_locks_refreshes_changed_notes_and_removes_unreferenced() -> None:
    graph = graph_of((VERSION, {pool("a")}), (IMAGE, {pool("a"), pool("b")}), (OS_SNAP, {pool("a")}))
    ours = {normalize(IMAGE): lock_notes([pool("a")]), normalize(OS_SNAP): lock_notes([pool("a")]),
            normalize(DATA_SNAP): "old"}
    actions = plan_locks(graph, ours, lock_scopes={normalize(DATA_SNAP): DATA_SNAP})
    assert actions == [
        LockAction("put", VERSION, lock_notes([pool("a")])),
        LockAction("refresh", IMAGE, lock_notes([pool("a"), pool("b")])),
        LockAction("remove", DATA_SNAP),
    ]


def test_plan_is_empty_when_every_lock_is_right() -> None:
    graph = graph_of((VERSION, {pool("a")}), (OS_SNAP, {pool("a")}))
    assert plan_locks(graph, {key: lock_notes(r.pools) for key, r in graph.items()}) == []


def test_plan_removal_falls_back_to_the_normalised_id_without_a_listed_scope() -> None:
    assert plan_locks({}, {normalize(IMAGE): "x"}) == [LockAction("remove", normalize(IMAGE))]


def test_plan_never_overwrites_or_removes_a_lock_whose_name_someone_else_holds() -> None:
    graph = graph_of((VERSION, {pool("a")}), (OS_SNAP, {pool("a")}))
    # OS_SNAP carries another owner's lock named LOCK_NAME; DATA_SNAP too, and nothing references it.
    actions = plan_locks(graph, {}, taken={normalize(OS_SNAP), normalize(DATA_SNAP)})
    assert actions == [LockAction("put", VERSION, lock_notes([pool("a")]))]


def test_plan_with_nothing_referenced_and_no_locks_of_ours_does_nothing() -> None:
    assert plan_locks({}, {}, taken={normalize(OS_SNAP)}) == []


@pytest.mark.parametrize(("owners", "owner", "ours"), [
    ((), None, True), (("batch-image-autopilot",), "batch-image-autopilot", True),
    (("BATCH-IMAGE-AUTOPILOT",), "batch-image-autopilot", True),
    (("alice",), "batch-image-autopilot", False), ((), "batch-image-autopilot", False), (("alice",), None, False),
])
def test_a_lock_with_the_apps_name_is_the_apps_only_when_the_app_owns_it(
        owners: tuple[str, ...], owner: str | None, ours: bool) -> None:
    assert is_ours(owners, owner) is ours


# ----------------------------------------------------------------------------------------------
# lock_target
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lock_id", "target"), [
    (f"{VERSION}/providers/Microsoft.Authorization/locks/{LOCK_NAME}", (VERSION, LOCK_NAME)),
    (f"{OS_SNAP}/providers/microsoft.authorization/LOCKS/keep-me", (OS_SNAP, "keep-me")),
    (f"/subscriptions/{SUB}/providers/Microsoft.Authorization/locks/sub-lock", (f"/subscriptions/{SUB}", "sub-lock")),
    (f"/providers/Microsoft.Authorization/locks/{LOCK_NAME}", None),
    (OS_SNAP, None),
    ("", None),
])
def test_lock_target(lock_id: str, target: tuple[str, str] | None) -> None:
    assert lock_target(lock_id) == target
