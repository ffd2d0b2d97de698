"""``autopilot sandbox [SCENARIO]``: keep the emulator, Azurite and the app running for the other commands."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from autopilot.commands.common import EXIT_OK, check_writable, fail, start_azurite


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The sandbox command's parser."""
    p = sub.add_parser("sandbox", parents=[common],
                       help="run the emulator, Azurite and the app for other commands to poke",
                       description="Start the local emulator, Azurite and the app on the local Functions host, "
                                   "seeded from SCENARIO's initial state (its timeline is not run; without "
                                   "SCENARIO: an empty subscription with one watched Batch account), and keep them "
                                   "running. Prints the settings (and writes them to --env-file): with them "
                                   "exported in another shell, status, plan, reconcile and replay work against the "
                                   "sandbox as against a subscription. Ctrl-C stops it.",
                       epilog="Exit codes: 0 stopped by Ctrl-C or SIGTERM, 2 invalid scenario, an unwritable "
                              "--env-file, or Azurite missing or refusing its credentials.")
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="seed from this scenario's initial state, e.g. scenarios/demo.json")
    p.add_argument("--env-file", metavar="FILE", default="out/sandbox.env",
                   help="where to write the settings (default: out/sandbox.env)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="virtual seconds per wall-clock second (default 1; 60: a minute a second)")
    p.add_argument("--azurite", metavar="CONNECTION_STRING", help="use this running Azurite instead of starting one")
    p.set_defaults(handler=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace) -> int:
    import signal
    import threading

    from autopilot.sandbox import EMPTY, Sandbox
    from autopilot.scenario import ScenarioError, load_scenario, parse_scenario

    try:
        scenario = load_scenario(args.scenario) if args.scenario else parse_scenario(EMPTY,
            source="(an empty subscription with one Batch account)")
    except ScenarioError as exc:
        return fail(f"{exc.source} is not a valid scenario",
                    "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    if args.speed <= 0:
        return fail(f"--speed {args.speed}: it must be more than 0",
                    "e.g. --speed 60 lets a virtual minute pass every second")
    check_writable(args.env_file, "--env-file")
    connection, azurite = start_azurite(args.azurite)
    try:
        try:
            sandbox = Sandbox(scenario, connection, speed=args.speed)
        except ScenarioError as exc:
            return fail(f"{exc.source} cannot be set up",
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
