"""Errors as a careless user meets them: each is one clear line with the documented exit code, names the setting or
file actually used, never shows a Python exception class, and its ``what to do`` line, followed, ends in success."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from autopilot.cli import build_parser, main
from autopilot.scenario import ScenarioError, parse_scenario
from shared.config.settings import SettingsError, check_startup, get_settings, load_settings, reset_settings_cache
from tests.cli.conftest import LOCKLESS, ROOT, write_json

# "SomethingError: message" (a Python class as the prefix of a message), or a traceback. Azure error codes that end in
# "Error" (InternalServerError) are not classes and appear as "(InternalServerError)" or "Code: InternalServerError".
CLASS_NAMES = re.compile(r"(\b[A-Z]\w*(Error|Exception|Conflict): )|Traceback|\bKeyError\b|\bFileNotFoundError\b")
BASE = {"AUTOPILOT_SUBSCRIPTION_ID": "00000000-0000-4000-8000-000000000001",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
ACCOUNT = ("/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/batch-rg/providers/Microsoft.Batch"
           "/batchAccounts/acct1")
GOOD_FAMILIES = json.loads((ROOT / "docs" / "families.example.json").read_text(encoding="utf-8"))
TINY = {"name": "tiny", "duration": "2m"}


def no_class_names(text: str) -> bool:
    return CLASS_NAMES.search(text) is None


def what_to_do(err: str) -> str:
    return err.split("what to do:", 1)[1].strip()


# --- settings and families -----------------------------------------------------------------


def test_a_missing_families_file_is_a_clear_settings_problem(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "AUTOPILOT_FAMILIES_FILE": str(tmp_path / "nope.json")})
    [problem] = raised.value.problems
    assert (problem.startswith(f"AUTOPILOT_FAMILIES_FILE={tmp_path / 'nope.json'} does not exist")
            and "absolute path" in problem)
    assert no_class_names(problem)


def test_a_relative_families_file_says_where_it_was_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "AUTOPILOT_FAMILIES_FILE": "families.json"})
    assert f"from the working directory {tmp_path}" in raised.value.problems[0]
    assert "AUTOPILOT_FAMILIES_FILE=families.json is a directory" not in raised.value.problems[0]
    (tmp_path / "families.json").mkdir()
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "AUTOPILOT_FAMILIES_FILE": "families.json"})
    assert "is a directory, not a file" in raised.value.problems[0]


def test_nothing_to_do_is_refused_at_start_up_but_watch_only_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = write_json(tmp_path / "families.json", {"families": {}})
    settings = load_settings({**BASE, "AUTOPILOT_FAMILIES_FILE": str(empty)})
    with pytest.raises(SettingsError) as raised:
        check_startup(settings)
    assert ("has no family and AUTOPILOT_BATCH_ACCOUNTS is empty, so the app would "
            "do nothing" in raised.value.problems[0])
    with pytest.raises(SettingsError):
        check_startup(load_settings(BASE))  # no families setting at all
    # watch-only
    check_startup(load_settings({**BASE, "AUTOPILOT_FAMILIES_FILE": str(empty), "AUTOPILOT_BATCH_ACCOUNTS": ACCOUNT}))
    check_startup(load_settings({**BASE, "AUTOPILOT_FAMILIES": json.dumps(GOOD_FAMILIES)}))
    # the Function App reads its settings through get_settings: that is where it refuses to start
    for name, value in {**BASE, "AUTOPILOT_FAMILIES_FILE": str(empty)}.items():
        monkeypatch.setenv(name, value)
    for name in ("AUTOPILOT_FAMILIES", "AUTOPILOT_BATCH_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    try:
        with pytest.raises(SettingsError):
            get_settings()
        monkeypatch.setenv("AUTOPILOT_BATCH_ACCOUNTS", ACCOUNT)
        assert get_settings().batch_accounts == (ACCOUNT,)
    finally:
        reset_settings_cache()


def test_invalid_families_name_the_file_and_say_fix_the_file(start_local: Any, tmp_path: Path,
                                                             clean_env: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    start_local(LOCKLESS)
    broken = json.loads(json.dumps(GOOD_FAMILIES))
    family = next(iter(broken["families"].values()))
    family["gallery"]["hyperVGeneration"] = "V3"
    path = write_json(tmp_path / "families.json", broken)
    clean_env.delenv("AUTOPILOT_FAMILIES", raising=False)
    clean_env.setenv("AUTOPILOT_FAMILIES_FILE", str(path))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert f"AUTOPILOT_FAMILIES_FILE ({path}) is not a valid families document" in err and "hyperVGeneration" in err
    assert (what_to_do(err).startswith("fix the file AUTOPILOT_FAMILIES_FILE names") and "--debug" not in err
            and no_class_names(err))
    # following it: the file fixed, the same command runs
    write_json(path, GOOD_FAMILIES)
    assert main(["status"]) in (0, 1)
    assert "error:" not in capsys.readouterr().err
    # inline, the message names the inline setting
    clean_env.delenv("AUTOPILOT_FAMILIES_FILE")
    clean_env.setenv("AUTOPILOT_FAMILIES", json.dumps(broken))
    assert main(["plan"]) == 2
    err = capsys.readouterr().err
    assert ("AUTOPILOT_FAMILIES is not a valid families document" in err
            and what_to_do(err).startswith("fix the AUTOPILOT_FAMILIES setting"))
    # following it: the command runs (the example's accounts
    clean_env.setenv("AUTOPILOT_FAMILIES", json.dumps(GOOD_FAMILIES))
    # are not in this subscription: exit 1 reports them)
    assert main(["plan"]) in (0, 1)
    assert "error:" not in capsys.readouterr().err


def test_a_missing_families_file_exits_2_from_the_cli(start_local: Any, tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    start_local(LOCKLESS)
    clean_env.setenv("AUTOPILOT_FAMILIES_FILE", str(tmp_path / "families.json"))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert (f"AUTOPILOT_FAMILIES_FILE={tmp_path / 'families.json'} does not exist" in err and no_class_names(err)
            and "--debug" not in err)
    # following it: the absolute path of a document, starting from infra/families.sample.json
    assert "give the absolute path of the families JSON document" in err and "infra/families.sample.json" in err
    sample = (ROOT / "infra" / "families.sample.json").read_text(encoding="utf-8").replace("<subscription-id>",
        "00000000-0000-4000-8000-000000000001")
    (tmp_path / "families.json").write_text(sample, encoding="utf-8")
    assert main(["status"]) in (0, 1)
    assert "error:" not in capsys.readouterr().err


# --- scenarios -----------------------------------------------------------------------------


def test_scenario_validation_reports_every_problem_in_one_pass() -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario({
            "name": "two-kinds", "duration": "1h",
            "batchAccounts": [{"name": "acct1"}],
            "timeline": [
                # schema: a negative quota
                {"at": "5m", "action": "setQuotas", "account": "acct1", "dedicatedCores": -5},
                {"at": "2h", "action": "mark", "text": "late"},  # meaning: after the end of the run
            ],
            "expect": [{"expect": "poolExists", "pool": "nowhere/p"}],  # meaning: an unknown account
        })
    joined = "\n".join(raised.value.problems)
    assert "$.timeline[0].dedicatedCores" in joined
    assert "$.timeline[1].at: 2h is after the end of the run (1h)" in joined
    assert "$.expect[0].pool: account 'nowhere' is not one of the scenario's batchAccounts" in joined


def test_scenario_validation_lists_more_than_twenty_schema_problems() -> None:
    timeline = [{"at": "5m", "action": "setQuotas", "account": "acct1", "dedicatedCores": -i - 1} for i in range(30)]
    with pytest.raises(ScenarioError) as raised:
        parse_scenario({"name": "many", "duration": "1h", "batchAccounts": [{"name": "acct1"}], "timeline": timeline})
    assert sum("dedicatedCores" in p for p in raised.value.problems) == 30


# --- files and Azurite ---------------------------------------------------------------------


def test_an_unwritable_report_path_is_one_line_and_exit_2_before_anything_runs(tmp_path: Path, azurite: str,
                                                                               capsys: pytest.CaptureFixture[
                                                                                   str]) -> None:
    scenario = write_json(tmp_path / "tiny.json", TINY)
    (tmp_path / "a-file").write_text("x")
    bad = tmp_path / "a-file" / "report.json"
    assert main(["simulate", str(scenario), "--report", str(bad), "--azurite", "not-even-parsed", "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith(f"error: --report {bad}: cannot write there") and no_class_names(err)
    assert "simulating" not in captured.out
    # following the advice: a path in a writable directory
    assert what_to_do(err).startswith("give --report a path in a directory you can write")
    good = tmp_path / "out" / "report.json"
    assert main(["simulate", str(scenario), "--report", str(good), "--azurite", azurite, "--quiet", "--no-chart"]) == 0
    assert json.loads(good.read_text())["scenario"]["name"] == "tiny"


def test_azurite_refusing_the_key_is_one_line_and_exit_2(tmp_path: Path, azurite: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    scenario = write_json(tmp_path / "tiny.json", TINY)
    wrong = re.sub(r"AccountKey=[^;]+", "AccountKey=" + "QUJD" * 22, azurite)
    assert main(["simulate", str(scenario), "--azurite", wrong, "--quiet", "--no-chart"]) == 2
    err = capsys.readouterr().err
    assert ("refused the credentials (403 AuthorizationFailure)" in err and no_class_names(err)
            and err.count("error:") == 1)
    assert "AccountName=devstoreaccount1" in what_to_do(err)
    # following it: the key Azurite prints
    assert main(["simulate", str(scenario), "--azurite", azurite, "--quiet", "--no-chart"]) == 0
    # a stopped Azurite (nothing listening)
    gone = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:9", azurite)
    assert main(["replay", str(ROOT / "tests" / "cli" / "data" / "eventgrid-snapshots.json"), "--azurite", gone]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the table storage --azurite names" in err and no_class_names(err)
    # following it: leave out --azurite, and the command starts its own
    assert main(["replay", str(ROOT / "tests" / "cli" / "data" / "eventgrid-snapshots.json")]) == 0


def test_sandbox_refuses_a_bad_speed_and_an_unwritable_env_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--speed", "0"]) == 2
    assert "--speed 0" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("x")
    assert main(["sandbox", "--env-file", str(tmp_path / "a-file" / "sandbox.env")]) == 2
    err = capsys.readouterr().err
    assert "--env-file" in err and "cannot write there" in err and no_class_names(err)


def test_status_with_a_wrong_storage_key_says_so(start_local: Any, azurite: str, clean_env: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    start_local(LOCKLESS)
    clean_env.setenv("AzureWebJobsStorage", re.sub(r"AccountKey=[^;]+", "AccountKey=" + "QUJD" * 22, azurite))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "table storage refused the credentials in AzureWebJobsStorage" in err and no_class_names(err)
    clean_env.setenv("AzureWebJobsStorage", azurite)  # the fix: the current key
    assert main(["status"]) in (0, 1)
    assert "error:" not in capsys.readouterr().err


# --- the command line itself ----------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    assert main(["--version"]) == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"autopilot {version}"


@pytest.mark.parametrize("command", ["simulate", "validate", "replay", "status", "plan", "reconcile"])
def test_every_subcommand_help_lists_its_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (re.search(r"Exit codes: 0 .+, 2 \w", out)
            and (command == "validate" or re.search(r"Exit codes: 0 .+, 1 .+, 2 ", out))), out


def test_an_unexpected_error_shows_no_class_name(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: Any) -> int:
        raise KeyError("the thing")

    parser = build_parser()
    args = parser.parse_args(["status"])
    args.handler = boom
    from autopilot import cli

    assert cli._run(args) == 1
    err = capsys.readouterr().err
    assert "unexpected error: 'the thing'" in err and no_class_names(err)


def test_failed_invocations_are_shown_without_class_names(tmp_path: Path, azurite: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from autopilot.messages import without_class_names
    from tests.cli.test_simulate import SMALL

    # Resource Manager fails every write for a while: the pipeline's image and version creates fail, and so do the
    # invocations that send them (alerts no longer fail an invocation: an unconfirmed one waits in the outbox).
    document = {**SMALL, "duration": "15m", "expect": [], "timeline": [
        SMALL["timeline"][0],
        {"at": "0m", "action": "addFault", "kind": "error", "rate": 1.0, "plane": "arm", "methods": ["PUT"],
         "status": 500, "maxCount": 200},
    ]}
    scenario = write_json(tmp_path / "faults.json", document)
    report_path = tmp_path / "report.json"
    assert main(["simulate", str(scenario), "--report", str(report_path), "--azurite", azurite, "--no-chart"]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    failed = [t["text"] for t in report["timeline"] if t["kind"] == "host"]
    assert failed, "the faults made some invocations fail"
    details = failed + [f["detail"] for v in report["invocations"].values() for f in v["failures"]]
    assert all(no_class_names(text) for text in details), details
    assert "function " in out and no_class_names(out.split("Timeline", 1)[1])
    # the helper keeps messages and Azure codes, and drops only exception classes
    assert without_class_names("HttpResponseError: (ScopeLocked) locked") == "(ScopeLocked) locked"
    assert without_class_names(
        "x: azure.core.exceptions.ResourceNotFoundError: (NotFound) gone") == "x: (NotFound) gone"
    assert (without_class_names("AllocationFailed: Code: InternalServerError") == "AllocationFailed: Code: "
            "InternalServerError")


@pytest.mark.parametrize("error, expected", [(FileNotFoundError(2, "No such file or directory", "/x/y"),
                                              "cannot use the file /x/y: No such file"),
                                             (ConnectionRefusedError(111, "Connection refused"),
                                              "stopped on a system error: Connection refused")])
def test_system_errors_are_one_line_and_exit_2(error: OSError, expected: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from autopilot import cli

    def fail(args: Any) -> int:
        raise error

    args = build_parser().parse_args(["status"])
    args.handler = fail
    assert cli._run(args) == 2
    err = capsys.readouterr().err
    assert expected in err and no_class_names(err) and err.count("\n") == 2
