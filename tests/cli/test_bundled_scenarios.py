"""Every bundled scenario runs, and what it claims holds (its expectations are checked by the run itself)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autopilot.cli import main
from autopilot.report import validate_report
from tests.conftest import BUNDLED_SCENARIOS as BUNDLED
from tests.conftest import ROOT


def test_the_four_documented_scenarios_are_bundled() -> None:
    assert {p.stem for p in BUNDLED} >= {"demo", "capacity-crunch", "quota", "image-deleted"}


@pytest.mark.slow
@pytest.mark.xdist_group("bundled")  # one worker runs the bundled scenarios once (session fixture)
@pytest.mark.parametrize("name", [p.stem for p in BUNDLED])
def test_bundled_scenario_runs_and_its_expectations_hold(name: str, bundled_runs: dict[str, dict]) -> None:
    run = bundled_runs[name]
    report = run["report"]
    assert run["code"] == 0, run["output"]
    assert validate_report(report) == []
    assert report["result"]["ok"] and report["expectations"] and all(e["ok"] for e in report["expectations"])


@pytest.mark.slow
def test_the_example_in_docs_scenarios_md_runs_as_documented(tmp_path: Path, azurite: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    m = re.search(r"## An example\s*```json\n(.*?)\n```", text, re.DOTALL)
    assert m is not None
    scenario = tmp_path / "example.json"
    scenario.write_text(m.group(1), encoding="utf-8")
    (tmp_path / "scenario.schema.json").write_text((ROOT / "scenarios" / "scenario.schema.json").read_text())
    code = main(["simulate", str(scenario), "--report", str(tmp_path / "report.json"), "--azurite", azurite, "--quiet",
                 "--no-chart"])
    assert code == 0, capsys.readouterr().out
