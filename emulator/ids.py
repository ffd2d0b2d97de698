"""ARM resource-id helpers for the emulator (case-insensitive, as ARM is)."""

from __future__ import annotations


def key(resource_id: str) -> str:
    """The lookup key for a resource id: lower-case, no trailing slash, one leading slash."""
    return "/" + resource_id.strip("/").lower()


def is_within(child: str, scope: str) -> bool:
    """True when ``child`` is ``scope`` or lies under it (segment-wise, case-insensitive)."""
    c, s = key(child), key(scope)
    return c == s or c.startswith(s + "/")


def resource_group_id(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
