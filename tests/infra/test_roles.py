"""infra/roles.json: well-formed, every grant explained, no wildcards, and wired into the Bicep."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra import bicep
from tests.infra.roles import (
    BUILT_IN_SCOPES,
    CHECKED_BY_AZURE_NOT_CALLED,
    CUSTOM_SCOPES,
    PRINCIPALS,
    covered,
    load_catalog,
    load_roles,
    uncovered,
    unexercised,
)

ACTION = re.compile(r"^Microsoft\.[A-Za-z]+(/[A-Za-z0-9]+)+$")
GUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$")
LOCK_ACTIONS = ("Microsoft.Authorization/locks/read", "Microsoft.Authorization/locks/write",
                "Microsoft.Authorization/locks/delete")


def custom_roles() -> list[dict]:
    return load_catalog()["roles"]


def role_for(scope: str) -> dict:
    return next(r for r in custom_roles() if r["scope"] == scope)


def test_custom_roles_are_well_formed() -> None:
    roles = custom_roles()
    assert roles, "infra/roles.json has no roles"
    names = [r["name"] for r in roles]
    assert len(set(names)) == len(names), f"duplicate role names: {names}"
    for role in roles:
        assert set(role) >= {"name", "description", "scope", "actions", "dataActions", "why"}, role.get("name")
        assert role["scope"] in CUSTOM_SCOPES, f"{role['name']}: scope {role['scope']!r} is not one of {CUSTOM_SCOPES}"
        assert role["description"].strip(), f"{role['name']}: empty description"
        assert isinstance(role["actions"], list) and isinstance(role["dataActions"], list)
        grants = role["actions"] + role["dataActions"]
        assert grants, f"{role['name']} grants nothing"
        assert len({g.lower() for g in grants}) == len(grants), f"{role['name']}: an action is listed twice"
        for grant in grants:
            assert ACTION.match(
                grant), f"{role['name']}: {grant!r} is not an action name (Microsoft.Provider/type/.../verb)"


def test_one_custom_role_per_scope() -> None:
    # main.bicep assigns "the" role of each scope (indexOf over the scopes).
    scopes = [r["scope"] for r in custom_roles()]
    assert sorted(scopes) == sorted(CUSTOM_SCOPES), (f"expected exactly one role for each of {CUSTOM_SCOPES}, "
                                                     f"got {scopes}")


def test_every_grant_has_a_reason() -> None:
    for role in custom_roles():
        grants = role["actions"] + role["dataActions"]
        missing = [g for g in grants if not str(role["why"].get(g, "")).strip()]
        assert not missing, f"{role['name']}: no 'why' for {missing}"
        stale = sorted(set(role["why"]) - set(grants))
        assert not stale, f"{role['name']}: 'why' explains actions the role does not grant: {stale}"


def test_no_wildcards_in_custom_roles() -> None:
    for role in custom_roles():
        wild = [g for g in role["actions"] + role["dataActions"] if "*" in g]
        assert not wild, f"{role['name']} uses wildcards {wild}: spell out each action (locks: read, write, delete)"


def test_lock_actions_are_spelled_out_on_the_image_groups() -> None:
    images = role_for("imageResourceGroups")
    for action in LOCK_ACTIONS:
        assert action in images["actions"], f"the image role must grant {action}"
    assert "Microsoft.Authorization/locks/*" not in images["actions"]
    # Listing the app's locks across the subscription is the only subscription-wide lock right.
    subscription = role_for("subscription")
    assert [a for a in subscription["actions"]
            if a.startswith("Microsoft.Authorization/")] == ["Microsoft.Authorization/locks/read"]


def test_roles_cover_what_the_app_does() -> None:
    roles = load_roles()
    needed = [
        "Microsoft.Compute/snapshots/read",
        "Microsoft.Compute/disks/read",
        "Microsoft.Compute/images/write",
        "Microsoft.Compute/galleries/images/write",
        "Microsoft.Compute/galleries/images/versions/write",
        "Microsoft.Compute/disks/beginGetAccess/action",  # Batch's check on whoever creates a gallery-image pool
        *LOCK_ACTIONS,
        "Microsoft.Batch/batchAccounts/read",
        "Microsoft.Batch/batchAccounts/pools/read",
        "Microsoft.Batch/batchAccounts/pools/write",
        "Microsoft.EventGrid/events/send/action",  # EventGrid Data Sender on the custom topic
    ]
    assert uncovered(needed, roles) == []


DESTRUCTIVE = ("Microsoft.Compute/galleries/images/versions/delete", "Microsoft.Compute/snapshots/delete",
               "Microsoft.Batch/batchAccounts/pools/delete")


def test_roles_grant_nothing_destructive_beyond_locks() -> None:
    roles = load_roles(include_built_in=False, include_opt_in=False)
    # images/delete is granted on purpose (the intermediate managed image of keepManagedImage: false families);
    # nothing else that destroys data or widens access is.
    for action in ["Microsoft.Compute/snapshots/delete", "Microsoft.Compute/snapshots/write",
                   "Microsoft.Compute/galleries/images/versions/delete", "Microsoft.Batch/batchAccounts/pools/delete",
                   "Microsoft.Batch/batchAccounts/write", "Microsoft.Authorization/roleAssignments/write",
                   "Microsoft.Resources/tags/write"]:
        assert not covered(action, roles), f"{action} is granted but the app never needs it"


def test_destructive_grants_come_only_with_their_opt_in_parameter() -> None:
    """Retention and retired-pool deletion need delete rights; they live in separate roles main.bicep creates and
    assigns only when the deployment opts in (a bool parameter, false by default)."""
    opt_in = load_catalog()["optInRoles"]
    main = bicep.read("main.bicep")
    for action in DESTRUCTIVE:
        granting = [r for r in opt_in if covered(action, [r])]
        assert len(granting) == 1, f"{action} must be granted by exactly one opt-in role"
    for role in opt_in:
        assert set(role) >= {"name", "description", "scope", "parameter", "actions", "dataActions",
                             "why"}, (role.get("name"))
        assert (role["scope"] in CUSTOM_SCOPES[:2]
                and sorted(role["why"]) == sorted(role["actions"] + role["dataActions"]))
        assert not [g for g in role["actions"] + role["dataActions"] if "*" in g]
        parameter = role["parameter"]
        assert re.search(rf"^param {parameter} bool = false$", main, re.MULTILINE), ("main.bicep must declare "
                                                                                     f"{parameter} (default false)")
        assert re.search(rf"= if \({parameter}\)", main), (f"main.bicep must create the {role['name']} role only if "
                                                           f"{parameter}")
        assert re.search(rf"{parameter} \? ", main), (f"main.bicep must assign the {role['name']} role only if "
                                                      f"{parameter}")
        params = json.loads((bicep.INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
        assert parameter in params and params[parameter]["value"].endswith("=false}"), ("main.parameters.json: "
                                                                                        f"{parameter} off by default")


def test_batch_role_has_no_data_actions() -> None:
    # Batch data-plane pool calls are authorised by the control-plane pool actions; Batch's data actions
    # cover only jobs and job schedules, and an unknown data action would make the role definition fail.
    assert role_for("batchResourceGroups")["dataActions"] == []


def test_built_in_roles_are_well_formed() -> None:
    built_in = load_catalog()["builtInRoles"]
    for role in built_in:
        assert GUID.match(role["roleDefinitionId"]), role["name"]
        assert role["scope"] in BUILT_IN_SCOPES, f"{role['name']}: unknown scope {role['scope']!r}"
        assert role.get("principal", "app") in PRINCIPALS, role["name"]
        assert role["why"].strip(), role["name"]
    names = {r["name"] for r in built_in}
    assert {"Storage Blob Data Owner", "Storage Table Data Contributor", "Storage Queue Data Contributor",
            "EventGrid Data Sender",
            "Monitoring Metrics Publisher"} <= names


def test_bicep_creates_and_assigns_the_roles_from_the_file() -> None:
    main = bicep.read("main.bicep")
    assert "loadJsonContent('roles.json').roles" in main
    for scope in CUSTOM_SCOPES:
        assert f"'{scope}'" in main, f"main.bicep never handles roles with scope {scope}"
    rbac = bicep.read("modules/app-rbac.bicep")
    assert "loadJsonContent('../roles.json').builtInRoles" in rbac
    for scope in BUILT_IN_SCOPES:
        assert f"r.scope == '{scope}'" in rbac, ("modules/app-rbac.bicep never assigns built-in roles with "
                                                 f"scope {scope}")


def test_checked_by_azure_list_names_granted_actions() -> None:
    granted = {g.lower() for r in load_roles(include_built_in=False) for g in r["actions"] + r["dataActions"]}
    assert set(CHECKED_BY_AZURE_NOT_CALLED) <= granted


# ---- the helper itself ----

SAMPLE = [
    {"name": "a", "actions": ["Microsoft.Compute/images/read", "Microsoft.Batch/batchAccounts/pools/*"],
     "dataActions": []},
    {"name": "b", "actions": [], "dataActions": ["Microsoft.EventGrid/events/send/action"]},
]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("Microsoft.Compute/images/read", True),
        ("microsoft.compute/IMAGES/read", True),
        ("Microsoft.Compute/images/write", False),
        ("Microsoft.Compute/images/read/extra", False),
        ("Microsoft.Batch/batchAccounts/pools/write", True),
        ("Microsoft.Batch/batchAccounts/pools/stopResize/action", True),
        ("Microsoft.Batch/batchAccounts/read", False),
        ("Microsoft.EventGrid/events/send/action", True),
        ("", False),
    ],
)
def test_covered_matches_like_azure_rbac(action: str, expected: bool) -> None:
    assert covered(action, SAMPLE) is expected


def test_uncovered_and_unexercised() -> None:
    assert uncovered(["Microsoft.Compute/images/read", "Microsoft.Compute/images/write",
                      "microsoft.compute/images/WRITE"], SAMPLE) == [
        "Microsoft.Compute/images/write"
    ]
    assert unexercised(["Microsoft.Compute/images/read"], SAMPLE) == ["Microsoft.Batch/batchAccounts/pools/*",
                                                                      "Microsoft.EventGrid/events/send/action"]
    everything = [g for r in load_roles(include_built_in=False) for g in r["actions"] + r["dataActions"]]
    assert unexercised(everything) == []
