"""PLACEHOLDER: replaced by the locks service implementation."""

from __future__ import annotations

from typing import Any


class LocksBackend:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator

    def blocking_locks(self, target: str, operation: str) -> list[Any]:
        return []
