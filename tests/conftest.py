"""Fixtures shared by every test: the HTTPS emulator (real SDK clients over TLS) and Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.azure import Emulator
from emulator.azurite import Azurite
from emulator.server import EmulatorServer, TlsMaterial
from shared.config.settings import Settings, load_settings
from shared.resources.clients import AzureClients

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.json") if not p.name.endswith(".schema.json"))
SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(seed=1)


@pytest.fixture
def emulator_server(emulator: Emulator, tls_material: TlsMaterial) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator, tls=tls_material) as server:
        yield server


def emulator_env(server: EmulatorServer, azurite_connection: str | None = None, **overrides: str) -> dict[str, str]:
    """App settings that point the app at an emulator server (and Azurite when given)."""
    env = {
        "AUTOPILOT_SUBSCRIPTION_ID": SUBSCRIPTION_ID,
        "AUTOPILOT_ARM_ENDPOINT": server.base_url,
        "AUTOPILOT_CREDENTIAL": "emulator",
        "AUTOPILOT_CA_BUNDLE": str(server.ca_cert),
        "AUTOPILOT_EVENTS_TOPIC_ENDPOINT": f"{server.base_url}/eventgrid/autopilot/api/events",
        "AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS": "0.01",
        "AzureWebJobsStorage": azurite_connection or "UseDevelopmentStorage=true",
    }
    env.update(overrides)
    return env


@pytest.fixture
def settings(emulator_server: EmulatorServer) -> Settings:
    return load_settings(emulator_env(emulator_server))


@pytest.fixture
def clients(settings: Settings) -> Iterator[AzureClients]:
    c = AzureClients(settings)
    yield c
    c.close()


# --------------------------------------------------------------------------------------------
# Azurite: the real Table storage emulator from npm, in memory on loopback, for the session.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Azurite's Table service for the whole session; yields its connection string."""
    with Azurite() as server:
        yield server.connection_string


@pytest.fixture(scope="session")
def bundled_runs(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every bundled scenario run once through the CLI (``autopilot simulate``): exit code, output, report.

    Shared by the scenario tests (tests/cli) and the least-privilege test (tests/infra), which reads
    the app's own requests from the reports.
    """
    import contextlib
    import io
    import json

    from autopilot.cli import main

    runs: dict[str, dict] = {}
    for path in BUNDLED_SCENARIOS:
        report = tmp_path_factory.mktemp(path.stem) / "report.json"
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            code = main(["simulate", str(path), "--report", str(report), "--azurite", azurite, "--quiet", "--no-chart"])
        runs[path.stem] = {"code": code, "output": output.getvalue(), "report": json.loads(report.read_text())}
    return runs
