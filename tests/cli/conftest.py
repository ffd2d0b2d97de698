"""Fixtures for the operator CLI's tests: a LocalAzure started from a scenario's initial state, its settings
exported as the process environment (as the Function App has them), and helpers to call ``main`` in-process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot.scenario import parse_scenario
from autopilot.simulate import apply_initial_state, local_azure_for

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No app settings from the developer's shell leak into a test."""
    for name in list(os.environ):
        if name.startswith("AUTOPILOT_") or name.startswith("AzureWebJobsStorage") or name == "AZURE_CLIENT_ID":
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def start_local(azurite: str, tls_material: Any, clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    """``start_local(scenario_dict)``: a LocalAzure in the scenario's initial state, its env exported to the process."""
    started: list[Any] = []

    def start(document: dict[str, Any]) -> Any:
        scenario = parse_scenario(document, source="<test>")
        local = local_azure_for(scenario, azurite, tls=tls_material)
        started.append(local)
        apply_initial_state(local, scenario)
        for name, value in local.env.items():
            clean_env.setenv(name, value)
        return local

    yield start
    for local in started:
        local.close()


# A subscription with one managed pool on a gallery image version built from a snapshot set, and no locks yet
# (the pool was created directly, so no event told the guard about it).
LOCKLESS = {
    "name": "lockless",
    "duration": "1h",
    # The status tests look at the pool before the watch's first tick has acted on it (06:05).
    "settings": {"AUTOPILOT_WATCH_SCHEDULE": "0 */5 * * * *"},
    "batchAccounts": [{"name": "cadweu"}],
    "galleries": [{"name": "autopilotGallery", "images": [{"name": "cad", "hyperVGeneration": "V2"}],
                   "versions": [{"image": "cad", "name": "0.9.0", "osSnapshot": "cad-0-9-0-os",
                                 "dataSnapshots": {"0": "cad-0-9-0-data0"}}]}],
    "snapshotSets": [{"family": "cad", "version": "0.9.0", "dataLuns": [0]}],
    "pools": [
        {"account": "cadweu", "id": "cad-legacy", "vmSize": "Standard_D4ds_v5", "dedicated": 4, "desiredDedicated": 6,
         "image": "/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery/images/cad"
                  "/versions/0.9.0"},
        {"account": "cadweu", "id": "team-pool", "vmSize": "Standard_D4ds_v5", "dedicated": 2, "managed": False,
         "image": "/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery/images/cad"
                  "/versions/0.9.0"},
    ],
}
VERSION_ID = ("/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/images-rg/providers/Microsoft.Compute"
              "/galleries/autopilotGallery/images/cad/versions/0.9.0")
