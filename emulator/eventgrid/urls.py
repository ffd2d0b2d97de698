"""Routing table for Event Grid custom topics (the system topic has no HTTP surface: ARM raises its events)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.core import Route
from emulator.eventgrid.responses import EventGridResponses

if TYPE_CHECKING:
    from emulator.azure import Emulator

# azure-eventgrid 4.22.1 sends 2018-01-01 to basic topics (DEFAULT_BASIC_API_VERSION).
API_VERSIONS = frozenset({"2018-01-01"})


def routes(emulator: Emulator) -> list[Route]:
    r = EventGridResponses(emulator)
    return [
        # The data action the "EventGrid Data Sender" role grants. Authentication is the topic's
        # (access key, SAS or token), so the handler checks it, not the dispatcher.
        Route("POST", "/eventgrid/{topicName}/api/events", r.publish, "Microsoft.EventGrid/events/send/action",
              API_VERSIONS,
              plane="eventgrid", auth=False),
    ]
