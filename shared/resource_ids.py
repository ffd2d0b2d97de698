"""ARM resource ids: parsing and case-insensitive comparison.

Azure returns the same id with different casing (``resourcegroups`` in write events,
``resourceGroups`` in delete events, ``/Subscriptions/`` in image references), so ids are never
compared as raw strings anywhere in the app: use :func:`same_id` or :class:`ResourceId`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = re.compile(r"^/subscriptions/(?P<sub>[^/]+)(/resourcegroups/(?P<rg>[^/]+))?(?P<rest>(/providers/.*)?)$", re.IGNORECASE)


class InvalidResourceId(ValueError):
    pass


@dataclass(frozen=True)
class ResourceId:
    """A parsed ARM id: ``/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}[/{type}/{name}...]``."""

    raw: str
    subscription_id: str
    resource_group: str | None
    namespace: str | None
    types: tuple[str, ...]  # e.g. ("galleries", "images", "versions")
    names: tuple[str, ...]  # e.g. ("gallery", "def", "1.0.0")

    @classmethod
    def parse(cls, value: str) -> ResourceId:
        if not isinstance(value, str) or len(value) > 2048:
            raise InvalidResourceId(f"not an ARM resource id: {value!r:.120}")
        text = "/" + value.strip().strip("/")
        m = _ID.match(text)
        if m is None:
            raise InvalidResourceId(f"not an ARM resource id: {value!r:.120}")
        rest = [p for p in m.group("rest").split("/") if p]
        namespace, types, names = None, [], []
        if rest:
            if len(rest) < 2 or rest[0].lower() != "providers":
                raise InvalidResourceId(f"not an ARM resource id: {value!r:.120}")
            namespace = rest[1]
            pairs = rest[2:]
            if len(pairs) % 2:
                raise InvalidResourceId(f"ARM resource id has a type without a name: {value!r:.120}")
            types, names = pairs[0::2], pairs[1::2]
        return cls(text, m.group("sub"), m.group("rg"), namespace, tuple(types), tuple(names))

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


def batch_account_id(subscription_id: str, resource_group: str, account: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Batch/batchAccounts/{account}"
