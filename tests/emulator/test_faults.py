"""Faults on demand, seen through the real SDK clients and the app's bounded retry policy."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError

from emulator.faults import FaultRule
from emulator.server import EmulatorServer
from shared.resources.clients import AzureClients

SNAPSHOTS = r"/providers/Microsoft\.Compute/snapshots"


@pytest.fixture
def snapshot(emulator_server: EmulatorServer, clients: AzureClients) -> str:
    emulator = emulator_server.emulator
    emulator.resources.put_group(clients.settings.subscription_id, "rg", "westeurope")
    disk = emulator.compute.create_disk(clients.settings.subscription_id, "rg", "d1", location="westeurope",
                                        disk_size_gb=32)
    emulator.compute.create_snapshot(clients.settings.subscription_id, "rg", "s1", source_resource_id=disk.id)
    return "s1"


def _faults(emulator_server: EmulatorServer) -> list:
    return [e for e in emulator_server.emulator.log.entries(path_contains="/snapshots/") if e.fault]


@pytest.mark.parametrize(("rule", "label"), [
    (FaultRule("throttle", path_pattern=SNAPSHOTS, retry_after_s=1, max_count=2), "throttle:429"),
    (FaultRule("error", path_pattern=SNAPSHOTS, status=503, retry_after_s=0, max_count=2), "error:503"),
    (FaultRule("error", path_pattern=SNAPSHOTS, status=500, retry_after_s=0, max_count=2), "error:500"),
    (FaultRule("drop", path_pattern=SNAPSHOTS, max_count=2), "drop"),
])
def test_transient_faults_are_retried_by_the_sdk_and_the_call_succeeds(
        emulator_server, clients, snapshot, rule, label) -> None:
    emulator_server.emulator.faults.add(rule)
    assert clients.compute.snapshots.get("rg", snapshot).name == snapshot
    assert [e.fault for e in _faults(emulator_server)] == [label, label]
    assert emulator_server.emulator.log.entries(path_contains="/snapshots/")[-1].status == 200


def test_retry_after_is_honoured(emulator_server, clients, snapshot) -> None:
    emulator_server.emulator.faults.add(FaultRule("throttle", path_pattern=SNAPSHOTS, retry_after_s=1, max_count=1))
    started = time.monotonic()
    clients.compute.snapshots.get("rg", snapshot)
    assert time.monotonic() - started >= 1.0  # the SDK waited the server's Retry-After, not its own tiny backoff


def test_retries_are_bounded_and_the_error_reaches_the_caller(emulator_server, clients, snapshot) -> None:
    emulator_server.emulator.faults.add(FaultRule("error", path_pattern=SNAPSHOTS, status=503, retry_after_s=0))
    with pytest.raises(HttpResponseError) as info:
        clients.compute.snapshots.get("rg", snapshot)
    assert info.value.status_code == 503
    attempts = len(_faults(emulator_server))
    assert 1 < attempts <= clients.settings.retry.total + 1  # retried, and bounded by AUTOPILOT_HTTP_RETRY_TOTAL


def test_latency_delays_the_answer_without_failing_it(emulator_server, clients, snapshot) -> None:
    emulator_server.emulator.faults.add(FaultRule("latency", path_pattern=SNAPSHOTS, latency_s=0.3, max_count=1))
    started = time.monotonic()
    clients.compute.snapshots.get("rg", snapshot)
    assert time.monotonic() - started >= 0.3


def test_fault_rates_are_deterministic_for_a_seed(emulator_server, clients, snapshot) -> None:
    emulator_server.emulator.faults.add(FaultRule("error", rate=0.5, path_pattern=SNAPSHOTS, status=500,
                                                  retry_after_s=0))
    for _ in range(10):
        clients.compute.snapshots.get("rg", snapshot)
    injected = emulator_server.emulator.faults.injected
    assert 0 < injected < 60


def test_batch_data_plane_faults_use_the_batch_error_shape(emulator_server, clients) -> None:
    emulator = emulator_server.emulator
    emulator.resources.put_group(clients.settings.subscription_id, "batch-rg", "westeurope")
    emulator.batch.create_account(clients.settings.subscription_id, "batch-rg", "acct1", "westeurope")
    emulator.faults.add(FaultRule("error", plane="batch", status=503, retry_after_s=0))
    host = emulator_server.base_url.removeprefix("https://")
    with pytest.raises(HttpResponseError) as info:
        list(clients.batch_account(f"{host}/batch/acct1").list_pools())
    assert info.value.status_code == 503
    assert info.value.response.json()["message"]["value"].startswith("Injected fault")


def test_invalid_fault_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultRule("explode")
    with pytest.raises(ValueError, match="rate"):
        FaultRule("drop", rate=2)


@pytest.mark.parametrize(("rule", "label"), [
    (FaultRule("acted_drop", path_pattern=SNAPSHOTS, methods=frozenset({"DELETE"}), max_count=1), "acted_drop"),
    (FaultRule("acted_error", path_pattern=SNAPSHOTS, methods=frozenset({"DELETE"}), status=503, retry_after_s=0,
               max_count=1), "acted_error:503"),
])
def test_a_lost_answer_follows_the_work(emulator_server, clients, snapshot, rule, label) -> None:
    """acted_*: the emulator does the work, then the answer is lost; the SDK's retry meets the changed world."""
    emulator = emulator_server.emulator
    emulator.faults.add(rule)
    clients.compute.snapshots.begin_delete("rg", snapshot).result()  # the retry of the DELETE finds it gone: 204
    first = emulator.log.entries(path_contains="/snapshots/", method="DELETE")[0]
    assert (first.fault, first.served_status) == (label, 200) or (first.fault, first.served_status) == (label, 202)
    with pytest.raises(HttpResponseError) as info:
        clients.compute.snapshots.get("rg", snapshot)
    assert info.value.status_code == 404  # the first, "failed" call did delete it
