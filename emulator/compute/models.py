"""PLACEHOLDER: replaced by the compute service implementation."""

from __future__ import annotations

from typing import Any


class ComputeBackend:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator

    def image_available(self, image_id: str, region: str) -> bool:
        return True

    def image_hyperv_generation(self, image_id: str) -> str | None:
        return None
