"""ARM resource ids: parsing and case-insensitive comparison.

Azure returns the same id with different casing (``resourcegroups`` in write events,
``resourceGroups`` in delete events, ``/Subscriptions/`` in image references), so ids are never
compared as raw strings anywhere in the app: use :func:`same_id` or :class:`ResourceId`.

Parsing goes through ``azure.mgmt.core.tools``, except for extension resources
(``{scope}/providers/{namespace}/{type}/{name}``, e.g. a lock on a gallery version): the library
folds the scope into the parent and reports the lock's type as the version's child. Those are split
here at the last ``/providers/``, the scope parsed as an id of its own.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TypeGuard

_PROVIDERS = "/providers/"
LOCKS = "Microsoft.Authorization/locks"
TAGS = "Microsoft.Resources/tags"
BATCH_ACCOUNTS = "Microsoft.Batch/batchAccounts"
# Azure's naming rules for Microsoft.Batch/batchAccounts: 3-24 lowercase letters and digits (ids come back in any case).
_BATCH_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}", re.IGNORECASE)


class InvalidResourceId(ValueError):
    pass


@dataclass(frozen=True)
class ResourceId:
    """A parsed ARM id: ``/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}[/{type}/{name}...]``.

    For an extension resource (``{scope}/providers/{ns}/{type}/{name}``) ``namespace``, ``types`` and ``names``
    are the extension's own (``Microsoft.Authorization``, ``("locks",)``, ``("keep",)``); ``scope`` is the id it
    extends. Every other id has the id before its last ``/providers/`` as ``scope`` (its group or subscription).
    """

    raw: str
    subscription_id: str
    resource_group: str | None
    namespace: str | None
    types: tuple[str, ...]  # e.g. ("galleries", "images", "versions")
    names: tuple[str, ...]  # e.g. ("gallery", "def", "1.0.0")
    scope: str | None = None  # what precedes the last /providers/: a group, a subscription, or the extended resource
    parent_path: str = ""  # "galleries/gallery/images/def": the parent inside the provider (*_at_resource_level)

    @classmethod
    def parse(cls, value: str) -> ResourceId:
        if not isinstance(value, str) or len(value) > 2048:
            raise InvalidResourceId(f"not an ARM resource id: {value!r:.120}")
        return _parse("/" + value.strip().strip("/"))

    @property
    def resource_type(self) -> str:
        """``Microsoft.Compute/galleries/images/versions`` (the provider's casing as given)."""
        return "/".join([self.namespace or "", *self.types]) if self.namespace else ""

    @property
    def name(self) -> str:
        return self.names[-1] if self.names else (self.resource_group or self.subscription_id)

    def is_type(self, resource_type: str) -> bool:
        return self.resource_type.lower() == resource_type.lower()

    @property
    def key(self) -> str:
        return normalize(self.raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceId) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.raw


def normalize(resource_id: str) -> str:
    """A comparison key: lower-case, one leading slash, no trailing slash."""
    return "/" + resource_id.strip().strip("/").lower()


def same_id(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and normalize(a) == normalize(b)


def is_within(child: str, scope: str) -> bool:
    c, s = normalize(child), normalize(scope)
    return c == s or c.startswith(s + "/")


def lock_target(lock: str | ResourceId) -> tuple[str, str] | None:
    """(locked resource id, lock name) from ``{scope}/providers/Microsoft.Authorization/locks/{name}``."""
    try:
        rid = lock if isinstance(lock, ResourceId) else ResourceId.parse(lock)
    except InvalidResourceId:
        return None
    return (rid.scope, rid.name) if rid.scope and rid.is_type(LOCKS) else None


def pool_resource_id(account_id: str, pool_id: str) -> str:
    """A pool's ARM-style id, the subject of its events and alerts: ``{account id}/pools/{pool id}``."""
    return f"{account_id}/pools/{pool_id}"


def is_batch_account_id(text: object) -> TypeGuard[str]:
    """The one check of a Batch account resource id (settings, families, stall events): a Batch account in a resource
    group, named as Azure allows. Whitespace anywhere, an extension id or a child path is not one."""
    if not isinstance(text, str) or any(c.isspace() for c in text):
        return False
    try:
        rid = ResourceId.parse(text)
    except InvalidResourceId:
        return False
    extension = "/providers/" in (rid.scope or "").lower()
    return (rid.is_type(BATCH_ACCOUNTS) and rid.resource_group is not None and not extension
            and _BATCH_ACCOUNT_NAME.fullmatch(rid.name) is not None)


def batch_account_id(subscription_id: str, resource_group: str, account: str) -> str:
    from azure.mgmt.core.tools import resource_id

    return resource_id(subscription=subscription_id, resource_group=resource_group, namespace="Microsoft.Batch",
                       type="batchAccounts", name=account)


@functools.lru_cache(maxsize=4096)  # the watch and guard see the same few thousand ids each tick; values are immutable
def _parse(text: str) -> ResourceId:
    at = text.lower().rfind(_PROVIDERS)
    if at > 0 and _PROVIDERS in text[:at].lower():
        scope = _parse(text[:at])  # an extension resource: the id it extends, then its own namespace/type/name
        tail = text[at + len(_PROVIDERS):].split("/")
        if len(tail) < 3 or len(tail) % 2 == 0 or not all(tail):
            raise InvalidResourceId(f"not an ARM resource id: {text!r:.120}")
        return ResourceId(text, scope.subscription_id, scope.resource_group, tail[0], tuple(tail[1::2]),
                          tuple(tail[2::2]), scope=scope.raw, parent_path="/".join(tail[1:-2]))
    from azure.mgmt.core.tools import is_valid_resource_id, parse_resource_id

    if not is_valid_resource_id(text):
        raise InvalidResourceId(f"not an ARM resource id: {text!r:.120}")
    parts = parse_resource_id(text)
    types, names = [], []
    if "type" in parts:
        types, names = [parts["type"]], [parts["name"]]
        for level in range(1, int(parts.get("last_child_num") or 0) + 1):
            types.append(parts[f"child_type_{level}"])
            names.append(parts[f"child_name_{level}"])
    return ResourceId(text, parts["subscription"], parts.get("resource_group"), parts.get("namespace"), tuple(types),
                      tuple(names), scope=text[:at] if at > 0 else None,
                      parent_path=(parts.get("resource_parent") or "").rstrip("/"))
