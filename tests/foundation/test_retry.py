"""Retry-After is honoured inside an invocation only up to AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS (real SDK clients,
HTTPS emulator)."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError

from emulator.azure import Emulator
from emulator.faults import FaultRule
from emulator.server import EmulatorServer
from shared.config.settings import load_settings
from shared.resources.clients import AzureClients
from tests.conftest import emulator_env


def test_a_long_retry_after_is_not_slept_inside_the_invocation(
        emulator: Emulator, emulator_server: EmulatorServer) -> None:
    clients = AzureClients(load_settings(emulator_env(emulator_server, AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS="5")))
    try:
        emulator.faults.add(FaultRule("throttle", path_pattern="/snapshots", retry_after_s=900, max_count=1))
        started = time.monotonic()
        with pytest.raises(HttpResponseError) as raised:
            list(clients.compute.snapshots.list())
        assert raised.value.status_code == 429
        assert time.monotonic() - started < 5  # yielded at once, instead of sleeping 900 s
        # Within the cap, the same throttle is waited out and the call succeeds.
        emulator.faults.add(FaultRule("throttle", path_pattern="/snapshots", retry_after_s=1, max_count=1))
        assert list(clients.compute.snapshots.list()) == []
    finally:
        clients.close()
