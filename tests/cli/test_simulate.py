"""``autopilot simulate``: a small scenario end to end through ``main``, its report (validated), chart and exit
codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopilot.cli import main
from autopilot.report import REPORT_SCHEMA, validate_report
from tests.cli.conftest import write_json

ACCOUNT_POOLS = "renderweu/gpu-1-0-0"
VERSION = ("/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery/images/gpu-render"
           "/versions/1.0.0")

SMALL = {
    "name": "small",
    "description": "one snapshot set, one small pool, one blocked delete",
    "seed": 2,
    "duration": "50m",
    "capacity": [{"region": "westeurope", "dedicatedFailureRate": 0, "spotFailureRate": 0}],
    "batchAccounts": [{"name": "renderweu"}],
    "galleries": [{"name": "autopilotGallery"}],
    "families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": "autopilotGallery", "imageDefinition": "gpu-render",
                    "osType": "Linux",
                    "hyperVGeneration": "V2", "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "pools": [{"account": "renderweu", "vmSize": "Standard_D4ds_v5", "dedicated": 6, "spot": 2}]}},
    "timeline": [
        {"at": "0m", "action": "createSnapshotSet", "family": "gpu", "version": "1.0.0"},
        {"at": "30m", "action": "deleteResource", "resource": VERSION, "as": "mallory@contoso.com",
         "expectOutcome": "ScopeLocked"},
        {"at": "40m", "action": "mark", "text": "the end is near"},
    ],
    "expect": [
        {"expect": "poolAtTarget", "pool": ACCOUNT_POOLS, "by": "30m"},
        {"expect": "alerts", "type": "PoolsCreated", "count": 1},
        {"expect": "alerts", "type": "DeleteBlocked", "count": 1},
        {"expect": "alerts", "type": "DeleteBlocked", "diagnosisContains": "mallory@contoso.com tried to delete",
         "count": 1},
        {"expect": "alerts", "diagnosisContains": "lock is released automatically", "count": 1},
        {"expect": "alerts", "fixContains": "no such words", "count": 0},
        {"expect": "alerts", "codes": ["AllocationFailed"], "count": 0},
        {"expect": "locks", "owner": "app", "count": 2},
        {"expect": "imageExists", "image": VERSION},
    ],
}


def run(tmp_path: Path, azurite: str, document: dict, *extra: str) -> tuple[int, dict]:
    scenario = write_json(tmp_path / "scenario.json", document)
    report_path = tmp_path / "out" / "report.json"
    code = main(["simulate", str(scenario), "--report", str(report_path), "--azurite", azurite, *extra])
    return code, json.loads(report_path.read_text())


def test_simulate_writes_a_valid_report_and_charts(tmp_path: Path, azurite: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(tmp_path, azurite, SMALL)
    out = capsys.readouterr().out
    assert code == 0, out
    assert validate_report(report) == []
    assert report["result"] == {"ok": True, "problems": []}
    assert report["scenario"]["name"] == "small" and report["scenario"]["seed"] == 2
    assert (report["virtualTime"]["start"] == "2026-11-02T06:00:00Z"
            and report["virtualTime"]["end"] == "2026-11-02T06:50:00Z")
    pool = next(p for p in report["pools"] if f"{p['account']}/{p['id']}" == ACCOUNT_POOLS)
    assert (pool["desired"] == {"dedicated": 6, "spot": 2} == pool["current"] and pool["atTarget"]
            and pool["targetReachedAt"])
    assert pool["managed"] and pool["family"] == "gpu" and pool["version"] == "1.0.0"
    version = next(i for i in report["images"] if i["kind"] == "galleryImageVersion")
    assert version["provisioningState"] == "Succeeded" and version["pools"] == [ACCOUNT_POOLS] and version["locks"] == [
        {"name": "batch-image-autopilot", "owner": "app"}]
    assert {lk["owner"] for lk in report["locks"]} == {"app"}
    assert [a["type"] for a in report["alerts"]] == ["PoolsCreated", "DeleteBlocked"]
    assert (report["actions"][1]["outcome"] == "ScopeLocked" and report["actions"][1]["ok"]
            and report["actions"][1]["by"] == "mallory@contoso.com")
    assert (report["invocations"]["image_pipeline"]["ok"] >= 3
            and all(v["failed"] == 0 for v in report["invocations"].values()))
    assert report["events"]["delivered"] > 0 and report["events"]["deadLettered"] == 0
    assert report["requests"]["byAction"]["Microsoft.Compute/images/write"] == 1
    assert any(t["kind"] == "mark" for t in report["timeline"])
    assert all(e["ok"] for e in report["expectations"]) and len(report["expectations"]) == 9
    # charts: a real PNG and a self-contained HTML page
    png, page = Path(report["charts"]["png"]), Path(report["charts"]["html"])
    assert (png.parent == tmp_path / "out" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            and png.stat().st_size > 10_000)
    html = page.read_text()
    assert "<svg" in html and "small" in html and "DeleteBlocked" in html
    assert "<script" not in html and "<link" not in html and 'src="http' not in html and "@import" not in html
    # every alert carries its diagnosis and fix: in the report's alerts and timeline, on the HTML page, on the console
    blocked = next(a for a in report["alerts"] if a["type"] == "DeleteBlocked")
    assert ("mallory@contoso.com tried to delete" in blocked["diagnosis"]
            and "lock is released automatically" in blocked["fix"])
    entry = next(t for t in report["timeline"] if t["kind"] == "alert" and t["text"].startswith("DeleteBlocked"))
    assert (entry["diagnosis"], entry["fix"]) == (blocked["diagnosis"], blocked["fix"])
    assert all(t["diagnosis"] is None and t["fix"] is None for t in report["timeline"] if t["kind"] != "alert")
    assert ("<b>Diagnosis:</b> mallory@contoso.com tried to delete" in html
            and "<b>Fix:</b> delete or move the pools" in html)
    assert ("diagnosis: mallory@contoso.com tried to delete" in out
            and "fix: delete or move the pools to another image first" in out)
    # the console says where everything is, and shows the timeline
    assert str(tmp_path / "out" / "report.json") in out and str(png) in out and str(page) in out
    assert "Timeline" in out and "deleteResource" in out and "OK: small" in out


def test_simulate_exits_1_when_an_expectation_fails(tmp_path: Path, azurite: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    document = {**SMALL, "duration": "20m", "timeline": SMALL["timeline"][:1],
                "expect": [{"expect": "alerts", "type": "ResizeGaveUp", "min": 1},
                           {"expect": "poolExists", "pool": "renderweu/nope"}]}
    code, report = run(tmp_path, azurite, document, "--quiet", "--no-chart")
    out = capsys.readouterr().out
    assert code == 1
    assert validate_report(report) == []
    assert not report["result"]["ok"] and len(report["result"]["problems"]) == 2
    assert ("FAILED" in out and "✗ ResizeGaveUp alerts: 0 (wanted at least 1)" in out
            and "✗ pool renderweu/nope exists at the end" in out)
    assert report["charts"] == {"png": None, "html": None}
    assert "Timeline" not in out  # --quiet


def test_an_unexpected_action_outcome_fails_the_run(tmp_path: Path, azurite: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    document = {**SMALL, "duration": "15m", "expect": [],
                "timeline": [
                    {"at": "0m", "action": "createSnapshotSet", "family": "gpu", "version": "1.0.0"},
                    # the snapshots are not locked yet (no pool uses them): this delete succeeds, so expecting
                    # ScopeLocked fails
                    {"at": "1m", "action": "deleteResource",
                     "resource": "/resourceGroups/images-rg/providers/Microsoft.Compute/disks/gpu-1-0-0-os-disk",
                     "expectOutcome": "ScopeLocked"},
                    # a knob on a pool that does not exist is a scenario problem, not a crash
                    {"at": "2m", "action": "injectPoolFailure", "pool": "renderweu/missing", "kind": "quota"},
                ]}
    code, report = run(tmp_path, azurite, document, "--quiet", "--no-chart")
    assert code == 1
    actions = report["actions"]
    assert actions[1]["outcome"] == "ok" and actions[1]["expectedOutcome"] == "ScopeLocked" and not actions[1]["ok"]
    assert actions[2]["outcome"] == "PoolNotFound" and "PoolNotFound" in actions[2]["detail"] and not actions[2]["ok"]
    assert len(report["result"]["problems"]) == 2
    assert "✗ action deleteResource at +00:01: ok (expected ScopeLocked)" in capsys.readouterr().out


def test_the_report_schema_is_documented_in_cli_md() -> None:
    from tests.cli.test_status import documented_schema

    assert documented_schema("report") == REPORT_SCHEMA


def test_an_initial_state_the_emulator_refuses_exits_2(tmp_path: Path, azurite: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    scenario = write_json(tmp_path / "scenario.json", {"name": "badinit", "duration": "1h", "galleries": [
        {"name": "g", "images": [{"name": "d"}],
         "versions": [{"image": "d", "name": "1.0.0", "osSnapshot": "missing-snapshot"}]}]})
    assert main(["simulate", str(scenario), "--azurite", azurite, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot be set up" in err and "missing-snapshot" in err and "what to do" in err


def test_tag_resource_action_tags_through_the_tags_api(tmp_path: Path, azurite: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = "/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots/late-os"
    gpu = {"autopilot.family": "gpu", "autopilot.version": "1.0.0", "autopilot.disk": "os", "autopilot.diskCount": "1"}
    document = {**SMALL, "name": "tag-later", "duration": "45m", "timeline": [
        # The snapshot is written without the autopilot tags; a person tags it later through the Tags API,
        # takes every tag off again (az tag delete), and writes them once more (Replace).
        {"at": "0m", "action": "createSnapshot", "name": "late-os", "tags": {"owner": "render-team"}},
        {"at": "2m", "action": "tagResource", "resource": snapshot, "operation": "Merge",
         "tags": {**gpu, "autopilot.version": "0.9.0", "autopilot.diskCount": "2"}},
        {"at": "3m", "action": "tagResource", "resource": snapshot, "operation": "Delete",
         "note": "az tag delete --resource-id"},
        {"at": "4m", "action": "tagResource", "resource": snapshot, "operation": "Replace", "tags": gpu},
    ], "expect": [
        {"expect": "alerts", "type": "PoolsCreated", "count": 1},
        {"expect": "imageExists", "image": VERSION},
    ]}
    code, report = run(tmp_path, azurite, document)
    assert code == 0, capsys.readouterr().out
    assert report["result"] == {"ok": True, "problems": []}
    # 0.9.0 lost its only snapshot: nothing built, nothing to say
    assert [a["type"] for a in report["alerts"]] == ["PoolsCreated"]


def test_tag_resource_needs_tags_except_to_delete_all(tmp_path: Path, azurite: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    document = {**SMALL, "timeline": [{"at": "1m", "action": "tagResource", "operation": "Merge",
                                       "resource": "/resourceGroups/images-rg/providers/Microsoft.Compute"
                                                   "/snapshots/x"}]}
    scenario = write_json(tmp_path / "scenario.json", document)
    code = main(["simulate", str(scenario), "--report", str(tmp_path / "r.json"), "--azurite", azurite])
    assert code != 0
    captured = capsys.readouterr()
    assert "Merge needs the tags" in captured.out + captured.err
def test_planned_growth_steps_are_named_grow_steps_not_stalls(tmp_path: Path, azurite: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    document = {
        "name": "staged", "duration": "40m", "seed": 3,
        "settings": {"AUTOPILOT_GROWTH_STEP_NODES": "10"},
        "capacity": [{"region": "westeurope", "dedicatedFailureRate": 0, "spotFailureRate": 0}],
        "batchAccounts": [{"name": "renderweu"}],
        "galleries": [{"name": "autopilotGallery", "images": [{"name": "gpu-render"}],
                       "versions": [{"image": "gpu-render", "name": "1.0.0", "osSnapshot": "gpu-1-0-0-os"}]}],
        "snapshotSets": [{"family": "gpu", "version": "1.0.0"}],
        "pools": [{"account": "renderweu", "id": "big", "vmSize": "Standard_D4ds_v5", "desiredDedicated": 25,
                   "image": VERSION}],
        "expect": [{"expect": "poolAtTarget", "pool": "renderweu/big"},
                   {"expect": "stallEvents", "pool": "renderweu/big", "min": 3},
                   {"expect": "stallEvents", "kind": "step", "count": 3},
                   {"expect": "stallEvents", "kind": "stall", "count": 0}],
    }
    code, report = run(tmp_path, azurite, document, "--no-chart")
    out = capsys.readouterr().out
    assert code == 0, out
    assert validate_report(report) == []
    assert ([s["label"] for s in report["stallEvents"]] == ["grow step"] * 3
            and {s["kind"] for s in report["stallEvents"]} == {"step"})
    steps = [t["text"] for t in report["timeline"] if t["kind"] == "step"]
    assert len(steps) == 3 and all(t.startswith("grow step renderweu/big: resize to ") for t in steps)
    assert "(staged growth)" in steps[0] and not any(t["kind"] == "stall" for t in report["timeline"])
    assert "grow step renderweu/big" in out and "PoolResizeStalled" not in out and " stall " not in out
def test_initial_pools_with_inbound_nat_or_autoscale_and_a_reserved_nat_range(tmp_path: Path, azurite: str,
                                                                              capsys: pytest.CaptureFixture[
                                                                                  str]) -> None:
    """Issue 12: the format expresses NAT pools and autoscale pools; the emulator refuses ranges Batch reserves
    (50000-55000)."""
    def document(start: int, end: int) -> dict:
        nat = [{"name": "ssh", "backendPort": 22, "frontendPortRangeStart": start, "frontendPortRangeEnd": end}]
        return {"name": "natauto", "duration": "20m",
                "capacity": [{"region": "westeurope", "dedicatedFailureRate": 0, "spotFailureRate": 0}],
                "batchAccounts": [{"name": "renderweu"}], "galleries": [{"name": "autopilotGallery",
                                                                         "images": [{"name": "d"}],
                                                                         "versions": [{"image": "d", "name": "1.0.0",
                                                                                       "osSnapshot": "os"}]}],
                "snapshots": [{"name": "os"}],
                "pools": [{"account": "renderweu", "id": "natted", "vmSize": "Standard_D4ds_v5", "dedicated": 10,
                           "desiredDedicated": 10,
                           "image": "/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery"
                                    "/images/d/versions/1.0.0",
                           "inboundNatPools": nat},
                          {"account": "renderweu", "id": "auto", "vmSize": "Standard_D4ds_v5", "desiredDedicated": 4,
                           "image": "/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery"
                                    "/images/d/versions/1.0.0",
                           "autoScale": {"formula": "$TargetDedicatedNodes=2;"}}],
                "expect": [{"expect": "poolNodes", "pool": "renderweu/natted", "dedicated": 10},
                           {"expect": "poolNodes", "pool": "renderweu/auto", "dedicated": 2},
                           {"expect": "alerts", "type": "PoolNeedsAttention", "count": 1}]}

    code, report = run(tmp_path, azurite, document(40000, 40099), "--quiet", "--no-chart")
    assert code == 0, capsys.readouterr().out
    assert all(e["ok"] for e in report["expectations"])
    scenario = write_json(tmp_path / "reserved.json", document(50000, 50099))
    assert main(["simulate", str(scenario), "--azurite", azurite, "--quiet"]) == 2
    assert "50000 to 55000" in capsys.readouterr().err
