"""The composition root: settings, clients, state and clock for one process.

Built on first use, never at import (the Functions worker imports ``function_app`` to index the
functions before any app setting may be needed). The local Functions host installs a context whose
clock is the emulator's virtual clock; nothing else differs from Azure.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

from shared.config.settings import Settings, get_settings
from shared.core.clock import Clock, SystemClock
from shared.core.state import StateStore
from shared.resources.clients import AzureClients


@dataclass
class AppContext:
    settings: Settings
    clients: AzureClients
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def state(self) -> StateStore:
        return StateStore(self.clients.tables, self.settings.table_prefix)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> AppContext:
        return cls(settings, AzureClients(settings), clock or SystemClock())


_lock = threading.Lock()
_context: AppContext | None = None


def get_context() -> AppContext:
    global _context
    with _lock:
        if _context is None:
            _context = AppContext.from_settings(get_settings())
        return _context


def install_context(context: AppContext | None) -> None:
    """Replace the process-wide context (the local Functions host and tests); None resets it."""
    global _context
    with _lock:
        _context = context
