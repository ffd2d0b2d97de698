"""Contract tests for the emulated Event Grid: the ARM system topic and custom topics.

System events are raised by real management-plane calls over HTTPS and checked against the documented
envelope and data (contracts §1.3-§1.5). Custom topics are published to with the real azure-eventgrid 4.22.1
``EventGridPublisherClient`` (token, access key and SAS credentials). Every delivered event is decoded with
azure-functions' own trigger converter, exactly as the Functions worker does.

The app's factory builds its publisher so that the CA bundle applies (see shared/resources/clients.py). The public
``EventGridPublisherClient`` built here for key/SAS auth drops its constructor's transport keywords for basic
topics (azure-eventgrid 4.22.1 ``_patch.py``), so these tests pass the CA bundle to each ``send`` instead.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.credentials import AccessToken, AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.messaging import CloudEvent
from azure.core.rest import HttpRequest
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.mgmt.compute import ComputeManagementClient

from emulator.azure import Emulator
from emulator.core import Request, Response, Route, make_token
from emulator.eventgrid.models import CLOUDEVENT_SCHEMA, to_cloud_event
from emulator.server import EmulatorServer
from shared.config.settings import Settings
from shared.resources.clients import AzureClients
from tests.conftest import SUBSCRIPTION_ID

SUB = f"/subscriptions/{SUBSCRIPTION_ID}"
RG_API = "2021-04-01"
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")
ENVELOPE = {"subject", "eventType", "eventTime", "id", "data", "dataVersion", "metadataVersion", "topic"}
DATA = {"authorization", "claims", "correlationId", "resourceProvider", "resourceUri", "operationName", "status",
        "subscriptionId", "tenantId"}


class ClaimsCredential:
    """A TokenCredential whose unsigned JWT names a caller (the emulator reads claims from it)."""

    def __init__(self, claims: dict[str, str]) -> None:
        self._token = make_token(claims)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def decode(event: dict[str, Any]) -> func.EventGridEvent | func.CloudEvent:
    """What the Python worker hands an Event Grid-triggered function for one delivered event."""
    return EventGridEventInConverter.decode(Datum(type="json", value=json.dumps(event)), trigger_metadata=None)


def arm(client: ComputeManagementClient, method: str, path: str, body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None) -> Any:
    return client.send_request(HttpRequest(method, f"{path}?api-version={RG_API}", json=body, headers=headers))


def system_events(emulator: Emulator, event_type: str | None = None) -> list[dict[str, Any]]:
    return [e for e in emulator.eventgrid.events("system") if event_type is None or e["eventType"] == event_type]


def publisher(server: EmulatorServer, topic: str, credential: Any) -> EventGridPublisherClient:
    return EventGridPublisherClient(f"{server.base_url}/eventgrid/{topic}/api/events", credential,
                                    connection_verify=str(server.ca_cert))


def eg_event(**overrides: Any) -> EventGridEvent:
    fields: dict[str, Any] = {"subject": "pools/pool-a", "event_type": "Autopilot.PoolResizeStalled",
                              "data": {"poolId": "pool-a"},
                              "data_version": "1.0"}
    fields.update(overrides)
    return EventGridEvent(**fields)


# ------------------------------------------------------------------------------------------------
# System topic: Microsoft.Resources.* events from management-plane calls
# ------------------------------------------------------------------------------------------------


def test_group_write_raises_documented_write_success(clients: AzureClients, emulator: Emulator) -> None:
    correlation = str(uuid.uuid4())
    response = arm(clients.compute, "PUT", f"{SUB}/resourcegroups/rg-events", {"location": "westeurope"},
                   headers={"x-ms-correlation-request-id": correlation})
    assert response.status_code == 201

    [event] = system_events(emulator)
    assert set(event) == ENVELOPE
    assert event["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert event["subject"] == f"{SUB}/resourcegroups/rg-events"
    assert event["topic"] == SUB
    assert (event["dataVersion"], event["metadataVersion"]) == ("2", "1")
    assert (EVENT_TIME.match(event["eventTime"])
            and event["eventTime"].startswith(emulator.now().strftime("%Y-%m-%dT%H:%M:%S.")))
    assert str(uuid.UUID(event["id"])) == event["id"]

    data = event["data"]
    assert set(data) == DATA  # no httpRequest on a PUT (the documented WriteSuccess example has none)
    assert data["resourceUri"] == event["subject"]
    assert data["operationName"] == "Microsoft.Resources/subscriptions/resourceGroups/write"
    assert data["resourceProvider"] == "Microsoft.Resources"
    assert (
        data["status"], data["subscriptionId"], data["tenantId"]) == ("Succeeded", SUBSCRIPTION_ID, emulator.tenant_id)
    assert data["correlationId"] == correlation
    assert (data["authorization"]["scope"] == event["subject"]
            and data["authorization"]["action"] == data["operationName"])
    assert isinstance(data["authorization"]["evidence"]["role"], str)
    assert data["claims"]["name"] == "batch-image-autopilot" and data["claims"]["appid"] == "batch-image-autopilot"

    decoded = decode(event)
    assert isinstance(decoded, func.EventGridEvent)
    assert (decoded.event_type, decoded.subject, decoded.topic,
            decoded.data_version) == (event["eventType"], event["subject"], SUB, "2")
    assert decoded.event_time is not None and decoded.event_time.tzinfo is not None
    assert decoded.get_json()["operationName"] == data["operationName"]


def test_locked_delete_raises_delete_failure_naming_the_caller(settings: Settings, clients: AzureClients,
                                                               emulator: Emulator,
                                                               emulator_server: EmulatorServer) -> None:
    assert arm(clients.compute, "PUT", f"{SUB}/resourcegroups/rg-guarded",
               {"location": "westeurope"}).status_code == 201
    clients.locks.management_locks.create_or_update_at_resource_group_level("rg-guarded", "keep",
                                                                            {"properties": {"level": "CanNotDelete"}})
    alice = ComputeManagementClient(ClaimsCredential({"name": "alice@contoso.com", "appid": "alice-app"}),
                                    SUBSCRIPTION_ID,
                                    base_url=emulator_server.base_url, credential_scopes=[settings.arm_scope],
                                    connection_verify=str(emulator_server.ca_cert), retry_total=0)
    with alice:
        response = arm(alice, "DELETE", f"{SUB}/resourcegroups/rg-guarded")
    assert response.status_code == 409 and response.json()["error"]["code"] == "ScopeLocked"

    [failure] = system_events(emulator, "Microsoft.Resources.ResourceDeleteFailure")
    data = failure["data"]
    assert failure["subject"] == f"{SUB}/resourcegroups/rg-guarded"
    assert data["claims"]["name"] == "alice@contoso.com"
    assert data["operationName"] == "Microsoft.Resources/subscriptions/resourceGroups/delete"
    assert data["status"] == "Failed"
    assert data["httpRequest"]["method"] == "DELETE"
    assert data["httpRequest"][
        "url"] == f"{emulator_server.base_url}{SUB}/resourcegroups/rg-guarded?api-version={RG_API}"
    assert set(data["httpRequest"]) == {"clientRequestId", "clientIpAddress", "method", "url"}
    # The lock write itself is a management write too, and arrives on the same topic (contracts §7.1).
    lock_writes = [e for e in system_events(emulator, "Microsoft.Resources.ResourceWriteSuccess")
                   if e["data"]["operationName"] == "Microsoft.Authorization/locks/write"]
    assert [e["data"]["resourceProvider"] for e in lock_writes] == ["Microsoft.Authorization"]

    clients.locks.management_locks.delete_at_resource_group_level("rg-guarded", "keep")
    assert arm(clients.compute, "DELETE", f"{SUB}/resourcegroups/rg-guarded").status_code == 200
    [success] = system_events(emulator, "Microsoft.Resources.ResourceDeleteSuccess")[-1:]
    assert success["subject"] == f"{SUB}/resourcegroups/rg-guarded" and success["data"]["status"] == "Succeeded"
    assert success["data"]["claims"]["name"] == "batch-image-autopilot"


def test_outcomes_by_method_and_status(emulator: Emulator) -> None:
    """POST is an action on the resource the path names without its last segment; 4xx other than
    403/409/412 raise nothing; 5xx are failures."""
    def unused(request: Request) -> Response:
        raise AssertionError("the handler is not called: these tests drive emit_for_request directly")

    pool = ("/subscriptions/{subscriptionId}/resourceGroups/{rg}/providers/Microsoft.Batch/batchAccounts/{account}"
            "/pools/{pool}")
    headers = [("Authorization", f"Bearer {make_token({'name': 'op'})}"), ("x-ms-client-request-id", "cid-1")]
    pool_id = f"{SUB}/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/acct/pools/pool-a"
    eg = emulator.eventgrid

    def answered(method: str, template: str, action: str, path: str) -> tuple[Request, Route]:
        route = Route(method, template, unused, action)
        request = Request.from_raw(method, f"{path}?api-version=2025-06-01", headers, b"")
        match = route.compile().match(request.path)
        assert match is not None
        request.params = match.groupdict()
        return request, route

    patch = eg.emit_for_request(*answered("PATCH", pool, "Microsoft.Batch/batchAccounts/pools/write", pool_id), 200)
    assert (patch is not None and patch["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
            and patch["subject"] == pool_id)
    assert patch["data"]["httpRequest"]["method"] == "PATCH"  # an update of an existing resource carries httpRequest

    path = f"{pool_id}/stopResize"
    request, route = answered("POST", pool + "/stopResize", "Microsoft.Batch/batchAccounts/pools/stopResize/action",
                              path)

    action = eg.emit_for_request(request, route, 200)
    assert action is not None and action["eventType"] == "Microsoft.Resources.ResourceActionSuccess"
    assert action["subject"] == path.rsplit("/", 1)[0] == action["data"]["resourceUri"]
    assert action["data"]["operationName"] == "Microsoft.Batch/batchAccounts/pools/stopResize/action"
    assert action["data"]["resourceProvider"] == "Microsoft.Batch"
    assert (action["data"]["httpRequest"]["method"] == "POST"
            and action["data"]["httpRequest"]["clientRequestId"] == "cid-1")
    for status in (403, 409, 412, 500, 503):
        failure = eg.emit_for_request(request, route, status)
        assert failure is not None and failure["eventType"] == "Microsoft.Resources.ResourceActionFailure", status
        assert failure["data"]["status"] == "Failed"
    assert [eg.emit_for_request(request, route, s) for s in (400, 401, 404, 405, 429)] == [None] * 5
    assert len(system_events(emulator)) == 7


def test_long_running_completion_event_and_duplicate_writes(clients: AzureClients, emulator: Emulator) -> None:
    image_id = f"{SUB}/resourceGroups/rg-lro/providers/Microsoft.Compute/images/img-1"
    raised = emulator.eventgrid.emit_resource_event(event_type="ResourceWriteSuccess", subject=image_id,
                                                    operation_name="Microsoft.Compute/images/write",
                                                    claims={"name": "batch-image-autopilot"}, status="Succeeded",
                                                    correlation_id="corr-1")
    assert raised is not None and raised["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert raised["data"]["correlationId"] == "corr-1" and raised["data"]["resourceProvider"] == "Microsoft.Compute"
    assert "httpRequest" not in raised["data"]

    emulator.eventgrid.clear()
    emulator.eventgrid.duplicate_writes = True
    assert arm(clients.compute, "PUT", f"{SUB}/resourcegroups/rg-dup", {"location": "westeurope"}).status_code == 201
    first, second = system_events(emulator)
    assert first["eventType"] == second["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert first["data"]["correlationId"] == second["data"]["correlationId"] and first["id"] != second["id"]
    assert second["subject"] == second["data"]["resourceUri"] == f"{SUB}/resourcegroups/rg-dup"
    assert re.fullmatch(rf"{SUB}/resourcegroups/rg-dup/providers/Microsoft\.Resources/deployments/[\w-]+",
                        first["subject"])
    assert first["data"]["resourceUri"] == first["subject"]
    # Only writes are duplicated.
    assert arm(clients.compute, "DELETE", f"{SUB}/resourcegroups/rg-dup").status_code == 200
    assert len(system_events(emulator, "Microsoft.Resources.ResourceDeleteSuccess")) == 1


def test_subscribers_get_events_and_a_failing_subscriber_breaks_nothing(
        clients: AzureClients, emulator: Emulator) -> None:
    received: list[dict[str, Any]] = []
    cloud: list[dict[str, Any]] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    emulator.eventgrid.subscribe("system", broken)
    cancel = emulator.eventgrid.subscribe("system", received.append)
    emulator.eventgrid.subscribe("system", cloud.append, schema=CLOUDEVENT_SCHEMA,
                                 event_types=["Microsoft.Resources.ResourceDeleteSuccess"])

    assert arm(clients.compute, "PUT", f"{SUB}/resourcegroups/rg-sub", {"location": "westeurope"}).status_code == 201
    assert arm(clients.compute, "DELETE", f"{SUB}/resourcegroups/rg-sub").status_code == 200
    assert [e["eventType"] for e in received] == ["Microsoft.Resources.ResourceWriteSuccess",
                                                  "Microsoft.Resources.ResourceDeleteSuccess"]
    assert received == system_events(emulator)
    assert len(emulator.eventgrid.delivery_errors) == 2 and "subscriber bug" in emulator.eventgrid.delivery_errors[0][2]

    [ce] = cloud
    assert ce == to_cloud_event(received[1])
    assert set(ce) == {"source", "subject", "type", "time", "id", "data", "specversion"}
    assert (ce["source"], ce["type"], ce["specversion"]) == (SUB, "Microsoft.Resources.ResourceDeleteSuccess", "1.0")
    decoded = decode(ce)
    assert isinstance(decoded, func.CloudEvent)
    assert (decoded.type, decoded.source, decoded.subject) == (ce["type"], SUB, f"{SUB}/resourcegroups/rg-sub")
    assert decoded.get_json()["operationName"] == "Microsoft.Resources/subscriptions/resourceGroups/delete"

    cancel()
    assert arm(clients.compute, "PUT", f"{SUB}/resourcegroups/rg-sub2", {"location": "westeurope"}).status_code == 201
    assert len(received) == 2


# ------------------------------------------------------------------------------------------------
# Custom topics
# ------------------------------------------------------------------------------------------------


def test_publish_event_grid_events_with_the_apps_token_client(settings: Settings, clients: AzureClients,
                                                              emulator: Emulator) -> None:
    received: list[dict[str, Any]] = []
    emulator.eventgrid.subscribe("autopilot", received.append)
    when = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    clients.event_publisher.send([eg_event(event_time=when), eg_event(subject="pools/pool-b")])

    assert [e["subject"] for e in received] == ["pools/pool-a", "pools/pool-b"]
    assert received == emulator.eventgrid.events("autopilot")
    event = received[0]
    assert event["topic"] == emulator.eventgrid.get_topic("autopilot").resource_id and event["metadataVersion"] == "1"
    decoded = decode(event)
    assert isinstance(decoded, func.EventGridEvent)
    assert (decoded.event_type, decoded.data_version,
            decoded.event_time) == ("Autopilot.PoolResizeStalled", "1.0", when)
    assert decoded.get_json() == {"poolId": "pool-a"}
    assert emulator.eventgrid.get_topic("autopilot").key is None  # token auth only, by default

    [entry] = emulator.log.entries(plane="eventgrid")
    assert (entry.action, entry.api_version, entry.status, entry.caller) == (
        "Microsoft.EventGrid/events/send/action", "2018-01-01", 200, "batch-image-autopilot")
    assert system_events(emulator) == []  # data-plane publishing raises no ARM event


def test_publish_cloud_events(settings: Settings, clients: AzureClients, emulator: Emulator) -> None:
    received: list[dict[str, Any]] = []
    emulator.eventgrid.subscribe("autopilot", received.append)
    clients.event_publisher.send(
        [CloudEvent(source="/autopilot", type="Autopilot.Alert", data={"level": "warning"}, subject="pools/p")])

    [event] = received
    assert (event["specversion"], event["source"], event["type"],
            event["subject"]) == ("1.0", "/autopilot", "Autopilot.Alert", "pools/p")
    decoded = decode(event)
    assert isinstance(decoded, func.CloudEvent)
    assert decoded.get_json() == {"level": "warning"} and decoded.time is not None


def test_key_and_sas_authentication(emulator: Emulator, emulator_server: EmulatorServer) -> None:
    key = base64.b64encode(b"k" * 32).decode()
    emulator.eventgrid.create_topic("keyed", key=key)
    ca = str(emulator_server.ca_cert)
    publisher(emulator_server, "keyed", AzureKeyCredential(key)).send([eg_event()], connection_verify=ca)

    endpoint = f"{emulator_server.base_url}/eventgrid/keyed/api/events"
    sas = generate_sas(endpoint, key, emulator.now() + timedelta(hours=1))
    publisher(emulator_server, "keyed", AzureSasCredential(sas)).send([eg_event()], connection_verify=ca)
    assert len(emulator.eventgrid.events("keyed")) == 2

    expired = generate_sas(endpoint, key, emulator.now() - timedelta(minutes=1))
    wrong_key = base64.b64encode(b"x" * 32).decode()
    for topic, credential in [("keyed", AzureKeyCredential(wrong_key)), ("keyed", AzureSasCredential(expired)),
                              ("autopilot", AzureKeyCredential(key))]:  # the default topic takes no keys
        with pytest.raises(ClientAuthenticationError) as err:
            publisher(emulator_server, topic, credential).send([eg_event()], connection_verify=ca)
        assert err.value.status_code == 401, topic
    no_auth = requests.post(endpoint, params={"api-version": "2018-01-01"}, json=[], verify=ca, timeout=10)
    assert no_auth.status_code == 401 and no_auth.json()["error"]["code"] == "Unauthorized"
    assert len(emulator.eventgrid.events("keyed")) == 2


def test_malformed_and_oversized_publishes_are_refused(settings: Settings, clients: AzureClients, emulator: Emulator,
                                                       emulator_server: EmulatorServer) -> None:
    ca = settings.ca_bundle
    good = {"id": "1", "subject": "s", "eventType": "T", "eventTime": "2026-11-02T06:00:00.1234567Z", "data": {},
            "dataVersion": "1"}
    for missing in ("id", "subject", "eventType", "eventTime", "data", "dataVersion"):
        bad = {k: v for k, v in good.items() if k != missing}
        with pytest.raises(HttpResponseError) as err:
            clients.event_publisher.send([bad])
        body = json.loads(err.value.response.text())
        assert err.value.status_code == 400 and f"'{missing}'" in body["error"]["message"], missing
        assert body["error"]["details"][0]["code"] == "InputJsonInvalid"

    token = {"Authorization": f"Bearer {make_token({'name': 'raw'})}"}
    url = f"{emulator_server.base_url}/eventgrid/autopilot/api/events?api-version=2018-01-01"
    not_array = requests.post(url, json=good, headers=token, verify=ca, timeout=10)
    assert not_array.status_code == 400 and "StartArray" in not_array.json()["error"]["message"]
    bad_time = requests.post(url, json=[{**good, "eventTime": "yesterday"}], headers=token, verify=ca, timeout=10)
    assert bad_time.status_code == 400 and "eventTime" in bad_time.json()["error"]["message"]
    bad_cloud = requests.post(url, data=json.dumps([{"id": "1", "source": "/s", "specversion": "1.0"}]), verify=ca,
                              timeout=10,
                              headers={**token, "Content-Type": "application/cloudevents-batch+json; charset=utf-8"})
    assert bad_cloud.status_code == 400 and "'type'" in bad_cloud.json()["error"]["message"]
    unknown = requests.post(url.replace("/autopilot/", "/nosuchtopic/"), json=[good], headers=token, verify=ca,
                            timeout=10)
    assert unknown.status_code == 404

    with pytest.raises(HttpResponseError) as too_big:
        clients.event_publisher.send([eg_event(data={"blob": "x" * (1024 * 1024)})])
    assert too_big.value.status_code == 413
    with pytest.raises(ResourceNotFoundError):
        EventGridPublisherClient(url.split("?")[0].replace("/autopilot/", "/nosuchtopic/"), clients.credential).send(
            [eg_event()], connection_verify=ca)
    assert emulator.eventgrid.events("autopilot") == []
