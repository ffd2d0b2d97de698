"""`autopilot validate FAMILIES.json`: the schema's problems in the scenario validator's words, then the rules only the
app states; the fix text (the schema describes every key) leads to a valid file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from autopilot.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = json.loads((DOCS / "families.example.json").read_text(encoding="utf-8"))


def write(path: Path, document: object) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_the_documented_example_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", write(tmp_path / "families.json", EXAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out


def test_a_shape_problem_names_the_path_and_the_fix_leads_to_a_valid_file(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = copy.deepcopy(EXAMPLE)
    bad["families"]["gpu"]["pools"][0]["dedicated"] = -4
    bad["families"]["gpu"]["gallery"]["colour"] = "blue"
    assert main(["validate", write(tmp_path / "families.json", bad)]) == 2
    err = capsys.readouterr().err
    assert "is not a valid families document" in err and "docs/families.schema.json describes every key" in err
    assert "$.families.gpu.pools[0].dedicated" in err and "$.families.gpu.gallery" in err and "colour" in err
    # Following the fix: the schema says dedicated is a count from 0 and lists the gallery's keys.
    bad["families"]["gpu"]["pools"][0]["dedicated"] = 4
    del bad["families"]["gpu"]["gallery"]["colour"]
    assert main(["validate", write(tmp_path / "families.json", bad)]) == 0


def test_a_cross_field_rule_comes_from_the_apps_parser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clash = copy.deepcopy(EXAMPLE)
    clash["families"]["gpu"]["pools"][1]["poolId"] = "{family}-{versionDashed}"  # the same id as pools[0]
    assert main(["validate", write(tmp_path / "families.json", clash)]) == 2
    assert "families.gpu.pools[1].poolId" in capsys.readouterr().err
