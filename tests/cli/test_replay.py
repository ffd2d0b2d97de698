"""``autopilot replay``: Event Grid batches as Azure posts them, in the Event Grid schema and as CloudEvents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopilot.cli import main
from autopilot.replay import ReplayInputError, parse_events
from tests.cli.conftest import DATA, write_json

POOL_ID = ("/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/batch-rg/providers/Microsoft.Batch"
           "/batchAccounts/renderweu/pools/gpu-1-0-0")


@pytest.mark.parametrize("events", ["eventgrid-snapshots.json", "cloudevents-snapshots.json"])
def test_replaying_the_snapshot_writes_builds_the_image_and_the_pool(events: str, azurite: str,
                                                                     clean_env: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(DATA / events), "--scenario", str(DATA / "replay-base.json"), "--advance", "20m",
                 "--json", "--azurite", azurite])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"]
    schema = "CloudEventSchemaV1_0" if events.startswith("cloud") else "EventGridSchema"
    assert [(e["topic"], e["schema"]) for e in result["events"]] == [("system", schema)] * 2
    first = result["invocations"][:2]
    assert ([i["function"] for i in first] == ["image_pipeline", "image_pipeline"]
            and all(i["ok"] for i in result["invocations"]))
    assert POOL_ID in result["created"]
    assert any(c.endswith("/galleries/autopilotGallery/images/gpu-render/versions/1.0.0") for c in result["created"])
    assert [a["type"] for a in result["alerts"]] == ["PoolsCreated"]
    assert result["alerts"][0]["diagnosis"] and result["alerts"][0]["fix"]  # what a person reads to act on it
    assert len(result["locksAdded"]) == 3 and result["deadLetters"] == []


def test_replay_prints_what_was_done(azurite: str, clean_env: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(DATA / "eventgrid-snapshots.json"), "--scenario", str(DATA / "replay-base.json"),
                 "--azurite", azurite])
    out = capsys.readouterr().out
    assert code == 0
    assert "replayed 2 event(s)" in out and "invocations (2)" in out and "image_pipeline" in out
    # with no virtual time passing, the managed image is only requested (its operation finishes minutes later): no pool
    # yet
    assert "resources created (1)" in out and "Microsoft.Compute/images/gpu-1.0.0" in out and "locks added (0)" in out


def test_a_custom_topic_event_reaches_the_stall_handler_against_an_empty_subscription(tmp_path: Path, azurite: str,
                                                                                      clean_env: pytest.MonkeyPatch,
                                                                                      capsys: pytest.CaptureFixture[
                                                                                          str]) -> None:
    events = write_json(tmp_path / "stall.json", [{
        "id": "1", "subject": "/subscriptions/x/pools/p", "eventType": "BatchImageAutopilot.PoolResizeStalled",
        "eventTime": "2026-11-02T06:00:00Z",
        "dataVersion": "1.0", "data": {"accountId": "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups"
                                                    "/batch-rg/providers/"
                                                    "Microsoft.Batch/batchAccounts/nowhere", "poolId": "p"}}])
    code = main(["replay", str(events), "--json", "--azurite", azurite])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["events"][0]["topic"] == "custom"
    # ignored: not a watched account
    assert [(i["function"], i["ok"]) for i in result["invocations"]] == [("resize_stalled", True)]
    assert result["created"] == []


def test_bad_event_files_exit_2_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_json(tmp_path / "bad.json", [{"id": "1", "eventType": "Microsoft.Resources.ResourceWriteSuccess"},
                                             {"id": "2", "eventType": "Other.Thing",
                                              "subject": "s", "data": {}}])
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert ("$[0]: missing subject, data" in err and "for example" in err and "$[1].eventType" in err
            and "--topic" in err)


def test_parse_events_accepts_a_single_object_and_both_spellings_of_specversion() -> None:
    events = parse_events({"specVersion": "1.0", "id": "1", "source": "/subscriptions/s",
                           "type": "BatchImageAutopilot.PoolResizeStalled", "data": {}})
    assert (events[0].schema == "CloudEventSchemaV1_0" and events[0].topic == "custom"
            and events[0].event["specversion"] == "1.0")
    with pytest.raises(ReplayInputError):
        parse_events([])
