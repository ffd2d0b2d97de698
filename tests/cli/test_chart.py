"""The chart: the time axis ends where the run's activity ends (plus a margin), every line style and mark is in the
legend, desired lines stay visible on the current ones they equal, and quota changes and tag writes are marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from autopilot.chart import ChartData, PoolChart, activity_end, chart_data, figure, legend_handles

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return START + timedelta(minutes=n)


def settled_pool(settles_at: int, total: int) -> PoolChart:
    """A pool that grows to 4 dedicated by ``settles_at`` minutes and then stays at its desired counts until
    ``total``."""
    times = [minutes(i) for i in range(total + 1)]
    current = [min(4, i // max(1, settles_at // 4)) if i < settles_at else 4 for i in range(total + 1)]
    return PoolChart("acct/pool", times, current, [0] * (total + 1), [4] * (total + 1), [0] * (total + 1),
                     [4] * (total + 1), [0] * (total + 1))


def test_the_axis_ends_after_the_last_activity_with_a_margin() -> None:
    pool = settled_pool(60, 480)  # an 8-hour run whose activity ends at +01:00
    end = activity_end(START, minutes(480), [pool], [minutes(0), minutes(45)])
    assert end == minutes(60) + timedelta(minutes=10)
    # a late event extends it; the margin is a tenth of the span, at least 10 minutes
    assert activity_end(START, minutes(480), [pool], [minutes(300)]) == minutes(330)
    # never past the run's end, never shorter than 30 minutes
    assert activity_end(START, minutes(480), [pool], [minutes(479)]) == minutes(480)
    assert activity_end(START, minutes(480), [settled_pool(4, 480)], []) == minutes(30)


def test_the_chart_uses_that_end() -> None:
    data = ChartData("t", START, minutes(480), [settled_pool(60, 480)], axis_end=minutes(70))
    fig = figure(data)
    from matplotlib.dates import num2date

    left, right = fig.axes[-1].get_xlim()
    assert num2date(left) == START and abs(num2date(right) - minutes(70)) < timedelta(seconds=1)


def test_every_line_style_and_mark_is_in_the_legend() -> None:
    labels = [h.get_label() for h in legend_handles()]
    for line in ("current dedicated", "desired dedicated", "Batch target dedicated", "current Spot", "desired Spot",
                 "Batch target Spot",
                 "resize by the app", "resize by a person", "resize ended short", "alert (colour = severity)",
                 "mark / a person's action",
                 "quota change", "tag write"):
        assert line in labels
    # and the figure's legend is that one
    fig = figure(ChartData("t", START, minutes(60), [settled_pool(20, 60)]))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels


def test_desired_lines_stay_visible_where_they_equal_the_current_ones() -> None:
    fig = figure(ChartData("t", START, minutes(60), [settled_pool(20, 60)]))
    ax = fig.axes[1]
    current = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    desired = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert current and desired
    for c in current:
        for d in desired:
            # drawn above the current band, thinner, opaque and in a different colour: the dashes show on the band
            assert d.get_zorder() > c.get_zorder() and d.get_linewidth() < c.get_linewidth()
            assert (d.get_alpha() or 1.0) == 1.0 and (c.get_alpha() or 1.0) < 1.0 and d.get_color() != c.get_color()


def test_usable_nodes_are_drawn_beside_current_and_desired() -> None:
    from dataclasses import replace

    from autopilot.chart import USABLE_COLOUR

    pool = settled_pool(20, 60)
    usable = [max(0, (c or 0) - 1) for c in pool.current_dedicated]  # one node of the pool never works
    fig = figure(ChartData("t", START, minutes(60), [replace(pool, usable=usable)]))
    lines = [ln for ln in fig.axes[1].get_lines() if ln.get_color() == USABLE_COLOUR]
    assert len(lines) == 1 and list(lines[0].get_ydata()) == usable
    assert "usable nodes (idle or running)" in [h.get_label() for h in legend_handles()]
    # a run without node counts draws no usable line
    assert not [ln for ln in figure(ChartData("t", START, minutes(60), [pool])).axes[1].get_lines()
                if ln.get_color() == USABLE_COLOUR]


def report_with(actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"scenario": {"name": "t"}, "virtualTime": {"start": "2026-11-02T06:00:00Z", "end": "2026-11-02T08:00:00Z"},
            "resizeRequests": [], "alerts": [], "timeline": [], "actions": actions}


class NoPools:
    def __init__(self) -> None:
        self.pools: dict[str, Any] = {}


def test_quota_changes_and_tag_writes_are_marked() -> None:
    actions = [
        {"time": "2026-11-02T06:10:00Z", "action": "setQuotas", "target": "renderweu", "detail": "dedicatedCores=400",
         "ok": True, "outcome": "ok"},
        {"time": "2026-11-02T06:20:00Z", "action": "createSnapshotSet", "target": "gpu 1.0.0",
         "detail": "snapshots ...", "ok": True, "outcome": "ok"},
        {"time": "2026-11-02T06:30:00Z", "action": "deleteResource", "target": "x", "detail": "", "ok": True,
         "outcome": "ScopeLocked"},
    ]
    data = chart_data(NoPools(), report_with(actions))
    kinds = [(e[0], e[2]) for e in data.events]
    assert (minutes(10), "quota") in kinds and (minutes(20), "tags") in kinds and (minutes(30), "action") in kinds
    assert any(label.startswith("quota renderweu: dedicatedCores=400") for _, label, kind in data.events
               if kind == "quota")
    fig = figure(data)
    strip = fig.axes[0]
    styles = {(str(ln.get_xdata()[0]), str(ln.get_linestyle()), ln.get_color()) for ln in strip.get_lines()}
    # three marks, each in its own style
    assert len(styles) == 3 and len({(style, colour) for _, style, colour in styles}) == 3



def test_rollout_steps_are_marked_on_their_pool() -> None:
    """Started and completed (the rollout's alerts about the pool) and patched / draining / retired (seen on the pool
    itself)."""
    from autopilot.recorder import PoolSeries

    series = PoolSeries("renderweu/gpu",
                        "/subscriptions/s/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/renderweu",
                        times=[minutes(i) for i in range(61)], current_dedicated=[4] * 61, current_spot=[0] * 61,
                        target_dedicated=[4] * 61, target_spot=[0] * 61, desired_dedicated=[4] * 61,
                        desired_spot=[0] * 61)
    series.rollout = [(minutes(20), "draining"), (minutes(30), "patched → 1.1.0")]

    class OnePool:
        def __init__(self) -> None:
            self.pools = {"renderweu/gpu": series}

    report = report_with([])
    report["alerts"] = [{"time": "2026-11-02T06:10:00Z", "type": "RolloutStarted", "severity": "info",
                         "pool": "renderweu/gpu"},
                        {"time": "2026-11-02T06:50:00Z", "type": "RolloutCompleted", "severity": "info",
                         "pool": "renderweu/gpu"}]
    data = chart_data(OnePool(), report)
    [pool] = data.pools
    assert [label for _, label in pool.rollout] == ["rollout started", "draining", "patched → 1.1.0",
                                                    "rollout completed"]
    assert pool.alerts == []  # drawn once, as rollout steps
    ax = figure(data).axes[1]
    assert [t.get_text() for t in ax.texts] == ["rollout started", "draining", "patched → 1.1.0", "rollout completed"]
    assert "rollout step" in [h.get_label() for h in legend_handles()]
