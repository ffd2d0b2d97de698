"""The watch's cadence with the default settings: a tick every minute that lists only the accounts
with pools in an open episode, and a full scan of every account every AUTOPILOT_WATCH_FULL_SCAN_MINUTES."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from autopilot.local import LocalAzure
from shared.watch import tick as watch
from tests.e2e.watch_support import ACCOUNT, MIN, START, add_pool, at, custom_image, resize_posts, run_until

# The pool-watch tests' fixture, with the production cadence instead of their 5-minute tick; the
# guard's reconcile (which lists pools too) is parked so that every pool list counted is the watch's.
DEFAULT_CADENCE = {"AUTOPILOT_WATCH_SCHEDULE": "0 * * * * *", "AUTOPILOT_GUARD_SCHEDULE": "0 0 0 1 1 *"}


def pool_lists(la: LocalAzure, account: str, since: int = 0) -> int:
    path = f"/batch/{account}/pools".lower()
    return sum(1 for e in la.emulator.log.entries(method="GET", plane="batch")[since:] if e.path.lower() == path)


def test_defaults_are_a_one_minute_tick_and_a_five_minute_full_scan(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(settings=DEFAULT_CADENCE)
    assert la.settings.watch_schedule == "0 * * * * *" and la.settings.watch_full_scan_minutes == 5


def test_an_idle_subscription_is_listed_only_by_the_full_scans(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(accounts=(ACCOUNT, "simeus"), settings=DEFAULT_CADENCE)
    for i in range(5):
        add_pool(la, f"ours-{i}", desired=4, target=4)
        add_pool(la, f"sim-{i}", desired=2, target=2, account="simeus")
    run_until(la, at(8, 1))
    before = len(la.emulator.log.entries(method="GET", plane="batch"))
    run_until(la, at(8, 21))  # 20 ticks
    ticks = [i for i in la.host.invocations if i.function == "pool_watch" and i.time > at(8, 1)]
    assert len(ticks) == 20 and all(i.ok for i in ticks)
    # The first tick (07:59) was a full scan, so they come at 08:04, 08:09, 08:14, 08:19: one list per
    # account each, nothing in the ticks between, nothing per pool.
    assert pool_lists(la, ACCOUNT, before) == 4 and pool_lists(la, "simeus", before) == 4
    batch_calls = [e for e in la.emulator.log.entries(plane="batch")[before:]]
    assert all(e.method == "GET" and e.path.lower().endswith("/pools") for e in batch_calls)


def test_a_finished_step_is_followed_within_a_minute(make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(accounts=(ACCOUNT, "simeus"), settings=DEFAULT_CADENCE)
    add_pool(la, "big", desired=1200, image_id=custom_image(la))  # staged: 300-node steps, about 6 minutes each
    add_pool(la, "quiet", desired=2, target=2, account="simeus")
    steady_at: list = []
    last = {"state": None}

    def record(now) -> None:
        state = la.pool(ACCOUNT, "big").allocation_state
        if last["state"] == "resizing" and state == "steady":
            steady_at.append(now)
        last["state"] = state

    run_until(la, at(9, 30), record)
    pool = la.pool(ACCOUNT, "big")
    assert pool.current["dedicated"] == 1200
    posts = [e.time for e in resize_posts(la, "big", status=202)]
    assert len(posts) >= 3
    # Every re-issue went out at most one tick after the previous step ended.
    for ended in steady_at[:-1]:
        following = min(t for t in posts if t >= ended)
        assert following - ended <= MIN, (ended, following)
    # Between full scans only the busy account was listed: the quiet one only every five minutes.
    assert pool_lists(la, "simeus") <= (at(9, 30) - START) // timedelta(minutes=5) + 1


def test_concurrent_instances_share_one_full_scan(make_local: Callable[..., LocalAzure]) -> None:
    from shared.core.context import AppContext

    la = make_local(settings=DEFAULT_CADENCE)
    add_pool(la, "p1", desired=2, target=2)
    run_until(la, at(8, 6))
    other = AppContext.from_settings(la.settings, clock=la.emulator.clock)
    la.emulator.clock.advance(at(8, 9) - la.emulator.now())  # full scans ran at 07:59 and 08:04: the next is due
    before = len(la.emulator.log.entries(method="GET", plane="batch"))
    reports = [watch.tick(la.context), watch.tick(other)]
    assert sorted(r.full_scan for r in reports) == [False, True]
    assert pool_lists(la, ACCOUNT, before) == 1
    other.clients.close()
