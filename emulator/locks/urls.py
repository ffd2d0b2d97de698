"""Routing table for Microsoft.Authorization/locks.

One template serves the subscription, resource-group, resource (any depth of parent path) and by-scope
operations, since they all end in ``/providers/Microsoft.Authorization/locks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.core import Route
from emulator.locks.responses import LocksResponses

if TYPE_CHECKING:
    from emulator.azure import Emulator

# azure-mgmt-resource-locks 1.0.0 sends 2020-05-01; 2016-09-01 (older SDKs, az CLI) has the same shapes.
API_VERSIONS = frozenset({"2016-09-01", "2020-05-01"})
LOCKS = "/{scope:path}/providers/Microsoft.Authorization/locks"
LOCK = LOCKS + "/{lockName}"


def routes(emulator: Emulator) -> list[Route]:
    r = LocksResponses(emulator)
    return [
        Route("PUT", LOCK, r.put_lock, "Microsoft.Authorization/locks/write", API_VERSIONS),
        Route("GET", LOCK, r.get_lock, "Microsoft.Authorization/locks/read", API_VERSIONS),
        Route("DELETE", LOCK, r.delete_lock, "Microsoft.Authorization/locks/delete", API_VERSIONS),
        Route("GET", LOCKS, r.list_locks, "Microsoft.Authorization/locks/read", API_VERSIONS),
    ]
