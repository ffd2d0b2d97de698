"""PLACEHOLDER: replaced by the batch service implementation."""

from __future__ import annotations

from typing import Any


class BatchBackend:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
