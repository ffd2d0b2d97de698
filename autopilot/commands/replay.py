"""``autopilot replay EVENTS.json``: deliver Event Grid events to the app, on a private emulator or in a running
sandbox."""

from __future__ import annotations

import argparse
import os
from typing import Any

from autopilot.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    UsageError,
    escape,
    fail,
    make_console,
    print_diagnosis,
    print_json,
    start_azurite,
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The replay command's parser."""
    p = sub.add_parser("replay", parents=[common], help="deliver Event Grid events to the app on the local emulator",
                       description="Deliver EVENTS.json (a JSON array as Event Grid POSTs it: Event Grid schema or "
                                   "CloudEvents 1.0) to the app's functions through the local Functions host, "
                                   "against a scenario's initial state (without its timeline) or an empty "
                                   "subscription; print the invocations, alerts and resources created.",
                       epilog="Exit codes: 0 every invocation succeeded, 1 an invocation failed or an event was "
                              "dead-lettered, 2 invalid input, or Azurite missing or refusing its credentials.")
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


def cmd_replay(args: argparse.Namespace) -> int:
    from autopilot.initial_state import apply_initial_state, initial_state_error, local_azure_for
    from autopilot.replay import ReplayInputError, load_events, replay
    from autopilot.scenario import ScenarioError, load_scenario, parse_duration, parse_scenario

    try:
        events = load_events(args.events, topic=args.topic)
    except ReplayInputError as exc:
        return fail(f"cannot replay {exc.source}",
                    "give a JSON array of events as Event Grid POSTs them (Event Grid schema or CloudEvents 1.0)",
                    exc.problems)
    try:
        advance = parse_duration(args.advance)
    except ValueError as exc:
        return fail(f"--advance: {exc}")
    sandbox_url = os.environ.get("AUTOPILOT_SANDBOX_URL")
    if sandbox_url and not args.scenario and not args.azurite and not args.local:
        return _replay_in_sandbox(args, sandbox_url, events, advance)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else parse_scenario(
            {"name": "empty", "duration": "1m"}, source="(empty subscription)")
    except ScenarioError as exc:
        return fail(f"{exc.source} is not a valid scenario",
                    "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    connection, azurite = start_azurite(args.azurite)
    try:
        local = local_azure_for(scenario, connection)
        try:
            try:
                apply_initial_state(local, scenario)
            except Exception as exc:
                problem = initial_state_error(scenario, exc)
                return fail(f"{problem.source} cannot be set up", "fix the scenario's initial state", problem.problems)
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
        print_json(result.to_json())
        return EXIT_OK if result.ok else EXIT_PROBLEMS
    console = make_console()
    console.print(f"[bold]replayed[/] {len(events)} event(s) against {escape(against)}"
                  + (f", then {args.advance} of virtual time" if advance else ""))
    for e in events:
        console.print(f"  {e.topic:6} {e.schema:20} {escape(e.type)} {escape(e.subject)}")
    console.print(f"[bold]invocations[/] ({len(result.invocations)})")
    for inv in result.invocations:
        mark = "[green]ok[/]" if inv["ok"] else "[red]failed[/]"
        console.print(f"  {inv['time'][11:19]} {inv['function']:24} {mark}"
                      + ("" if inv["ok"] else f" {escape(inv['detail'])}"))
    console.print(f"[bold]alerts[/] ({len(result.alerts)})")
    for alert in result.alerts:
        console.print(f"  {alert['type']} ({alert['severity']}): {escape(alert['title'] or '')}")
        print_diagnosis(console, alert, indent="      ")
    for title, items in (("resources created", result.created), ("resources deleted", result.deleted),
                         ("locks added", result.locks_added),
                         ("locks removed", result.locks_removed)):
        console.print(f"[bold]{title}[/] ({len(items)})")
        for item in items:
            console.print(f"  {escape(item)}")
    if result.dead_letters:
        console.print(f"[red]dead-lettered[/] ({len(result.dead_letters)})")
        for d in result.dead_letters:
            console.print(
                f"  {d['function']}: {escape(d['eventType'])} {escape(d['subject'])}: {escape(d['lastError'])}")
    return EXIT_OK if result.ok else EXIT_PROBLEMS
