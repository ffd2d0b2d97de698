"""Subscriptions and resource groups (Microsoft.Resources): the containers every resource needs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.core import AzureError
from emulator.ids import key, resource_group_id

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

    def put_group(self, subscription_id: str, name: str, location: str, tags: dict[str, str] | None = None) -> tuple[ResourceGroup, bool]:
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
            raise AzureError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
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
