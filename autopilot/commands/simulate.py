"""``autopilot simulate SCENARIO``: run a scenario on the local emulator, Azurite and the local Functions host; show
it live, then the timeline, the pools at the end and the expectations."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from autopilot.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    ROOT,
    SEVERITY_STYLES,
    check_writable,
    escape,
    fail,
    make_console,
    start_azurite,
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The simulate command's parser."""
    p = sub.add_parser("simulate", parents=[common],
                       help="run a scenario on the local emulator and report what happened",
                       description="Run SCENARIO (scenarios/*.json; format in docs/scenarios.md) on the local "
                                   "emulator, Azurite and the local Functions host; print the timeline, write the "
                                   "JSON report and a chart (PNG + HTML), check the scenario's expectations.",
                       epilog="Exit codes: 0 every expectation held, 1 an expectation or an action's expected "
                              "outcome failed, 2 invalid scenario, an unwritable --report or --chart-dir, or "
                              "Azurite missing or refusing its credentials.")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file, e.g. scenarios/demo.json")
    p.add_argument("--report", metavar="REPORT.json", help="write the JSON report here (the directory is created)")
    p.add_argument("--chart-dir", metavar="DIR", help="write SCENARIO-NAME.png and SCENARIO-NAME.html here (default: "
                                                      "the report's directory, else out/NAME/)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument("--quiet", action="store_true",
                   help="no live progress and no timeline: only the expectations and where the files are")
    p.add_argument("--azurite", metavar="CONNECTION_STRING", help="use this running Azurite instead of starting one")
    p.set_defaults(handler=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from autopilot.chart import chart_data, write_charts
    from autopilot.report import write_report
    from autopilot.scenario import ScenarioError, load_scenario
    from autopilot.simulate import Simulation, describe_run

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return fail(f"{exc.source} is not a valid scenario",
                    "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    if args.report:
        check_writable(args.report, "--report")
    if args.chart_dir and not args.no_chart:
        check_writable(str(Path(args.chart_dir) / f"{scenario.name}.png"), "--chart-dir")
    console = make_console()
    quiet = args.quiet
    if not quiet:
        console.print(f"[bold]simulating[/] {escape(describe_run(scenario))}")
    connection, azurite = start_azurite(args.azurite)
    try:
        live = LiveProgress(console, scenario) if not quiet and sys.stdout.isatty() else None
        try:
            sim = Simulation(scenario, connection, on_progress=live)
        except ScenarioError as exc:
            return fail(f"{exc.source} cannot be set up",
                        "fix the scenario's initial state; docs/scenarios.md describes every key", exc.problems)
        with sim:
            if live is not None:
                with live:
                    result = sim.run()
            else:
                result = sim.run()
            report = result.report
            if not args.no_chart:
                chart_dir = Path(args.chart_dir) if args.chart_dir else (Path(args.report).parent if args.report
                                                                         else ROOT / "out" / scenario.name)
                png, page = write_charts(chart_data(sim.recorder, report), report, chart_dir, scenario.name)
                report["charts"] = {"png": str(png), "html": str(page)}
    finally:
        if azurite is not None:
            azurite.stop()
    if args.report:
        write_report(report, args.report)
    if not quiet:
        print_timeline(console, report)
    print_summary(console, report, args.report, quiet=quiet)
    return EXIT_OK if report["result"]["ok"] else EXIT_PROBLEMS


class LiveProgress:
    """A live view of the run (virtual time, pools desired/current, alerts so far), refreshed a few times a second."""

    def __init__(self, console: Any, scenario: Any) -> None:
        from rich.live import Live

        self.console = console
        self.scenario = scenario
        self.live = Live(console=console, refresh_per_second=8, transient=True)
        self._last = 0.0

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, sim: Any, now: datetime) -> None:
        wall = time.monotonic()
        if wall - self._last < 0.12 and now < self.scenario.end:
            return
        self._last = wall
        self.live.update(self.render(sim, now))

    def render(self, sim: Any, now: datetime) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        from autopilot.scenario import format_offset

        elapsed = now - self.scenario.start
        header = Text.assemble((f"{self.scenario.name} ", "bold"),
                               f"virtual {now:%a %H:%M} UTC  ({format_offset(elapsed)} of "
                               f"{format_offset(self.scenario.duration)})")
        bar = ProgressBar(total=self.scenario.duration.total_seconds(), completed=elapsed.total_seconds(), width=60)
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("pool", "desired", "current", "Batch target", "state"):
            table.add_column(column, justify="left" if column in ("pool", "state") else "right")
        for key, series in sim.recorder.pools.items():
            if series.deleted_at is not None:
                table.add_row(key, "", "", "", "[dim]deleted[/]")
                continue
            desired = series.desired_dedicated[-1], series.desired_spot[-1]
            table.add_row(key, f"{desired[0]} / {desired[1]}" if desired[0] is not None else "-",
                          f"{series.current_dedicated[-1]} / {series.current_spot[-1]}",
                          f"{series.target_dedicated[-1]} / {series.target_spot[-1]}",
                          "[green]at target[/]" if series.reached_since else "")
        alerts = sim.local.alerts()
        lines = [Text(f"alerts so far: {len(alerts)}", style="bold")]
        for alert in alerts[-3:]:
            data = alert.get("data") or {}
            lines.append(Text(f"  {str(alert.get('eventTime'))[11:16]} {data.get('alertType')}: "
                              f"{data.get('title')}"[:160],
                              style={"critical": "red", "warning": "yellow"}.get(str(data.get("severity")), "green")))
        return Group(header, bar, table, *lines)


KIND_STYLES = {"action": "bold cyan", "mark": "bold magenta", "alert": "bold", "stall": "dim", "step": "dim",
               "pool": "", "image": "blue", "lock": "blue",
               "host": "red"}


def print_timeline(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Timeline (virtual time from {report['virtualTime']['start'][:16].replace('T', ' ')} UTC)",
                  title_justify="left",
                  box=None, pad_edge=False, show_edge=False)
    table.add_column("offset", style="dim", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("what happened", overflow="fold")
    for entry in report["timeline"]:
        style = SEVERITY_STYLES.get(
            entry["severity"] or "", "") if entry["kind"] in ("alert", "host", "action", "pool", "image") else ""
        kind_style = KIND_STYLES.get(entry["kind"])
        table.add_row(entry["offset"], entry["time"][11:16],
                      f"[{kind_style}]{entry['kind']}[/]" if kind_style else entry["kind"],
                      f"[{style}]{escape(entry['text'])}[/]" if style else escape(entry["text"]))
        # An alert's diagnosis and fix: one indented line each, under the alert.
        if entry.get("diagnosis"):
            table.add_row("", "", "", f"  [dim]diagnosis:[/] {escape(entry['diagnosis'])}")
        if entry.get("fix"):
            table.add_row("", "", "", f"  [bold]fix:[/] {escape(entry['fix'])}")
    console.print(table)


def print_summary(console: Any, report: dict[str, Any], report_path: str | None, *, quiet: bool = False) -> None:
    from rich.table import Table

    from autopilot.report import offset_of

    if not quiet:
        pools = Table(title="Pools at the end", title_justify="left", box=None, pad_edge=False, show_edge=False)
        for column in ("pool", "desired", "current", "allocation", "at target since", "resize requests"):
            pools.add_column(column, justify="left" if column in ("pool", "allocation") else "right")
        for p in report["pools"]:
            desired = f"{p['desired']['dedicated']} / {p['desired']['spot']}" if p["desired"] else "-"
            since = (offset_of(report, p["targetReachedAt"]) if p["atTarget"] else "[yellow]not at target[/]"
                     if p["desired"] else "-")
            pools.add_row(f"{p['account']}/{p['id']}", desired, f"{p['current']['dedicated']} / {p['current']['spot']}",
                          p["allocationState"],
                          since, str(p["resizeRequests"]))
        for d in report["deletedPools"]:
            pools.add_row(f"{d['account']}/{d['id']}", "", "", "[dim]deleted[/]", "", "")
        console.print(pools)
        counts = ", ".join(f"{k} {v}" for k, v in report["alertCounts"].items()) or "none"
        events = report["events"]
        console.print(f"alerts: {counts}; events delivered {events['delivered']}, retried {events['retried']}, "
                      f"dead-lettered {events['deadLettered']}; "
                      f"{report['requests']['total']} requests to the emulator; {report['wallSeconds']:.1f} "
                      "s wall time")
    if report["expectations"]:
        console.print("[bold]expectations[/]")
        for e in report["expectations"]:
            mark = "[green]✓[/]" if e["ok"] else "[red]✗[/]"
            console.print(f"  {mark} {escape(e['description'])}: {escape(e['detail'])}")
    failed_actions = [a for a in report["actions"] if not a["ok"]]
    for a in failed_actions:
        console.print(f"  [red]✗[/] action {a['action']} at {a['at']}: {escape(a['outcome'])}"
                      + (f" (expected {escape(a['expectedOutcome'])})" if a["expectedOutcome"] else "")
                      + (f": {escape(a['detail'])}" if a["detail"] else ""))
    if report["result"]["ok"]:
        console.print(f"[bold green]OK[/]: {report['scenario']['name']} ran {report['virtualTime']['duration']} of "
                      "virtual time; every expectation held")
    else:
        console.print(
            f"[bold red]FAILED[/]: {len(report['result']['problems'])} problem(s) in {report['scenario']['name']}")
    if report_path:
        console.print(f"report: {escape(report_path)}")
    if report["charts"]["png"]:
        console.print(f"chart:  {escape(report['charts']['png'])}")
        console.print(f"        {escape(report['charts']['html'])}")
