"""Routing table for Microsoft.Resources."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.core import Route
from emulator.resources.responses import ResourcesResponses

if TYPE_CHECKING:
    from emulator.azure import Emulator

# azure-mgmt-resource releases and the az CLI send different versions; accept the common ones.
API_VERSIONS = frozenset({"2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01", "2024-11-01", "2025-04-01"})
GROUP = "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}"


def routes(emulator: Emulator) -> list[Route]:
    r = ResourcesResponses(emulator)
    return [
        Route("PUT", GROUP, r.put_group, "Microsoft.Resources/subscriptions/resourceGroups/write", API_VERSIONS),
        Route("GET", GROUP, r.get_group, "Microsoft.Resources/subscriptions/resourceGroups/read", API_VERSIONS),
        Route("DELETE", GROUP, r.delete_group, "Microsoft.Resources/subscriptions/resourceGroups/delete", API_VERSIONS),
    ]
