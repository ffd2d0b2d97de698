"""Scenario files: every problem is reported with its JSON path and an example; the app's own parsers check settings and
families."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from autopilot.cli import main
from autopilot.scenario import SCHEMA_PATH, ScenarioError, load_scenario, parse_duration, parse_scenario
from tests.cli.conftest import ROOT, write_json

BUNDLED = sorted(p for p in (ROOT / "scenarios").glob("*.json") if not p.name.endswith(".schema.json"))
MINIMAL = {"name": "t", "duration": "1h"}


def problems_of(document: dict) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(document)
    return caught.value.problems


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_scenarios_are_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.expectations, "every bundled scenario checks what it claims"
    # A run costs per step, not per virtual hour: at most 720 steps (12 hours at the default 1-minute step). A scenario
    # that needs two nights (rollout-in-place) takes coarser steps instead.
    assert scenario.duration / scenario.step <= 720 and scenario.duration <= timedelta(days=2)


def test_a_minimal_scenario_gets_the_defaults() -> None:
    scenario = parse_scenario(MINIMAL)
    assert (scenario.seed == 1 and scenario.step == timedelta(minutes=1)
            and scenario.start.isoformat() == "2026-11-02T06:00:00+00:00")
    assert scenario.timeline == [] and scenario.families is None


@pytest.mark.parametrize("text, expected", [("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90)),
                                            ("2d", timedelta(days=2)),
                                            ("45s", timedelta(seconds=45)), ("PT1H15M", timedelta(minutes=75)),
                                            ("P1D", timedelta(days=1))])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1x", "PT", "90"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"use e\.g\."):
        parse_duration(text)


def test_an_unknown_action_names_the_path_and_shows_an_example() -> None:
    problems = problems_of({**MINIMAL, "timeline": [{"at": "5m", "action": "deletePools", "pool": "x/y"}]})
    assert any(p.startswith("$.timeline[0].action: \"deletePools\" is not one of") and "for example" in p
               for p in problems), problems


def test_a_bad_time_names_the_path_and_shows_an_example() -> None:
    problems = problems_of({**MINIMAL, "timeline": [{"at": "soon", "action": "mark", "text": "x"}]})
    assert any(p.startswith("$.timeline[0].at:") and 'for example "30m"' in p for p in problems), problems


def test_a_misspelt_key_suggests_the_right_one() -> None:
    problems = problems_of(
        {**MINIMAL,
         "timeline": [{"at": "5m", "action": "injectPoolFailure", "pool": "acct/pool", "kind": "quota", "cuont": 2}]})
    assert any(p.startswith("$.timeline[0]:") and "'cuont'" in p and "did you mean 'count'" in p
               and '"action": "injectPoolFailure"' in p
               for p in problems), problems


def test_missing_required_keys_are_named() -> None:
    problems = problems_of({"name": "t"})
    assert any(p.startswith("$: 'duration' is required") for p in problems), problems


def test_an_expectation_needs_a_count() -> None:
    problems = problems_of({**MINIMAL, "expect": [{"expect": "alerts", "type": "QuotaReached"}]})
    assert any(p.startswith("$.expect[0]: give 'count' or 'min' or 'max'") and "for example" in p
               for p in problems), problems


def test_meaning_problems_have_paths_too() -> None:
    problems = problems_of({
        **MINIMAL,
        "settings": {"AUTOPILOT_ARM_ENDPOINT": "https://example.com", "AUTOPILOT_MAX_RESIZE_ATTEMPTS": "0"},
        "batchAccounts": [{"name": "acct1"}],
        "pools": [{"account": "other1", "id": "p", "vmSize": "Standard_D4ds_v5",
                   "image": "/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0"}],
        "timeline": [{"at": "2h", "action": "mark", "text": "late"},
                     {"at": "5m", "action": "deleteResource",
                      "resource": "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"}],
    })
    joined = "\n".join(problems)
    assert "$.settings.AUTOPILOT_ARM_ENDPOINT: set by the simulator" in joined
    assert "$.pools[0].account: 'other1' is not one of the scenario's batchAccounts" in joined
    assert "$.timeline[0].at: 2h is after the end of the run (1h)" in joined
    assert "$.timeline[1].resource: the simulator cannot act on Microsoft.Network/virtualNetworks" in joined


def test_invalid_app_settings_are_reported_by_the_apps_own_parser() -> None:
    problems = problems_of({**MINIMAL, "settings": {"AUTOPILOT_MAX_RESIZE_ATTEMPTS": "zero"}})
    assert any(p.startswith("$.settings: AUTOPILOT_MAX_RESIZE_ATTEMPTS='zero' is not a number; for example")
               for p in problems), problems


def test_the_families_configuration_is_checked_by_the_apps_parser() -> None:
    problems = problems_of({**MINIMAL, "batchAccounts": [{"name": "acct1"}], "families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": "g", "imageDefinition": "d", "osType": "Linux",
                    "hyperVGeneration": "V2", "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "pools": [{"account": "acct1", "dedicated": 4}, {"account": "nope", "vmSize": "Standard_D4ds_v5"}]}}})
    joined = "\n".join(problems)
    assert "$.families.gpu.pools[0].vmSize" in joined
    assert "$.families.gpu.pools[1].account: 'nope' is not one of the scenario's batchAccounts" in joined


def test_invalid_json_says_where() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario('{"name": "t", "duration": "1h",}')
    assert "line 1 column" in caught.value.problems[0]


def test_cli_validate_exits_2_with_the_path_and_an_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_json(tmp_path / "bad.json",
                     {**MINIMAL,
                      "timeline": [{"at": "5m", "action": "setQuotas", "account": "acct1", "dedicatedCores": -5}]})
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert ("is not a valid scenario" in err and "$.timeline[0].dedicatedCores" in err and "for example" in err
            and "docs/scenarios.md" in err)


def test_cli_simulate_refuses_an_invalid_scenario_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_json(tmp_path / "bad.json", {"name": "bad name!", "duration": "1h"})
    assert main(["simulate", str(bad), "--azurite", "unused"]) == 2
    assert "$.name" in capsys.readouterr().err


def test_cli_missing_file_lists_the_bundled_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no-such-scenario.json"]) == 2
    assert "scenarios/demo.json" in capsys.readouterr().err


def test_cli_validate_accepts_the_bundled_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "scenarios" / "demo.json")]) == 0
    assert "valid" in capsys.readouterr().out


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["simulate"]) == 2
    assert main(["frobnicate"]) == 2
    assert "--help" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["simulate"], ["validate"], ["replay"], ["status"], ["plan"], ["reconcile"]])
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert "usage: autopilot" in capsys.readouterr().out


def test_global_flags_work_before_and_after_the_command() -> None:
    from autopilot.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "status"]).verbose and parser.parse_args(["status", "-v"]).verbose
    assert not parser.parse_args(["status"]).verbose and parser.parse_args(["--debug", "plan", "--json"]).debug


def test_set_family_is_checked_by_the_app_s_parser_and_pool_image_needs_a_version_or_an_image() -> None:
    family = {"gallery": {"resourceGroup": "images-rg", "name": "g", "imageDefinition": "gpu", "osType": "Linux",
                          "hyperVGeneration": "V2",
                          "location": "westeurope"},
              "source": "snapshots", "snapshotResourceGroups": ["images-rg"],
              "pools": [{"account": "acct1", "poolId": "{family}", "vmSize": "Standard_D4ds_v5", "dedicated": 2}],
              "rollout": {"mode": "inPlace"}}
    base = {**MINIMAL, "batchAccounts": [{"name": "acct1"}], "families": {"gpu": family}}
    scenario = parse_scenario({**base, "timeline": [{"at": "5m", "action": "setFamily", "family": "gpu",
                                                     "config": {**family, "pinVersion": "1.0.0"}}],
                               "expect": [{"expect": "poolImage", "pool": "acct1/gpu", "version": "1.0.0"}]})
    assert scenario.timeline[0].kind == "setFamily"
    bad = {**family, "rollout": {"mode": "inPlace", "applyWhen": "soon"},
           "pools": [{**family["pools"][0], "account": "nowhere"}]}
    problems = problems_of({**base, "timeline": [{"at": "5m", "action": "setFamily", "family": "gpu", "config": bad}],
                            "expect": [{"expect": "poolImage", "pool": "acct1/gpu"}]})
    joined = "\n".join(problems)
    assert ("$.timeline[0].config.pools[0].account: 'nowhere' is not one of the scenario's batchAccounts"
            in joined), joined
    assert "$.timeline[0].config.rollout.applyWhen" in joined, joined
    assert any(p.startswith("$.expect[0]: give 'version' or 'image'") for p in problems), problems


def test_pool_image_compares_the_version_the_pool_references() -> None:
    from autopilot.expectations import check_expectations

    version = ("/subscriptions/s/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/g/images/gpu"
               "/versions/1.1.0")
    scenario = parse_scenario({**MINIMAL, "batchAccounts": [{"name": "acct1"}],
                               "expect": [{"expect": "poolImage", "pool": "acct1/gpu", "version": "1.2.0"},
                                          {"expect": "poolImage", "pool": "acct1/gpu", "version": "1.1.0"},
                                          {"expect": "poolImage", "pool": "acct1/gone", "version": "1.1.0"}]})
    report = {"pools": [{"account": "acct1", "id": "gpu", "image": version}]}
    wrong, right, gone = check_expectations(report, scenario)
    assert not wrong["ok"] and "versions/1.1.0" in wrong["detail"] and right["ok"]
    assert not gone["ok"] and gone["detail"] == "the pool does not exist at the end"


def test_every_expectation_kind_the_schema_allows_has_a_checker() -> None:
    # autopilot/expectations.py checks each kind with the function CHECKERS names; a kind the schema accepts but no
    # checker knows would be reported as failed with no detail.
    from autopilot.expectations import CHECKERS

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    kinds: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            expect = node.get("expect")
            if isinstance(expect, dict):
                kinds.update(expect.get("enum") or ([expect["const"]] if "const" in expect else []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert kinds and kinds == set(CHECKERS), sorted(kinds ^ set(CHECKERS))
