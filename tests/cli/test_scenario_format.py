"""The scenario format's autoscale pools, ``stopResize`` action, gallery version ``endOfLifeDate`` and the
``resizeRequests`` check of the size a resize asked for: the example docs/scenarios.md shows, run as it stands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from autopilot.cli import main
from autopilot.scenario import ScenarioError, parse_scenario
from autopilot.simulate import Simulation
from tests.conftest import ROOT


def documented_example() -> dict[str, Any]:
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    m = re.search(r"## Autoscale pools, stopped resizes, end-of-life dates and resize sizes\s*```json\n(.*?)\n```",
                  text, re.DOTALL)
    assert m is not None
    return json.loads(m.group(1))


@pytest.mark.slow
def test_the_documented_example_runs_and_shows_each_feature(azurite: str, tls_material: Any) -> None:
    scenario = parse_scenario(documented_example(), source="docs/scenarios.md")
    with Simulation(scenario, azurite, tls=tls_material) as sim:
        # endOfLifeDate: the version as an SDK client reads it
        version = sim.local.operator.compute.gallery_image_versions.get(
            "images-rg", "autopilotGallery", "gpu-render", "1.0.0")
        assert version.publishing_profile.end_of_life_date.isoformat() == "2027-06-30T00:00:00+00:00"
        result = sim.run()
        report = result.report
        team = sim.local.pool("renderweu", "team")
        assert team.allocation_state == "steady" and 0 < team.current["dedicated"] < 200
    assert report["result"] == {"ok": True, "problems": []}, report["result"]
    assert len(report["expectations"]) == 9 and all(e["ok"] for e in report["expectations"])
    # the autoscale pool: sized by its formula, never by anyone's resize request
    auto = next(p for p in report["pools"] if p["id"] == "auto")
    assert auto["current"] == {"dedicated": 2, "spot": 0} and auto["resizeRequests"] == 0
    # stopResize: the person's action, then a ResizeStopped the app left alone
    [stop] = [a for a in report["actions"] if a["action"] == "stopResize"]
    assert stop["outcome"] == "ok" and stop["by"] == "olivia@contoso.com" and stop["target"] == "renderweu/team"
    assert [f["errors"].split(" (")[0] for f in report["resizeFailures"]
            if f["pool"] == "renderweu/team"] == ["ResizeStopped"]
    # resizeRequests record the size each asked for
    asked = [(r["dedicated"], r["spot"]) for r in report["resizeRequests"] if r["pool"] == "renderweu/big"]
    assert asked == [(10, 0), (20, 0), (25, 0)]


def test_a_wrong_size_fails_the_expectation_and_says_what_was_asked(tmp_path: Path, azurite: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    document = documented_example()
    document["expect"] = [{"expect": "resizeRequests", "pool": "renderweu/big", "dedicated": 30, "count": 1}]
    document["duration"] = "10m"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert main(["simulate", str(path), "--quiet", "--no-chart", "--azurite", azurite]) == 1
    out = capsys.readouterr().out
    assert ("✗ resize requests for renderweu/big asking for 30 dedicated by the app: 0 (wanted exactly 1): " in out
            and " 10/0" in out)


def test_the_new_keys_are_validated() -> None:
    document = documented_example()
    document["timeline"].append({"at": "5m", "action": "stopResize"})  # no pool
    document["galleries"][0]["versions"][0]["endOfLifeDate"] = "next summer"
    document["pools"][0]["autoScale"] = {"evaluationInterval": "5m"}  # no formula
    document["expect"].append({"expect": "resizeRequests", "pool": "renderweu/big", "dedicated": -1, "count": 1})
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(document)
    joined = "\n".join(raised.value.problems)
    for path in ("$.timeline[1]", "$.galleries[0].versions[0].endOfLifeDate", "$.pools[0].autoScale",
                 "$.expect[9].dedicated"):
        assert path in joined, joined
