"""The client factory builds every client against the configured endpoints, trusting the given CA."""

from __future__ import annotations

import contextlib

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from emulator.server import EmulatorServer
from shared.config.settings import load_settings
from shared.resources.clients import AzureClients, EmulatorCredential
from tests.conftest import emulator_env


def test_every_client_reaches_the_configured_endpoints(clients: AzureClients, emulator_server: EmulatorServer) -> None:
    """Each client the factory builds sends its calls to the emulator (seen in its request log)."""
    emulator = emulator_server.emulator
    host = emulator_server.base_url.removeprefix("https://")
    calls = {
        "/providers/Microsoft.Compute/snapshots/snap": lambda: clients.compute.snapshots.get("rg", "snap"),
        "/providers/Microsoft.Batch/batchAccounts/acct": lambda: clients.batch_management.batch_account.get(
            "rg", "acct"),
        "/providers/Microsoft.Authorization/locks": lambda: list(
            clients.locks.management_locks.list_at_resource_group_level("rg")),
        "/batch/acct1/pools/p1": lambda: clients.batch_account(f"{host}/batch/acct1").get_pool("p1"),
        "/eventgrid/autopilot/api/events": lambda: clients.event_publisher.send([{"id": "1", "subject": "s",
                                                                                  "eventType": "t",
                                                                                 "data": {}, "dataVersion": "1",
                                                                                 "eventTime": "2026-11-02T06:00:00Z"}]),
    }
    for path, call in calls.items():
        # What the emulator answers is covered by its contract tests; here only *where* matters.
        with contextlib.suppress(HttpResponseError):
            call()
        assert emulator.log.entries(path_contains=path), f"no request reached the emulator at {path}"
    # cached per endpoint
    assert clients.batch_account(f"https://{host}/batch/acct1") is clients.batch_account(f"{host}/batch/acct1")
    assert clients.tables.url.startswith("http")


def test_clients_reach_the_emulator_over_verified_tls(clients: AzureClients, emulator_server: EmulatorServer) -> None:
    # A real round trip through the SDK pipeline: TLS verified against the emulator's CA.
    with pytest.raises(HttpResponseError) as info:
        clients.compute.snapshots.get("no-such-rg", "no-such-snapshot")
    assert info.value.status_code == 404


def test_without_the_ca_bundle_tls_verification_fails(emulator_server: EmulatorServer) -> None:
    env = emulator_env(emulator_server)
    del env["AUTOPILOT_CA_BUNDLE"]
    clients = AzureClients(load_settings(env))
    from azure.core.exceptions import ServiceRequestError

    with pytest.raises(ServiceRequestError) as info:
        clients.compute.snapshots.get("rg", "snap")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_emulator_credential_is_used_only_in_emulator_mode(settings) -> None:
    assert isinstance(AzureClients(settings).credential, EmulatorCredential)
    production = load_settings({"AUTOPILOT_SUBSCRIPTION_ID": settings.subscription_id,
                                "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    from azure.identity import DefaultAzureCredential

    assert isinstance(AzureClients(production).credential, DefaultAzureCredential)


def test_a_call_without_a_token_is_rejected_by_the_emulator(emulator_server: EmulatorServer) -> None:
    from azure.mgmt.compute import ComputeManagementClient

    class NoToken:
        def get_token(self, *scopes, **kwargs):
            from azure.core.credentials import AccessToken

            return AccessToken("", 0)

    client = ComputeManagementClient(NoToken(), "sub", base_url=emulator_server.base_url,
                                     connection_verify=str(emulator_server.ca_cert), retry_total=0)
    with pytest.raises((ClientAuthenticationError, HttpResponseError)) as info:
        client.snapshots.get("rg", "snap")
    assert info.value.status_code == 401


def test_retry_policy_is_bounded_and_configured(clients: AzureClients) -> None:
    retry = clients.compute._config.retry_policy
    assert retry.total_retries == clients.settings.retry.total
    assert retry.backoff_max == clients.settings.retry.backoff_max
