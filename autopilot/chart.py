"""Charts of a simulation run: desired vs current dedicated and Spot nodes of every pool over virtual time,
marked with resize requests, failed resizes and alerts. One PNG, and one self-contained HTML page (the
chart as inline SVG plus the run's tables; no external assets, so it can be mailed or attached to a ticket).

Matplotlib is used through its object API (``matplotlib.figure.Figure``) with the Agg renderer, so no
display and no global pyplot state are involved.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SEVERITY_COLOURS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#2e7d32", "error": "#c62828"}
DEDICATED_COLOUR = "#1565c0"
SPOT_COLOUR = "#f9a825"
DESIRED_DEDICATED_COLOUR = "#0d2f66"  # darker than the band it runs along, so it shows on it
DESIRED_SPOT_COLOUR = "#8d5a00"
CURRENT_WIDTH, CURRENT_ALPHA = 4.5, 0.45
USABLE_COLOUR = "#2e7d32"
ROLLOUT_COLOUR = "#283593"
# The rollout's alerts are drawn as its steps on the pool, beside the steps seen on the pool itself (patched, draining,
# retired).
ROLLOUT_ALERTS = {"RolloutStarted": "rollout started", "RolloutCompleted": "rollout completed",
                  "RolloutBlocked": "rollout blocked", "RolloutRolledBack": "rolled back"}


@dataclass
class PoolChart:
    key: str
    times: list[datetime]
    current_dedicated: list[int | None]
    current_spot: list[int | None]
    desired_dedicated: list[int | None]
    desired_spot: list[int | None]
    target_dedicated: list[int | None]
    target_spot: list[int | None]
    resizes: list[tuple[datetime, str]] = field(default_factory=list)  # (time, caller)
    failures: list[tuple[datetime, str]] = field(default_factory=list)  # (time, codes)
    alerts: list[tuple[datetime, str, str]] = field(default_factory=list)  # (time, type, severity)
    usable: list[int | None] = field(default_factory=list)  # idle or running nodes, dedicated + Spot
    rollout: list[tuple[datetime, str]] = field(default_factory=list)  # rollout steps: started, patched, retired, ...


@dataclass
class ChartData:
    title: str
    start: datetime
    end: datetime
    pools: list[PoolChart]
    # alerts not about one pool, marks, people's actions, quota changes and tag writes: (time, label, severity or kind)
    events: list[tuple[datetime, str, str]] = field(default_factory=list)
    axis_end: datetime | None = None  # where the time axis stops: the last activity plus a margin (None: ``end``)


# How the strip shows what is not a severity: (colour, line style).
EVENT_STYLES = {"mark": ("#555555", "-."), "action": ("#555555", "-."), "quota": ("#6a1b9a", (0, (1, 1))),
                "tags": ("#00897b", "--")}
QUOTA_ACTIONS = frozenset({"setQuotas"})
TAG_ACTIONS = frozenset({"createSnapshotSet", "createSnapshot"})  # people's snapshot writes carry the autopilot.* tags


def is_tag_write(action: str) -> bool:
    """Actions that write tags: tagged snapshot writes, and any Tags API action ("setTags", "tagResource", ...)."""
    return action in TAG_ACTIONS or "tag" in action.lower()


def chart_data(recorder: Any, report: dict[str, Any]) -> ChartData:
    """Assemble the chart's data from a run's recorder and report."""
    from autopilot.report import APP_CALLER

    start = datetime.fromisoformat(report["virtualTime"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(report["virtualTime"]["end"].replace("Z", "+00:00"))
    pools = []
    for key, series in recorder.pools.items():
        pools.append(PoolChart(
            key, list(series.times), list(series.current_dedicated), list(series.current_spot),
            list(series.desired_dedicated),
            list(series.desired_spot), list(series.target_dedicated), list(series.target_spot),
            resizes=[(_t(r["time"]), "app" if r["caller"] == APP_CALLER else r["caller"])
                     for r in report["resizeRequests"]
                     if r["pool"].lower() == key.lower() and 200 <= r["status"] < 300],
            failures=list(series.failures),
            usable=list(getattr(series, "usable", [])),
            alerts=[(_t(a["time"]), a["type"], a["severity"]) for a in report["alerts"]
                    if a["pool"] and a["pool"].lower() == key.lower() and a["type"] not in ROLLOUT_ALERTS],
            rollout=sorted([*getattr(series, "rollout", []),
                            *((_t(a["time"]), ROLLOUT_ALERTS[a["type"]]) for a in report["alerts"]
                              if a["pool"] and a["pool"].lower() == key.lower() and a["type"] in ROLLOUT_ALERTS)],
                           key=lambda s: s[0]),
        ))
    events = [(_t(a["time"]), a["type"], a["severity"]) for a in report["alerts"] if not a["pool"]]
    events += [(_t(e["time"]), e["text"].removeprefix("mark: ")[:40], "mark") for e in report["timeline"]
               if e["kind"] == "mark"]
    events += [(_t(a["time"]), f"{a['action']} → {a['outcome']}", "action") for a in report["actions"]
               if (a["action"] in ("deleteResource", "removeLock", "deletePool") or not a["ok"])
               and a["action"] not in QUOTA_ACTIONS and not is_tag_write(a["action"])]
    events += [(_t(a["time"]), f"quota {a['target'] or ''}: {a['detail']}"[:40], "quota") for a in report["actions"]
               if a["action"] in QUOTA_ACTIONS]
    events += [(_t(a["time"]), f"tags {a['target'] or ''}"[:40], "tags") for a in report["actions"]
               if is_tag_write(a["action"])]
    return ChartData(f"{report['scenario']['name']}: desired vs current nodes", start, end, pools,
                     sorted(events, key=lambda e: e[0]),
                     axis_end=activity_end(start, end, pools, [_t(t["time"]) for t in report["timeline"]]))


def activity_end(start: datetime, end: datetime, pools: list[PoolChart], moments: list[datetime]) -> datetime:
    """Where the time axis stops: the last thing that happened (a timeline entry, or a pool's counts changing), plus a
    margin of a tenth of that span (at least 10 minutes), never past the run's end. A quiet tail is not charted."""
    from datetime import timedelta

    last = max([m for m in moments if m <= end] or [start])
    for pool in pools:
        series = list(zip(pool.current_dedicated, pool.current_spot, pool.desired_dedicated, pool.desired_spot,
                          pool.target_dedicated,
                          pool.target_spot, strict=False))
        for i in range(1, min(len(series), len(pool.times))):
            if series[i] != series[i - 1]:
                last = max(last, pool.times[i])
    margin = max(timedelta(minutes=10), (last - start) / 10)
    return min(end, max(last + margin, start + timedelta(minutes=30)))


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------


def figure(data: ChartData) -> Any:
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure

    rows = max(1, len(data.pools))
    fig = Figure(figsize=(12, 2.1 + 1.1 + 2.6 * rows), dpi=100, layout="constrained")
    grid = fig.subplots(rows + 1, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [1.1, *([2.6] * rows)]})[:, 0]
    strip, axes = grid[0], grid[1:]
    fig.suptitle(data.title, fontsize=13, fontweight="bold")
    # The strip on top: alerts that are not about one pool, marks, and people's actions, labelled in staggered rows.
    strip.set_ylim(0, 4)
    strip.set_yticks([])
    strip.set_title("events (alerts not about one pool, people's actions, marks)", loc="left", fontsize=9,
                    color="#555555")
    for spine in ("left", "right", "top"):
        strip.spines[spine].set_visible(False)
    for i, (when, label, kind) in enumerate(data.events):
        colour, style = EVENT_STYLES.get(kind, (SEVERITY_COLOURS.get(kind, "#555555"), "-"))
        strip.axvline(when, color=colour, linewidth=1.2 if kind in ("quota", "tags") else 1.0, linestyle=style,
                      alpha=0.8)
        strip.annotate(label, (when, 3.3 - (i % 4) * 0.9), xytext=(3, 0), textcoords="offset points", fontsize=7,
                       color=colour, va="center",
                       annotation_clip=False)
    if not data.pools:
        axes[0].text(0.5, 0.5, "no Batch pools existed during this run", ha="center", va="center",
                     transform=axes[0].transAxes)
    for ax, pool in zip(axes, data.pools, strict=False):
        ax.set_title(pool.key, loc="left", fontsize=10)
        # Current is a wide translucent band and desired a dashed line drawn above it: when a pool is at its desired
        # counts the two coincide, and the dashes stay visible on the band.
        _series(ax, pool.times, pool.current_dedicated, DEDICATED_COLOUR, "-", CURRENT_WIDTH, alpha=CURRENT_ALPHA,
                zorder=2)
        _series(ax, pool.times, pool.desired_dedicated, DESIRED_DEDICATED_COLOUR, "--", 1.4, zorder=4)
        _series(ax, pool.times, pool.target_dedicated, DEDICATED_COLOUR, ":", 1.0, alpha=0.7, zorder=3)
        if pool.usable and len(pool.usable) == len(pool.times):
            # nodes that work: idle or running
            _series(ax, pool.times, pool.usable, USABLE_COLOUR, "-", 1.2, alpha=0.9, zorder=5)
        if any(v for v in pool.current_spot + pool.desired_spot + pool.target_spot if v):
            _series(ax, pool.times, pool.current_spot, SPOT_COLOUR, "-", CURRENT_WIDTH, alpha=CURRENT_ALPHA, zorder=2)
            _series(ax, pool.times, pool.desired_spot, DESIRED_SPOT_COLOUR, "--", 1.4, zorder=4)
            _series(ax, pool.times, pool.target_spot, SPOT_COLOUR, ":", 1.0, alpha=0.7, zorder=3)
        top = max([v for v in pool.current_dedicated + pool.desired_dedicated + pool.target_dedicated
                   + pool.current_spot
                   + pool.desired_spot + pool.target_spot if v is not None] or [1])
        ax.set_ylim(-0.04 * top, top * 1.25 + 1)
        for when, caller in pool.resizes:
            y = _value_at(pool.times, pool.target_dedicated, when) or 0
            ax.plot([when], [y], marker="^", markersize=7, color="#2e7d32" if caller == "app" else "#6a1b9a",
                    linestyle="none", zorder=5)
        for when, _codes in pool.failures:
            y = _value_at(pool.times, pool.current_dedicated, when) or 0
            ax.plot([when], [y], marker="X", markersize=9, color="#c62828", linestyle="none", zorder=6)
        for i, (when, kind, severity) in enumerate(pool.alerts):
            colour = SEVERITY_COLOURS.get(severity, "#555555")
            ax.axvline(when, color=colour, linewidth=1.0, alpha=0.8)
            ax.annotate(kind, (when, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -9 - 9 * (i % 3)),
                        textcoords="offset points",
                        fontsize=7, color=colour)
        for i, (when, label) in enumerate(pool.rollout):
            ax.axvline(when, color=ROLLOUT_COLOUR, linewidth=1.4, linestyle=(0, (4, 2)), alpha=0.85, zorder=1)
            ax.plot([when], [0], marker="D", markersize=6, color=ROLLOUT_COLOUR, linestyle="none", zorder=6)
            ax.annotate(label, (when, 0.0), xycoords=("data", "axes fraction"), xytext=(3, 4 + 9 * (i % 3)),
                        textcoords="offset points", fontsize=7, color=ROLLOUT_COLOUR)
        for when, _label, kind in data.events:
            colour = EVENT_STYLES[kind][0] if kind in EVENT_STYLES else SEVERITY_COLOURS.get(kind, "#777777")
            ax.axvline(when, color=colour, linewidth=0.7, linestyle=":", alpha=0.6)
        ax.set_ylabel("nodes")
        ax.grid(True, alpha=0.25)
    axes[-1].set_xlim(data.start, data.axis_end or data.end)
    axes[-1].xaxis.set_major_locator(AutoDateLocator(minticks=6, maxticks=14))
    axes[-1].xaxis.set_major_formatter(DateFormatter("%H:%M"))
    axes[-1].set_xlabel(f"virtual time (UTC), from {data.start:%Y-%m-%d %H:%M}")
    fig.legend(handles=legend_handles(), loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    return fig


def legend_handles() -> list[Any]:
    """One entry for every line style and mark the chart draws."""
    from matplotlib.lines import Line2D

    quota, tags = EVENT_STYLES["quota"], EVENT_STYLES["tags"]
    return [
        Line2D([], [], color=DEDICATED_COLOUR, linewidth=CURRENT_WIDTH, alpha=CURRENT_ALPHA, label="current dedicated"),
        Line2D([], [], color=DESIRED_DEDICATED_COLOUR, linestyle="--", linewidth=1.4, label="desired dedicated"),
        Line2D([], [], color=DEDICATED_COLOUR, linestyle=":", alpha=0.7, label="Batch target dedicated"),
        Line2D([], [], color=SPOT_COLOUR, linewidth=CURRENT_WIDTH, alpha=CURRENT_ALPHA, label="current Spot"),
        Line2D([], [], color=DESIRED_SPOT_COLOUR, linestyle="--", linewidth=1.4, label="desired Spot"),
        Line2D([], [], color=SPOT_COLOUR, linestyle=":", alpha=0.7, label="Batch target Spot"),
        Line2D([], [], color=USABLE_COLOUR, linewidth=1.2, label="usable nodes (idle or running)"),
        Line2D([], [], marker="^", color="#2e7d32", linestyle="none", label="resize by the app"),
        Line2D([], [], marker="^", color="#6a1b9a", linestyle="none", label="resize by a person"),
        Line2D([], [], marker="X", color="#c62828", linestyle="none", label="resize ended short"),
        Line2D([], [], color="#ef6c00", label="alert (colour = severity)"),
        Line2D([], [], color=ROLLOUT_COLOUR, marker="D", linestyle=(0, (4, 2)), label="rollout step"),
        Line2D([], [], color="#555555", linestyle="-.", label="mark / a person's action"),
        Line2D([], [], color=quota[0], linestyle=quota[1], linewidth=1.2, label="quota change"),
        Line2D([], [], color=tags[0], linestyle=tags[1], linewidth=1.2, label="tag write"),
    ]


def _series(ax: Any, times: list[datetime], values: list[int | None], colour: str, style: Any, width: float,
            alpha: float = 1.0,
            zorder: float = 2) -> None:
    """A step line with gaps where the pool did not exist (None)."""
    xs, ys = [], []
    for t, v in zip(times, values, strict=False):
        if v is None:
            if xs:
                ax.step(xs, ys, where="post", color=colour, linestyle=style, linewidth=width, alpha=alpha,
                        zorder=zorder)
            xs, ys = [], []
            continue
        xs.append(t)
        ys.append(v)
    if xs:
        ax.step(xs, ys, where="post", color=colour, linestyle=style, linewidth=width, alpha=alpha, zorder=zorder)


def _value_at(times: list[datetime], values: list[int | None], when: datetime) -> int | None:
    best = None
    for t, v in zip(times, values, strict=False):
        if t > when:
            break
        best = v
    return best


# ---------------------------------------------------------------------------------------------


def write_charts(data: ChartData, report: dict[str, Any], out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``{name}.png`` and ``{name}.html`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = figure(data)
    png = out / f"{name}.png"
    fig.savefig(png, format="png")
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is embedded in HTML
    page = out / f"{name}.html"
    page.write_text(html_page(report, svg), encoding="utf-8")
    return png, page


def _diagnosis_html(alert: dict[str, Any]) -> str:
    """An alert's diagnosis and its fix, each on its own line under the title."""
    e = html.escape
    out = ""
    if alert.get("diagnosis"):
        out += f"<div class='diagnosis'><b>Diagnosis:</b> {e(alert['diagnosis'])}</div>"
    if alert.get("fix"):
        out += f"<div class='fix'><b>Fix:</b> {e(alert['fix'])}</div>"
    return out


def html_page(report: dict[str, Any], svg: str) -> str:
    e = html.escape
    scenario = report["scenario"]
    rows = []
    for p in report["pools"]:
        desired = f"{p['desired']['dedicated']} / {p['desired']['spot']}" if p["desired"] else "—"
        reached = p["targetReachedAt"][11:16] if p["targetReachedAt"] else ("no" if p["desired"] else "—")
        rows.append(f"<tr><td>{e(p['account'])}/{e(p['id'])}</td><td>{desired}</td><td>{p['current']['dedicated']} / "
                    f"{p['current']['spot']}</td>"
                    f"<td>{e(p['allocationState'])}</td><td>{e(reached)}</td><td>{p['resizeRequests']}</td></tr>")
    alerts = "".join(f"<tr class='{e(a['severity'])}'><td>{e(a['time'][11:16])}</td><td>{e(a['type'])}</td>"
                     f"<td>{e(a['severity'])}</td><td>{e(a['title'])}{_diagnosis_html(a)}</td></tr>"
                     for a in report["alerts"]) or "<tr><td colspan='4'>no alerts</td></tr>"
    expectations = "".join(f"<tr class='{'ok' if x['ok'] else 'fail'}'><td>{'✓' if x['ok'] else '✗'}</td>"
                           f"<td>{e(x['description'])}</td><td>{e(x['detail'])}</td></tr>"
                           for x in report["expectations"]) or "<tr><td colspan='3'>none</td></tr>"
    timeline = "".join(f"<tr class='{e(t['kind'])} {e(t['severity'] or '')}'>"
                       f"<td>{e(t['offset'])}</td><td>{e(t['time'][11:16])}</td>"
                       f"<td>{e(t['kind'])}</td><td>{e(t['text'])}{_diagnosis_html(t)}</td></tr>"
                       for t in report["timeline"])
    verdict = "all expectations held" if report["result"]["ok"] else f"{len(report['result']['problems'])} problem(s)"
    vt = report["virtualTime"]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(scenario['name'])} — Batch Image Autopilot simulation</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1250px;
       color: #222; }}
h1 {{ font-size: 1.4rem; margin-bottom: .2rem; }} h2 {{ font-size: 1.1rem; margin-top: 1.6rem; }}
.meta {{ color: #555; }} .verdict.ok {{ color: #2e7d32; }} .verdict.fail {{ color: #c62828; }}
table {{ border-collapse: collapse; width: 100%; font-size: .85rem; }}
td, th {{ border-bottom: 1px solid #e0e0e0; padding: .25rem .5rem; text-align: left; vertical-align: top; }}
th {{ background: #f5f5f5; }} tr.fail td, tr.critical td, tr.error td {{ color: #c62828; }}
tr.warning td {{ color: #ef6c00; }}
tr.ok td:first-child {{ color: #2e7d32; }} .chart svg {{ width: 100%; height: auto; }}
.diagnosis, .fix {{ color: #333; margin: .15rem 0 0 1rem; }} .fix b {{ color: #1565c0; }}
</style>
</head>
<body>
<h1>{e(scenario['name'])}</h1>
<p class="meta">{e(scenario['description'])}</p>
<p class="meta">Virtual time {e(vt['start'])} → {e(vt['end'])} ({e(vt['duration'])},
steps of {e(vt['step'])}), seed {scenario['seed']}; simulated in {report['wallSeconds']:.1f} s.
<span class="verdict {'ok' if report['result']['ok'] else 'fail'}">{e(verdict)}</span></p>
<div class="chart">{svg}</div>
<h2>Expectations</h2>
<table><tr><th></th><th>expectation</th><th>observed</th></tr>{expectations}</table>
<h2>Pools at the end</h2>
<table><tr><th>pool</th><th>desired (dedicated / Spot)</th><th>current</th><th>allocation</th><th>at target since</th>
<th>resize requests</th></tr>
{''.join(rows) or "<tr><td colspan='6'>no pools</td></tr>"}</table>
<h2>Alerts</h2>
<table><tr><th>time</th><th>type</th><th>severity</th><th>title</th></tr>{alerts}</table>
<h2>Timeline</h2>
<table><tr><th>offset</th><th>time</th><th>kind</th><th>what happened</th></tr>{timeline}</table>
</body>
</html>
"""
