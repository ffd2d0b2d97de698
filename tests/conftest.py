"""Fixtures shared by every test: the HTTPS emulator (real SDK clients over TLS) and Azurite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.azure import Emulator
from emulator.server import EmulatorServer, TlsMaterial
from shared.clients import AzureClients
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
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

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Start azurite-table (node_modules/.bin) and yield its connection string."""
    binary = ROOT / "node_modules" / ".bin" / "azurite-table"
    if not binary.exists():
        found = shutil.which("azurite-table")
        if found is None:
            raise RuntimeError("Azurite is not installed: run `make test` (it runs `npm ci`) or `npm ci` in the repository root.")
        binary = Path(found)
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "--inMemoryPersistence", "--tableHost", "127.0.0.1", "--tablePort", str(port), "--skipApiVersionCheck",
         "--disableProductStyleUrl", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"Azurite exited early ({proc.returncode}): {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("Azurite did not start listening within 30 s")
    try:
        yield (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
               f"TableEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
