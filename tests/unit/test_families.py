"""The families configuration: validated as a whole, every problem reported with its JSON path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.families import (
    FamiliesConfig,
    FamilyConfigError,
    GalleryConfig,
    PoolSpec,
    ReplicaPolicy,
    families_from_dict,
    parse_families,
)
from shared.pipeline.image_rules import NodeLimits
from shared.watch.schedules import ScheduleEntry

DOCS = Path(__file__).resolve().parents[2] / "docs"
SUB = "00000000-0000-4000-8000-000000000001"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct1"


def minimal() -> dict[str, Any]:
    return {"families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": "gal", "imageDefinition": "gpu", "osType": "Linux",
                    "hyperVGeneration": "V2",
                    "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "pools": [{"account": ACCOUNT, "vmSize": "Standard_D4ds_v5", "dedicated": 2}],
    }}}


def problems(document: object) -> list[str]:
    with pytest.raises(FamilyConfigError) as info:
        families_from_dict(document)
    return info.value.problems


def with_change(path: list[str | int], value: object, base: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(base or minimal())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


POOL = ["families", "gpu", "pools", 0]
GALLERY = ["families", "gpu", "gallery"]


def test_minimal_family_gets_documented_defaults() -> None:
    config = families_from_dict(minimal())
    gpu = config.get("GPU")
    assert gpu is not None and config.names == ("gpu",) and len(config) == 1
    assert gpu.gallery == GalleryConfig(resource_group="images-rg", name="gal", image_definition="gpu", os_type="Linux",
                                        hyper_v_generation="V2", location="westeurope", os_state="Generalized",
                                        subscription=None)
    assert (gpu.source, gpu.keep_managed_image, gpu.legacy_managed_image_pools) == ("managedImage", False, False)
    assert gpu.replicas == ReplicaPolicy(nodes_per_replica=300, minimum=1, storage_account_type="Standard_LRS")
    assert gpu.node_limits == NodeLimits()
    assert gpu.pools == (PoolSpec(account=ACCOUNT, vm_size="Standard_D4ds_v5", pool_id_template="{family}-{version}",
                                  dedicated=2, spot=0,
                                  resize_timeout_minutes=25, node_deallocation_option="Requeue"),)
    assert gpu.pools[0].pool_id("gpu", "1.4.0") == "gpu-1-4-0"
    assert list(config) == [gpu]
    assert config.families["gpu"] is gpu


def test_empty_setting_means_no_families() -> None:
    assert parse_families(None) == FamiliesConfig()
    assert len(parse_families("  ")) == 0


def test_the_example_in_the_docs_is_valid_for_the_parser_and_the_schema() -> None:
    text = (DOCS / "families.example.json").read_text()
    schema = json.loads((DOCS / "families.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(text))
    config = parse_families(text)
    gpu, win = config.get("gpu"), config.get("win-build")
    assert gpu is not None and win is not None
    assert gpu.pools[0].schedule == (ScheduleEntry("0 0 7 * * MON-FRI", 40, 0), ScheduleEntry("0 0 20 * * *", 4, 0))
    assert (gpu.pools[0].peak_dedicated, gpu.pools[1].peak_spot) == (40, 200)
    assert gpu.pools[0].metadata_dict() == {"team": "render", "costCenter": "4711"}
    assert win.source == "snapshots" and win.replicas == ReplicaPolicy(200, 2, "Standard_ZRS")
    assert win.node_limits == NodeLimits(dedicated=2000, spot=1000, inbound_nat_dedicated=800, inbound_nat_spot=500)
    assert win.pools[0].resize_timeout_minutes == 45 and win.pools[0].inbound_nat_pools


@pytest.mark.parametrize(("path", "value"), [
    (["families", "gpu", "gallery", "osState"], "Specialized"),
    (["families", "gpu", "pools", 0, "resizeTimeoutMinutes"], 45),
    (["families", "gpu", "pools", 0, "colour"], "blue"),
    (["families", "gpu", "pools", 0, "account"],
     "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z"),
    (["families", "gpu", "pools", 0, "poolId"], "{family}"),
    (["families", "gpu", "pools", 0, "metadata"], {"autopilot.family": "x"}),
    (["families", "gpu", "pools", 0, "dedicated"], 100001),
    (["families", "gpu", "legacyManagedImagePools"], True),
    (["families", "gpu", "source"], "vhd"),
    (["families", "gpu", "replicas"], {"nodesPerReplica": 500}),
    (["families", "gpu", "gallery", "name"], "my-gallery"),
])
def test_schema_and_parser_refuse_the_same_documents(path: list[str | int], value: object) -> None:
    doc = with_change(path, value)
    schema = json.loads((DOCS / "families.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc)), "the schema should refuse this too"
    assert problems(doc)


def test_resize_timeout_outside_the_band_names_the_path_and_the_override() -> None:
    doc = minimal()
    doc["families"]["gpu"]["pools"].append({"account": ACCOUNT, "vmSize": "Standard_D4ds_v5",
                                            "poolId": "{family}-{version}-b",
                                            "resizeTimeoutMinutes": 45})
    [problem] = problems(doc)
    assert problem.startswith("families.gpu.pools[1].resizeTimeoutMinutes: 45 is outside 20–30; set "
                              "allowResizeTimeoutOutsideBand: true to override")
    doc["families"]["gpu"]["pools"][1]["allowResizeTimeoutOutsideBand"] = True
    assert families_from_dict(doc).families["gpu"].pools[1].resize_timeout_minutes == 45


def test_every_problem_is_reported_at_once() -> None:
    doc = minimal()
    fam = doc["families"]["gpu"]
    fam["gallery"]["osType"] = "Solaris"
    fam["gallery"]["osState"] = "Specialized"
    del fam["gallery"]["location"]
    fam["pools"][0]["vmSize"] = ""
    fam["pools"][0]["spot"] = -1
    fam["pools"].append("not a pool")
    fam["pools"].append({"account": ACCOUNT, "vmSize": "Standard_D2_v3",
                         "schedule": [{"cron": "0 0 25 * * *", "dedicated": 1}, {"cron": "x"}]})
    fam["nodeLimits"] = {"dedicated": 3000}
    found = problems(doc)
    paths = [p.split(":", 1)[0] for p in found]
    assert paths == [
        "families.gpu.gallery.location",
        "families.gpu.gallery.osType",
        "families.gpu.gallery.osState",
        "families.gpu.nodeLimits.dedicated",
        "families.gpu.pools[0].vmSize",
        "families.gpu.pools[0].spot",
        "families.gpu.pools[1]",
        "families.gpu.pools[2].schedule[0].cron",
        "families.gpu.pools[2].schedule[1].cron",
    ]
    text = "\n".join(found)
    assert "generalized" in text and "Solaris" in text and "-1 is outside 0–1000" in text and "field 'hour'" in text


def test_specialized_images_are_refused_with_the_reason() -> None:
    [problem] = problems(with_change([*GALLERY, "osState"], "specialized"))
    assert "Batch pools" in problem and "generalize" in problem


def test_unknown_keys_suggest_the_close_match() -> None:
    [problem] = problems(with_change([*POOL, "resizeTimeoutMinute"], 25))
    assert problem == "families.gpu.pools[0].resizeTimeoutMinute: unknown key; did you mean 'resizeTimeoutMinutes'?"


def test_invalid_json_and_duplicate_keys() -> None:
    with pytest.raises(FamilyConfigError, match=r"not valid JSON.*line 1"):
        parse_families('{"families": ')
    with pytest.raises(FamilyConfigError, match="appears twice"):
        parse_families('{"families": {}, "families": {}}')


def test_family_names_are_folded_and_must_be_unique_without_case() -> None:
    doc = minimal()
    doc["families"]["GPU"] = copy.deepcopy(doc["families"]["gpu"])
    [problem] = problems(doc)
    assert problem.startswith("families.GPU:") and "compared without case" in problem
    [bad] = problems({"families": {"gpu render": minimal()["families"]["gpu"]}})
    assert bad.startswith('families["gpu render"]:')


def test_enum_values_accept_any_case_and_come_out_canonical() -> None:
    doc = with_change([*GALLERY, "osType"], "linux")
    doc = with_change([*POOL, "nodeDeallocationOption"], "taskcompletion", doc)
    gpu = families_from_dict(doc).families["gpu"]
    assert (gpu.gallery.os_type, gpu.pools[0].node_deallocation_option) == ("Linux", "TaskCompletion")


def test_source_snapshots_needs_no_image_resource_group_but_refuses_keep_managed_image() -> None:
    doc = minimal()
    del doc["families"]["gpu"]["imageResourceGroup"]
    assert problems(doc) == ["families.gpu.imageResourceGroup: is required with source \"managedImage\" (the default): "
                             "it is where the managed images are created"]
    doc["families"]["gpu"]["source"] = "snapshots"
    # Without an image resource group, the family must say where its snapshots may live (issue 13: opt-in scope).
    assert problems(doc) == ["families.gpu.snapshotResourceGroups: is required when the family has no "
                             "imageResourceGroup: it names the "
                             "resource group(s) where the family's snapshots may live (the app ignores snapshots "
                             "anywhere else)"]
    doc["families"]["gpu"]["snapshotResourceGroups"] = ["images-rg"]
    assert families_from_dict(doc).families["gpu"].source == "snapshots"
    assert families_from_dict(doc).families["gpu"].snapshot_groups == ("images-rg",)
    doc["families"]["gpu"]["keepManagedImage"] = True
    assert "has no effect" in problems(doc)[0]


def test_managed_image_pools_are_refused_saying_why() -> None:
    """Batch accepts managed images as a pool image only up to API version 2019-08-01; the app speaks 2025-06-01."""
    [problem] = problems(with_change(["families", "gpu", "legacyManagedImagePools"], True))
    assert problem.startswith("families.gpu.legacyManagedImagePools: managed-image pools cannot be created")
    assert "2019-08-01" in problem and "2025-06-01" in problem and "remove the key" in problem
    # Following the fix: the key removed (or false), the same family is accepted and its pools use the gallery version.
    gpu = families_from_dict(with_change(["families", "gpu", "legacyManagedImagePools"], False)).families["gpu"]
    assert not gpu.legacy_managed_image_pools


def test_gallery_pools_accept_sizes_past_the_managed_image_cap() -> None:
    doc = with_change([*POOL, "spot"], 1200, with_change([*POOL, "dedicated"], 3000))
    pool = families_from_dict(doc).families["gpu"].pools[0]
    assert (pool.dedicated, pool.spot) == (3000, 1200)
    schema = json.loads((DOCS / "families.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc)) == []


def test_pool_ids_that_clash_in_one_account_are_refused_across_families() -> None:
    doc = minimal()
    doc["families"]["gpu"]["pools"].append({"account": ACCOUNT.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"),
                                            "vmSize": "Standard_D2s_v3",
                                            "poolId": "{family}-{versionDashed}"})
    [problem] = problems(doc)
    assert problem.startswith("families.gpu.pools[1].poolId: gives pool id 'gpu-1-0-0' in the same Batch account as "
                              "families.gpu.pools[0].poolId")
    other = minimal()
    other["families"]["cpu"] = copy.deepcopy(other["families"]["gpu"])
    for fam in other["families"].values():
        fam["pools"][0]["poolId"] = "shared-{version}"
    assert len(problems(other)) == 1


def test_node_limit_overrides_only_lower_and_nat_limits_follow() -> None:
    doc = with_change(["families", "gpu", "nodeLimits"], {"dedicated": 600})
    assert families_from_dict(doc).families["gpu"].node_limits == NodeLimits(dedicated=600, spot=1000,
                                                                             inbound_nat_dedicated=600,
                                                                              inbound_nat_spot=500)
    assert problems(with_change(["families", "gpu", "nodeLimits"], {"spot": 1001}))


@pytest.mark.parametrize("value", [True, 2.5, "3", None])
def test_counts_must_be_whole_numbers(value: object) -> None:
    [problem] = problems(with_change([*POOL, "dedicated"], value))
    assert problem.startswith("families.gpu.pools[0].dedicated:") and "not a whole number" in problem


def test_a_float_with_no_fraction_counts_as_a_whole_number() -> None:
    assert families_from_dict(with_change([*POOL, "dedicated"], 4.0)).families["gpu"].pools[0].dedicated == 4


@pytest.mark.parametrize("document", [[], "families", {"families": []}, {"families": {"gpu": []}}, {}])
def test_wrong_shapes_are_problems_not_crashes(document: object) -> None:
    assert problems(document)


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(FamilyConfigError) as info:
        families_from_dict(with_change([*POOL, "spot"], 500000))
    assert ("AUTOPILOT_FAMILIES" in str(info.value)
            and "families.gpu.pools[0].spot: 500000 is outside 0–100000" in str(info.value))


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 3000), st.floats(), st.text(max_size=12),
                              st.sampled_from(["Linux", "V2", "westeurope", ACCOUNT, "{family}-{version}",
                                               "0 0 7 * * *", "snapshots"])),
                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=10), c, max_size=3)),
                    max_leaves=15)
KEYS = ["gallery", "pools", "source", "imageResourceGroup", "keepManagedImage", "legacyManagedImagePools", "replicas",
        "nodeLimits",
        "resourceGroup", "name", "imageDefinition", "osType", "hyperVGeneration", "location", "account", "vmSize",
        "dedicated", "spot",
        "resizeTimeoutMinutes", "schedule", "metadata", "poolId", "cron"]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_document_is_a_config_or_a_list_of_problems(data: st.DataObject) -> None:
    doc = minimal()
    family = doc["families"]["gpu"]
    for _ in range(data.draw(st.integers(0, 4))):
        pools = family.get("pools")
        targets = [t for t in (family, family.get("gallery"), pools[0] if isinstance(pools, list) and pools else None)
                   if isinstance(t, dict)]
        target = data.draw(st.sampled_from(targets))
        target[data.draw(st.sampled_from(KEYS))] = data.draw(JSON)
    try:
        config = families_from_dict(doc)
    except FamilyConfigError as e:
        assert e.problems and all(": " in p for p in e.problems)
    else:
        assert config.get("gpu") is not None


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_arbitrary_json_is_a_config_or_a_list_of_problems(doc: object) -> None:
    try:
        families_from_dict(doc)
    except FamilyConfigError as e:
        assert e.problems
