"""The app identity's permissions as infra/roles.json declares them, and whether they cover an action.

``infra/main.bicep`` creates the custom roles from the same file (``loadJsonContent``), so a test that
compares the ARM actions the emulator's request log recorded with :func:`covered` checks the real
grants. Usage::

    from tests.infra.roles import covered, load_roles, uncovered
    roles = load_roles()                      # custom roles + built-in roles granted to the app identity
    assert uncovered(recorded_actions, roles) == []

Matching follows Azure RBAC: case-insensitive, ``*`` matches any run of characters (including ``/``).
An action is covered when any role grants it as an action or as a data action (the request log does
not say which plane authorises a call; Batch data-plane pool calls are authorised by control-plane
pool actions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

ROLES_FILE = Path(__file__).resolve().parents[2] / "infra" / "roles.json"

CUSTOM_SCOPES = ("imageResourceGroups", "batchResourceGroups", "subscription")
BUILT_IN_SCOPES = ("appStorage", "customTopic", "appInsights", "deadLetterContainer")
PRINCIPALS = ("app", "eventGridDelivery")

# Granted for checks Azure makes on the app's identity, not for calls the app makes: the emulator's
# request log never shows them, so a test for unused grants should not expect to see them.
CHECKED_BY_AZURE_NOT_CALLED = {
    "microsoft.compute/disks/begingetaccess/action": "Batch checks it on the identity that creates a pool from a "
                                                     "gallery image",
}


@cache
def _catalog_text() -> str:
    return ROLES_FILE.read_text(encoding="utf-8")


def load_catalog() -> dict[str, Any]:
    """The whole of infra/roles.json (a fresh copy)."""
    return json.loads(_catalog_text())


def load_roles(*, include_built_in: bool = True, include_opt_in: bool = True,
               principal: str = "app") -> list[dict[str, Any]]:
    """The roles granted to ``principal``: the custom roles (app only), the opt-in ones (``optInRoles``: destructive
    grants main.bicep creates only when their parameter is true; the bundled scenarios opt in) and, optionally, built-in
    ones."""
    catalog = load_catalog()
    roles = list(catalog.get("roles", [])) if principal == "app" else []
    if include_opt_in and principal == "app":
        roles += list(catalog.get("optInRoles", []))
    if include_built_in:
        roles += [r for r in catalog.get("builtInRoles", []) if r.get("principal", "app") == principal]
    return roles


@cache
def _pattern(grant: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in grant.split("*")) + "$", re.IGNORECASE)


def grants(role: Mapping[str, Any]) -> list[str]:
    """Every action and data action a role grants."""
    return [*role.get("actions", []), *role.get("dataActions", [])]


def granting_roles(action: str, roles: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the roles that grant ``action``."""
    return [str(r.get("name")) for r in roles if any(_pattern(g).match(action) for g in grants(r))]


def covered(action: str, roles: Iterable[Mapping[str, Any]]) -> bool:
    """True when one of ``roles`` grants ``action`` (as an action or a data action)."""
    return bool(granting_roles(action, roles))


def uncovered(actions: Iterable[str], roles: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct actions (sorted, case kept from first sight) that no role grants."""
    roles = list(roles)
    seen: dict[str, str] = {}
    for action in actions:
        seen.setdefault(action.lower(), action)
    return sorted(a for a in seen.values() if not covered(a, roles))


def unexercised(observed: Iterable[str], roles: Iterable[Mapping[str, Any]] | None = None) -> list[str]:
    """Custom-role grants that no observed action uses (minus those Azure checks without a call)."""
    observed = [a.lower() for a in observed]
    roles = load_roles(include_built_in=False) if roles is None else list(roles)
    unused = []
    for role in roles:
        for grant in grants(role):
            if grant.lower() in CHECKED_BY_AZURE_NOT_CALLED:
                continue
            if not any(_pattern(grant).match(a) for a in observed):
                unused.append(grant)
    return sorted(set(unused))
