"""Contract tests for the emulated Microsoft.Authorization/locks (api-version 2020-05-01) and lock enforcement.

Everything goes through the real azure-mgmt-resource-locks 1.0.0 client over HTTPS, as built by the app's
client factory. Resource groups are created and deleted through the compute client's ARM pipeline
(``send_request``), since the app ships no Microsoft.Resources SDK. Response shapes are compared with the
spec examples in ``tests/fixtures/azure/`` and the ScopeLocked message with the observed 409 body.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.resource.locks.models import ManagementLockObject, ManagementLockOwner

from emulator.azure import Emulator
from shared.resources.clients import AzureClients
from tests.conftest import SUBSCRIPTION_ID

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "azure"
RG_API = "2021-04-01"
SUB = f"/subscriptions/{SUBSCRIPTION_ID}"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def scope_locked_message(target: str, locked_scopes: list[str], operation: str = "delete") -> str:
    """The observed ScopeLocked message (apiops#606) with its two quoted ids replaced."""
    observed = fixture("arm_ScopeLocked_error_body_observed_Azure-apiops-issue606.json")["error"]["message"]
    template = re.sub(r"'[^']*'", "'{}'", observed).replace("delete operation", f"{operation} operation")
    return template.format(target, "', '".join(locked_scopes))


def with_raw(pipeline_response: Any, deserialized: Any, headers: Any) -> tuple[int, Any, Any]:
    """``cls=`` hook of the generated SDK: keep the HTTP status and the JSON body next to the model."""
    http = pipeline_response.http_response
    body = http.json() if http.text() else None
    return http.status_code, body, deserialized


def arm(clients: AzureClients, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A management-plane call through a real ARM client pipeline (auth, retries, TLS) built by the factory."""
    return clients.compute.send_request(HttpRequest(method, f"{path}?api-version={RG_API}", json=body))


def make_group(clients: AzureClients, name: str) -> str:
    response = arm(clients, "PUT", f"{SUB}/resourcegroups/{name}", {"location": "westeurope"})
    assert response.status_code == 201, response.text()
    return f"{SUB}/resourceGroups/{name}"


# ------------------------------------------------------------------------------------------------
# Shapes against the spec examples
# ------------------------------------------------------------------------------------------------


def test_resource_level_create_get_list_delete_match_spec_examples(clients: AzureClients) -> None:
    make_group(clients, "resourcegroupname")
    locks = clients.locks.management_locks
    args = ("resourcegroupname", "Microsoft.Storage", "", "storageAccounts", "teststorageaccount")
    create = fixture("locks_ManagementLocks_CreateOrUpdateAtResourceLevel_2020-05-01.json")
    expected = create["responses"]["201"]["body"]

    status, body, model = locks.create_or_update_at_resource_level(*args, "testlock",
                                                                   create["parameters"]["parameters"], cls=with_raw)
    assert status == 201
    assert set(body) == set(expected)
    assert (body["type"], body["name"], body["properties"]) == (expected["type"], expected["name"],
                                                                expected["properties"])
    # The spec example's id is abbreviated; ARM's lock id is the locked scope +
    # /providers/Microsoft.Authorization/locks/{name}.
    resource_id = (f"{SUB}/resourceGroups/resourcegroupname/providers/Microsoft.Storage/storageAccounts"
                   "/teststorageaccount")
    assert body["id"] == f"{resource_id}/providers/Microsoft.Authorization/locks/testlock"
    assert model.level == "ReadOnly" and model.name == "testlock"

    status, body, _ = locks.create_or_update_at_resource_level(*args, "testlock", create["parameters"]["parameters"],
                                                               cls=with_raw)
    assert status == 200 and set(body) == set(create["responses"]["200"]["body"])

    get_expected = fixture("locks_ManagementLocks_GetAtResourceLevel_2020-05-01.json")["responses"]["200"]["body"]
    status, body, _ = locks.get_at_resource_level(*args, "testlock", cls=with_raw)
    assert status == 200 and set(body) == set(get_expected) and body["properties"] == get_expected["properties"]

    list_expected = fixture("locks_ManagementLocks_ListAtResourceLevel_2020-05-01.json")["responses"]["200"]["body"]
    listed = clients.compute.send_request(
        HttpRequest("GET", f"{resource_id}/providers/Microsoft.Authorization/locks?api-version=2020-05-01"))
    assert set(listed.json()) == set(list_expected)
    assert [set(v) for v in listed.json()["value"]] == [set(v) for v in list_expected["value"]]
    assert [lk.id for lk in locks.list_at_resource_level(*args)] == [body["id"]]

    delete_statuses = set(fixture("locks_ManagementLocks_DeleteAtResourceLevel_2020-05-01.json")["responses"])
    first, _, _ = locks.delete_at_resource_level(*args, "testlock", cls=with_raw)
    again, _, _ = locks.delete_at_resource_level(*args, "testlock", cls=with_raw)
    assert (first, again) == (200, 204) and {str(first), str(again)} == delete_statuses
    with pytest.raises(ResourceNotFoundError) as err:
        locks.get_at_resource_level(*args, "testlock")
    assert err.value.error.code == "LockNotFound"


def test_by_scope_calls_percent_encode_the_scope_and_reach_the_same_lock(clients: AzureClients) -> None:
    group_id = make_group(clients, "rg-scope")
    locks = clients.locks.management_locks
    create = fixture("locks_ManagementLocks_CreateOrUpdateAtScope_2020-05-01.json")
    status, body, _ = locks.create_or_update_by_scope(group_id, "testlock", create["parameters"]["parameters"],
                                                      cls=with_raw)
    assert status == 201 and set(body) == set(create["responses"]["201"]["body"])
    assert body["id"] == f"{group_id}/providers/Microsoft.Authorization/locks/testlock"

    # The same lock through the resource-group-level operations and the by-scope get/list.
    assert locks.get_at_resource_group_level("rg-scope", "testlock").id == body["id"]
    assert locks.get_by_scope(group_id, "testlock").level == "ReadOnly"
    list_expected = fixture("locks_ManagementLocks_ListAtScope_2020-05-01.json")["responses"]["200"]["body"]["value"][0]
    listed = list(locks.list_by_scope(group_id))
    assert [lk.id for lk in listed] == [body["id"]]
    assert (set(listed[0].as_dict(keep_readonly=True)) >= {"id", "type", "name", "level"}
            and list_expected["type"] == listed[0].type)

    delete_statuses = set(fixture("locks_ManagementLocks_DeleteAtScope_2020-05-01.json")["responses"])
    first, _, _ = locks.delete_by_scope(group_id, "testlock", cls=with_raw)
    assert str(first) in delete_statuses
    assert list(locks.list_by_scope(group_id)) == []


def test_nested_gallery_version_lock_blocks_deleting_its_group(clients: AzureClients, emulator: Emulator) -> None:
    make_group(clients, "rg-gallery")
    locks = clients.locks.management_locks
    lock = locks.create_or_update_at_resource_level(
        "rg-gallery", "Microsoft.Compute", "galleries/g/images/d", "versions", "1.0.0", "keep-image",
        ManagementLockObject(level="CanNotDelete", notes="Pool pool-a uses this image version"))
    version_id = f"{SUB}/resourceGroups/rg-gallery/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0"
    assert lock.id == f"{version_id}/providers/Microsoft.Authorization/locks/keep-image"
    assert locks.get_by_scope(version_id, "keep-image").notes == "Pool pool-a uses this image version"

    # A lock below the target blocks the delete: ARM never deletes partially.
    response = arm(clients, "DELETE", f"{SUB}/resourcegroups/rg-gallery")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "ScopeLocked",
                                         "message": scope_locked_message(f"{SUB}/resourcegroups/rg-gallery",
                                                                         [version_id])}}
    # ... and the version itself (compute is another service; the dispatcher enforces locks for every route).
    blocking = emulator.locks.blocking_locks(version_id.lower(), "delete")
    assert [(b.scope, b.name, b.level) for b in blocking] == [(version_id, "keep-image", "CanNotDelete")]
    assert blocking[0].id == lock.id and blocking[0].owners == []

    locks.delete_at_resource_level("rg-gallery", "Microsoft.Compute", "galleries/g/images/d", "versions", "1.0.0",
                                   "keep-image")
    assert arm(clients, "DELETE", f"{SUB}/resourcegroups/rg-gallery").status_code == 200
    with pytest.raises(HttpResponseError) as err:
        arm(clients, "GET", f"{SUB}/resourcegroups/rg-gallery").raise_for_status()
    assert err.value.status_code == 404


def test_group_lock_blocks_delete_until_removed(clients: AzureClients) -> None:
    group_id = make_group(clients, "rg-locked")
    locks = clients.locks.management_locks
    locks.create_or_update_at_resource_group_level("rg-locked", "no-delete", {"properties": {"level": "CanNotDelete"}})

    response = arm(clients, "DELETE", f"{SUB}/resourcegroups/rg-locked")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == scope_locked_message(f"{SUB}/resourcegroups/rg-locked", [group_id])
    # CanNotDelete still allows writes.
    assert arm(clients, "PUT", f"{SUB}/resourcegroups/rg-locked",
               {"location": "westeurope", "tags": {"a": "b"}}).status_code == 200

    locks.delete_at_resource_group_level("rg-locked", "no-delete")
    assert arm(clients, "DELETE", f"{SUB}/resourcegroups/rg-locked").status_code == 200


def test_subscription_lock_is_inherited_by_groups_and_resources(clients: AzureClients, emulator: Emulator) -> None:
    make_group(clients, "rg-inherit")
    locks = clients.locks.management_locks
    sub_lock = locks.create_or_update_at_subscription_level("sub-guard", ManagementLockObject(level="CanNotDelete"))
    assert sub_lock.id == f"{SUB}/providers/Microsoft.Authorization/locks/sub-guard"

    response = arm(clients, "DELETE", f"{SUB}/resourcegroups/rg-inherit")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == scope_locked_message(f"{SUB}/resourcegroups/rg-inherit", [SUB])
    image_id = f"{SUB}/resourceGroups/RG-INHERIT/providers/Microsoft.Compute/images/img"
    assert [b.name for b in emulator.locks.blocking_locks(image_id, "delete")] == ["sub-guard"]
    assert emulator.locks.blocking_locks(image_id, "write") == []  # CanNotDelete never blocks writes
    assert [lk.name for lk in locks.list_at_subscription_level()] == ["sub-guard"]

    locks.delete_at_subscription_level("sub-guard")
    assert arm(clients, "DELETE", f"{SUB}/resourcegroups/rg-inherit").status_code == 200


def test_read_only_lock_blocks_writes_at_and_below_but_not_above(clients: AzureClients, emulator: Emulator) -> None:
    group_id = make_group(clients, "rg-readonly")
    clients.locks.management_locks.create_or_update_by_scope(group_id, "frozen", ManagementLockObject(level="ReadOnly"))

    response = arm(clients, "PUT", f"{SUB}/resourcegroups/rg-readonly", {"location": "westeurope"})
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "ScopeLocked",
                                        "message": scope_locked_message(
                                            f"{SUB}/resourcegroups/rg-readonly", [group_id], "write")}
    child = f"{group_id}/providers/Microsoft.Compute/images/img"
    assert [b.level for b in emulator.locks.blocking_locks(child, "write")] == ["ReadOnly"]
    assert [b.level for b in emulator.locks.blocking_locks(child, "delete")] == ["ReadOnly"]
    # A ReadOnly lock below the target does not block writing the target, only deleting it.
    assert emulator.locks.blocking_locks(SUB, "write") == []
    assert [b.name for b in emulator.locks.blocking_locks(SUB, "delete")] == ["frozen"]


def test_list_filters_at_scope_and_below(clients: AzureClients) -> None:
    group_id = make_group(clients, "rg-list")
    locks = clients.locks.management_locks
    locks.create_or_update_at_subscription_level("above", {"properties": {"level": "CanNotDelete"}})
    locks.create_or_update_at_resource_group_level("rg-list", "at", {"properties": {"level": "CanNotDelete"}})
    locks.create_or_update_at_resource_level("rg-list", "Microsoft.Compute", "", "images", "img", "below",
                                             {"properties": {"level": "CanNotDelete"}})

    assert sorted(lk.name for lk in locks.list_at_resource_group_level("rg-list")) == ["above", "at", "below"]
    assert sorted(lk.name
                  for lk in locks.list_at_resource_group_level("rg-list", filter="atScope()")) == ["above", "at"]
    assert [lk.name for lk in locks.list_by_scope(group_id, filter="atScope() and name eq 'at'")] == ["at"]
    assert ([lk.name for lk in locks.list_at_resource_level("rg-list", "Microsoft.Compute", "", "images", "img")]
            == ["above", "at", "below"])
    with pytest.raises(HttpResponseError) as err:
        list(locks.list_by_scope(group_id, filter="level eq 'ReadOnly'"))
    assert err.value.status_code == 400 and err.value.error.code == "InvalidFilter"


def test_validation_notes_level_owners_and_missing_group(clients: AzureClients) -> None:
    make_group(clients, "rg-valid")
    locks = clients.locks.management_locks
    ok = locks.create_or_update_at_resource_group_level(
        "rg-valid", "long-notes", ManagementLockObject(level="CanNotDelete", notes="n" * 512,
                                                       owners=[
                                                           ManagementLockOwner(
                                                               application_id="batch-image-autopilot")]))
    assert len(ok.notes) == 512 and ok.owners[0].application_id == "batch-image-autopilot"

    for body, needle in [
        ({"properties": {"level": "CanNotDelete", "notes": "n" * 513}}, "512"),
        ({"properties": {"level": "DoNotTouch"}}, "DoNotTouch"),
        ({"properties": {"level": "NotSpecified"}}, "NotSpecified"),
        ({"properties": {"notes": "no level"}}, "level"),
    ]:
        with pytest.raises(HttpResponseError) as err:
            locks.create_or_update_at_resource_group_level("rg-valid", "bad", body)
        assert err.value.status_code == 400 and needle in err.value.error.message, body

    # The SDK folds a flat {"level": ...} into properties, so send the malformed body raw.
    flat = clients.compute.send_request(HttpRequest("PUT",
                                                    f"{SUB}/resourceGroups/rg-valid/providers/Microsoft.Authorization"
                                                    "/locks/flat"
                                                    "?api-version=2020-05-01", json={"level": "CanNotDelete"}))
    assert flat.status_code == 400 and "properties" in flat.json()["error"]["message"]

    with pytest.raises(ResourceNotFoundError) as missing:
        locks.create_or_update_at_resource_group_level("rg-nowhere", "lk", {"properties": {"level": "CanNotDelete"}})
    assert missing.value.error.code == "ResourceGroupNotFound"
    assert [lk.name for lk in locks.list_at_resource_group_level("rg-valid")] == ["long-notes"]


def test_ids_are_case_insensitive_and_locks_go_with_their_group(clients: AzureClients, emulator: Emulator) -> None:
    make_group(clients, "rg-case")
    locks = clients.locks.management_locks
    locks.create_or_update_by_scope(f"{SUB}/resourcegroups/RG-Case/providers/Microsoft.Compute/images/Img", "LK",
                                    {"properties": {"level": "CanNotDelete"}})
    got = locks.get_by_scope(f"{SUB.upper()}/RESOURCEGROUPS/rg-case/providers/microsoft.compute/IMAGES/img", "lk")
    assert got.name == "LK" and got.id.startswith(f"{SUB}/resourceGroups/RG-Case/")
    updated = locks.create_or_update_by_scope(f"{SUB}/resourceGroups/rg-case/providers/Microsoft.Compute/images/img",
                                              "lk",
                                              {"properties": {"level": "ReadOnly"}})
    assert updated.level == "ReadOnly" and len(emulator.locks.all_locks()) == 1

    # A backend deleting the group on its own (not through ARM, which the lock would block) drops its locks.
    emulator.resources.delete_group(SUBSCRIPTION_ID, "rg-case")
    assert emulator.locks.all_locks() == []


def test_lock_calls_are_logged_with_their_arm_actions(clients: AzureClients, emulator: Emulator) -> None:
    make_group(clients, "rg-log")
    locks = clients.locks.management_locks
    locks.create_or_update_at_resource_group_level("rg-log", "lk", {"properties": {"level": "CanNotDelete"}})
    locks.get_at_resource_group_level("rg-log", "lk")
    list(locks.list_at_resource_group_level("rg-log"))
    locks.delete_at_resource_group_level("rg-log", "lk")
    actions = [e.action for e in emulator.log.entries(path_contains="Microsoft.Authorization/locks")]
    assert actions == ["Microsoft.Authorization/locks/write", "Microsoft.Authorization/locks/read",
                       "Microsoft.Authorization/locks/read", "Microsoft.Authorization/locks/delete"]
    assert {e.api_version
            for e in emulator.log.entries(path_contains="Microsoft.Authorization/locks")} == {"2020-05-01"}
