"""The families' rollout, retention and pinVersion keys: parsed, checked against the schema, and inert when absent."""

from __future__ import annotations

import json
from datetime import timedelta

import jsonschema
import pytest

from shared.config.families import RetentionPolicy, RolloutPolicy, families_from_dict
from shared.config.family_parts import parse_span
from tests.unit.test_families import DOCS, POOL, minimal, problems, with_change

FAMILY = ["families", "gpu"]


def schema_errors(doc: object) -> list[str]:
    schema = json.loads((DOCS / "families.schema.json").read_text())
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]


def test_without_the_new_keys_nothing_changes_from_the_original_behaviour() -> None:
    gpu = families_from_dict(minimal()).get("gpu")
    assert gpu is not None
    # newPools, nothing retired, nothing deleted, nothing pinned: each version gets its own pool id as before.
    assert gpu.rollout == RolloutPolicy() and gpu.rollout.mode == "newPools" and not gpu.rollout.retire_previous
    assert not gpu.rollout.delete_retired_pools and gpu.retention is None and gpu.pin_version is None
    assert gpu.pools[0].pool_id("gpu", "1.4.0") == "gpu-1-4-0" and gpu.pools[0].pool_id("gpu", "1.5.0") == "gpu-1-5-0"


def test_new_pools_rollout_is_parsed_with_its_durations() -> None:
    doc = with_change([*FAMILY, "rollout"],
                      {"mode": "newPools", "retirePrevious": True, "retireAfter": "2h", "deleteRetiredPools": True})
    assert not schema_errors(doc)
    gpu = families_from_dict(doc).get("gpu")
    assert gpu is not None and gpu.rollout == RolloutPolicy(mode="newPools", retire_previous=True,
                                                            retire_after=timedelta(hours=2),
                                                            delete_retired_pools=True)


def test_in_place_rollout_keeps_one_pool_id_for_every_version() -> None:
    doc = with_change([*FAMILY, "rollout"], {"mode": "inPlace", "applyWhen": "drain", "maxWait": "1d12h"})
    doc = with_change([*POOL, "poolId"], "{family}-render", doc)
    assert not schema_errors(doc)
    gpu = families_from_dict(doc).get("gpu")
    assert gpu is not None and gpu.rollout == RolloutPolicy(mode="inPlace", apply_when="drain",
                                                            max_wait=timedelta(days=1, hours=12))
    assert gpu.pools[0].pool_id("gpu", "1.0.0") == gpu.pools[0].pool_id("gpu", "2.3.4") == "gpu-render"


def test_in_place_defaults_the_pool_id_to_the_family_and_refuses_a_version_placeholder() -> None:
    doc = with_change([*FAMILY, "rollout"], {"mode": "inPlace"})
    gpu = families_from_dict(doc).get("gpu")
    assert gpu is not None and gpu.pools[0].pool_id("gpu", "1.0.0") == "gpu"
    assert gpu.rollout.apply_when == "nextZero" and gpu.rollout.max_wait == timedelta(days=7)
    bad = with_change([*POOL, "poolId"], "{family}-{version}", doc)
    assert schema_errors(bad)
    assert any("families.gpu.pools[0].poolId" in p and "must not contain" in p for p in problems(bad))


def test_new_pools_still_needs_the_version_in_the_pool_id() -> None:
    doc = with_change([*FAMILY, "rollout"], {"mode": "newPools"})
    doc = with_change([*POOL, "poolId"], "{family}", doc)
    assert schema_errors(doc) and any("must contain {version}" in p for p in problems(doc))


def test_retention_and_pin_are_parsed() -> None:
    doc = with_change([*FAMILY, "retention"], {"keepVersions": 2, "deleteSnapshots": True})
    doc = with_change([*FAMILY, "pinVersion"], "1.1.0", doc)
    assert not schema_errors(doc)
    gpu = families_from_dict(doc).get("gpu")
    assert (gpu is not None and gpu.retention == RetentionPolicy(keep_versions=2, delete_snapshots=True)
            and gpu.pin_version == "1.1.0")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("rollout", {"mode": "blueGreen"}, "rollout.mode"),
    ("rollout", {"retirePrevious": True}, "rollout.mode: is required"),
    ("rollout", {"mode": "newPools", "applyWhen": "drain"}, "rollout.applyWhen: unknown key"),
    ("rollout", {"mode": "inPlace", "retirePrevious": True}, "rollout.retirePrevious: unknown key"),
    ("rollout", {"mode": "newPools", "retireAfter": "two hours"}, "rollout.retireAfter"),
    ("rollout", {"mode": "inPlace", "maxWait": 7}, "rollout.maxWait"),
    ("rollout", {"mode": "inPlace", "applyWhen": "now"}, "rollout.applyWhen"),
    ("rollout", {"mode": "newPools", "deleteRetiredPools": True}, "needs retirePrevious"),
    ("retention", {"keepVersions": 0}, "retention.keepVersions"),
    ("retention", {"deleteSnapshots": True}, "retention.keepVersions: is required"),
    ("retention", {"keepVersions": 2, "keep": 1}, "retention.keep: unknown key"),
    ("pinVersion", "1.01.0", "pinVersion"),
    ("pinVersion", "latest", "pinVersion"),
])
def test_schema_and_parser_refuse_the_same_rollout_mistakes(key: str, value: object, expected: str) -> None:
    doc = with_change([*FAMILY, key], value)
    if key == "rollout" and isinstance(value, dict) and value.get("mode") == "inPlace":
        doc = with_change([*POOL, "poolId"], "{family}", doc)
    assert schema_errors(doc), "the schema should refuse this too"
    found = problems(doc)
    assert any(expected in p for p in found), found


def test_durations() -> None:
    assert parse_span("30m") == timedelta(minutes=30) and parse_span("7d") == timedelta(days=7)
    with pytest.raises(ValueError):
        parse_span("")
