"""End to end: the pool watch (timer -> PoolResizeStalled -> resize_stalled) on the emulator, Azurite and the local
Functions host.

Pools are created directly in the emulator's Batch backend with the metadata the image pipeline writes, on a
Compute Gallery image version published at once (``instant``) or on a Marketplace image. Everything the app does
goes through the real function entry points (or ``shared.watch.tick`` for a second instance) and real SDK clients over
HTTPS; outcomes are read from the emulator (request log, pools, topic events, Teams messages) and from the app's
Table storage in Azurite. Capacity is made deterministic (no random transient failures, no rate jitter), so every
failure a test sees is one it injected, and times on the virtual clock are exact.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from autopilot.local import SUBSCRIPTION_ID as SUB
from autopilot.local import LocalAzure
from emulator.faults import FaultRule
from shared.core import pool_metadata
from shared.core.alerts import OUTBOX
from shared.core.context import AppContext, install_context
from shared.core.event_routing import CUSTOM
from shared.core.resource_ids import batch_account_id
from shared.core.state import ALERTS
from shared.resources import batch_accounts, batch_pools
from shared.resources.batch_pools import ResizeResult
from shared.watch import tick as watch
from shared.watch.pool_policy import parse_datetime
from tests.e2e.watch_support import (
    ACCOUNT,
    ACCOUNT_ID,
    VM,
    Resizes,
    add_pool,
    at,
    custom_image,
    episode,
    fresh_context,
    pool_alerts,
    pool_writes,
    resize_posts,
    run_until,
    stalls,
    subject,
)


def test_2500_node_custom_image_pool_reaches_target_through_repeated_allocation_timeouts(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    image = custom_image(la)
    # 14 nodes a minute: a 300-node step cannot finish within its 20-minute resizeTimeout (280 nodes), so every
    # step ends in AllocationTimedout short of its target, under the per-resize cap of 300.
    la.emulator.batch.configure_capacity("westeurope", VM, dedicated_per_minute=14, max_nodes_per_resize=300)
    # A Marketplace pool is not staged: one resize, with 15 minutes of timeout per 1,000 nodes.
    la.emulator.batch.configure_capacity("westeurope", "Standard_D8ds_v5", dedicated_per_minute=100,
                                         max_nodes_per_resize=2500)
    add_pool(la, "big", image_id=image, desired=2500, target=300)  # as the pipeline creates it: the first step only
    add_pool(la, "flat", desired=2400, vm_size="Standard_D8ds_v5")
    resizes = Resizes(la, "big", "flat")

    while la.pool(ACCOUNT, "big").current["dedicated"] < 2500 and la.emulator.now() < at(18, 0):
        run_until(la, la.emulator.now() + timedelta(hours=1), resizes)
    run_until(la, la.emulator.now() + timedelta(minutes=10), resizes)  # the tick that sees it there

    big = la.pool(ACCOUNT, "big")
    assert (big.current["dedicated"], big.allocation_state, big.resize_errors) == (2500, "steady", [])
    steps = resizes.of["big"]
    assert [r.dedicated for r in steps] == [580, 860, 1140, 1420, 1700, 1980, 2260, 2500]
    # staged from the nodes it really has
    assert all(r.added == min(300, 2500 - r.from_dedicated) for r in steps), steps
    # the floor of the 20-30 minute band for <= 1,333 nodes
    assert {r.timeout for r in steps} == {timedelta(minutes=20)}
    assert {r.deallocation for r in steps} == {None}
    assert len(resize_posts(la, "big")) == len(resize_posts(la, "big", status=202)) == len(steps)
    # Every re-issue followed an AllocationTimedout the watch had seen once (a stale steady never triggers twice).
    events = stalls(la, "big")
    assert len(events) == len(steps)
    assert all([e["code"] for e in ev["data"]["resizeErrors"]] == ["AllocationTimedout"] for ev in events)
    # Between re-issues: the 20-minute timeout (seen by the tick at that minute), then the backoff. The pipeline's first
    # step was the episode's first failure (5 minutes), so the app's own steps wait 10, 20, then 30 (the cap).
    gaps = [(b.at - a.at) for a, b in itertools.pairwise(steps)]
    assert gaps == [timedelta(minutes=20 + backoff) for backoff in (10, 20, 30, 30, 30, 30, 30)]
    assert steps[0].at == at(8, 25)  # first timeout at 08:18, seen at 08:20, plus 5 minutes

    failed = pool_alerts(la, "big", "AllocationFailed")
    assert (len(failed) == 1 and failed[0]["data"]["codes"] == ["AllocationTimedout"]
            and failed[0]["data"]["reason"] == "timeout")
    assert len(pool_alerts(la, "big", "PoolRecovered")) == 1
    assert not pool_alerts(la, "big", "ResizeGaveUp")

    flat = resizes.of["flat"]
    assert [(r.dedicated, r.added, r.timeout) for r in flat] == [(2400, 2400, timedelta(minutes=36))]
    assert la.pool(ACCOUNT, "flat").current["dedicated"] == 2400 and not pool_alerts(la, "flat")


# ---------------------------------------------------------------------------------------------
# Retryable failures: backoff on the virtual clock, one alert, recovery notice
# ---------------------------------------------------------------------------------------------


def test_capacity_failures_back_off_5_10_20_30_minutes_then_recover(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "p", desired=100, image_id=custom_image(la))
    la.emulator.batch.inject_failure(ACCOUNT, "p", "insufficient_capacity", count=5)
    resizes = Resizes(la, "p")
    backoffs: list[tuple[datetime, datetime]] = []  # (failure seen, retry not before), from the episode record

    def observe(now: datetime) -> None:
        resizes(now)
        record = episode(la.context, "p")
        if record is not None and record.data.get("backoff_until"):
            seen = (parse_datetime(record.data["backoff_last_failure"]), parse_datetime(record.data["backoff_until"]))
            if not backoffs or backoffs[-1] != seen:
                backoffs.append(seen)  # type: ignore[arg-type]

    run_until(la, at(10, 15), observe)

    times = [r.at for r in resizes.of["p"]]
    assert times == [at(8, 0), at(8, 10), at(8, 25), at(8, 50), at(9, 25), at(10, 0)]
    assert [until - seen for seen, until in backoffs] == [timedelta(minutes=m) for m in (5, 10, 20, 30, 30)]
    # Each re-issue went out at the first tick the backoff allowed, never earlier.
    assert times[1:] == [until for _, until in backoffs]
    assert len(resize_posts(la, "p")) == 6 and len(stalls(la, "p")) == 6  # nothing published while backing off
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 100

    failed = pool_alerts(la, "p", "AllocationFailed")
    assert len(failed) == 1  # one alert for the whole failure episode
    data = failed[0]["data"]
    assert (data["account"], data["pool"], data["codes"], data["reason"], data["attempt"], data["maxAttempts"]) == (
        ACCOUNT_ID, "p", ["AllocationFailed"], "capacity", 1, 12)
    assert parse_datetime(data["nextTryTime"]) == at(8, 10) and data["severity"] == "warning"
    assert "capacity" in data["diagnosis"].lower() and data["fix"]
    recovered = pool_alerts(la, "p", "PoolRecovered")
    assert len(recovered) == 1 and parse_datetime(recovered[0]["eventTime"]) == at(10, 5)
    assert recovered[0]["data"]["attempt"] == 5 and recovered[0]["data"]["severity"] == "info"


def test_alert_cooldown_spans_episodes_and_recovery_pairs_with_the_alert(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "p", desired=20, image_id=custom_image(la))
    batch = la.emulator.batch
    batch.inject_failure(ACCOUNT, "p", "insufficient_capacity", count=1)
    resizes = Resizes(la, "p")
    run_until(la, at(8, 16), resizes)  # fails at 08:01, seen 08:05, re-issued 08:10, there 08:11, seen 08:15
    assert [a["eventType"].rsplit(".", 1)[1] for a in pool_alerts(la, "p")] == ["AllocationFailed", "PoolRecovered"]

    # A second episode 20 minutes after the alert: the failure is not announced again (cooldown), so no recovery notice
    # either.
    batch.update_pool(ACCOUNT, "p", metadata={pool_metadata.MANAGED: "true", pool_metadata.DESIRED_DEDICATED: "40"})
    batch.inject_failure(ACCOUNT, "p", "insufficient_capacity", count=1)
    run_until(la, at(8, 50), resizes)
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 40
    assert len(pool_alerts(la, "p")) == 2
    # The recovery removed the backoff, count included (cluster-autoscaler's RemoveBackoff; issue 14): this episode
    # backed off the first delay again, 5 minutes, although the earlier failure is less than 3 h old.
    assert [r.at for r in resizes.of["p"]][-2:] == [at(8, 20), at(8, 30)]

    # A third episode once the cooldown (60 min since the 08:05 alert) is over: alerted again, and its recovery
    # announced.
    run_until(la, at(9, 6), resizes)
    batch.update_pool(ACCOUNT, "p", metadata={pool_metadata.MANAGED: "true", pool_metadata.DESIRED_DEDICATED: "60"})
    batch.inject_failure(ACCOUNT, "p", "insufficient_capacity", count=1)
    run_until(la, at(10, 0), resizes)
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 60
    kinds = [(a["eventType"].rsplit(".", 1)[1], parse_datetime(a["eventTime"])) for a in pool_alerts(la, "p")]
    assert kinds == [("AllocationFailed", at(8, 5)), ("PoolRecovered", at(8, 15)), ("AllocationFailed", at(9, 15)),
                     ("PoolRecovered", at(9, 25))]
    # each episode starts again at the first delay
    assert [r.at for r in resizes.of["p"]][-2:] == [at(9, 10), at(9, 20)]
    assert pool_alerts(la, "p")[2]["data"]["reason"] == "capacity"
    assert len(la.emulator.teams_messages) == len(la.alerts())


# ---------------------------------------------------------------------------------------------
# Failures that need a person: stop, one alert, no retry storm
# ---------------------------------------------------------------------------------------------


def test_quota_raises_one_quota_alert_with_a_teams_card_and_no_retry_storm(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    la.emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=200)  # 50 nodes of 4 cores
    add_pool(la, "p", desired=80, image_id=custom_image(la))
    run_until(la, at(11, 0))

    assert la.pool(ACCOUNT, "p").current["dedicated"] == 50
    assert len(resize_posts(la, "p")) == 1 and len(stalls(la, "p")) == 1  # three hours: no second attempt
    # sized to the quota before asking (issue 12): Batch had nothing to refuse
    assert not la.pool(ACCOUNT, "p").resize_errors
    quota = pool_alerts(la, "p", "QuotaReached")
    assert len(quota) == 1 and len(pool_alerts(la, "p")) == 1
    data = quota[0]["data"]
    assert data["codes"] == [] and data["reason"] == "core_quota"
    assert ("320 cores needed for 80 nodes" in data["diagnosis"]
            and "200 free of the 200-core quota" in data["diagnosis"])
    assert "quota increase" in data["fix"].lower() and data["nextTryTime"] is None

    cards = [m for m in la.emulator.teams_messages if "QuotaReached" in json.dumps(m)]
    assert len(cards) == 1
    assert cards[0]["channel"] == "alerts"
    message = cards[0]["body"]
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"], card["$schema"]) == ("AdaptiveCard", "1.4",
                                                                "http://adaptivecards.io/schemas/adaptive-card.json")
    from shared.core.alerts import CARD_TEXT_CHARS, CARD_TITLE_CHARS, card_text

    # shown as plain text (markdown escaped)
    assert card["body"][0]["text"] == card_text(data["title"], CARD_TITLE_CHARS)
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Alert"] == "QuotaReached" and facts["pool"] == "p" and facts["account"] == ACCOUNT_ID
    assert any(card_text(data["fix"], CARD_TEXT_CHARS) in block.get("text", "") for block in card["body"])

    # A person raises the quota and changes the target: the watch resumes by itself and announces the recovery.
    la.emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=1000)
    la.emulator.batch.update_pool(ACCOUNT, "p",
                                  metadata={pool_metadata.MANAGED: "true", pool_metadata.DESIRED_DEDICATED: "90"})
    run_until(la, at(11, 20))
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 90 and len(resize_posts(la, "p")) == 2
    assert len(pool_alerts(la, "p", "PoolRecovered")) == 1 and len(pool_alerts(la, "p", "QuotaReached")) == 1


def test_deleted_image_raises_image_missing_and_stops_resizing(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    image = custom_image(la)
    add_pool(la, "p", desired=10, target=10, image_id=image)
    run_until(la, at(8, 1))
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 10 and not resize_posts(la, "p")
    # Batch's generic "try resizing again" failure while the image is there: the handler reads the image, finds it,
    # and treats the failure as retryable.
    la.emulator.batch.inject_failure(ACCOUNT, "p", "image_gone", count=1)
    la.emulator.batch.update_pool(ACCOUNT, "p", metadata={pool_metadata.MANAGED: "true",
                                                          pool_metadata.DESIRED_DEDICATED: "20",
                                                            pool_metadata.IMAGE_ID: image})
    resizes = Resizes(la, "p")
    run_until(la, at(8, 25), resizes)
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 20
    # failed at 08:06, verified at 08:10, retried after 5 minutes
    assert [r.at for r in resizes.of["p"]] == [at(8, 5), at(8, 15)]
    (generic,) = pool_alerts(la, "p", "AllocationFailed")
    assert generic["data"]["reason"] == "generic_retry" and "image" in generic["data"]["diagnosis"]
    assert len(pool_alerts(la, "p", "PoolRecovered")) == 1

    # The image version is deleted (its lock removed first, as a person forcing it would) and the team asks for more
    # nodes.
    deleted_at = la.emulator.now()
    la.emulator.compute.delete_gallery_image_version(SUB, "images-rg", "autopilotGallery", "render", "1.0.0")
    la.emulator.batch.update_pool(ACCOUNT, "p", metadata={pool_metadata.MANAGED: "true",
                                                          pool_metadata.DESIRED_DEDICATED: "30",
                                                            pool_metadata.IMAGE_ID: image})
    run_until(la, at(11, 30))  # the 08:05 alert's cooldown is long over

    assert len(resize_posts(la, "p")) == 3  # the one that found the image gone; none after it
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 20
    missing = pool_alerts(la, "p", "ImageMissing")
    assert len(missing) == 1 and len(pool_alerts(la, "p")) == 3
    data = missing[0]["data"]
    assert (data["severity"] == "critical" and image.lower() in data["diagnosis"].lower()
            and data["reason"] == "image_missing")
    assert "image version" in data["fix"].lower()
    # The generic message was only a suspicion: the handler read the image before deciding.
    reads = [e for e in la.emulator.log.entries(method="GET") if e.path.lower() == image.lower()
             and e.time >= deleted_at]
    assert reads and all(e.status == 404 and e.caller == "batch-image-autopilot" for e in reads)
    record = episode(la.context, "p")
    assert record is not None and "image" in record.data["stopped_reason"].lower()


def test_configuration_failures_stop_with_the_diagnosis_and_the_fix(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    image = custom_image(la)  # Hyper-V Gen2
    add_pool(la, "delegated", desired=10, image_id=image)
    la.emulator.batch.inject_failure(ACCOUNT, "delegated", "subnet_delegation", count=None)
    # a size that cannot boot Gen2: Batch's own failure
    add_pool(la, "gen1-size", desired=10, image_id=image, vm_size="Standard_D4")
    run_until(la, at(10, 0))

    for pool_id, words, fix in (("delegated", "delegat", "delegation"), ("gen1-size", "generation", "Gen2")):
        assert len(resize_posts(la, pool_id)) == 1, pool_id
        (alert,) = pool_alerts(la, pool_id)
        assert alert["eventType"] == "BatchImageAutopilot.AllocationFailed"
        assert (words in alert["data"]["diagnosis"].lower() and fix in alert["data"]["fix"]
                and alert["data"]["nextTryTime"] is None)
        assert "a person must fix" in alert["data"]["title"]


def test_attempts_are_bounded_and_give_up_loudly(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_MAX_RESIZE_ATTEMPTS": "3"})
    add_pool(la, "p", desired=10)
    la.emulator.batch.inject_failure(ACCOUNT, "p", "insufficient_capacity", count=None)  # every growing resize
    run_until(la, at(11, 0))

    assert len(resize_posts(la, "p")) == 3
    gave_up = pool_alerts(la, "p", "ResizeGaveUp")
    assert len(gave_up) == 1 and gave_up[0]["data"]["attempt"] == 3 and gave_up[0]["data"]["severity"] == "critical"
    assert "3 failed attempts" in gave_up[0]["data"]["title"]
    assert [a["eventType"].rsplit(".", 1)[1] for a in pool_alerts(la, "p")] == ["AllocationFailed", "ResizeGaveUp"]


# ---------------------------------------------------------------------------------------------
# Several instances, restarts
# ---------------------------------------------------------------------------------------------


def test_two_instances_resize_each_pool_once_per_cycle_and_alert_once_per_episode(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    pools = [f"team{i}" for i in range(6)]
    for pool_id in pools:
        add_pool(la, pool_id, desired=40)
        la.emulator.batch.inject_failure(ACCOUNT, pool_id, "insufficient_capacity", count=1)
    other = fresh_context(la)
    instances = [la.context, other]

    def advance_to(moment: datetime) -> None:
        la.emulator.clock.advance(moment - la.emulator.now())  # runs the Batch backend's resize minutes; no timers

    def cycle_posts() -> int:
        return sum(len(resize_posts(la, p, status=202)) for p in pools)

    try:
        # Cycle 1: both instances scan every account (forced: normally the second one finds the full scan
        # claimed), and the two events for each pool are delivered one to each instance's function.
        advance_to(at(8, 0))
        for context in instances:
            watch.tick(context, full=True)
        assert sorted(e["data"]["poolId"] for e in la.stall_events()) == sorted(pools * 2)
        turn = 0
        while la.host.pending():
            install_context(instances[turn % 2])
            la.host.pump(1)
            turn += 1
        install_context(la.context)
        assert turn == 12 and not [i for i in la.host.invocations if not i.ok]
        assert cycle_posts() == 6 and all(len(resize_posts(la, p)) == 1 for p in pools)
        assert all(episode(la.context, p).data["requests"] == 1 for p in pools)  # type: ignore[union-attr]

        # Cycle 2, concurrently: both ticks see every pool's failure at the same moment; one alert per pool.
        advance_to(at(8, 5))
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(lambda c: watch.tick(c, full=True), instances))
        assert all(r.managed == 6 and not r.stalled for r in reports)
        assert sorted(a["data"]["pool"] for a in la.alerts("AllocationFailed")) == pools

        # Cycle 3, concurrently: both ticks flag every pool once the backoff has passed, and both instances handle
        # their event for a pool at the same moment. Exactly one resize per pool goes through (If-Match on the ETag).
        advance_to(at(8, 10))
        before = len(la.stall_events())
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda c: watch.tick(c, full=True), instances))
        events = la.stall_events()[before:]
        assert sorted(e["data"]["poolId"] for e in events) == sorted(pools * 2)
        stale_etag = events[0]["data"]["eTag"]
        stale_pool = events[0]["data"]["poolId"]
        barrier = threading.Barrier(len(events))

        def deliver(pair: tuple[AppContext, dict[str, Any]]) -> str:
            context, event = pair
            barrier.wait()
            return watch.handle_stall(context, event["data"]["accountId"], event["data"]["poolId"],
                                      observed_etag=event["data"]["eTag"])

        by_pool: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_pool.setdefault(event["data"]["poolId"], []).append(event)
        pairs = [(instances[i], e) for evs in by_pool.values() for i, e in enumerate(evs)]
        with ThreadPoolExecutor(len(pairs)) as pool:
            outcomes = list(pool.map(deliver, pairs))
        assert sum(o.startswith("resized") for o in outcomes) == 6, outcomes
        # The others lost the race: refused by If-Match (412), or they read the pool already changed (or resizing).
        assert all(o.startswith(("resized", "resize not sent (changed)", "the pool changed", "nothing:"))
                   for o in outcomes), outcomes
        assert cycle_posts() == 12 and all(len(resize_posts(la, p, status=202)) == 2 for p in pools)
        assert all(episode(la.context, p).data["requests"] == 2 for p in pools)  # type: ignore[union-attr]

        # A resize decided on a read from before another instance's resize is refused by Batch and changes nothing.
        account = batch_accounts.get_account(other.clients, ACCOUNT_ID)
        result = batch_pools.resize_pool(other.clients, account, stale_pool, etag=stale_etag, target_dedicated=99,
                                         target_spot=0,
                                         resize_timeout=timedelta(minutes=20))
        assert result == ResizeResult.CHANGED and la.pool(ACCOUNT, stale_pool).target["dedicated"] == 40
        # Refusals are answers, not errors (azure-batch raises for every non-2xx status, whatever the code).
        current = la.pool(ACCOUNT, stale_pool)
        assert current.allocation_state == "resizing"
        assert batch_pools.resize_pool(other.clients, account, stale_pool, etag=f'"{current.etag}"',
                                       target_dedicated=99, target_spot=0,
                                       resize_timeout=timedelta(minutes=20)) == ResizeResult.BUSY
        assert batch_pools.resize_pool(other.clients, account, "no-such-pool", etag=stale_etag, target_dedicated=1,
                                       target_spot=0,
                                       resize_timeout=timedelta(minutes=20)) == ResizeResult.GONE
        assert la.pool(ACCOUNT, stale_pool).target["dedicated"] == 40

        # Cycle 4: every pool reached its target; both ticks see it, one recovery notice per pool.
        advance_to(at(8, 15))
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda c: watch.tick(c, full=True), instances))
        assert all(la.pool(ACCOUNT, p).current["dedicated"] == 40 for p in pools)
        assert sorted(a["data"]["pool"] for a in la.alerts("PoolRecovered")) == pools
        assert len(la.alerts()) == 12 and len(la.emulator.teams_messages) == 12
    finally:
        install_context(la.context)
        other.clients.close()


def test_a_late_copy_of_a_stall_event_does_not_resize_again_in_the_same_cycle(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_GROWTH_STEP_NODES": "10"})  # 10-node steps: each one done within a minute
    add_pool(la, "p", desired=30, image_id=custom_image(la))
    resizes = Resizes(la, "p")
    run_until(la, at(8, 2), resizes)
    (event,) = stalls(la, "p")
    assert ([(r.at, r.dedicated) for r in resizes.of["p"]] == [(at(8, 0), 10)]
            and la.pool(ACCOUNT, "p").allocation_state == "steady")

    # Event Grid delivers the same event again (a redelivery, or a copy that was held up) after its resize finished.
    la.host.publish(CUSTOM, event)
    la.settle()
    assert len(resizes.of["p"]) == 1 and len(resize_posts(la, "p")) == 1
    assert la.host.invocations[-1].function == "resize_stalled" and la.host.invocations[-1].ok
    run_until(la, at(8, 20), resizes)  # the ticks take it the rest of the way, one step per cycle
    assert [(r.at, r.dedicated) for r in resizes.of["p"]] == [(at(8, 0), 10), (at(8, 5), 20), (at(8, 10), 30)]


def test_a_restarted_instance_continues_the_backoff(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "p", desired=30)
    la.emulator.batch.inject_failure(ACCOUNT, "p", "insufficient_capacity", count=2)
    resizes = Resizes(la, "p")
    # failed at 08:01 and 08:11; the second failure, seen at 08:15, backs off 10 minutes
    run_until(la, at(8, 15), resizes)
    record = episode(la.context, "p")
    assert record is not None and parse_datetime(record.data["backoff_until"]) == at(8, 25)
    assert [r.at for r in resizes.of["p"]] == [at(8, 0), at(8, 10)]

    # The process restarts: new clients, no cached accounts, nothing in memory; its first tick runs at once.
    restarted = fresh_context(la)
    try:
        batch_accounts.forget_accounts()
        install_context(restarted)
        assert la.host.fire_timer("pool_watch")
        la.settle()
        run_until(la, at(8, 24), resizes)
        assert len(resizes.of["p"]) == 2 and len(stalls(la, "p")) == 2  # still backing off
        run_until(la, at(8, 30), resizes)
        assert [r.at for r in resizes.of["p"]] == [at(8, 0), at(8, 10), at(8, 25)]
        assert la.pool(ACCOUNT, "p").current["dedicated"] == 30
        assert len(pool_alerts(la, "p", "AllocationFailed")) == 1  # the restart did not re-announce the episode
    finally:
        install_context(la.context)
        restarted.clients.close()


# ---------------------------------------------------------------------------------------------
# What the watch leaves alone
# ---------------------------------------------------------------------------------------------


def test_autoscale_pool_is_never_resized_and_is_reported(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "auto", desired=50, auto_scale_formula="$TargetDedicatedNodes=5;",
             auto_scale_evaluation_interval=timedelta(minutes=15))
    run_until(la, at(8, 40))

    pool = la.pool(ACCOUNT, "auto")
    assert pool.auto_scale and pool.current["dedicated"] == 5
    assert not pool_writes(la, "auto") and not stalls(la, "auto") and episode(la.context, "auto") is None
    report = watch.tick(la.context, dry_run=True)
    assert report.autoscale == [subject("auto")] and not report.stalled
    (notice,) = pool_alerts(la, "auto")  # once, although every tick sees it
    assert notice["eventType"] == "BatchImageAutopilot.PoolNeedsAttention"
    assert "autoscale" in notice["data"]["title"].lower() and "disable autoscale" in notice["data"]["fix"].lower()
    assert (notice["data"]["desiredDedicatedNodes"], notice["data"]["currentDedicatedNodes"]) == (50, 5)


def test_unmanaged_pools_are_never_touched(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "teams-own", managed=None, target=10)  # a team's pool, no autopilot metadata at all
    add_pool(la, "not-opted-in", managed=None, desired=100, target=10)  # desired target but never opted in
    add_pool(la, "opted-out", managed="false", desired=100, target=10)
    for pool_id in ("teams-own", "not-opted-in", "opted-out"):  # each one's first allocation fails
        la.emulator.batch.inject_failure(ACCOUNT, pool_id, "insufficient_capacity", count=1)
    add_pool(la, "ours", desired=10)
    run_until(la, at(9, 0))

    for pool_id in ("teams-own", "not-opted-in", "opted-out"):
        pool = la.pool(ACCOUNT, pool_id)
        assert pool.current["dedicated"] == 0 and pool.resize_errors, pool_id  # left as Batch left it
        assert not pool_writes(la, pool_id) and not stalls(la, pool_id) and not pool_alerts(la, pool_id)
        assert episode(la.context, pool_id) is None
    assert la.pool(ACCOUNT, "ours").current["dedicated"] == 10  # the watch did run
    assert watch.tick(la.context, dry_run=True).managed == 1


def test_a_pool_with_invalid_metadata_does_not_stop_the_watch_for_the_others(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    # The deallocation option is read only when the pool must shrink, inside the decision.
    add_pool(la, "a-bad", desired=5, target=10, deallocation="gently")
    add_pool(la, "b-good", desired=10)
    run_until(la, at(8, 20))

    assert la.pool(ACCOUNT, "b-good").current["dedicated"] == 10
    assert la.pool(ACCOUNT, "a-bad").current["dedicated"] == 10 and not resize_posts(la, "a-bad")
    assert not [i for i in la.host.invocations if not i.ok]
    report = watch.tick(la.context, dry_run=True)
    assert "nodeDeallocationOption" in report.invalid_pools[subject("a-bad")]


# ---------------------------------------------------------------------------------------------
# Timer-driven targets
# ---------------------------------------------------------------------------------------------


def test_schedule_scales_up_in_stages_and_down_in_one_step_with_the_deallocation_option(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    image = custom_image(la)
    schedule = [{"cron": "0 0 8 * * MON-FRI", "dedicated": 700, "spot": 0},
                {"cron": "0 0 10 * * MON-FRI", "dedicated": 50, "spot": 0}]
    add_pool(la, "render", image_id=image, target=50, schedule=schedule, deallocation="terminate")
    # the app's default option for a scheduled shrink
    add_pool(la, "default", image_id=image, target=50, schedule=schedule)
    resizes = Resizes(la, "render", "default")
    run_until(la, at(10, 10), resizes)

    for pool_id, option in (("render", "terminate"), ("default", "taskcompletion")):
        steps = resizes.of[pool_id]
        assert [(r.at, r.dedicated, r.deallocation) for r in steps] == [
            (at(8, 0), 350, None), (at(8, 10), 650, None), (at(8, 20), 700, None), (at(10, 0), 50, option)], pool_id
        assert all(r.added <= 300 and r.timeout == timedelta(minutes=20) for r in steps)
        assert la.pool(ACCOUNT, pool_id).current["dedicated"] == 50
        assert all(e["data"]["desiredDedicatedNodes"] in (700, 50) for e in stalls(la, pool_id))
    assert not la.alerts()


# ---------------------------------------------------------------------------------------------
# Request economy
# ---------------------------------------------------------------------------------------------


def test_a_tick_costs_one_list_call_per_account_and_nothing_per_healthy_pool(
        make_local: Callable[..., LocalAzure]) -> None:
    # every tick a full scan
    la = make_local(accounts=(ACCOUNT, "simeus"), settings={"AUTOPILOT_WATCH_FULL_SCAN_MINUTES": "1"})
    for i in range(12):
        add_pool(la, f"ours-{i:02}", desired=4, target=4)
    for i in range(3):
        add_pool(la, f"theirs-{i}", managed=None, target=2)
    for i in range(5):
        add_pool(la, f"sim-{i}", desired=2, target=2, account="simeus")
    run_until(la, at(8, 1))  # everything allocated

    mark = len(la.emulator.log)
    assert la.host.fire_timer("pool_watch")
    la.settle()
    calls = la.emulator.log.entries()[mark:]
    # A full scan: one page per account, and one account GET per account for its core quotas (issue 12); nothing per
    # pool.
    accounts = [f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/{a}"
                for a in (ACCOUNT, "simeus")]
    assert sorted((e.method, e.path) for e in calls) == sorted([("GET", "/batch/renderweu/pools"),
                                                                ("GET", "/batch/simeus/pools"),
                                                                *(("GET", a) for a in accounts)])
    report = watch.tick(la.context, dry_run=True)
    assert (report.accounts, report.pools, report.managed, report.stalled) == (2, 20, 17, [])


def test_an_alert_the_topic_refused_is_kept_in_the_outbox_and_sent_once_by_the_next_full_scan(
        make_local: Callable[..., LocalAzure]) -> None:
    """A 503 from the topic does not say whether it took the event (the answer may have been lost after it did), so
    the alert goes to the Alerts table's outbox as that very event, the episode records it (its start, the alert's
    de-duplication key, stays), and the next full scan sends it. Before the outbox the tick failed and the next one
    decided afresh, which could start a new episode and send a second alert with another id."""
    la = make_local(settings={"AUTOPILOT_HTTP_RETRY_TOTAL": "1"})
    la.emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=200)
    add_pool(la, "p", desired=80)
    run_until(la, at(8, 1))  # resized at 08:00; the quota stops it at 08:01
    # The topic refuses the 08:05 tick's alert (the first try and the client's one retry).
    la.emulator.faults.add(FaultRule("error", status=503, path_pattern="^/eventgrid/autopilot/",
                                     methods=frozenset({"POST"}), max_count=2))
    run_until(la, at(8, 6))
    assert not pool_alerts(la, "p") and [i.ok for i in la.host.invocations if i.function == "pool_watch"][-1] is True
    outbox = list(la.context.state.table(ALERTS).query(OUTBOX))
    assert [r.data["type"] for r in outbox] == ["QuotaReached"]
    assert "QuotaReached" in episode(la.context, "p").data["alerted"]  # type: ignore[union-attr]

    run_until(la, at(9, 0))  # the 08:10 full scan sends it, as the same event
    sent = pool_alerts(la, "p", "QuotaReached")
    assert len(sent) == 1 and len(resize_posts(la, "p")) == 1
    assert sent[0]["id"] == json.loads(outbox[0].data["event"])["id"]
    assert not list(la.context.state.table(ALERTS).query(OUTBOX))


def test_a_stall_event_that_names_no_watched_pool_is_refused_without_a_request(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "p", desired=10, target=10)
    run_until(la, at(8, 1))
    other_account = batch_account_id(SUB, "batch-rg", "elsewhere")

    def event(subject_: str, **data: Any) -> dict[str, Any]:
        body = {"accountId": ACCOUNT_ID, "poolId": "p", "eTag": la.pool(ACCOUNT, "p").etag, **data}
        return {"id": "e1", "subject": subject_, "eventType": "BatchImageAutopilot.PoolResizeStalled",
                "eventTime": "2026-05-04T08:01:00Z",
                "dataVersion": "1.0", "data": body}

    for bad in (event(f"{ACCOUNT_ID}/pools/../../x", poolId="../../x"),  # would collapse the data-plane URL
                event(f"{ACCOUNT_ID}/pools/p\nERROR forged", poolId="p\nERROR forged"),
                event(f"{ACCOUNT_ID}/pools/other"),  # the subject names another pool than the data
                event(f"{other_account}/pools/p", accountId=other_account)):  # an account the app does not watch
        mark, calls = len(la.host.invocations), len(la.emulator.log)
        la.host.publish(CUSTOM, bad)
        la.settle()
        assert [(i.function, i.ok) for i in la.host.invocations[mark:]] == [("resize_stalled", True)]
        assert not [e for e in la.emulator.log.entries()[calls:] if e.caller == "batch-image-autopilot"], bad["data"]


def test_internal_errors_are_re_issued_at_once_and_back_off_only_when_they_persist(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings={"AUTOPILOT_WATCH_SCHEDULE": "0 * * * * *"})  # a tick every minute (the default cadence)
    add_pool(la, "p", desired=20, image_id=custom_image(la))
    la.emulator.batch.inject_failure(ACCOUNT, "p", "internal_error", count=3)
    resizes = Resizes(la, "p")
    run_until(la, at(8, 30), resizes)
    times = [r.at for r in resizes.of["p"]]
    # Each resize fails in its first minute. Two failures in a row are re-issued by the tick that sees them; the
    # third backs off the first 5 minutes; then the resize succeeds.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == [timedelta(minutes=1), timedelta(minutes=1), timedelta(minutes=6)], times
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 20
    [failed] = pool_alerts(la, "p", "AllocationFailed")  # the one that persisted is announced, once
    assert failed["data"]["reason"] == "internal_error" and failed["data"]["attempt"] == 3
    assert len(resize_posts(la, "p")) == 4  # one request per failure, no storm
