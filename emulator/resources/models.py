"""Subscriptions and resource groups (Microsoft.Resources): the containers every resource needs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.ids import key, resource_group_id
from emulator.resources.exceptions import InvalidRequestContent, InvalidTag, ResourceGroupNotFound, ResourceNotFound

if TYPE_CHECKING:
    from emulator.azure import Emulator


@dataclass
class ResourceGroup:
    subscription_id: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return resource_group_id(self.subscription_id, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": "Microsoft.Resources/resourceGroups",
                "location": self.location, "tags": self.tags, "properties": {"provisioningState": "Succeeded"}}


class ResourcesBackend:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._lock = threading.RLock()
        self.groups: dict[str, ResourceGroup] = {}
        # Called with (subscription_id, resource_group) when a group is deleted, so that every
        # service deletes what the group held, as ARM does.
        self.group_delete_hooks: list[Callable[[str, str], None]] = []

    def put_group(self, subscription_id: str, name: str, location: str,
                  tags: dict[str, str] | None = None) -> tuple[ResourceGroup, bool]:
        with self._lock:
            k = key(resource_group_id(subscription_id, name))
            existing = self.groups.get(k)
            if existing is not None:
                existing.tags = dict(tags or existing.tags)
                return existing, False
            group = ResourceGroup(subscription_id, name, location.replace(" ", "").lower(), dict(tags or {}))
            self.groups[k] = group
            return group, True

    def get_group(self, subscription_id: str, name: str) -> ResourceGroup:
        group = self.groups.get(key(resource_group_id(subscription_id, name)))
        if group is None:
            raise ResourceGroupNotFound(name)
        return group

    require_group = get_group  # what other services call before creating anything in a group

    def delete_group(self, subscription_id: str, name: str) -> bool:
        with self._lock:
            k = key(resource_group_id(subscription_id, name))
            if k not in self.groups:
                return False
            for hook in self.group_delete_hooks:
                hook(subscription_id, name)
            del self.groups[k]
            return True


# --------------------------------------------------------------------------------------------------
# The Tags API: {scope}/providers/Microsoft.Resources/tags/default (resources.json "Tags_*AtScope",
# api-version 2021-04-01; azure-mgmt-resource TagsOperations *_at_scope). The portal's Tags blade,
# `az tag update|delete --resource-id` and Update-AzTag write tags this way.
# --------------------------------------------------------------------------------------------------

TAGS_SUFFIX = "/providers/Microsoft.Resources/tags/default"
TAG_OPERATIONS = ("Merge", "Replace", "Delete")  # TagsPatchOperation (resources.json 2021-04-01)
# "Each resource, resource group, and subscription can have a maximum of 50 tag name/value pairs" (Learn, tag resources)
MAX_TAGS = 50


def tags_resource_json(scope: str, tags: dict[str, str]) -> dict[str, Any]:
    """TagsResource: id, name ``default``, type ``Microsoft.Resources/tags``, properties.tags (resources.json)."""
    return {"id": scope.rstrip("/") + TAGS_SUFFIX, "name": "default", "type": "Microsoft.Resources/tags",
            "properties": {"tags": dict(tags)}}


def _validated_tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidTag("The value of 'properties.tags' must be an object of string values.")
    return dict(value)


def patched_tags(current: dict[str, str], operation: str, given: dict[str, str]) -> dict[str, str]:
    """Tags_UpdateAtScope: Merge adds/overwrites, Replace replaces all, Delete removes the given names
    ("selectively deleting tags based on given names or name/value pairs": an empty value deletes the name
    whatever its value; a value deletes it only when it matches). Tag names compare case-insensitively."""
    if operation == "Replace":
        return dict(given)
    if operation == "Merge":
        out = {k: v for k, v in current.items() if k.lower() not in {g.lower() for g in given}}
        out.update(given)
        return out
    lowered = {k.lower(): v for k, v in given.items()}
    return {k: v for k, v in current.items() if not (k.lower() in lowered and lowered[k.lower()] in ("", v))}


class TagsBackend:
    """Tags of the resources other backends hold (compute resources, resource groups), read and written in place."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._lock = threading.RLock()

    def _holder(self, scope: str) -> Any:
        """The record whose ``tags`` the scope names, or 404 as ARM answers for a missing resource."""
        parts = [p for p in scope.strip("/").split("/") if p]
        if len(parts) == 4 and parts[0].lower() == "subscriptions" and parts[2].lower() == "resourcegroups":
            return self.emulator.resources.get_group(parts[1], parts[3])
        record = self.emulator.compute.find(scope)
        if record is None:
            if len(parts) >= 4 and parts[2].lower() == "resourcegroups":
                self.emulator.resources.require_group(parts[1], parts[3])  # ResourceGroupNotFound first, as ARM does
            raise ResourceNotFound(f"The Resource '{scope}' was not found (the emulator's Tags API serves "
                                   "compute resources and resource groups). For more details please go to "
                                   "https://aka.ms/ARMResourceNotFoundFix")
        return record

    def get(self, scope: str) -> tuple[str, dict[str, str]]:
        holder = self._holder(scope)
        return holder.id, dict(holder.tags)

    def put(self, scope: str, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """Tags_CreateOrUpdateAtScope: replaces every tag of the scope."""
        props = body.get("properties")
        if not isinstance(props, dict):
            raise InvalidRequestContent("The request needs 'properties': {'tags': {...}}.")
        return self._write(scope, "Replace", _validated_tags(props.get("tags")))

    def patch(self, scope: str, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """Tags_UpdateAtScope: ``operation`` Merge | Replace | Delete with ``properties.tags``."""
        operation = body.get("operation")
        match = next((o for o in TAG_OPERATIONS if isinstance(operation, str) and o.lower() == operation.lower()), None)
        if match is None:
            raise InvalidRequestContent(
                f"The 'operation' {operation!r} is invalid: use one of {', '.join(TAG_OPERATIONS)}.")
        props = body.get("properties")
        if not isinstance(props, dict):
            raise InvalidRequestContent("The request needs 'properties': {'tags': {...}}.")
        return self._write(scope, match, _validated_tags(props.get("tags")))

    def delete(self, scope: str) -> str:
        """Tags_DeleteAtScope: removes every tag of the scope."""
        with self._lock:
            holder = self._holder(scope)
            holder.tags = {}
            return holder.id

    def _write(self, scope: str, operation: str, given: dict[str, str]) -> tuple[str, dict[str, str]]:
        with self._lock:
            holder = self._holder(scope)
            tags = patched_tags(dict(holder.tags), operation, given)
            if len(tags) > MAX_TAGS:
                raise InvalidTag(f"A resource can have at most {MAX_TAGS} tags; this would make {len(tags)}.")
            holder.tags = tags
            return holder.id, dict(tags)
