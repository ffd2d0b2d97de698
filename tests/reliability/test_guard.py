"""Guard invariant: once the guard has reacted, nobody can delete an image, gallery version or snapshot a pool uses.

The pipeline builds a version that two pools use, keeping its managed image, so the guard locks four
resources: the gallery image version, the managed image and the two snapshots. Then an operator (another
identity, through the real SDK) does what hypothesis tells them, in any order: tries to delete any of
them, removes the app's lock from any of them, deletes a pool; and between those steps the app reacts, or
not: Event Grid delivers what has been raised, the guard's reconcile timer fires, or time passes with the
host running.

The window the invariant allows: after the operator removes a lock and before the guard has reacted (the
lock-delete event delivered, or a reconcile tick), a delete can succeed; that is what the lock-delete
event and the reconcile timer exist to close. So:

* a delete attempt on a referenced resource whose lock was not removed since the guard last reacted is
  refused (409), and the resource is still there;
* after each reaction, every referenced resource that still exists carries the app's lock;
* a referenced resource that was deleted inside the window is reported: one ImageMissing alert;
* every DeleteBlocked alert names the operator; no alert is sent twice; no function fails.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from autopilot.local import OPERATOR, LocalAzure
from shared.resources import locks as lock_adapter

from .harness import (
    ACCOUNT,
    CHAOS,
    GALLERY,
    LEDGER,
    SUBSCRIPTION_ID,
    check,
    failed_invocations,
    family_config,
    local_azure,
    scaled,
)

LOCK = "batch-image-autopilot"
TARGETS = ("version", "image", "snapshot-os", "snapshot-lun0")
POOLS = ("gpu-a-1-0-0", "gpu-b-1-0-0")
REACTIONS = ("deliver", "reconcile", "wait")

operations = st.lists(
    st.one_of(
        st.tuples(st.just("delete"), st.sampled_from(TARGETS)),
        st.tuples(st.just("unlock"), st.sampled_from(TARGETS)),
        st.tuples(st.sampled_from(REACTIONS), st.just("")),
        st.tuples(st.just("delete-pool"), st.sampled_from(POOLS)),
    ),
    min_size=4, max_size=scaled(14, 24),
).filter(lambda ops: any(kind == "delete" for kind, _ in ops))


class Operator:
    """An operator at the portal: deletes resources and locks with their own identity (their writes raise events)."""

    def __init__(self, la: LocalAzure, snapshots: dict[str, str]) -> None:
        self.la = la
        sub = SUBSCRIPTION_ID
        self.ids = {
            "version": f"/subscriptions/{sub}/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/{GALLERY}"
                       "/images/gpu-render/versions/1.0.0",
            "image": f"/subscriptions/{sub}/resourceGroups/images-rg/providers/Microsoft.Compute/images/gpu-1.0.0",
            "snapshot-os": snapshots["os"],
            "snapshot-lun0": snapshots["lun0"],
        }

    def delete(self, target: str) -> bool | None:
        """True: deleted; False: refused; None: it was already gone."""
        compute = self.la.operator.compute
        name = self.ids[target].rsplit("/", 1)[1]
        try:
            if target == "version":
                compute.gallery_image_versions.begin_delete("images-rg", GALLERY, "gpu-render", "1.0.0").result()
            elif target == "image":
                compute.images.begin_delete("images-rg", name).result()
            else:
                compute.snapshots.begin_delete("images-rg", name).result()
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return False
            raise
        return True

    def exists(self, target: str) -> bool:
        return self.la.emulator.compute.find(self.ids[target]) is not None

    def unlock(self, target: str) -> bool:
        if not self.locked(target):
            return False
        lock_adapter.delete_lock(self.la.operator, self.ids[target], LOCK)
        return True

    def locked(self, target: str) -> bool:
        return any(lock.name == LOCK for lock in self.la.locks_on(self.ids[target]))

    def delete_pool(self, pool: str) -> bool:
        try:
            self.la.operator.batch_management.pool.begin_delete("batch-rg", ACCOUNT, pool).result()
        except ResourceNotFoundError:
            return False
        return True


# No shrinking: one example is a whole pipeline run on the emulator; the failing operations are printed as drawn.
@settings(max_examples=scaled(6, 60), deadline=None, derandomize=not CHAOS,
          phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@example(ops=[("unlock", "snapshot-os"), ("delete", "snapshot-os"), ("deliver", ""), ("delete", "snapshot-lun0"),
              ("unlock", "image"),
              ("reconcile", ""), ("delete", "image"), ("unlock", "version"), ("wait", ""), ("delete", "version")])
@example(ops=[("delete-pool", "gpu-a-1-0-0"), ("deliver", ""), ("delete", "image"), ("delete-pool", "gpu-b-1-0-0"),
              ("unlock", "image"),
              ("delete", "snapshot-lun0"), ("deliver", ""), ("delete", "snapshot-os")])
@given(ops=operations)
def test_a_referenced_image_is_never_lost_after_the_guard_reacted(azurite: str, tls_material: Any,
                                                                  ops: list[tuple[str, str]]) -> None:
    LEDGER.case("guard")
    families = family_config(pools=[{"poolId": "gpu-a-{versionDashed}", "dedicated": 3},
                                    {"poolId": "gpu-b-{versionDashed}", "dedicated": 2}],
                             keep_managed_image=True)
    with local_azure(azurite, tls_material, families=families) as la:
        la.add_batch_account(ACCOUNT)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, "images-rg", GALLERY, location="westeurope")
        operator = Operator(la, la.snapshot_set("gpu", "1.0.0", data_luns=(0,)))
        la.run(timedelta(minutes=30))
        assert all(operator.locked(t) for t in TARGETS), ("the guard did not lock the version, the image and "
                                                          "the snapshots")

        pools = set(POOLS)
        exposed: set[str] = set()  # unlocked by the operator since the guard last reacted
        lost_in_window: set[str] = set()
        refused = 0
        for step, (kind, arg) in enumerate(ops):
            where = f"step {step} {kind} {arg} of {ops}"
            referenced = bool(pools)
            if kind == "unlock":
                if operator.unlock(arg):
                    exposed.add(arg)
            elif kind == "delete-pool":
                if operator.delete_pool(arg):
                    pools.discard(arg)
            elif kind == "delete":
                existed = operator.exists(arg)
                outcome = operator.delete(arg)
                LEDGER.count("guard: delete attempts")
                if referenced and existed and arg not in exposed:
                    check("a guarded delete is refused", outcome is False and operator.exists(arg),
                          f"{where}: deleting the referenced {arg} (lock in place since the guard last reacted) "
                          f"gave {outcome}")
                    refused += 1
                elif outcome and referenced:
                    lost_in_window.add(arg)
            else:
                if kind == "deliver":
                    la.settle()
                elif kind == "reconcile":
                    la.host.fire_timer("image_guard_reconcile")
                    la.settle()
                else:
                    la.run(timedelta(minutes=7))
                exposed.clear()
                if pools:
                    unguarded = [t for t in TARGETS if operator.exists(t) and not operator.locked(t)]
                    check("after the guard reacted, every referenced resource is locked", not unguarded,
                          f"{where}: referenced but unlocked after the guard reacted: {unguarded}")
        la.settle()
        la.host.fire_timer("image_guard_reconcile")
        la.settle()
        LEDGER.count("guard: deletes refused by the guard's locks", refused)
        LEDGER.count("guard: resources deleted inside the window (lock removed, guard not yet reacted)",
                     len(lost_in_window))

        if pools:
            unguarded = [t for t in TARGETS if operator.exists(t) and not operator.locked(t)]
            check("after the guard reacted, every referenced resource is locked", not unguarded,
                  f"end of {ops}: unlocked: {unguarded}")
        missing = la.alerts("ImageMissing")
        for target in lost_in_window:
            alerts = [a for a in missing if a["subject"].lower() == operator.ids[target].lower()]
            # Exactly one while the pools still exist; at most one if they were deleted before the event was delivered.
            expected = {1} if pools == set(POOLS) else {0, 1}
            check("a referenced resource deleted in the window raises one ImageMissing alert", len(alerts) in expected,
                  f"{ops}: {target} was deleted while referenced; ImageMissing alerts for it: {len(alerts)}")
        blocked = la.alerts("DeleteBlocked")
        check("DeleteBlocked alerts name who tried", all(a["data"].get("caller") == OPERATOR for a in blocked),
              f"callers: {[a['data'].get('caller') for a in blocked]}")
        ids = [a["id"] for a in la.alerts()]
        check("no duplicate alert", len(ids) == len(set(ids)),
              f"alert ids sent more than once: {[i for i in set(ids) if ids.count(i) > 1]}")
        check("no function fails", not failed_invocations(la),
              f"failed: {[(i.function, i.detail) for i in failed_invocations(la)]}")
