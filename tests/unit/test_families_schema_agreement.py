"""docs/families.schema.json is the definition of the families document's shape; the runtime check
(shared/config/families.py) is held to it here: over many small edits of valid documents, the schema and the parser
accept and refuse the same documents. Where they differ, every problem the parser reports must be one of the cross-field
rules a JSON Schema cannot express (listed below). The CLI (`autopilot validate FAMILIES.json`) reports the schema's
problems in the scenario validator's words, then those rules.

Why not jsonschema in the Function App: the runtime check answers with per-key messages (close-match suggestions,
the node caps that apply) the tests pin, jsonschema and its native dependencies would join the cold start, and the
shape rules are the same either way - this test fails the day they are not.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config.families import FamilyConfigError, families_from_dict

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA = json.loads((DOCS / "families.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLE = json.loads((DOCS / "families.example.json").read_text(encoding="utf-8"))
ACCOUNT = ("/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/batch-rg/providers/Microsoft.Batch"
           "/batchAccounts/acct1")
RICH = {"families": {"app": {
    "gallery": {"resourceGroup": "images-rg", "name": "gal", "imageDefinition": "app", "osType": "Linux",
                "hyperVGeneration": "V2", "location": "westeurope"},
    "source": "snapshots", "snapshotResourceGroups": ["images-rg"],
    "allowedPrincipals": ["00000000-0000-4000-8000-000000000009"], "maxLiveVersions": 5, "canaryNodes": 2,
    "pinVersion": "1.2.3",
    "startTask": {"commandLine": "/bin/true", "waitForSuccess": True},
    "rollout": {"mode": "newPools", "retirePrevious": True, "retireAfter": "2h", "deleteRetiredPools": True},
    "retention": {"keepVersions": 3, "deleteSnapshots": False},
    "pools": [{"account": ACCOUNT, "vmSize": "Standard_D4ds_v5", "dedicated": 2, "spot": 1, "inboundNatPools": True,
               "schedule": [{"cron": "0 0 7 * * Monday-Friday", "dedicated": 8}]}],
}}}

# The rules only Python states (they relate several keys, or the document to Azure's limits per account).
CROSS_FIELD = ("gives pool id",)

VALUES = [None, True, False, 0, 1, -1, 2.5, 25, 31, 100_001, "", "x", "Standard_D4ds_v5", "westeurope", [], [1], {},
          {"a": "b"}, "1d", "30m", "managedImage", "snapshots", "newPools", "inPlace", "V2", "Linux", "{family}",
          "{family}-{version}", "TaskCompletion", "0 0 7 * * *", "nope nope", "00000000-0000-4000-8000-000000000001"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


@st.composite
def edited(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from([EXAMPLE, RICH])))
    for _ in range(draw(st.integers(1, 2))):
        if not _paths(doc):
            break
        path = draw(st.sampled_from(_paths(doc)))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["delete", "unknown", "set"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "unknown" and isinstance(parent, dict):
            parent["colour"] = "blue"
        else:
            parent[path[-1]] = draw(st.sampled_from(VALUES))
    return doc


def _runtime_problems(doc: dict[str, Any]) -> list[str]:
    try:
        families_from_dict(doc)
    except FamilyConfigError as err:
        return err.problems
    return []


def test_the_bases_are_valid_for_both() -> None:
    for doc in (EXAMPLE, RICH):
        assert not list(VALIDATOR.iter_errors(doc)) and not _runtime_problems(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited())
def test_schema_and_runtime_agree_on_every_edit(doc: dict[str, Any]) -> None:
    schema_errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    problems = _runtime_problems(doc)
    if schema_errors:
        assert problems, f"the schema refuses what the runtime accepts: {schema_errors}"
    else:
        assert all(any(rule in p for rule in CROSS_FIELD) for p in problems), (
            f"the runtime refuses what the schema accepts, and not for a cross-field rule: {problems}")
