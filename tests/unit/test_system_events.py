"""ARM system events: parsed into ResourceEvent or IgnoredEvent, never an exception."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.system_events import (
    CLAIM_APPID,
    CLAIM_OBJECT_ID,
    CLAIM_UPN,
    DELETE_FAILURE,
    WRITE_SUCCESS,
    IgnoredEvent,
    ResourceEvent,
    is_caused_by,
    is_delete_failure,
    is_delete_success,
    is_failure,
    is_gallery_image_version_write,
    is_image_write,
    is_lock_delete,
    is_lock_write,
    is_pool_write,
    is_snapshot_write,
    lock_of,
    parse_envelope,
    parse_event,
)

SUB = "00000000-0000-4000-8000-000000000001"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SNAPSHOT = f"/subscriptions/{SUB}/resourcegroups/images-rg/providers/Microsoft.Compute/snapshots/gpu-os"
IMAGE = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/images/gpu-1.4.0"
LOCK = f"{IMAGE}/providers/Microsoft.Authorization/locks/batch-image-autopilot"
CLAIMS = {
    "aud": "https://management.core.windows.net/",
    "iss": f"https://sts.windows.net/{TENANT}/",
    "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
    "http://schemas.microsoft.com/identity/claims/objectidentifier": "0b5b6b2e-5e4a-4f6b-9e7c-0e7f1b6d1a11",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "alice@contoso.com",
    "name": "Alice Example",
    "ipaddr": "203.0.113.7",
    "_claim_names": '{"groups":"src1"}',
}

# Event Grid schema, as in event-schema-resource-groups.md: a snapshot write (no httpRequest,
# ``resourcegroups`` lower case, no data.resourceGroup).
SNAPSHOT_WRITE = {
    "subject": SNAPSHOT,
    "eventType": "Microsoft.Resources.ResourceWriteSuccess",
    "eventTime": "2026-05-04T09:00:04.6117357Z",
    "id": "4db48cba-50a2-455a-93b4-de41a3b5b7f6",
    "data": {
        "authorization": {"scope": SNAPSHOT, "action": "Microsoft.Compute/snapshots/write",
                          "evidence": {"role": "Contributor"}},
        "claims": CLAIMS,
        "correlationId": "7dcf8a1c-8a36-4f0e-8d3c-9c1c1a9a0b5e",
        "resourceProvider": "Microsoft.Compute",
        "resourceUri": SNAPSHOT,
        "operationName": "Microsoft.Compute/snapshots/write",
        "status": "Succeeded",
        "subscriptionId": SUB,
        "tenantId": TENANT,
    },
    "dataVersion": "2",
    "metadataVersion": "1",
    "topic": f"/subscriptions/{SUB}",
}

# A refused delete of a locked image: ``resourceGroups`` camel case, httpRequest present, and
# status "Succeeded" as the documented Failure examples say.
IMAGE_DELETE_FAILURE = {
    "subject": IMAGE,
    "eventType": "Microsoft.Resources.ResourceDeleteFailure",
    "eventTime": "2026-05-04T10:11:12.1234567Z",
    "id": "b5a3f8d2-0c3e-4f7a-9d6e-1f2a3b4c5d6e",
    "data": {
        "authorization": {"scope": IMAGE, "action": "Microsoft.Compute/images/delete", "evidence": {"role": "Owner"}},
        "claims": {"appid": "11111111-2222-3333-4444-555555555555",
                   CLAIM_OBJECT_ID: "9f8e7d6c-0000-4000-8000-000000000042"},
        "correlationId": "a1b2c3d4-0000-4000-8000-000000000001",
        "httpRequest": {"clientRequestId": "c0ffee00-0000-4000-8000-000000000002", "clientIpAddress": "198.51.100.4",
                        "method": "DELETE",
                        "url": f"https://management.azure.com{IMAGE}?api-version=2026-04-01"},
        "resourceProvider": "Microsoft.Compute",
        "resourceUri": IMAGE,
        "operationName": "Microsoft.Compute/images/delete",
        "status": "Succeeded",
        "subscriptionId": SUB,
        "tenantId": TENANT,
    },
    "dataVersion": "2",
    "metadataVersion": "1",
    "topic": f"/subscriptions/{SUB}/resourceGroups/images-rg",
}

# CloudEvents 1.0, with the camelCase ``specVersion`` of the resource_delete_success example.
LOCK_DELETE_CLOUDEVENT = {
    "source": f"/subscriptions/{SUB}",
    "subject": LOCK,
    "type": "Microsoft.Resources.ResourceDeleteSuccess",
    "time": "2026-05-04T11:00:00.0000001Z",
    "id": "e1f2a3b4-0000-4000-8000-000000000003",
    "data": {
        "claims": {CLAIM_UPN: "bob@contoso.com"},
        "correlationId": "a1b2c3d4-0000-4000-8000-000000000004",
        "httpRequest": {"method": "DELETE", "url": f"https://management.azure.com{LOCK}?api-version=2020-05-01"},
        "resourceProvider": "Microsoft.Authorization",
        "resourceUri": LOCK,
        "operationName": "Microsoft.Authorization/locks/delete",
        "status": "Succeeded",
        "subscriptionId": SUB,
        "tenantId": TENANT,
    },
    "specVersion": "1.0",
}


def changed(base: dict[str, Any], path: list[str], value: object) -> dict[str, Any]:
    event = copy.deepcopy(base)
    target: Any = event
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return event


_DELETE = object()


def ignored(envelope: object, **kwargs: Any) -> IgnoredEvent:
    result = parse_envelope(envelope, **kwargs)
    assert isinstance(result, IgnoredEvent), result
    return result


def test_a_snapshot_write_parses() -> None:
    e = parse_envelope(SNAPSHOT_WRITE, expected_subscription=SUB)
    assert isinstance(e, ResourceEvent)
    assert (e.id, e.type, e.operation_name, e.subscription_id, e.status) == (
        "4db48cba-50a2-455a-93b4-de41a3b5b7f6", WRITE_SUCCESS, "Microsoft.Compute/snapshots/write", SUB, "Succeeded")
    assert e.resource_id is not None and e.resource_id.name == "gpu-os" and e.resource_group == "images-rg"
    assert e.resource_type == "Microsoft.Compute/snapshots"
    assert e.time == datetime(2026, 5, 4, 9, 0, 4, 611735, tzinfo=UTC)
    assert (e.caller, e.caller_app_id, e.http_method, e.correlation_id) == (
        "Alice Example", "04b07795-8ddb-461a-bbee-02f9e1bf7b46", None, "7dcf8a1c-8a36-4f0e-8d3c-9c1c1a9a0b5e")
    assert (e.action, e.outcome) == ("Write", "Success")
    assert is_snapshot_write(e) and not is_image_write(e) and not is_failure(e)


def test_the_handler_fields_parse_the_same_as_the_envelope() -> None:
    d = SNAPSHOT_WRITE
    direct = parse_event(d["id"], d["topic"], d["subject"], d["eventType"], datetime(2026, 5, 4, 9, 0, 4, tzinfo=UTC),
                         d["data"])
    assert isinstance(direct, ResourceEvent) and direct.subject == parse_envelope(d).subject  # type: ignore[union-attr]


def test_event_types_compare_without_case() -> None:
    e = parse_envelope(changed(SNAPSHOT_WRITE, ["eventType"], "microsoft.resources.resourcewritesuccess"))
    assert isinstance(e, ResourceEvent) and e.type == WRITE_SUCCESS


def test_a_delete_failure_is_a_failure_whatever_the_status_says() -> None:
    e = parse_envelope(IMAGE_DELETE_FAILURE)
    assert isinstance(e, ResourceEvent)
    assert e.type == DELETE_FAILURE and e.status == "Succeeded" and e.outcome == "Failure"
    assert is_delete_failure(e) and is_failure(e) and not is_delete_success(e)
    assert e.http_method == "DELETE"
    assert e.caller == "11111111-2222-3333-4444-555555555555"  # no name or upn: the app id
    assert is_caused_by(e, {"11111111-2222-3333-4444-555555555555".upper()})
    assert not is_caused_by(e, {"someone-else"})


def test_a_cloudevent_lock_delete_with_camel_case_specversion() -> None:
    e = parse_envelope(LOCK_DELETE_CLOUDEVENT)
    assert isinstance(e, ResourceEvent)
    assert is_lock_delete(e) and not is_lock_write(e)
    assert lock_of(e) == (IMAGE, "batch-image-autopilot")
    assert e.caller == "bob@contoso.com"
    assert e.time == datetime(2026, 5, 4, 11, 0, 0, 0, tzinfo=UTC)


def test_caller_prefers_name_then_upn_then_appid_then_object_id() -> None:
    claims = {CLAIM_OBJECT_ID: "oid", CLAIM_APPID: "app", CLAIM_UPN: "upn@x", "name": "Name"}
    for expected in ("Name", "upn@x", "app", "oid"):
        e = parse_envelope(changed(SNAPSHOT_WRITE, ["data", "claims"], claims))
        assert isinstance(e, ResourceEvent) and e.caller == expected
        claims = {k: v for k, v in claims.items() if v != expected}
    e = parse_envelope(changed(SNAPSHOT_WRITE, ["data", "claims"], {}))
    assert isinstance(e, ResourceEvent) and e.caller is None


def test_claims_and_http_request_as_json_strings_are_decoded() -> None:
    # An older spec typed these as strings.
    event = changed(IMAGE_DELETE_FAILURE, ["data", "claims"], json.dumps({"name": "Carol"}))
    event = changed(event, ["data", "httpRequest"], json.dumps({"method": "delete"}))
    e = parse_envelope(event)
    assert isinstance(e, ResourceEvent) and (e.caller, e.http_method) == ("Carol", "DELETE")


def test_other_resource_types() -> None:
    version = (f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/gal/images/gpu"
               "/versions/1.4.0")
    pool = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct/pools/gpu-1-4-0"
    for rid, op, predicate in ((version, "Microsoft.Compute/galleries/images/versions/write",
                                is_gallery_image_version_write),
                               (IMAGE, "Microsoft.Compute/images/write", is_image_write),
                               (pool, "Microsoft.Batch/batchAccounts/pools/write", is_pool_write)):
        event = changed(changed(changed(SNAPSHOT_WRITE, ["subject"], rid), ["data", "resourceUri"], rid),
                        ["data", "operationName"], op)
        e = parse_envelope(event)
        assert predicate(e) and not is_snapshot_write(e)


@pytest.mark.parametrize(("path", "value", "code", "words"), [
    (["eventType"], "Microsoft.Storage.BlobCreated", "not-a-resource-event",
     "not an Azure Resource Manager resource event"),
    (["eventType"], _DELETE, "missing-field", "no event type"),
    (["eventType"], 42, "wrong-type", "event type is a int"),
    (["id"], _DELETE, "missing-field", "no event id"),
    (["id"], "x" * 10_000, "too-large", "event id has 10000 characters"),
    (["subject"], _DELETE, "missing-field", "no subject"),
    (["subject"], ["a"], "wrong-type", "subject is a list"),
    (["subject"], f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/../../x", "hostile-id",
     "segments"),
    (["subject"], f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/a\nb", "hostile-id",
     "control characters"),
    (["subject"], "https://example.com/not-an-id", "hostile-id", "no ARM id"),
    (["subject"], "not-an-id", "not-a-resource-event", "not an ARM resource id"),
    (["data"], _DELETE, "missing-field", "no data"),
    (["data"], "a string", "wrong-type", "data is a str"),
    (["data", "operationName"], _DELETE, "missing-field", "data.operationName"),
    (["data", "resourceUri"], SNAPSHOT.replace("gpu-os", "other"), "subject-mismatch", "name different resources"),
    (["data", "subscriptionId"], "00000000-0000-0000-0000-000000000000", "subject-mismatch", "not the subscription"),
    (["topic"], "/subscriptions/00000000-0000-0000-0000-000000000000", "subject-mismatch", "outside the event's topic"),
    (["data", "claims"], ["not", "an", "object"], "wrong-type", "data.claims is a list"),
    (["data", "claims"], "{not json", "wrong-type", "not a JSON object"),
    (["eventTime"], "yesterday", "bad-time", "not an ISO 8601 time"),
    (["eventTime"], 1714813204, "wrong-type", "eventTime is a int"),
])
def test_bad_events_are_ignored_with_one_reason(path: list[str], value: object, code: str, words: str) -> None:
    result = ignored(changed(SNAPSHOT_WRITE, path, value))
    assert result.code == code
    assert words in result.reason


def test_ignored_events_keep_what_identifies_them() -> None:
    result = ignored(changed(SNAPSHOT_WRITE, ["data", "resourceUri"], SNAPSHOT.replace("gpu-os", "other")))
    assert (result.id, result.type, result.subject) == (SNAPSHOT_WRITE["id"], SNAPSHOT_WRITE["eventType"], SNAPSHOT)


def test_ids_that_differ_only_in_case_are_the_same_resource() -> None:
    event = changed(SNAPSHOT_WRITE, ["data", "resourceUri"],
                    SNAPSHOT.replace("resourcegroups", "resourceGroups").upper()
                    .replace("/SUBSCRIPTIONS/", "/subscriptions/"))
    assert isinstance(parse_envelope(event), ResourceEvent)


def test_events_about_another_subscription_are_ignored() -> None:
    result = ignored(SNAPSHOT_WRITE, expected_subscription="00000000-0000-4000-8000-000000000002")
    assert result.code == "foreign-subscription"


def test_the_temporary_deployment_copy_of_a_write_is_ignored() -> None:
    temporary = (f"/subscriptions/{SUB}/resourcegroups/images-rg/providers/Microsoft.Resources/deployments"
                 "/tmp-7dcf8a1c8a36")
    event = changed(changed(SNAPSHOT_WRITE, ["subject"], temporary), ["data", "resourceUri"], temporary)
    result = ignored(event)
    assert result.code == "temporary-deployment" and "7dcf8a1c-8a36-4f0e-8d3c-9c1c1a9a0b5e" in result.reason
    deployment_itself = changed(event, ["data", "operationName"], "Microsoft.Resources/deployments/write")
    assert isinstance(parse_envelope(deployment_itself), ResourceEvent)


def test_missing_optional_fields_are_fine() -> None:
    event = copy.deepcopy(SNAPSHOT_WRITE)
    for key in ("resourceUri", "subscriptionId", "status", "correlationId", "claims", "authorization"):
        del event["data"][key]
    del event["eventTime"]
    del event["topic"]
    e = parse_envelope(event)
    assert isinstance(e, ResourceEvent) and e.time is None and e.caller is None and e.subscription_id == SUB


def test_not_an_object_at_all() -> None:
    assert ignored([SNAPSHOT_WRITE]).code == "wrong-type"
    assert ignored(None).code == "wrong-type"


# --- properties ----------------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                         st.sampled_from([SNAPSHOT, IMAGE, LOCK, SUB, "Microsoft.Resources.ResourceWriteSuccess",
                                          "Microsoft.Compute/snapshots/write", "2026-05-04T09:00:04.6117357Z", ""]))
JSON = st.recursive(JSON_SCALARS, lambda children: st.one_of(st.lists(children, max_size=4),
                                                             st.dictionaries(st.text(max_size=12), children,
                                                                             max_size=4)), max_leaves=20)
DATA_KEYS = ["operationName", "resourceUri", "subscriptionId", "status", "correlationId", "claims", "httpRequest",
             "authorization"]


def check_outcome(result: object) -> None:
    assert isinstance(result, ResourceEvent | IgnoredEvent)
    if isinstance(result, IgnoredEvent):
        # the catch-all must never be what answered
        assert result.reason and result.code != "internal-error", result.reason


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_arbitrary_json_never_raises(value: object) -> None:
    check_outcome(parse_envelope(value))


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "id": JSON, "topic": JSON, "source": JSON, "subject": JSON, "eventType": JSON, "type": JSON, "eventTime": JSON,
    "time": JSON,
    "data": st.one_of(JSON, st.fixed_dictionaries({}, optional={k: JSON for k in DATA_KEYS})),
}))
def test_event_shaped_json_never_raises(envelope: dict[str, object]) -> None:
    check_outcome(parse_envelope(envelope))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([SNAPSHOT_WRITE, IMAGE_DELETE_FAILURE, LOCK_DELETE_CLOUDEVENT]), st.data())
def test_mutated_real_events_never_raise(base: dict[str, Any], data: st.DataObject) -> None:
    event = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            event[data.draw(st.sampled_from(sorted(event)))] = data.draw(JSON)
        elif isinstance(event.get("data"), dict):
            event["data"][data.draw(st.sampled_from(DATA_KEYS))] = data.draw(JSON)
    result = parse_envelope(event)
    check_outcome(result)
    if isinstance(result, ResourceEvent):
        # Whatever is accepted is consistent: the id parses and agrees with the subject.
        assert result.resource_id is not None and result.subscription_id == result.resource_id.subscription_id
