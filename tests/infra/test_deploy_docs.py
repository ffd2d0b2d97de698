"""docs/deploy.md says what infra/ does: the state tables, the tuning settings, the families file, the roles."""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator

from shared.config.families import parse_families
from tests.infra import bicep

DEPLOY = (bicep.ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


def test_the_state_tables_named_are_the_ones_deployed() -> None:
    deployed = bicep.literal(bicep.parse("main.bicep"), "stateTables")
    row = next(line for line in DEPLOY.splitlines() if line.startswith("| Storage account"))
    named = re.findall(r"`(?:<prefix>)?([A-Z][A-Za-z]+)`", row.split("tables", 1)[1])
    assert named == deployed


def test_every_tuning_setting_is_in_the_deploy_guide() -> None:
    tuning = bicep.object_keys(bicep.parse("modules/functionapp.bicep"), "var", "tuningDefaults")
    wildcards = re.findall(r"`(AUTOPILOT_[A-Z_]*)\*`", DEPLOY)  # e.g. `AUTOPILOT_BACKOFF_*`
    for name in tuning:
        assert f"`{name}`" in DEPLOY or any(name.startswith(w) for w in wildcards), ("docs/deploy.md does not "
                                                                                     f"mention {name}")
    assert "AUTOPILOT_WATCH_FULL_SCAN_MINUTES" in DEPLOY


def test_the_families_file_example_is_absolute_and_the_sample_is_valid() -> None:
    example = re.search(r"azd env set AUTOPILOT_FAMILIES_FILE (\S+)", DEPLOY)
    assert example is not None and example.group(1).startswith("/"), "the deploy example must use an absolute path"
    assert "infra/families.sample.json" in DEPLOY
    sample = (bicep.INFRA / "families.sample.json").read_text(encoding="utf-8")
    assert parse_families(sample).families  # the app's own parser accepts it
    schema = json.loads((bicep.ROOT / "docs" / "families.schema.json").read_text(encoding="utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(json.loads(sample))) == []


def test_no_document_claims_operation_status_reads() -> None:
    roles = json.loads((bicep.INFRA / "roles.json").read_text(encoding="utf-8"))["roles"]
    for role in roles:
        assert not any("operations" in a.lower() for a in role["actions"])
        assert "status of compute operations" not in role["description"], role["name"]
    assert "operation reads" not in bicep.read("main.bicep")
