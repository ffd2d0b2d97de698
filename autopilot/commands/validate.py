"""``autopilot validate FILE``: check a scenario, or a families document, without running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from autopilot.commands.common import EXIT_OK, escape, fail, make_console


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The validate command's parser."""
    p = sub.add_parser("validate", parents=[common], help="check a scenario or families file without running it",
                       description="Validate SCENARIO against scenarios/scenario.schema.json and the app's own "
                                   "settings and families parsers; a families document (the "
                                   "AUTOPILOT_FAMILIES_FILE) against docs/families.schema.json and the app's "
                                   "parser.",
                       epilog="Exit codes: 0 valid, 2 invalid (every problem is listed, each with its JSON path).")
    p.add_argument("scenario", metavar="SCENARIO")
    p.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from autopilot.scenario import ScenarioError, load_scenario
    from autopilot.simulate import describe_run

    if (families_text := _families_document(args.scenario)) is not None:
        return _validate_families(args.scenario, families_text)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return fail(f"{exc.source} is not a valid scenario",
                    "fix the lines above; docs/scenarios.md describes every key", exc.problems)
    make_console().print(f"[green]valid[/]: {escape(describe_run(scenario))}, "
                         f"{len(scenario.expectations)} expectation(s)")
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
        return fail(f"{path} is not a valid families document",
                    "fix the lines above; docs/families.schema.json describes every key", problems)
    pools = sum(len(f.pools) for f in config)
    make_console().print(f"[green]valid[/]: {len(config)} famil{'y' if len(config) == 1 else 'ies'}, {pools} pool(s)")
    return EXIT_OK
