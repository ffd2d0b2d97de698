"""`python -m emulator` starts, prints its endpoints as one JSON line, and serves real SDK clients."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.config.settings import load_settings
from shared.resources.clients import AzureClients
from tests.conftest import ROOT, SUBSCRIPTION_ID


def test_standalone_emulator_prints_endpoints_and_serves_the_sdk(tmp_path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--tls-dir", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["arm"].startswith("https://127.0.0.1:") and info["ca_cert"].endswith(".pem")
        settings = load_settings({"AUTOPILOT_SUBSCRIPTION_ID": SUBSCRIPTION_ID, "AUTOPILOT_ARM_ENDPOINT": info["arm"],
                                  "AUTOPILOT_CREDENTIAL": "emulator", "AUTOPILOT_CA_BUNDLE": info["ca_cert"],
                                  "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
        clients = AzureClients(settings)
        # An empty subscription that accepts any id: resource groups are created through ARM as in Azure.
        from azure.core.rest import HttpRequest

        response = clients.compute.send_request(HttpRequest("PUT",
                                                            f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups"
                                                            "/rg1?api-version=2024-03-01",
                                                            json={"location": "westeurope"}))
        assert response.status_code == 201
        with pytest.raises(ResourceNotFoundError):
            clients.compute.snapshots.get("rg1", "nothing-here")
        clients.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode is not None
