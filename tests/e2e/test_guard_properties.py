"""A property of the image guard over random histories, end to end (emulator, Azurite, local Functions host).

Random sequences of pool creates, pool deletes, lock removals (announced by their event, or silently
lost) and delete attempts, by a person through real SDK clients. After every step the events are
delivered (as Event Grid would, before the next human action), and:

* no image, gallery version or snapshot a managed pool depends on is ever deleted;
* the app's locks are exactly the resources managed pools depend on - none missing, none stale -
  both through events alone and after a full reconcile (the timer);
* locks the app did not create are exactly as they were;
* every refused delete of an image in use raised one DeleteBlocked alert, and nothing raised ImageMissing.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autopilot.local import LocalAzure
from emulator.server import TlsMaterial
from shared.guard.lock_plan import LOCK_NAME
from tests.e2e.test_image_guard import (
    GUARD_TIMER,
    app_locked,
    create_pool,
    delete_pool,
    delete_resource,
    exists,
    failed_invocations,
    make_image,
    make_snapshot,
    make_version,
    new_local,
    person,
    put_foreign_lock,
    remove_lock,
)

# The world every example starts from (resource names; ids are built per example):
#   1.0.0 <- img-1 <- os-1 + data-1      2.0.0 <- os-2      3.0.0 <- os-1
# Foreign locks: "keep-me" on 3.0.0 (another name, on a guarded resource) and a lock named like the
# app's but owned by alice on os-2 (the app must neither overwrite nor remove it).
VERSIONS = ("1.0.0", "2.0.0", "3.0.0")
RESOURCES = ("1.0.0", "2.0.0", "3.0.0", "img-1", "os-1", "data-1", "os-2")
CHAINS = {"1.0.0": {"1.0.0", "img-1", "os-1", "data-1"}, "2.0.0": {"2.0.0", "os-2"}, "3.0.0": {"3.0.0", "os-1"}}
TAKEN = {"os-2"}  # alice's lock named LOCK_NAME: the app leaves it be (it already blocks deletes)

Step = tuple[Any, ...]
steps = st.lists(st.one_of(
    st.tuples(st.just("create"), st.sampled_from(VERSIONS), st.sampled_from(["managed", "managed", "unmanaged"])),
    st.tuples(st.just("delete_pool"), st.integers(0, 5)),
    st.tuples(st.just("remove_lock"), st.sampled_from(RESOURCES)),
    st.tuples(st.just("lose_lock"), st.sampled_from(RESOURCES)),
    st.tuples(st.just("delete"), st.sampled_from(RESOURCES)),
), min_size=1, max_size=9)


def build_world(local: LocalAzure) -> dict[str, str]:
    ids = {"os-1": make_snapshot(local, "os-1"), "data-1": make_snapshot(local, "data-1", data_disk=True),
           "os-2": make_snapshot(local, "os-2")}
    ids["img-1"] = make_image(local, "img-1", ids["os-1"], {0: ids["data-1"]})
    ids["1.0.0"] = make_version(local, "1.0.0", source_image=ids["img-1"])
    ids["2.0.0"] = make_version(local, "2.0.0", os_snapshot=ids["os-2"])
    ids["3.0.0"] = make_version(local, "3.0.0", os_snapshot=ids["os-1"])
    return ids


def foreign_locks(local: LocalAzure) -> dict[tuple[str, str], tuple[str, str | None, list[dict[str, str]]]]:
    return {(lock.scope.lower(), lock.name): (lock.level, lock.notes, list(lock.owners))
            for lock in local.emulator.locks.all_locks()
            if not (lock.name == LOCK_NAME
                    and [o.get("applicationId") for o in lock.owners] == ["batch-image-autopilot"])}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps)
@example(history=[("create", "1.0.0", "managed"), ("remove_lock", "img-1"), ("delete", "img-1"), ("delete_pool", 0),
                  ("delete", "img-1")])
@example(history=[("create", "3.0.0", "managed"), ("create", "1.0.0", "managed"), ("delete_pool", 0),
                  ("lose_lock", "os-1"),
                  ("delete", "os-1"), ("delete", "data-1"), ("create", "2.0.0", "unmanaged"), ("delete", "2.0.0")])
def test_the_guard_never_loses_a_referenced_image_and_never_leaves_a_stale_lock(azurite: str, tls_material: TlsMaterial,
                                                                                 history: list[Step]) -> None:
    with new_local(azurite, tls_material) as local:
        ids = build_world(local)
        alice = person(local)
        try:
            put_foreign_lock(alice, ids["3.0.0"], "keep-me", "finance keeps 3.0.0")
            put_foreign_lock(alice, ids["os-2"], LOCK_NAME, "alice's own lock, the app's name", owner="alice")
            local.settle()
            foreign = foreign_locks(local)
            pools: dict[str, tuple[str, bool]] = {}  # live pools: id -> (version, managed)
            gone: set[str] = set()
            expected_blocked = 0
            counter = 0

            def referenced() -> set[str]:
                return set().union(*(CHAINS[v] for v, managed in pools.values() if managed))

            def check(moment: str) -> None:
                refs = referenced()
                lost = {name for name in refs if not exists(local, ids[name])}
                assert not lost, f"{moment}: referenced resources were deleted: {lost}"
                want = {ids[name].lower() for name in refs - TAKEN}
                assert app_locked(local) == want, (f"{moment}: app locks differ from what managed pools use "
                                                   f"({sorted(refs)})")
                assert foreign_locks(local) == foreign, f"{moment}: a lock the app did not create changed"

            for step in history:
                kind = step[0]
                if kind == "create":
                    version, managed = step[1], step[2] == "managed"
                    if CHAINS[version] & gone:
                        continue  # a team would not build a pool on an image whose sources are already gone
                    counter += 1
                    pool_id = f"p{counter}"
                    create_pool(alice, pool_id, ids[version], managed=managed)
                    pools[pool_id] = (version, managed)
                elif kind == "delete_pool":
                    if not pools:
                        continue
                    pool_id = sorted(pools)[step[1] % len(pools)]
                    delete_pool(alice, pool_id)
                    del pools[pool_id]
                elif kind == "remove_lock":
                    if step[1] in gone or step[1] in TAKEN:
                        continue
                    remove_lock(alice, ids[step[1]])  # announced: its event follows
                elif kind == "lose_lock":
                    if step[1] in gone or step[1] in TAKEN:
                        continue
                    local.emulator.locks.delete_lock(ids[step[1]], LOCK_NAME)  # removed with no event at all
                    assert local.host.fire_timer(GUARD_TIMER)  # one tick puts it back
                else:
                    name = step[1]
                    if name in gone:
                        continue
                    in_use = name in referenced()
                    try:
                        delete_resource(alice, ids[name])
                    except HttpResponseError as refused:
                        assert refused.status_code == 409
                        expected_blocked += in_use
                    else:
                        assert not in_use, f"deleting {name} succeeded while managed pools use it"
                        gone.add(name)
                local.settle()
                check(f"after {step}")

            assert local.host.fire_timer(GUARD_TIMER)  # a full reconcile changes nothing: the events kept it exact
            check("after a full reconcile")
            assert len(local.alerts("DeleteBlocked")) == expected_blocked
            assert local.alerts("ImageMissing") == []
            assert failed_invocations(local) == []
        finally:
            alice.close()
