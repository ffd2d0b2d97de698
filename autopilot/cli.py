"""``autopilot`` (``python -m autopilot``): the operator's command line for Batch Image Autopilot.

Commands (docs/cli.md has the full reference):

* ``simulate SCENARIO``  run a scenario on the local emulator, Azurite and the local Functions host;
* ``validate SCENARIO``  check a scenario file without running it;
* ``replay EVENTS.json`` deliver Event Grid event batches to the app on the local emulator (or a running sandbox);
* ``sandbox [SCENARIO]`` keep the emulator, Azurite and the app running for the other commands to poke;
* ``status``             pools, episodes, images and locks of a subscription (real, or the emulator);
* ``plan``               what the pool watch and the image guard would do now (a dry run: no writes);
* ``reconcile``          one watch pass and one guard pass now.

Exit codes: 0 ok; 1 the command ran and found problems (a scenario expectation failed, failing pools, a
failed lock change); 2 the command could not run as asked (usage, an invalid scenario or settings,
Azurite missing, no credentials): the message says what to do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """The command cannot run as asked. ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (a pipe, a CI log): no colours and wide lines rather than rich's 80 columns.
    width = None if stream.isatty() else 160
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def _fail(message: str, hint: str = "", problems: Sequence[str] = ()) -> int:
    err = _console(stderr=True)
    err.print(f"[bold red]error:[/] {_escape(message)}")
    for problem in problems:
        err.print(f"  - {_escape(problem)}")
    if hint:
        err.print(f"[yellow]what to do:[/] {_escape(hint)}")
    return EXIT_USAGE


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Log to stderr for the command's duration, then put logging back as it was (main() also runs inside tests).

    The app and the emulator log a lot at INFO: the CLI shows only errors unless -v (INFO) or --debug."""
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.ERROR
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    noisy = {name: logging.getLogger(name) for name in ("azure", "urllib3", "matplotlib")}
    saved = (root.level, {name: lg.level for name, lg in noisy.items()})
    root.addHandler(handler)
    root.setLevel(min(level, root.level) if root.level else level)
    if not args.debug:
        for lg in noisy.values():
            lg.setLevel(logging.WARNING if args.verbose else logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, lg in noisy.items():
            lg.setLevel(saved[1][name])


# ---------------------------------------------------------------------------------------------
# simulate / validate
# ---------------------------------------------------------------------------------------------


def _start_azurite(connection: str | None) -> tuple[str, Any]:
    """A connection string, and the Azurite process to stop (None when an existing one was given)."""
    if connection:
        _probe_storage(connection, "--azurite")
        return connection, None
    from emulator.azurite import Azurite, AzuriteError

    azurite = Azurite()
    try:
        azurite.start()
    except AzuriteError as exc:
        raise UsageError(f"cannot start Azurite: {exc}",
                         "run `make setup` in the repository root (it installs Azurite with npm), or pass --azurite "
                         "CONNECTION_STRING") from None
    return azurite.connection_string, azurite


def _storage_refused(exc: BaseException) -> bool:
    """Table storage (Azurite or Azure) refused the credentials: 403 AuthorizationFailure / AuthenticationFailed."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    if isinstance(exc, ClientAuthenticationError):
        return "failed to authenticate" in str(exc).lower() or "authorizationfailure" in str(exc).lower()
    code = str(getattr(exc, "error_code", "") or "").lower().replace("tableerrorcode.", "").replace("_", "")
    return isinstance(exc, HttpResponseError) and exc.status_code == 403 and (
        code in ("authorizationfailure", "authenticationfailed") or "failed to authenticate" in str(exc).lower())


def _probe_storage(connection: str, where: str) -> None:
    """One cheap Table call, so that a wrong key or a stopped Azurite is one clear line before anything runs."""
    from azure.core.exceptions import AzureError, ServiceRequestError
    from azure.data.tables import TableServiceClient

    try:
        service = TableServiceClient.from_connection_string(connection)
    except ValueError as exc:
        raise UsageError(f"{where}: not a storage connection string ({exc})",
                         "pass the connection string Azurite prints "
                         "(DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                         "AccountKey=...;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;), or leave it out "
                         "to start one") from None
    try:
        with service:
            next(iter(service.list_tables(results_per_page=1)), None)
    except ServiceRequestError:
        raise UsageError(f"cannot reach the table storage {where} names ({service.url})",
                         "start Azurite (`autopilot sandbox` starts one and prints its connection string), or leave "
                         "out --azurite "
                         "to let the command start its own") from None
    except AzureError as exc:
        if _storage_refused(exc):
            raise UsageError(f"the table storage {where} names ({service.url}) refused the credentials (403 "
                             "AuthorizationFailure)",
                             "use the account name and key of that Azurite or storage account exactly as it "
                             "prints them "
                             "(Azurite's default: AccountName=devstoreaccount1 and its well-known key)") from None
        raise


def _check_writable(path: str, option: str) -> None:
    """Fail before a long run, not after it, when a result file cannot be written."""
    target = Path(path)
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        with open(target, "a", encoding="utf-8"):
            pass
        if not existed:
            target.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc})",
                         f"give {option} a path in a directory you can write, e.g. {option} out/report.json") from None


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


def cmd_validate(args: argparse.Namespace) -> int:
    from autopilot.scenario import ScenarioError, load_scenario
    from autopilot.simulate import describe_run

    if (families_text := _families_document(args.scenario)) is not None:
        return _validate_families(args.scenario, families_text)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _fail(f"{exc.source} is not a valid scenario",
                     "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    _console().print(f"[green]valid[/]: {_escape(describe_run(scenario))}, {len(scenario.expectations)} expectation(s)")
    return EXIT_OK


def _families_document(path: str) -> str | None:
    """The file's text when it is a families document (top-level "families", no scenario "name"), else None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, ValueError):
        return None  # the scenario path reports unreadable files and bad JSON
    is_families = isinstance(document, dict) and "families" in document and "name" not in document
    return text if is_families else None


def _validate_families(path: str, text: str) -> int:
    """docs/families.schema.json first, in the scenario validator's words (JSON path, what is wrong, an example); then
    the rules only the app states (e.g. pool ids that clash), by the app's own parser."""
    from autopilot.scenario import ROOT, schema_problems
    from shared.config.families import FamilyConfigError, parse_families

    schema = json.loads((ROOT / "docs" / "families.schema.json").read_text(encoding="utf-8"))
    problems = schema_problems(json.loads(text), schema)
    if not problems:
        try:
            config = parse_families(text)
        except FamilyConfigError as exc:
            problems = exc.problems
    if problems:
        return _fail(f"{path} is not a valid families document",
                     "fix the lines above; docs/families.schema.json describes every key", problems)
    pools = sum(len(f.pools) for f in config)
    _console().print(f"[green]valid[/]: {len(config)} famil{'y' if len(config) == 1 else 'ies'}, {pools} pool(s)")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from autopilot.chart import chart_data, write_charts
    from autopilot.report import write_report
    from autopilot.scenario import ScenarioError, load_scenario
    from autopilot.simulate import Simulation, describe_run

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _fail(f"{exc.source} is not a valid scenario",
                     "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    if args.report:
        _check_writable(args.report, "--report")
    if args.chart_dir and not args.no_chart:
        _check_writable(str(Path(args.chart_dir) / f"{scenario.name}.png"), "--chart-dir")
    console = _console()
    quiet = args.quiet
    if not quiet:
        console.print(f"[bold]simulating[/] {_escape(describe_run(scenario))}")
    connection, azurite = _start_azurite(args.azurite)
    try:
        live = LiveProgress(console, scenario) if not quiet and sys.stdout.isatty() else None
        try:
            sim = Simulation(scenario, connection, on_progress=live)
        except ScenarioError as exc:
            return _fail(f"{exc.source} cannot be set up",
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


KIND_STYLES = {"action": "bold cyan", "mark": "bold magenta", "alert": "bold", "stall": "dim", "step": "dim",
               "pool": "", "image": "blue", "lock": "blue",
               "host": "red"}
SEVERITY_STYLES = {"critical": "red", "warning": "yellow", "info": "green", "error": "red"}


def _print_diagnosis(console: Any, alert: dict[str, Any], indent: str = "    ") -> None:
    """An alert's diagnosis and fix, one indented line each (what a person needs to act on it)."""
    if alert.get("diagnosis"):
        console.print(f"{indent}[dim]diagnosis:[/] {_escape(alert['diagnosis'])}")
    if alert.get("fix"):
        console.print(f"{indent}[bold]fix:[/] {_escape(alert['fix'])}")


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
                      f"[{style}]{_escape(entry['text'])}[/]" if style else _escape(entry["text"]))
        # An alert's diagnosis and fix: one indented line each, under the alert.
        if entry.get("diagnosis"):
            table.add_row("", "", "", f"  [dim]diagnosis:[/] {_escape(entry['diagnosis'])}")
        if entry.get("fix"):
            table.add_row("", "", "", f"  [bold]fix:[/] {_escape(entry['fix'])}")
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
            console.print(f"  {mark} {_escape(e['description'])}: {_escape(e['detail'])}")
    failed_actions = [a for a in report["actions"] if not a["ok"]]
    for a in failed_actions:
        console.print(f"  [red]✗[/] action {a['action']} at {a['at']}: {_escape(a['outcome'])}"
                      + (f" (expected {_escape(a['expectedOutcome'])})" if a["expectedOutcome"] else "")
                      + (f": {_escape(a['detail'])}" if a["detail"] else ""))
    if report["result"]["ok"]:
        console.print(f"[bold green]OK[/]: {report['scenario']['name']} ran {report['virtualTime']['duration']} of "
                      "virtual time; every expectation held")
    else:
        console.print(
            f"[bold red]FAILED[/]: {len(report['result']['problems'])} problem(s) in {report['scenario']['name']}")
    if report_path:
        console.print(f"report: {_escape(report_path)}")
    if report["charts"]["png"]:
        console.print(f"chart:  {_escape(report['charts']['png'])}")
        console.print(f"        {_escape(report['charts']['html'])}")


# ---------------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from autopilot.replay import ReplayInputError, load_events, replay
    from autopilot.scenario import ScenarioError, load_scenario, parse_duration, parse_scenario
    from autopilot.simulate import apply_initial_state, initial_state_error, local_azure_for

    try:
        events = load_events(args.events, topic=args.topic)
    except ReplayInputError as exc:
        return _fail(f"cannot replay {exc.source}",
                     "give a JSON array of events as Event Grid POSTs them (Event Grid schema or CloudEvents 1.0)",
                     exc.problems)
    try:
        advance = parse_duration(args.advance)
    except ValueError as exc:
        return _fail(f"--advance: {exc}")
    sandbox_url = os.environ.get("AUTOPILOT_SANDBOX_URL")
    if sandbox_url and not args.scenario and not args.azurite and not args.local:
        return _replay_in_sandbox(args, sandbox_url, events, advance)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else parse_scenario(
            {"name": "empty", "duration": "1m"}, source="(empty subscription)")
    except ScenarioError as exc:
        return _fail(f"{exc.source} is not a valid scenario",
                     "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    connection, azurite = _start_azurite(args.azurite)
    try:
        local = local_azure_for(scenario, connection)
        try:
            try:
                apply_initial_state(local, scenario)
            except Exception as exc:
                problem = initial_state_error(scenario, exc)
                return _fail(f"{problem.source} cannot be set up", "fix the scenario's initial state", problem.problems)
            result = replay(local, events, advance=advance)
        finally:
            local.close()
    finally:
        if azurite is not None:
            azurite.stop()
    return _print_replay(args, result, events, scenario.source if args.scenario else "an empty subscription", advance)


def _replay_in_sandbox(args: argparse.Namespace, url: str, events: list[Any], advance: Any) -> int:
    """The events go to the running sandbox's app (``autopilot sandbox``), as Event Grid would deliver them there."""
    import urllib.error

    from autopilot.replay import ReplayResult
    from autopilot.sandbox import replay_to_sandbox

    try:
        document = replay_to_sandbox(url, os.environ.get("AUTOPILOT_CA_BUNDLE"), events, topic=args.topic,
                                     advance_minutes=advance.total_seconds() / 60)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        raise UsageError(f"the sandbox at {url} refused the events: {detail[:500]}",
                         "fix the events file, or pass --local") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach the sandbox at {url} (AUTOPILOT_SANDBOX_URL): {reason}",
                         "start it again with `autopilot sandbox` and source the settings it prints, or unset "
                         "AUTOPILOT_SANDBOX_URL "
                         "(or pass --local) to replay on a private emulator") from None
    result = ReplayResult(events, invocations=document["invocations"], alerts=document["alerts"],
                          created=document["created"],
                          deleted=document["deleted"], dead_letters=document["deadLetters"],
                          locks_added=document["locksAdded"],
                          locks_removed=document["locksRemoved"])
    return _print_replay(args, result, events, f"the sandbox at {url}", advance)


def _print_replay(args: argparse.Namespace, result: Any, events: list[Any], against: str, advance: Any) -> int:
    if args.json:
        _print_json(result.to_json())
        return EXIT_OK if result.ok else EXIT_PROBLEMS
    console = _console()
    console.print(f"[bold]replayed[/] {len(events)} event(s) against {_escape(against)}"
                  + (f", then {args.advance} of virtual time" if advance else ""))
    for e in events:
        console.print(f"  {e.topic:6} {e.schema:20} {_escape(e.type)} {_escape(e.subject)}")
    console.print(f"[bold]invocations[/] ({len(result.invocations)})")
    for inv in result.invocations:
        mark = "[green]ok[/]" if inv["ok"] else "[red]failed[/]"
        console.print(f"  {inv['time'][11:19]} {inv['function']:24} {mark}"
                      + ("" if inv["ok"] else f" {_escape(inv['detail'])}"))
    console.print(f"[bold]alerts[/] ({len(result.alerts)})")
    for alert in result.alerts:
        console.print(f"  {alert['type']} ({alert['severity']}): {_escape(alert['title'] or '')}")
        _print_diagnosis(console, alert, indent="      ")
    for title, items in (("resources created", result.created), ("resources deleted", result.deleted),
                         ("locks added", result.locks_added),
                         ("locks removed", result.locks_removed)):
        console.print(f"[bold]{title}[/] ({len(items)})")
        for item in items:
            console.print(f"  {_escape(item)}")
    if result.dead_letters:
        console.print(f"[red]dead-lettered[/] ({len(result.dead_letters)})")
        for d in result.dead_letters:
            console.print(
                f"  {d['function']}: {_escape(d['eventType'])} {_escape(d['subject'])}: {_escape(d['lastError'])}")
    return EXIT_OK if result.ok else EXIT_PROBLEMS


# ---------------------------------------------------------------------------------------------
# sandbox
# ---------------------------------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace) -> int:
    import signal
    import threading

    from autopilot.sandbox import EMPTY, Sandbox
    from autopilot.scenario import ScenarioError, load_scenario, parse_scenario

    try:
        scenario = load_scenario(args.scenario) if args.scenario else parse_scenario(EMPTY,
            source="(an empty subscription with one Batch account)")
    except ScenarioError as exc:
        return _fail(f"{exc.source} is not a valid scenario",
                     "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    if args.speed <= 0:
        return _fail(f"--speed {args.speed}: it must be more than 0",
                     "e.g. --speed 60 lets a virtual minute pass every second")
    _check_writable(args.env_file, "--env-file")
    connection, azurite = _start_azurite(args.azurite)
    try:
        try:
            sandbox = Sandbox(scenario, connection, speed=args.speed)
        except ScenarioError as exc:
            return _fail(f"{exc.source} cannot be set up",
                         "fix the scenario's initial state; docs/scenarios.md describes every key", exc.problems)
        try:
            path = sandbox.write_env(Path(args.env_file))
            out = sys.stdout
            out.write(f"sandbox: {scenario.source}'s initial state on the emulator at {sandbox.local.server.base_url}, "
                      "Azurite, and the app "
                      f"on the local Functions host; virtual time {sandbox.local.emulator.now():%Y-%m-%d %H:%M} UTC, "
                      f"x{args.speed:g}\n")
            out.write(f"settings written to {path}; in another shell:\n\n    . {path}\n    autopilot status\n\n")
            for name, value in sorted(sandbox.env().items()):
                out.write(f"export {name}={_shell_quote(value)}\n")
            out.write("\nCtrl-C stops the sandbox (and everything it started).\n")
            out.flush()
            stop = threading.Event()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                sandbox.serve(stop)
        finally:
            sandbox.close()
    finally:
        if azurite is not None:
            azurite.stop()
    sys.stdout.write("sandbox stopped\n")
    return EXIT_OK


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


# ---------------------------------------------------------------------------------------------
# status / plan / reconcile
# ---------------------------------------------------------------------------------------------


def _context() -> Any:
    from autopilot.status import build_context
    from shared.config.settings import SettingsError

    try:
        return build_context()
    except SettingsError as exc:
        if all(p.startswith("AUTOPILOT_FAMILIES_FILE") for p in exc.problems):
            hint = ("fix the file AUTOPILOT_FAMILIES_FILE names (each line above says where); "
                    "docs/families.schema.json describes every key")
        elif all(p.startswith("AUTOPILOT_FAMILIES") for p in exc.problems):
            hint = ("fix the AUTOPILOT_FAMILIES setting (each line above says where); docs/families.schema.json "
                    "describes every key")
        else:
            hint = ("fix or export the settings named above, as the Function App has them (local.settings.sample.json "
                    "lists every one; "
                    "`az functionapp config appsettings list` shows a deployed app's); for a local sandbox, `autopilot "
                    "sandbox` prints them")
        raise UsageError("the app settings in the environment are incomplete or invalid:\n  - "
                         + "\n  - ".join(exc.problems), hint) from None


def _azure_call(fn: Callable[[], Any]) -> Any:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    try:
        return fn()
    except ClientAuthenticationError as exc:
        raise UsageError(f"cannot authenticate to Azure: {str(exc).splitlines()[0]}",
                         "sign in with `az login` (or set AZURE_CLIENT_ID for a managed identity), "
                         "then try again") from None
    except ServiceRequestError as exc:
        raise UsageError(f"cannot reach Azure: {exc}",
                         "check AUTOPILOT_ARM_ENDPOINT and your network (for the emulator: is it running?)") from None
    except Exception as exc:
        if _storage_refused(exc):
            raise UsageError("the app's table storage refused the credentials in AzureWebJobsStorage (403 "
                             "AuthorizationFailure)",
                             "set AzureWebJobsStorage to the storage account's (or Azurite's) connection string with "
                             "its current key") from None
        raise


def cmd_status(args: argparse.Namespace) -> int:
    from autopilot.status import collect_status, status_failing

    context = _context()
    try:
        status = _azure_call(lambda: collect_status(context))
    finally:
        context.clients.close()
    if args.json:
        _print_json(status)
        return EXIT_PROBLEMS if status_failing(status) else EXIT_OK
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{status['target']}[/] subscription {status['subscriptionId']} at {status['generatedAt']}")
    pools = Table(title="Pools", title_justify="left", box=None, pad_edge=False, show_edge=False)
    for column in ("pool", "health", "desired", "current", "Batch target", "usable / unhealthy", "allocation",
                   "episode / backoff"):
        pools.add_column(column, overflow="fold")
    for p in status["pools"]:
        desired = "-"
        if p["desired"]:
            desired = (f"{p['desired']['dedicated']} / {p['desired']['spot']}"
                       + (" (schedule)" if p["desired"]["source"] == "schedule" else ""))
        episode = p["episode"]
        ep_text = "-"
        if episode:
            ep_text = f"{episode['attempts']} failed, {episode['requests']} request(s)"
            if episode["backoff"]["active"]:
                ep_text += f"; backing off until {episode['backoff']['until'][11:16]}"
            if episode["recoveredAt"]:
                ep_text += f"; recovered {episode['recoveredAt'][11:16]}"
            if episode["stoppedReason"]:
                ep_text += f"; {episode['stoppedReason']}"
        style = "red" if p["health"] in ("failing", "stopped", "gave-up", "invalid-metadata",
                                         "image-missing") else "green" if p["health"] == "ok" else "yellow"
        nodes = p["nodes"]
        node_text = "-"
        if nodes:
            node_text = f"{nodes['usable']} / " + (f"[red]{nodes['unhealthy']}[/]" if nodes["unhealthy"] else "0")
            node_text += f" ({nodes['booting']} booting)" if nodes["booting"] else ""
        if p["canary"] in ("pending", "failed"):
            node_text += f"; canary {p['canary']}"
        pools.add_row(f"{p['account']}/{p['id']}", f"[{style}]{p['health']}[/]", desired,
                      f"{p['current']['dedicated']} / {p['current']['spot']}",
                      f"{p['target']['dedicated']} / {p['target']['spot']}", node_text, p["allocationState"],
                      _escape(ep_text))
    console.print(pools)
    images = Table(title="Images", title_justify="left", box=None, pad_edge=False, show_edge=False)
    for column in ("kind", "image", "state", "used by", "locks"):
        images.add_column(column, overflow="fold")
    for i in status["images"]:
        locks = (", ".join(f"{lk['name']} ({'app' if lk['owner'] == 'app' else 'other'})" for lk in i["locks"])
                 or "[yellow]none[/]")
        state = i["provisioningState"] if i["exists"] else "[red]missing[/]"
        images.add_row(i["kind"], _escape(i["id"].rsplit("/providers/", 1)[-1]), state, ", ".join(i["pools"]) or "-",
                       locks)
    console.print(images)
    console.print(f"[bold]Recent alerts[/] ({len(status['recentAlerts'])})")
    for alert in status["recentAlerts"]:
        style = SEVERITY_STYLES.get(alert["severity"], "bold")
        console.print(f"  {alert['time'][:16].replace('T', ' ')} [{style}]{alert['type']}[/] ({alert['severity']}): "
                      f"{_escape(alert['title'])}")
        _print_diagnosis(console, alert, indent="      ")
    for problem in status["problems"]:
        console.print(f"[red]problem:[/] {_escape(problem)}")
    for warning in status["warnings"]:
        console.print(f"[yellow]warning:[/] {_escape(warning)}")
    return EXIT_PROBLEMS if status_failing(status) else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from autopilot.status import plan

    context = _context()
    try:
        result = _azure_call(lambda: plan(context))
    finally:
        context.clients.close()
    if args.json:
        _print_json(result)
        return EXIT_PROBLEMS if result["watch"]["unreadableAccounts"] else EXIT_OK
    console = _console()
    watch, guard = result["watch"], result["guard"]
    console.print(f"[bold]plan[/] at {result['generatedAt']} (nothing is changed): {watch['accounts']} account(s), "
                  f"{watch['pools']} pool(s), "
                  f"{watch['managed']} managed")
    console.print("[bold]pool watch[/]")
    for d in watch["decisions"]:
        resize = (f" → resize to {d['resize']['dedicated']} / {d['resize']['spot']} ({d['resize']['resizeTimeout']})"
                  if d["resize"] else "")
        alerts = f" [yellow]alerts: {', '.join(d['alerts'])}[/]" if d["alerts"] else ""
        console.print(f"  {d['pool']}: [bold]{d['action']}[/]{resize}{alerts} — {_escape(d['reason'])}")
    if not watch["decisions"]:
        console.print("  no managed pools")
    for account, error in watch["unreadableAccounts"].items():
        console.print(f"  [red]cannot read[/] {account}: {_escape(error)}")
    console.print(f"[bold]image guard[/] ({guard['guarded']} guarded resource(s))")
    for a in guard["actions"]:
        console.print(f"  {a['kind']} lock on {_escape(a['resource'])}")
    if not guard["actions"]:
        console.print("  every lock is in place")
    if guard["skippedRelease"]:
        console.print("  [yellow]lock removals held back: an account could not be read[/]")
    rollout = result.get("rollout") or {}
    if rollout.get("actions") or rollout.get("errors"):
        console.print("[bold]image rollouts[/]")
        for line in rollout.get("actions", []):
            console.print(f"  {_escape(line)}")
        for account, error in (rollout.get("errors") or {}).items():
            console.print(f"  [red]rollout failed[/] in {account}: {_escape(error)}")
    if result.get("retention"):
        console.print("[bold]retention[/] (what it would delete; nothing is deleted by plan)")
        for v in result["retention"]:
            verdict = "[red]delete[/]" if v["delete"] else "keep"
            console.print(f"  {v['family']} {v['version'] or ''}: {verdict} — {_escape(v['reason'])}")
    return EXIT_PROBLEMS if watch["unreadableAccounts"] else EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from autopilot.status import reconcile_failed, reconcile_now

    context = _context()
    try:
        result = _azure_call(lambda: reconcile_now(context, handle_stalls=args.handle_stalls))
    finally:
        context.clients.close()
    if args.json:
        _print_json(result)
        return EXIT_PROBLEMS if reconcile_failed(result) else EXIT_OK
    console = _console()
    watch, guard = result["watch"], result["guard"]
    console.print(f"[bold]reconcile[/] at {result['generatedAt']}")
    console.print(f"pool watch: {watch['managed']} managed pool(s); {watch['stallEventsPublished']} PoolResizeStalled "
                  "event(s) published; "
                  f"{watch['alerts']} alert(s)")
    for h in watch["handled"]:
        console.print(f"  {h['pool']}: {_escape(h['result'])}")
    console.print(f"image guard: {len(guard['applied'])} lock change(s) for {guard['guarded']} guarded resource(s)")
    for a in guard["applied"]:
        console.print(f"  {a['kind']} lock on {_escape(a['resource'])}")
    for resource, error in guard["failed"].items():
        console.print(f"  [red]failed[/] {_escape(resource)}: {_escape(error)}")
    return EXIT_PROBLEMS if reconcile_failed(result) else EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\nwhat to do: run `{self.prog} --help` for the options\n")
        raise SystemExit(EXIT_USAGE)


def _version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batch-image-autopilot")
    except PackageNotFoundError:
        import tomllib

        with open(ROOT / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("-v", "--verbose", action="store_true", help="show the app's and the emulator's log (INFO)")
    top.add_argument("--debug", action="store_true", help="show DEBUG logs and tracebacks")
    # The same flags after the command; SUPPRESS keeps a flag given before the command from being reset by the
    # subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the app's and the emulator's log (INFO)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show DEBUG logs and tracebacks")

    parser = _Parser(prog="autopilot", description="Batch Image Autopilot: simulate scenarios locally, replay Event "
                                                   "Grid events, and inspect "
                     "or reconcile a subscription.",
                     epilog="Exit codes: 0 ok, 1 problems found, 2 cannot run as asked. See docs/cli.md.",
                     parents=[top])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("simulate", parents=[common],
                       help="run a scenario on the local emulator and report what happened",
                       description="Run SCENARIO (scenarios/*.json; format in docs/scenarios.md) on the local "
                                   "emulator, Azurite and the local "
                       "Functions host; print the timeline, write the JSON report and a chart (PNG + HTML), check the "
                       "scenario's expectations.",
                       epilog="Exit codes: 0 every expectation held, 1 an expectation or an action's expected outcome "
                              "failed, 2 invalid scenario, "
                       "an unwritable --report or --chart-dir, or Azurite missing or refusing its credentials.")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file, e.g. scenarios/demo.json")
    p.add_argument("--report", metavar="REPORT.json", help="write the JSON report here (the directory is created)")
    p.add_argument("--chart-dir", metavar="DIR", help="write SCENARIO-NAME.png and SCENARIO-NAME.html here (default: "
                                                      "the report's directory, else out/NAME/)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument("--quiet", action="store_true",
                   help="no live progress and no timeline: only the expectations and where the files are")
    p.add_argument("--azurite", metavar="CONNECTION_STRING", help="use this running Azurite instead of starting one")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("validate", parents=[common], help="check a scenario or families file without running it",
                       description="Validate SCENARIO against scenarios/scenario.schema.json and the app's own "
                                   "settings and families parsers; a families document (the AUTOPILOT_FAMILIES_FILE) "
                                   "against docs/families.schema.json and the app's parser.",
                       epilog="Exit codes: 0 valid, 2 invalid (every problem is listed, each with its JSON path).")
    p.add_argument("scenario", metavar="SCENARIO")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("replay", parents=[common], help="deliver Event Grid events to the app on the local emulator",
                       description="Deliver EVENTS.json (a JSON array as Event Grid POSTs it: Event Grid schema or "
                                   "CloudEvents 1.0) to the app's "
                       "functions through the local Functions host, against a scenario's initial state (without its "
                       "timeline) or an empty "
                       "subscription; print the invocations, alerts and resources created.",
                       epilog="Exit codes: 0 every invocation succeeded, 1 an invocation failed or an event was "
                              "dead-lettered, 2 invalid input, "
                       "or Azurite missing or refusing its credentials.")
    p.add_argument("events", metavar="EVENTS.json")
    p.add_argument("--scenario", metavar="S", help="start from this scenario's initial state")
    p.add_argument("--topic", choices=("auto", "system", "custom"), default="auto",
                   help="the topic the events arrive on (auto: Microsoft.Resources.* → system, "
                        "BatchImageAutopilot.* → custom)")
    p.add_argument("--advance", metavar="DURATION", default="0m",
                   help="virtual time to run after delivering, e.g. 30m (lets images and pools finish)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    p.add_argument("--azurite", metavar="CONNECTION_STRING", help="use this running Azurite instead of starting one")
    p.add_argument("--local", action="store_true",
                   help="replay on a private emulator even when AUTOPILOT_SANDBOX_URL names a running sandbox")
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("sandbox", parents=[common],
                       help="run the emulator, Azurite and the app for other commands to poke",
                       description="Start the local emulator, Azurite and the app on the local Functions host, seeded "
                                   "from SCENARIO's "
                       "initial state (its timeline is not run; without SCENARIO: an empty subscription with one "
                       "watched Batch account), "
                       "and keep them running. Prints the settings (and writes them to --env-file): with them exported "
                       "in another shell, "
                       "status, plan, reconcile and replay work against the sandbox as against a subscription. "
                       "Ctrl-C stops it.",
                       epilog="Exit codes: 0 stopped by Ctrl-C or SIGTERM, 2 invalid scenario, an unwritable "
                              "--env-file, or Azurite "
                       "missing or refusing its credentials.")
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="seed from this scenario's initial state, e.g. scenarios/demo.json")
    p.add_argument("--env-file", metavar="FILE", default="out/sandbox.env",
                   help="where to write the settings (default: out/sandbox.env)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="virtual seconds per wall-clock second (default 1; 60: a minute a second)")
    p.add_argument("--azurite", metavar="CONNECTION_STRING", help="use this running Azurite instead of starting one")
    p.set_defaults(handler=cmd_sandbox)

    settings_note = ("Settings come from the environment, as the Function App has them (AUTOPILOT_SUBSCRIPTION_ID, "
                     "AUTOPILOT_BATCH_ACCOUNTS, "
                     "AUTOPILOT_FAMILIES, AzureWebJobsStorage, ...); AUTOPILOT_CREDENTIAL=emulator targets the "
                     "local emulator.")
    p = sub.add_parser("status", parents=[common], help="pools, episodes, images and locks of the subscription",
                       description="Show every pool of the watched Batch accounts (desired / current / Batch target, "
                                   "allocation state, the "
                       "watch's episode and backoff) and the images and gallery versions with the pools that use them "
                       "and their locks. " + settings_note,
                       epilog="Exit codes: 0 healthy, 1 failing or stopped pools, unreadable accounts or missing "
                              "images, 2 settings, families or "
                       "credentials.")
    p.add_argument("--json", action="store_true", help="print the documented JSON structure (docs/cli.md)")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("plan", parents=[common], help="what the watch and the guard would do now (changes nothing)",
                       description="A dry run of the pool watch (tick) and the image guard (reconcile): the decision "
                                   "for every managed pool and the "
                       "lock changes the guard would make. Only reads. " + settings_note,
                       epilog="Exit codes: 0 done, 1 an account could not be read, 2 settings, families or "
                              "credentials.")
    p.add_argument("--json", action="store_true", help="print the documented JSON structure (docs/cli.md)")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("reconcile", parents=[common], help="one watch pass and one guard pass now",
                       description="Run the pool watch's tick (stalled pools are published as PoolResizeStalled events "
                                   "for the Function App) and "
                       "the image guard's reconcile (missing locks are put, unneeded ones removed). " + settings_note,
                       epilog="Exit codes: 0 done, 1 a lock change or a stall failed, or an account could not be read, "
                              "2 settings, families or "
                       "credentials.")
    p.add_argument("--handle-stalls", action="store_true",
                   help="also re-issue the stalled pools' resizes here (when no Function App handles the events)")
    p.add_argument("--json", action="store_true", help="print the documented JSON structure (docs/cli.md)")
    p.set_defaults(handler=cmd_reconcile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    with _logging(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except UsageError as exc:
        return _fail(str(exc), exc.hint)
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted")
        return 130
    except OSError as exc:
        if args.debug:
            raise
        if getattr(exc, "filename", None):  # a file the command reads or writes
            return _fail(f"cannot use the file {exc.filename}: {exc.strerror or exc}",
                         "check the path and its permissions, then run the command again")
        return _fail(f"the command stopped on a system error: {exc.strerror or exc}",
                     "check the network and the paths given, then run again (--debug shows where it happened)")
    except Exception as exc:
        if args.debug:
            raise
        if _storage_refused(exc):
            return _fail("the app's table storage refused the credentials in AzureWebJobsStorage (403 "
                         "AuthorizationFailure)",
                         "set AzureWebJobsStorage to the storage account's (or Azurite's) connection string with its "
                         "current key")
        # Not something the command knows how to explain: no class names, the message, and how to see more.
        message = " ".join(str(exc).split())[:500] or "no message"
        _fail(f"the command stopped on an unexpected error: {message}",
              "this is likely a bug: run again with --debug for the traceback and -v for the app's log, and "
              "report both")
        return EXIT_PROBLEMS


__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "build_parser", "main"]
