"""PLACEHOLDER: replaced by the eventgrid service implementation."""

from __future__ import annotations

from typing import Any


class EventGridBackend:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator

    def emit_for_request(self, request: Any, route: Any, status: int) -> None:
        return None
