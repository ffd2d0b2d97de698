"""samples/events/: events in the exact shape Azure delivers them (subscription-level system topic, lower-case
``resourcegroups`` subjects, the full claims block, 7-digit fractional seconds, CloudEvents' ``specversion``), each
replayed against samples/events/subscription.json, and what the app did checked."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from autopilot.cli import main
from shared.core.event_routing import SUBSCRIPTIONS
from tests.cli.conftest import ROOT

SAMPLES = ROOT / "samples" / "events"
BASE = SAMPLES / "subscription.json"
SUB = "00000000-0000-4000-8000-000000000001"
EVENT_FILES = sorted(p.name for p in SAMPLES.glob("*.json") if p != BASE)
CLAIMS = {"aud", "iss", "iat", "nbf", "exp", "appid", "appidacr", "name", "ipaddr", "ver", "puid", "uti",
          "http://schemas.microsoft.com/identity/claims/objectidentifier",
          "http://schemas.microsoft.com/identity/claims/tenantid",
          "http://schemas.microsoft.com/identity/claims/scope",
          "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
          "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"}
VERSION_090 = (f"/subscriptions/{SUB}/resourcegroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery"
               "/images/gpu-render/versions/0.9.0")


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def replay(capsys: pytest.CaptureFixture[str], azurite: str, name: str, advance: str) -> tuple[int, dict[str, Any]]:
    code = main(["replay", str(SAMPLES / name), "--scenario", str(BASE), "--advance", advance, "--json", "--azurite",
                 azurite])
    return code, json.loads(capsys.readouterr().out)


def test_the_samples_are_there_in_both_schemas() -> None:
    for kind in ("snapshot-writes", "tags-api-writes", "delete-failure"):
        assert f"eventgrid-{kind}.json" in EVENT_FILES and f"cloudevents-{kind}.json" in EVENT_FILES
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    assert "assumed" in readme.lower() and "Microsoft.Resources/tags/write" in readme
    for name in EVENT_FILES:
        assert name in readme, f"samples/events/README.md does not describe {name}"


@pytest.mark.parametrize("name", EVENT_FILES)
def test_every_sample_has_azures_delivered_shape(name: str) -> None:
    events = load(name)
    assert isinstance(events, list) and events
    cloud = name.startswith("cloudevents-")
    for event in events:
        if cloud:
            assert event["specversion"] == "1.0" and "specVersion" not in event
            assert set(event) == {"id", "source", "specversion", "type", "subject", "time", "data"}
            topic, when, kind = event["source"], event["time"], event["type"]
        else:
            assert set(event) == {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion",
                                  "metadataVersion"}
            assert (event["dataVersion"], event["metadataVersion"]) == ("2", "1")
            topic, when, kind = event["topic"], event["eventTime"], event["eventType"]
        assert topic == f"/subscriptions/{SUB}", "the deployed system topic is the subscription's"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", when), when
        assert kind.startswith("Microsoft.Resources.Resource")
        data = event["data"]
        assert (event["subject"].startswith(f"/subscriptions/{SUB}/resourcegroups/")
                and data["resourceUri"] == event["subject"])
        assert set(data["claims"]) >= CLAIMS and all(isinstance(v, str) for v in data["claims"].values())
        assert (set(data["authorization"]) == {"scope", "action", "evidence"} and data["subscriptionId"] == SUB
                and data["tenantId"])
        assert data["resourceProvider"] == data["operationName"].split("/", 1)[0]
        if "tags-api" in name:
            # assumed (README): the tagged resource itself is the subject, not
            # .../providers/Microsoft.Resources/tags/default
            assert (data["operationName"] == "Microsoft.Resources/tags/write"
                    and "/providers/Microsoft.Resources/tags" not in event["subject"])
            assert data["httpRequest"]["url"].endswith(
                "/providers/Microsoft.Resources/tags/default?api-version=2021-04-01")
        if "delete-failure" in name:
            assert kind == "Microsoft.Resources.ResourceDeleteFailure" and data["httpRequest"]["method"] == "DELETE"


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_replaying_the_snapshot_writes_builds_the_version_and_the_pool(schema: str, azurite: str,
                                                                       clean_env: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, result = replay(capsys, azurite, f"{schema}-snapshot-writes.json", "20m")
    assert code == 0 and result["ok"] and result["deadLetters"] == []
    assert [i["function"] for i in result["invocations"][:2]] == ["image_pipeline", "image_pipeline"]
    assert any(c.endswith("/galleries/autopilotGallery/images/gpu-render/versions/1.0.0") for c in result["created"])
    assert any(c.endswith("/batchAccounts/renderweu/pools/gpu-1-0-0") for c in result["created"])
    assert [a["type"] for a in result["alerts"]] == ["PoolsCreated"] and result["alerts"][0]["fix"]
    assert any(lock.endswith("/snapshots/gpu-1-0-0-os (batch-image-autopilot)") for lock in result["locksAdded"])


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_replaying_the_delete_failure_raises_delete_blocked_naming_the_person(schema: str, azurite: str,
                                                                              clean_env: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture[
                                                                                  str]) -> None:
    code, result = replay(capsys, azurite, f"{schema}-delete-failure.json", "1m")
    assert code == 0 and result["ok"]
    assert [(i["function"], i["ok"]) for i in result["invocations"]
            if i["trigger"] == "eventGrid"] == [("image_guard_events", True)]
    [alert] = result["alerts"]
    assert (alert["type"] == "DeleteBlocked" and alert["severity"] == "warning"
            and alert["subject"].lower() == VERSION_090.lower())
    assert (alert["diagnosis"].startswith("Olivia Operator tried to delete")
            and "renderweu/gpu-0-9-0" in alert["diagnosis"])
    assert result["created"] == [] and result["deleted"] == []


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_replaying_the_tags_api_writes_reaches_exactly_the_subscriptions_that_pass_them(schema: str, azurite: str,
                                                                                        clean_env: pytest.MonkeyPatch,
                                                                                        capsys: pytest.CaptureFixture[
                                                                                            str]) -> None:
    code, result = replay(capsys, azurite, f"{schema}-tags-api-writes.json", "1m")
    assert code == 0 and result["ok"] and result["deadLetters"] == []
    # Which functions a Tags API write reaches is the routing table's decision (the StringIn filter on
    # data.operationName).
    routed = {s.function for s in SUBSCRIPTIONS if s.topic == "system"
              and "microsoft.resources/tags/write" in {o.lower() for o in s.operation_names}}
    invoked = {i["function"] for i in result["invocations"] if i["trigger"] == "eventGrid"}
    assert invoked == routed
    if not routed:
        # filtered out before any function runs: the app does nothing with them
        assert result["created"] == [] and result["alerts"] == []
