"""Routing table for Microsoft.Resources."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.core import Route
from emulator.resources.responses import ResourcesResponses, TagsResponses

if TYPE_CHECKING:
    from emulator.azure import Emulator

# azure-mgmt-resource releases and the az CLI send different versions; accept the common ones.
API_VERSIONS = frozenset({"2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01", "2024-11-01", "2025-04-01"})
GROUP = "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}"
# The Tags API at any scope (resources.json Tags_*AtScope; azure-mgmt-resource 26 sends 2025-04-01).
TAGS = "/{scope:path}/providers/Microsoft.Resources/tags/default"


def routes(emulator: Emulator) -> list[Route]:
    r = ResourcesResponses(emulator)
    t = TagsResponses(emulator)
    return [
        Route("GET", TAGS, t.get, "Microsoft.Resources/tags/read", API_VERSIONS),
        Route("PUT", TAGS, t.put, "Microsoft.Resources/tags/write", API_VERSIONS),
        Route("PATCH", TAGS, t.patch, "Microsoft.Resources/tags/write", API_VERSIONS),
        # A CanNotDelete lock on the resource blocks this DELETE too (the dispatcher's rule for anything under a
        # locked scope): whether ARM does is not documented, so the emulator does the less convenient thing.
        Route("DELETE", TAGS, t.delete, "Microsoft.Resources/tags/delete", API_VERSIONS),
        Route("PUT", GROUP, r.put_group, "Microsoft.Resources/subscriptions/resourceGroups/write", API_VERSIONS),
        Route("GET", GROUP, r.get_group, "Microsoft.Resources/subscriptions/resourceGroups/read", API_VERSIONS),
        Route("DELETE", GROUP, r.delete_group, "Microsoft.Resources/subscriptions/resourceGroups/delete", API_VERSIONS),
    ]
