"""``status``, ``plan`` and ``reconcile`` against the emulator: LocalAzure's settings exported as the process
environment (as the Function App has them), the CLI's ``main`` called in-process."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from autopilot.cli import main
from autopilot.status import PLAN_SCHEMA, RECONCILE_SCHEMA, STATUS_SCHEMA
from tests.cli.conftest import LOCKLESS, ROOT, VERSION_ID

WRITES = {"PUT", "PATCH", "POST", "DELETE"}


def documented_schema(name: str) -> dict[str, Any]:
    """The JSON Schema docs/cli.md shows after the marker ``<!-- schema:NAME -->``."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- schema:{name} -->\s*```json\n(.*?)\n```", text, re.DOTALL)
    assert m is not None, f"docs/cli.md has no schema block for {name}"
    return json.loads(m.group(1))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(document)]


@pytest.mark.parametrize("name, schema",
                         [("status", STATUS_SCHEMA), ("plan", PLAN_SCHEMA), ("reconcile", RECONCILE_SCHEMA)])
def test_the_json_structures_are_documented(name: str, schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert documented_schema(name) == schema


def test_status_json_matches_its_schema_and_shows_pools_images_and_locks(
        start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.run(timedelta(minutes=3))
    code, status = run_json(capsys, "status")
    assert errors(STATUS_SCHEMA, status) == []
    assert code == 0 and status["problems"] == [] and status["target"] == "emulator"
    assert status["generatedAt"] == "2026-11-02T06:03:00Z"  # the emulator's virtual clock, not the wall clock
    pools = {p["id"]: p for p in status["pools"]}
    managed, team = pools["cad-legacy"], pools["team-pool"]
    assert managed["health"] == "pending" and managed["desired"] == {"dedicated": 6, "spot": 0, "source": "metadata"}
    assert (managed["current"] == {"dedicated": 4, "spot": 0} and managed["allocationState"] == "steady"
            and managed["episode"] is None)
    assert team["health"] == "unmanaged" and team["desired"] is None
    images = {i["id"].rsplit("/", 1)[-1]: i for i in status["images"]}
    assert set(images) == {"0.9.0", "cad-0-9-0-os", "cad-0-9-0-data0"}
    assert images["0.9.0"]["kind"] == "galleryImageVersion" and images["0.9.0"]["pools"] == ["cadweu/cad-legacy"]
    assert not images["0.9.0"]["protected"] and images["0.9.0"]["locks"] == []
    assert any("no lock from the app yet" in w for w in status["warnings"])


def test_plan_writes_nothing_and_says_what_would_happen(start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.run(timedelta(minutes=3))
    before = len(local.emulator.log)
    code, plan = run_json(capsys, "plan")
    assert code == 0 and errors(PLAN_SCHEMA, plan) == []
    requests = local.emulator.log.entries()[before:]
    assert requests, "plan reads the subscription"
    assert [f"{e.method} {e.path}" for e in requests if e.method in WRITES] == []
    decision = next(d for d in plan["watch"]["decisions"] if d["pool"] == "cadweu/cad-legacy")
    assert decision["action"] == "resize" and decision["resize"]["dedicated"] == 6
    assert plan["watch"]["stalled"] == [f"{local.settings.batch_accounts[0]}/pools/cad-legacy"]
    assert {(a["kind"], a["resource"].rsplit("/", 1)[-1]) for a in plan["guard"]["actions"]} == {
        ("put", "0.9.0"), ("put", "cad-0-9-0-os"), ("put", "cad-0-9-0-data0")}
    assert local.emulator.locks.all_locks() == []
    assert local.emulator.eventgrid.events("autopilot") == []  # no stall events published either
    # the text form says the same, and still writes nothing
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "nothing is changed" in out and "put lock on" in out and "resize to 6 / 0" in out
    assert [e for e in local.emulator.log.entries()[before:] if e.method in WRITES] == []


def test_reconcile_puts_the_missing_locks(start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.run(timedelta(minutes=3))  # the pools' first allocation is done; no guard timer has fired yet
    assert local.emulator.locks.all_locks() == []
    code, result = run_json(capsys, "reconcile")
    assert code == 0 and errors(RECONCILE_SCHEMA, result) == []
    applied = {a["resource"].rsplit("/", 1)[-1] for a in result["guard"]["applied"] if a["kind"] == "put"}
    assert applied == {"0.9.0", "cad-0-9-0-os", "cad-0-9-0-data0"} and result["guard"]["failed"] == {}
    locks = local.emulator.locks.all_locks()
    assert sorted(lock.scope.rsplit("/", 1)[-1] for lock in locks) == ["0.9.0", "cad-0-9-0-data0", "cad-0-9-0-os"]
    assert ({lock.name for lock in locks} == {"batch-image-autopilot"}
            and {lock.level for lock in locks} == {"CanNotDelete"})
    assert result["watch"]["stallEventsPublished"] == 1  # the watch published the stall, as its timer would
    # a second pass has nothing left to do, and status now shows the images protected
    code, again = run_json(capsys, "reconcile")
    assert code == 0 and again["guard"]["applied"] == []
    code, status = run_json(capsys, "status")
    assert all(i["protected"] for i in status["images"])


def test_reconcile_can_handle_the_stalls_itself(start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.run(timedelta(minutes=3))
    code, result = run_json(capsys, "reconcile", "--handle-stalls")
    assert code == 0
    assert [h["pool"] for h in result["watch"]["handled"]] == ["cadweu/cad-legacy"]
    assert result["watch"]["handled"][0]["result"].startswith("resized to 6 dedicated / 0 Spot")
    assert local.pool("cadweu", "cad-legacy").target["dedicated"] == 6


def test_status_exits_1_for_a_pool_whose_image_is_gone(start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.emulator.compute.delete_gallery_image_version(local.subscription_id, "images-rg", "autopilotGallery", "cad",
                                                        "0.9.0")
    code, status = run_json(capsys, "status")
    assert code == 1 and errors(STATUS_SCHEMA, status) == []
    pool = next(p for p in status["pools"] if p["id"] == "cad-legacy")
    assert pool["health"] == "image-missing"
    version = next(i for i in status["images"] if i["id"].lower() == VERSION_ID.lower())
    assert version["exists"] is False and version["provisioningState"] is None
    assert any("cad-legacy" in p for p in status["problems"])
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert "image-missing" in out and "missing" in out and "problem:" in out


def test_status_shows_the_episode_and_backoff_of_a_stalled_pool(
        start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.emulator.batch.inject_failure("cadweu", "cad-legacy", "insufficient_capacity", count=None)
    local.run(timedelta(minutes=17))  # watch at :05 resizes, the resize fails, :10 sees it and backs off, :15 waits
    _, status = run_json(capsys, "status")
    pool = next(p for p in status["pools"] if p["id"] == "cad-legacy")
    episode = pool["episode"]
    assert episode is not None and episode["attempts"] >= 1 and episode["lastErrorCode"] == "AllocationFailed"
    assert episode["backoff"]["failures"] >= 1 and episode["backoff"]["until"] is not None
    assert episode["lastAlertType"] == "AllocationFailed"
    assert pool["health"] in ("backing-off", "resizing", "failing")
    # the alert the watch sent is among the recent alerts, with the diagnosis and the fix a person acts on
    sent = [a for a in local.alerts() if a["data"]["alertType"] == "AllocationFailed"]
    assert len(sent) == 1
    recent = [a for a in status["recentAlerts"] if a["type"] == "AllocationFailed"]
    assert len(recent) == 1 and errors(STATUS_SCHEMA, status) == []
    assert (recent[0]["diagnosis"] == sent[0]["data"]["diagnosis"] and recent[0]["fix"] == sent[0]["data"]["fix"]
            and recent[0]["fix"])
    assert (recent[0]["subject"].lower().endswith("/pools/cad-legacy")
            and recent[0]["severity"] == sent[0]["data"]["severity"])
    main(["status"])
    out = capsys.readouterr().out
    assert ("Recent alerts (1)" in out and f"diagnosis: {sent[0]['data']['diagnosis'][:60]}" in out
            and f"fix: {sent[0]['data']['fix'][:60]}" in out)


def test_status_without_settings_says_what_to_set(clean_env: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "AUTOPILOT_SUBSCRIPTION_ID is missing" in err and "what to do" in err


def test_status_shows_usable_and_unhealthy_nodes_per_pool(start_local: Any, capsys: pytest.CaptureFixture[str]) -> None:
    local = start_local(LOCKLESS)
    local.run(timedelta(minutes=1))
    pool = local.emulator.batch.find_pool("cadweu", "cad-legacy")
    next(iter(pool.nodes.values())).fate = "unusable"  # the world: one node lands on a bad host
    local.run(timedelta(minutes=5))
    _code, status = run_json(capsys, "status")
    assert errors(STATUS_SCHEMA, status) == []
    row = next(p for p in status["pools"] if p["id"] == "cad-legacy")
    nodes = row["nodes"]
    assert nodes["unhealthy"] == 1 and nodes["total"] == row["current"]["dedicated"] + row["current"]["spot"]
    assert nodes["usable"] + nodes["booting"] + nodes["unhealthy"] == nodes["total"] and row["canary"] is None
    assert main(["status"]) in (0, 1)
    assert "usable / unhealthy" in capsys.readouterr().out
