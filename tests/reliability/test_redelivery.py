"""Redelivery: Event Grid delivers at least once, in no particular order. The app must not care.

Hypothesis chooses, for every batch of events Event Grid would deliver (snapshot writes, image and gallery
version writes, Tags-API tag writes and tag removals, pool and lock events on the system topic, PoolResizeStalled
events on the custom topic):
the order (shuffled, reversed or as raised), how many copies of each are delivered (up to four), which
deliveries are held back and arrive minutes later (after events raised after them), and which events
delivered earlier are delivered again much later (stale redelivery). ARM's own duplicate write events
(the first naming a temporary deployment) can be switched on too.

What must hold whatever the order:

* the snapshot set gives exactly one managed image, one gallery image version and one set of pools
  (counted as successful writes by the app in the emulator's request log), and the pools reach their size;
* no pool gets two resize calls in one watch cycle (resize POSTs in the request log, per pool, between
  two ticks);
* no alert is sent twice (alert events on the custom topic, per subject and type);
* no function fails (a duplicate is not an error).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from autopilot.local import LocalAzure
from emulator.functions_host import Delivery

from .harness import (
    ACCOUNT,
    ACCOUNT_ID,
    CHAOS,
    GALLERY,
    LEDGER,
    SUBSCRIPTION_ID,
    TABLE_FAULT_SETTINGS,
    check,
    copy_delivery,
    custom_image,
    deliver,
    duplicated_alerts,
    failed_invocations,
    family_config,
    local_azure,
    managed_pool,
    nontransient_failures,
    resize_posts,
    resizes_per_cycle,
    scaled,
    step,
    storage,
    successful_writes,
    take_pending,
    watch_tick_times,
)

# No shrinking: one example is a whole run on the emulator (seconds); the failing plan is printed as drawn.
SETTINGS = settings(max_examples=scaled(4, 40), deadline=None, print_blob=True, derandomize=not CHAOS,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


@dataclass(frozen=True)
class DeliveryPlan:
    """How Event Grid misbehaves in one example. ``seed`` drives the per-batch choices, so a failure replays exactly."""

    seed: int
    order: str  # shuffle | reverse | fifo
    duplicate_rate: float  # share of deliveries sent more than once
    max_copies: int
    hold_rate: float  # share of deliveries held back and delivered 1-15 minutes later
    stale_rate: float  # per batch: chance that an old event is delivered again
    arm_duplicates: bool  # ARM raises each write twice (first copy names a temporary deployment)


plans = st.builds(
    DeliveryPlan,
    seed=st.integers(0, 2**32 - 1),
    order=st.sampled_from(["shuffle", "reverse", "fifo"]),
    duplicate_rate=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    max_copies=st.integers(2, 4),
    hold_rate=st.sampled_from([0.0, 0.2, 0.5]),
    stale_rate=st.sampled_from([0.0, 0.3, 1.0]),
    arm_duplicates=st.booleans(),
)


class Misdelivery:
    """Takes every batch the host would deliver and delivers it the plan's way."""

    def __init__(self, la: LocalAzure, plan: DeliveryPlan) -> None:
        self.la = la
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.history: list[Delivery] = []
        self.held: list[tuple[object, Delivery]] = []  # (release time, delivery)
        self.deliveries = 0

    def _batch(self, pending: list[Delivery], *, chaos: bool) -> list[Delivery]:
        now = self.la.emulator.now()
        out: list[Delivery] = []
        for d in pending:
            if chaos and self.rng.random() < self.plan.hold_rate:
                self.held.append((now + timedelta(minutes=self.rng.randint(1, 15)), d))
                continue
            out.append(d)
            if chaos and self.rng.random() < self.plan.duplicate_rate:
                out += [copy_delivery(d, now) for _ in range(self.rng.randint(1, self.plan.max_copies - 1))]
        if chaos and self.history and self.rng.random() < self.plan.stale_rate:
            out += [copy_delivery(self.rng.choice(self.history), now) for _ in range(self.rng.randint(1, 3))]
        if chaos and self.plan.order == "shuffle":
            self.rng.shuffle(out)
        elif chaos and self.plan.order == "reverse":
            out.reverse()
        return out

    def pump(self, *, chaos: bool = True) -> None:
        """Deliver until nothing is pending (events raised while delivering are delivered too, the same way)."""
        now = self.la.emulator.now()
        released = [d for when, d in self.held if when <= now or not chaos]
        self.held = [(when, d) for when, d in self.held if when > now and chaos]
        pending = take_pending(self.la.host) + released
        while pending:
            batch = self._batch(pending, chaos=chaos)
            if chaos:
                self.history += pending
            self.deliveries += len(batch)
            deliver(self.la.host, batch)
            pending = take_pending(self.la.host)

    def run(self, minutes: int, *, chaos: bool = True) -> None:
        for _ in range(minutes):
            self.pump(chaos=chaos)
            step(self.la)
            self.la.host.fire_due_timers()
            self.pump(chaos=chaos)


def _common_invariants(la: LocalAzure, test: str, *, per_situation: bool = False, table_faults: bool = False) -> None:
    """``per_situation``: an alert is a duplicate when its subject, type *and* diagnosis repeat (snapshot-set alerts are
    keyed by situation: the same snapshot may be in two different conflicts, one after the other, and both are news)."""
    if table_faults:
        # Table storage failing a fifth of the time makes invocations fail; they must fail only on transient errors
        # (so that Event Grid's redelivery or the next tick finishes the work), and every other invariant still holds.
        check("only transient Azure errors escape a function", not nontransient_failures(la),
              "functions failed on errors Event Grid redelivery cannot fix:\n  "
              + "\n  ".join(nontransient_failures(la)))
        LEDGER.count(f"{test}: failed invocations under Table storage faults", len(failed_invocations(la)))
    else:
        check("no function fails on a duplicate or out-of-order event", not failed_invocations(la),
              f"failed invocations: {[(i.function, i.detail) for i in failed_invocations(la)]}")
    check("no dead letters", not la.host.dead_letters,
          f"dead-lettered: {[d.event.get('id') for d in la.host.dead_letters]}")
    per_cycle = resizes_per_cycle(la, watch_tick_times(la), accepted_only=False)
    doubled = {k: n for k, n in per_cycle.items() if n > 1}
    check("at most one resize call per pool per watch cycle", not doubled, f"(cycle, pool) -> resize POSTs: {doubled}")
    if per_situation:
        seen = Counter((a["subject"].lower(), a["eventType"], a["data"].get("diagnosis")) for a in la.alerts())
        repeated = {k: n for k, n in seen.items() if n > 1}
        check("no duplicate alert", not repeated,
              f"alerts sent more than once (subject, type, diagnosis) -> count: {repeated}")
    else:
        check("no duplicate alert", not duplicated_alerts(la),
              f"alerts sent more than once (subject, type) -> count: {duplicated_alerts(la)}")
    LEDGER.count(f"{test}: resize calls", sum(per_cycle.values()))
    LEDGER.count(f"{test}: alerts", len(la.alerts()))


# The plan that first showed a late copy of a stall event resizing a pool a second time in one cycle.
STALE_AND_LATE = DeliveryPlan(seed=9540, order="shuffle", duplicate_rate=0.0, max_copies=2, hold_rate=0.2,
                              stale_rate=1.0, arm_duplicates=True)
EVERYTHING = DeliveryPlan(seed=7, order="reverse", duplicate_rate=1.0, max_copies=4, hold_rate=0.5, stale_rate=1.0,
                          arm_duplicates=True)


@SETTINGS
@example(plan=STALE_AND_LATE, data_disks=2, table_faults=False)
@example(plan=EVERYTHING, data_disks=1, table_faults=True)
@given(plan=plans, data_disks=st.integers(0, 2), table_faults=st.booleans())
def test_snapshot_set_redelivered_builds_exactly_once(azurite: str, tls_material, plan: DeliveryPlan, data_disks: int,
                                                      table_faults: bool) -> None:
    LEDGER.case("redelivery: snapshot set" + (" (Table storage faults)" if table_faults else ""))
    families = family_config(pools=[{"poolId": "gpu-a-{versionDashed}", "dedicated": 25},
                                    {"poolId": "gpu-b-{versionDashed}", "dedicated": 12}])
    with storage(azurite, plan.seed, faults=table_faults) as (tables, proxy), \
            local_azure(tables, tls_material, families=families, seed=plan.seed % 1000,
                        settings={"AUTOPILOT_GROWTH_STEP_NODES": "10",
                                  **(TABLE_FAULT_SETTINGS if table_faults else {})}) as la:
        la.add_batch_account(ACCOUNT)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, "images-rg", GALLERY, location="westeurope")
        la.emulator.eventgrid.duplicate_writes = plan.arm_duplicates
        snapshots = la.snapshot_set("gpu", "1.0.0", data_luns=tuple(range(data_disks)))
        driver = Misdelivery(la, plan)
        driver.run(75)
        if proxy is not None:
            proxy.faults.clear()  # the storage storm passes; what failed is redelivered or swept
        driver.run(20 if proxy is None else 40, chaos=False)  # whatever was held back arrives; then Event Grid is quiet
        LEDGER.count("redelivery: deliveries", driver.deliveries)

        check("exactly one managed image", len(successful_writes(la, "Microsoft.Compute/images/write")) == 1,
              f"images written: {[e.path for e in successful_writes(la, 'Microsoft.Compute/images/write')]}")
        versions = successful_writes(la, "Microsoft.Compute/galleries/images/versions/write")
        check("exactly one gallery image version", len(versions) == 1,
              f"gallery versions written: {[e.path for e in versions]}")
        pools_written = successful_writes(la, "Microsoft.Batch/batchAccounts/pools/write")
        check("exactly one pool set",
              sorted(e.path.rsplit("/", 1)[-1] for e in pools_written) == ["gpu-a-1-0-0", "gpu-b-1-0-0"],
              f"pools written: {[e.path for e in pools_written]}")
        pools = {p.id: p for p in la.emulator.batch.list_pools(ACCOUNT)}
        check("exactly one pool set", sorted(pools) == ["gpu-a-1-0-0", "gpu-b-1-0-0"],
              f"pools in the account: {sorted(pools)}")
        check("pools reach their size",
              (pools["gpu-a-1-0-0"].current["dedicated"], pools["gpu-b-1-0-0"].current["dedicated"]) == (25, 12),
              f"nodes: { {k: p.current for k, p in pools.items()} }")
        created = la.alerts("PoolsCreated")
        check("one PoolsCreated alert", len(created) == 1, f"PoolsCreated alerts: {len(created)}")
        for sid in snapshots.values():
            check("snapshots guarded", len(la.locks_on(sid)) == 1, f"locks on {sid}: {la.locks_on(sid)}")
        _common_invariants(la, "redelivery: snapshot set", table_faults=table_faults)


def _tags(version: str, disk: str, count: int) -> dict[str, str]:
    return {"autopilot.family": "gpu", "autopilot.version": version, "autopilot.disk": disk,
            "autopilot.diskCount": str(count)}


@SETTINGS
@example(plan=EVERYTHING)
@given(plan=plans)
def test_tags_api_writes_and_untagging_redelivered_build_exactly_once_from_the_right_disks(azurite: str, tls_material,
                                                                                         plan: DeliveryPlan) -> None:
    """Snapshots taken untagged, then tagged, re-tagged and untagged through the Tags API while Event Grid misdelivers:
    a wrong snapshot claims LUN 0 first and is untagged (the conflict's fix), a stray one is tagged and has every tag
    removed (a tags/delete event), one snapshot is moved from another version. The version is built once, from the
    right disks, and the wrong and stray snapshots never get the app's lock. (No state the tags pass through is a
    complete set of wrong disks: the app cannot know of a claim whose event has not arrived, so a person who makes
    such a set complete, even for a moment, gets it built.)"""
    LEDGER.case("redelivery: Tags API writes and untagging")
    with local_azure(azurite, tls_material,
                     families=family_config(pools=[{"poolId": "gpu-{versionDashed}", "dedicated": 4}]),
                     seed=plan.seed % 1000) as la:
        la.add_batch_account(ACCOUNT)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, "images-rg", GALLERY, location="westeurope")
        la.emulator.eventgrid.duplicate_writes = plan.arm_duplicates
        disks = {name: la.add_prepared_disk(f"{name}-disk", data_disk_gb=None if name == "os" else 64)
                 for name in ("os", "data0", "data1", "wrong0", "stray")}
        ids = {name: la.snapshot(f"t-{name}", disk) for name, disk in disks.items()}  # untagged: written, ignored
        driver = Misdelivery(la, plan)
        driver.run(2)
        la.tag_resource(ids["wrong0"], _tags("2.0.0", "0", 3), "Merge")  # the wrong disk claims LUN 0 first
        la.tag_resource(ids["os"], _tags("2.0.0", "os", 3), "Replace")
        la.tag_resource(ids["data1"], _tags("1.9.0", "1", 2), "Merge")  # first tagged for another version
        driver.run(3)
        la.tag_resource(ids["data0"], _tags("2.0.0", "0", 3), "Merge")  # the right one: a conflict
        la.tag_resource(ids["stray"], _tags("2.0.0", "0", 3), "Merge")  # a stray claim on LUN 0 as well ...
        driver.run(3)
        la.tag_resource(ids["stray"], None, "DeleteAll")  # ... whose tags are all removed (az tag delete)
        # the conflict's fix: untag the wrong one
        la.tag_resource(ids["wrong0"], {k: "" for k in _tags("", "", 0)}, "Delete")
        driver.run(3)
        la.tag_resource(ids["data1"], _tags("2.0.0", "1", 3), "Merge")  # moved to 2.0.0: the set is complete
        driver.run(60)
        driver.run(20, chaos=False)
        LEDGER.count("redelivery: deliveries", driver.deliveries)

        check("exactly one managed image", len(successful_writes(la, "Microsoft.Compute/images/write")) == 1,
              f"images written: {[e.path for e in successful_writes(la, 'Microsoft.Compute/images/write')]}")
        versions = successful_writes(la, "Microsoft.Compute/galleries/images/versions/write")
        check("exactly one gallery image version", [e.path.rsplit("/", 1)[-1] for e in versions] == ["2.0.0"],
              f"gallery versions written: {[e.path for e in versions]}")
        pools = la.emulator.batch.list_pools(ACCOUNT)
        check("exactly one pool", [p.id for p in pools] == ["gpu-2-0-0"], f"pools: {[p.id for p in pools]}")
        right = {ids["os"].lower(), ids["data0"].lower(), ids["data1"].lower()}
        used = {s.lower() for s in pools[0].metadata.get("autopilot.snapshotIds", "").split(",")
                if s} if pools else set()
        check("built from the right disks", used == right,
              f"the pool's snapshots: {sorted(used)}, want {sorted(right)}")
        for name in ("wrong0", "stray"):
            check("wrong snapshots never locked", not la.locks_on(ids[name]),
                  f"locks on {name}: {la.locks_on(ids[name])}")
        check("one PoolsCreated alert", len(la.alerts("PoolsCreated")) == 1,
              f"PoolsCreated alerts: {len(la.alerts('PoolsCreated'))}")
        _common_invariants(la, "redelivery: Tags API writes and untagging", per_situation=True)


@SETTINGS
@example(plan=EVERYTHING, failing=[0, 3], failures=2, table_faults=False)
@example(plan=STALE_AND_LATE, failing=[1, 2], failures=2, table_faults=True)
@given(plan=plans, failing=st.lists(st.integers(0, 5), max_size=3, unique=True), failures=st.integers(1, 3),
       table_faults=st.booleans())
def test_stall_events_redelivered_resize_once_per_cycle(azurite: str, tls_material, plan: DeliveryPlan,
                                                        failing: list[int],
                                                         failures: int, table_faults: bool) -> None:
    LEDGER.case("redelivery: PoolResizeStalled" + (" (Table storage faults)" if table_faults else ""))
    with storage(azurite, plan.seed, faults=table_faults) as (tables, proxy), \
            local_azure(tables, tls_material, accounts=[ACCOUNT_ID], seed=plan.seed % 1000,
                        settings={"AUTOPILOT_GROWTH_STEP_NODES": "10",
                                  **(TABLE_FAULT_SETTINGS if table_faults else {})}) as la:
        la.add_batch_account(ACCOUNT)
        image = custom_image(la)
        for i in range(6):
            # Even pools use a gallery image (grown in steps of 10 nodes, one step per cycle), odd ones a Marketplace
            # image.
            managed_pool(la, f"pool{i}", target=2, desired=10 + 8 * i, image_id=image if i % 2 == 0 else None)
        for i in failing:
            la.emulator.batch.inject_failure(ACCOUNT, f"pool{i}", "insufficient_capacity", count=failures)
        driver = Misdelivery(la, plan)
        driver.run(90)
        if proxy is not None:
            proxy.faults.clear()
        driver.run(30, chaos=False)
        LEDGER.count("redelivery: deliveries", driver.deliveries)
        LEDGER.count("redelivery: stall events published", len(la.stall_events()))

        for i in range(6):
            pool = la.pool(ACCOUNT, f"pool{i}")
            check("pools reach their size", pool.current["dedicated"] == 10 + 8 * i,
                  f"pool{i}: {pool.current} (want {10 + 8 * i})")
        for i in failing:
            subject = f"{ACCOUNT_ID}/pools/pool{i}"
            failed = [a for a in la.alerts("AllocationFailed") if a["subject"].lower() == subject.lower()]
            check("a failing pool alerts once", len(failed) == 1, f"AllocationFailed alerts for pool{i}: {len(failed)}")
        _common_invariants(la, "redelivery: PoolResizeStalled", table_faults=table_faults)


def test_late_copy_of_a_stall_event_does_not_resize_again(azurite: str, tls_material) -> None:
    """The smallest case of the property above, spelled out: one stall event, delivered on time, then again two
    minutes later (Event Grid redelivers, or a copy was delayed), after the resize it caused has completed and
    before the next watch tick. The copy names a pool state (eTag) that no longer exists; it must not make a
    second resize in the cycle."""
    LEDGER.case("redelivery: late copy of one stall event")
    with local_azure(azurite, tls_material, accounts=[ACCOUNT_ID],
                     settings={"AUTOPILOT_GROWTH_STEP_NODES": "10"}) as la:
        la.add_batch_account(ACCOUNT)
        managed_pool(la, "pool0", target=2, desired=30, image_id=custom_image(la))
        stall: list[Delivery] = []
        while not stall:  # up to the first watch tick that finds the pool short of its 30 nodes
            step(la)
            la.host.fire_due_timers()
            stall = [d for d in take_pending(la.host) if d.subscription.function == "resize_stalled"]
        first = stall[0]
        deliver(la.host, [first])
        check("the stall event resizes the pool", len(resize_posts(la, accepted_only=True)) == 1,
              f"resize calls after the first delivery: {[(e.path, e.status) for e in resize_posts(la)]}")
        step(la, 2)  # Batch grows the pool to the step it was asked for; no watch tick in between
        assert la.pool(ACCOUNT, "pool0").allocation_state == "steady"
        deliver(la.host, [copy_delivery(first, la.emulator.now())])
        calls = [(e.time.isoformat(), e.path, e.status) for e in resize_posts(la)]
        check("at most one resize call per pool per watch cycle", len(calls) == 1,
              f"a late copy of the stall event {first.event.get('id')} (pool eTag {first.event['data'].get('eTag')}) "
              "caused another "
              f"resize in the same cycle: {calls}")
        check("no function fails on a duplicate or out-of-order event", not failed_invocations(la),
              f"failed invocations: {[(i.function, i.detail) for i in failed_invocations(la)]}")
