"""PoolView from both planes, desired targets from metadata, stall detection, staged growth and resize timeouts."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.settings import Settings
from shared.core import pool_metadata as md
from shared.watch.pool_policy import (
    DesiredTarget,
    PoolIntentError,
    PoolView,
    WatchPolicy,
    awaiting_request,
    desired_target,
    format_duration,
    is_stalled,
    next_resize,
    parse_datetime,
    parse_duration,
    resize_timeout_for,
)
from shared.watch.resize_errors import Cause, classify

ACCOUNT = "/subscriptions/s/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct"
IMAGE = "/subscriptions/s/resourceGroups/img-rg/providers/Microsoft.Compute/galleries/g/images/def/versions/1.0.0"
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def pool(**kw: object) -> PoolView:
    base = PoolView(account_id=ACCOUNT, pool_id="render", allocation_state="steady",
                    allocation_state_transition_time=T0 - timedelta(hours=1),
                    metadata={md.MANAGED: "true"}, image_id=IMAGE)
    return replace(base, **kw)  # type: ignore[arg-type]


DATA_PLANE = {
    "id": "render",
    "url": "https://acct.westeurope.batch.azure.com/pools/render",
    "eTag": "0x8D413091E739A56",
    "lastModified": "2026-11-02T05:00:00.0000000Z",
    "allocationState": "steady",
    "allocationStateTransitionTime": "2026-11-02T05:30:00.1234567Z",
    "vmSize": "standard_d4ds_v5",
    "resizeTimeout": "PT15M",
    "resizeErrors": [{"code": "AllocationTimedout", "message": "Desired number of dedicated nodes could not be "
                                                               "allocated as the resize timeout was reached"}],
    "currentDedicatedNodes": 280,
    "currentLowPriorityNodes": 0,
    "targetDedicatedNodes": 300,
    "targetLowPriorityNodes": 0,
    "enableAutoScale": False,
    "virtualMachineConfiguration": {"imageReference": {"virtualMachineImageId": IMAGE},
                                    "nodeAgentSKUId": "batch.node.ubuntu 24.04"},
    "metadata": [{"name": md.MANAGED, "value": "true"}, {"name": md.DESIRED_DEDICATED, "value": "800"}],
}

MANAGEMENT_PLANE = {
    "name": "render",
    "etag": 'W/"0x8D4EDFEBFADF4AB"',
    "properties": {
        "vmSize": "Standard_D4ds_v5",
        "allocationState": "Steady",
        "allocationStateTransitionTime": "2026-11-02T05:30:00Z",
        "currentDedicatedNodes": 3,
        "currentLowPriorityNodes": 1,
        "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 6, "targetLowPriorityNodes": 2,
                                         "resizeTimeout": "PT8M"}},
        "resizeOperationStatus": {"targetDedicatedNodes": 6, "errors": [{"code": "AccountCoreQuotaReached",
                                                                         "message": "quota",
                                                                         "details": [{"code": "Reason",
                                                                                      "message": "core quota"}]}]},
        "deploymentConfiguration": {"virtualMachineConfiguration": {"imageReference": {"id": IMAGE},
                                                                    "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
        "metadata": [{"name": md.MANAGED, "value": "true"}],
    },
}


class TestPoolView:
    def test_from_data_plane(self) -> None:
        p = PoolView.from_dict(DATA_PLANE, account_id=ACCOUNT)
        assert (
            p.pool_id, p.account_id, p.allocation_state, p.etag) == ("render", ACCOUNT, "steady", "0x8D413091E739A56")
        assert p.allocation_state_transition_time == datetime(2026, 11, 2, 5, 30, 0, 123456, tzinfo=UTC)
        assert (p.current_dedicated, p.current_spot, p.target_dedicated, p.target_spot) == (280, 0, 300, 0)
        assert p.resize_timeout == 15 * MIN
        assert p.image_id == IMAGE and p.vm_size == "standard_d4ds_v5"
        assert p.metadata[md.DESIRED_DEDICATED] == "800" and p.is_managed and p.is_steady
        assert classify(p.resize_errors).cause is Cause.TIMEOUT

    def test_from_management_plane(self) -> None:
        p = PoolView.from_dict(MANAGEMENT_PLANE, account_id=ACCOUNT)
        assert (p.pool_id, p.allocation_state, p.etag) == ("render", "steady", 'W/"0x8D4EDFEBFADF4AB"')
        assert (p.current_dedicated, p.current_spot, p.target_dedicated, p.target_spot) == (3, 1, 6, 2)
        assert p.resize_timeout == 8 * MIN and p.image_id == IMAGE
        assert p.resize_errors[0].reason == "core quota"
        assert not p.enable_auto_scale

    def test_management_autoscale(self) -> None:
        data = json.loads(json.dumps(MANAGEMENT_PLANE))
        data["properties"]["scaleSettings"] = {"autoScale": {"formula": "$TargetDedicatedNodes=1"}}
        assert PoolView.from_dict(data).enable_auto_scale

    def test_casing_and_sparse_input(self) -> None:
        p = PoolView.from_dict({"id": "p", "allocationState": "Resizing"})
        assert p.allocation_state == "resizing" and not p.is_steady
        assert (p.current_dedicated, p.image_id, p.allocation_state_transition_time,
                p.resize_errors) == (0, None, None, ())
        assert not p.is_managed

    def test_marketplace_image_has_no_image_id(self) -> None:
        data = {**DATA_PLANE,
                "virtualMachineConfiguration": {"imageReference": {"publisher": "canonical", "offer": "ubuntu",
                                                                   "sku": "24_04"}}}
        assert PoolView.from_dict(data).image_id is None


class TestParsing:
    @pytest.mark.parametrize(("text", "expected"), [("PT15M", 15 * MIN), ("PT15M00S", 15 * MIN),
                                                    ("P1DT2H", timedelta(days=1, hours=2)),
                                                    ("PT0.5S", timedelta(seconds=0.5)), ("pt20m", 20 * MIN)])
    def test_durations(self, text: str, expected: timedelta) -> None:
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["", "P", "PT", "15M", "PTxM", None, 15])
    def test_bad_durations(self, text: object) -> None:
        assert parse_duration(text) is None

    def test_format_duration(self) -> None:
        assert ([format_duration(d) for d in (20 * MIN, 65 * MIN, timedelta(seconds=30), timedelta(0))]
                == ["PT20M", "PT1H5M", "PT30S", "PT0S"])
        assert parse_duration(format_duration(38 * MIN)) == 38 * MIN

    def test_datetimes(self) -> None:
        assert parse_datetime("2026-11-02T05:30:00Z") == datetime(2026, 11, 2, 5, 30, tzinfo=UTC)
        assert parse_datetime(T0) == T0
        assert parse_datetime("2026-11-02T05:30:00") is None  # naive: refuse rather than guess
        assert parse_datetime("yesterday") is None and parse_datetime(None) is None


class TestDesiredTarget:
    def test_unmanaged_pools_have_none(self) -> None:
        assert desired_target(pool(metadata={md.DESIRED_DEDICATED: "10"}), T0) is None

    def test_managed_without_intent_has_none(self) -> None:
        assert desired_target(pool(), T0) is None

    def test_metadata_values(self) -> None:
        got = desired_target(pool(metadata={md.MANAGED: "True", md.DESIRED_DEDICATED: "800", md.DESIRED_SPOT: " 20 "}),
                             T0)
        assert got == DesiredTarget(800, 20, "metadata")

    def test_one_count_leaves_the_other_to_the_pool(self) -> None:
        got = desired_target(pool(metadata={md.MANAGED: "true", md.DESIRED_DEDICATED: "800"}, target_spot=7), T0)
        assert (got.dedicated, got.spot) == (800, 7)  # type: ignore[union-attr]

    def test_schedule_in_force_wins(self) -> None:
        schedule = json.dumps([{"cron": "0 0 7 * * MON-FRI", "dedicated": 800},
                               {"cron": "0 0 19 * * MON-FRI", "dedicated": 50, "spot": 5}])
        p = pool(metadata={md.MANAGED: "true", md.DESIRED_DEDICATED: "10", md.SCHEDULE: schedule})
        assert desired_target(p, T0) == DesiredTarget(50, 5, "schedule", datetime(2026, 10, 30, 19, tzinfo=UTC))
        assert desired_target(p, T0 + timedelta(hours=2)).dedicated == 800  # type: ignore[union-attr]

    def test_schedule_not_in_force_falls_back_to_metadata(self) -> None:
        p = pool(metadata={md.MANAGED: "true", md.DESIRED_DEDICATED: "10",
                           md.SCHEDULE: '[{"cron": "0 0 0 1 JAN *", "dedicated": 99}]'})
        assert desired_target(p, T0) == DesiredTarget(10, 0, "metadata")

    def test_broken_schedule_is_an_error_naming_pool_and_key(self) -> None:
        p = pool(metadata={md.MANAGED: "true", md.SCHEDULE: '[{"cron": "0 0 7 * *", "dedicated": 1}]'})
        with pytest.raises(PoolIntentError) as info:
            desired_target(p, T0)
        assert "'render'" in str(info.value) and md.SCHEDULE in str(info.value) and "six fields" in str(info.value)

    def test_bad_count_is_an_error(self) -> None:
        with pytest.raises(PoolIntentError, match="not a whole number"):
            desired_target(pool(metadata={md.MANAGED: "true", md.DESIRED_DEDICATED: "-3"}), T0)


class TestStalled:
    D = DesiredTarget(10, 0)

    def test_resizing_or_at_target_or_autoscale_is_never_stalled(self) -> None:
        assert not is_stalled(pool(allocation_state="resizing"), self.D, None, T0)
        assert not is_stalled(pool(current_dedicated=10), self.D, T0 - MIN, T0)
        assert not is_stalled(pool(enable_auto_scale=True, resize_errors=classify_errors()), self.D, None, T0)
        assert not is_stalled(pool(), None, None, T0)

    def test_errors_make_a_stall(self) -> None:
        assert is_stalled(pool(resize_errors=classify_errors()), self.D, None, T0)

    def test_below_target_without_errors_or_request_is_not_a_stall(self) -> None:
        assert not is_stalled(pool(), self.D, None, T0)

    def test_stale_steady_never_triggers(self) -> None:
        # Steady since before our request: Batch has not started it yet. Even old errors do not count.
        requested = T0 - 2 * MIN
        p = pool(allocation_state_transition_time=requested - timedelta(hours=1), resize_errors=classify_errors())
        assert not is_stalled(p, self.D, requested, T0)
        assert awaiting_request(p, requested, T0)
        # ... until the grace runs out: the request was evidently lost.
        assert is_stalled(p, self.D, requested, requested + timedelta(minutes=10))

    def test_steady_after_our_request_is_a_stall(self) -> None:
        requested = T0 - 30 * MIN
        p = pool(allocation_state_transition_time=requested + 20 * MIN, current_dedicated=4, target_dedicated=10)
        assert is_stalled(p, self.D, requested, T0)
        assert not awaiting_request(p, requested, T0)

    def test_a_transition_at_the_request_time_is_not_an_answer(self) -> None:
        # ga4gh-tes's test is "newer than our request": the same instant may be the state Batch had when it received it.
        requested = T0 - MIN
        p = pool(allocation_state_transition_time=requested, resize_errors=classify_errors())
        assert awaiting_request(p, requested, T0)
        assert not is_stalled(p, self.D, requested, T0)

    def test_resizing_after_our_request_is_awaiting(self) -> None:
        requested = T0 - timedelta(hours=2)
        assert awaiting_request(pool(allocation_state="resizing", allocation_state_transition_time=requested + MIN),
                                requested, T0)


def classify_errors() -> tuple:
    from shared.watch.resize_errors import parse_errors
    return parse_errors([{"code": "AllocationTimedout", "message": "timed out"}])


class TestNextResize:
    def test_staged_growth_from_zero(self) -> None:
        step = next_resize(pool(), DesiredTarget(800, 0))
        assert step is not None
        assert (step.target_dedicated, step.target_spot, step.node_deallocation_option) == (300, 0, None)
        assert step.resize_timeout == 20 * MIN and step.resize_timeout_iso == "PT20M"

    def test_staged_growth_counts_from_what_the_pool_really_has(self) -> None:
        step = next_resize(pool(current_dedicated=250, target_dedicated=300), DesiredTarget(800, 0))
        assert step is not None and step.target_dedicated == 550

    def test_dedicated_first_then_spot(self) -> None:
        step = next_resize(pool(current_dedicated=100), DesiredTarget(300, 500))
        assert step is not None and (step.target_dedicated, step.target_spot) == (300, 100)

    def test_marketplace_pools_grow_in_one_step(self) -> None:
        step = next_resize(pool(image_id=None), DesiredTarget(2500, 0))
        assert step is not None and step.target_dedicated == 2500
        assert step.resize_timeout == 38 * MIN  # 15 min per 1,000 nodes beats the 30-minute band top

    def test_shrink_in_one_step_with_the_deallocation_option(self) -> None:
        p = pool(current_dedicated=800, target_dedicated=800)
        step = next_resize(p, DesiredTarget(50, 0))
        assert step is not None and (step.target_dedicated, step.node_deallocation_option) == (50, "taskcompletion")
        step = next_resize(replace(p, metadata={md.MANAGED: "true", md.DEALLOCATION: "Requeue"}), DesiredTarget(50, 0))
        assert step is not None and step.node_deallocation_option == "requeue"

    def test_bad_deallocation_option_is_an_error(self) -> None:
        p = pool(current_dedicated=800, metadata={md.MANAGED: "true", md.DEALLOCATION: "kill"})
        with pytest.raises(PoolIntentError, match="requeue, terminate, taskcompletion, retaineddata"):
            next_resize(p, DesiredTarget(50, 0))

    def test_grow_one_count_while_shrinking_the_other(self) -> None:
        step = next_resize(pool(current_dedicated=10, current_spot=40, target_dedicated=10, target_spot=40),
                           DesiredTarget(20, 0))
        assert step is not None and (step.target_dedicated, step.target_spot,
                                     step.node_deallocation_option) == (20, 0, "taskcompletion")

    def test_nothing_to_do_at_target(self) -> None:
        assert next_resize(pool(current_dedicated=5, target_dedicated=5), DesiredTarget(5, 0)) is None
        # At target by count but the pool still aims elsewhere (an old failed target): set it straight.
        step = next_resize(pool(current_dedicated=5, target_dedicated=300), DesiredTarget(5, 0))
        assert step is not None and step.target_dedicated == 5 and step.node_deallocation_option is None


@pytest.mark.parametrize(("nodes", "minutes"),
                         [(0, 20), (1, 20), (300, 20), (1333, 20), (1334, 21), (2000, 30), (2500, 38), (-5, 20)])
def test_resize_timeout_for(nodes: int, minutes: int) -> None:
    assert resize_timeout_for(nodes) == minutes * MIN


def test_watch_policy_from_settings() -> None:
    s = Settings(subscription_id="s", batch_accounts=(), backoff_initial_minutes=1, backoff_max_minutes=4,
                 backoff_reset_hours=2,
                 max_resize_attempts=3, max_episode_hours=6, growth_step_nodes=100, alert_cooldown_minutes=15)
    p = WatchPolicy.from_settings(s)
    assert (p.backoff.initial, p.backoff.maximum, p.backoff.reset_after) == (MIN, 4 * MIN, timedelta(hours=2))
    assert (p.max_resize_attempts, p.max_episode, p.growth_step_nodes,
            p.alert_cooldown) == (3, timedelta(hours=6), 100, 15 * MIN)
    assert WatchPolicy.from_settings(Settings(subscription_id="s", batch_accounts=())) == WatchPolicy()


@pytest.mark.parametrize("kwargs",
                         [{"max_resize_attempts": 0}, {"growth_step_nodes": 0}, {"default_deallocation": "Requeue"}])
def test_watch_policy_validates(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        WatchPolicy(**kwargs)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 1000), st.integers(0, 3000), st.integers(0, 1000), st.integers(1, 1000))
def test_staged_growth_never_exceeds_the_step_and_arrives_in_ceil_delta_over_step(
        d0: int, s0: int, d: int, s: int, step_nodes: int) -> None:
    policy = WatchPolicy(growth_step_nodes=step_nodes)
    desired = DesiredTarget(d, s)
    p = pool(current_dedicated=d0, current_spot=s0, target_dedicated=d0, target_spot=s0)
    growth = max(0, d - d0) + max(0, s - s0)
    steps = 0
    while (p.current_dedicated, p.current_spot) != (d, s):
        step = next_resize(p, desired, policy)
        assert step is not None
        added = max(0, step.target_dedicated - p.current_dedicated) + max(0, step.target_spot - p.current_spot)
        assert added <= step_nodes  # never more than one step
        assert step.target_dedicated <= max(d, p.current_dedicated) and step.target_spot <= max(s, p.current_spot)
        # A count that shrinks goes straight to its target, in one step, with the deallocation option.
        if step.target_dedicated < p.current_dedicated:
            assert step.target_dedicated == d and step.node_deallocation_option is not None
        if step.target_spot < p.current_spot:
            assert step.target_spot == s and step.node_deallocation_option is not None
        assert (step.target_dedicated, step.target_spot) != (p.current_dedicated, p.current_spot)  # progress
        assert step.resize_timeout >= max(20 * MIN, timedelta(minutes=15 * added / 1000))
        p = replace(p, current_dedicated=step.target_dedicated, current_spot=step.target_spot,
                    target_dedicated=step.target_dedicated, target_spot=step.target_spot)
        steps += 1
        assert steps <= math.ceil(growth / step_nodes) + 1
    assert steps == max(math.ceil(growth / step_nodes), 1 if (d0, s0) != (d, s) else 0)
    assert next_resize(p, desired, policy) is None


def test_every_resize_uses_the_pools_configured_timeout_never_less() -> None:
    """Issue 12: the family's resizeTimeoutMinutes is recorded on the pool and used for every resize, not only the
    first."""
    p = pool(image_id=IMAGE, metadata={md.MANAGED: "true", md.RESIZE_TIMEOUT: "25"})
    for current in (0, 300, 2700):
        step = next_resize(replace(p, current_dedicated=current, target_dedicated=current), DesiredTarget(3000, 1200))
        assert step is not None and step.resize_timeout == timedelta(minutes=25)
    # A step that could not finish within the pool's timeout (15 minutes per 1,000 nodes) is made smaller instead.
    big_steps = WatchPolicy(growth_step_nodes=2000)
    step = next_resize(replace(p, metadata={md.MANAGED: "true", md.RESIZE_TIMEOUT: "15"}), DesiredTarget(3000, 0),
                       big_steps)
    assert step is not None and (step.target_dedicated, step.resize_timeout) == (1000, timedelta(minutes=15))
    # Without a recorded timeout the computed one applies, as before.
    assert next_resize(replace(p, metadata={md.MANAGED: "true"}),
                       DesiredTarget(300, 0)).resize_timeout == timedelta(minutes=20)  # type: ignore[union-attr]


def test_a_resize_timeout_batch_would_refuse_is_reported_not_sent() -> None:
    p = pool(image_id=IMAGE, metadata={md.MANAGED: "true", md.RESIZE_TIMEOUT: "4"})
    with pytest.raises(PoolIntentError, match="resizeTimeoutMinutes"):
        next_resize(p, DesiredTarget(10, 0))
