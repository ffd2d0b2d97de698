"""Contract tests for the emulated Azure Batch service, through the real SDKs over HTTPS.

Management plane: azure-mgmt-batch 19 (``clients.batch_management``). Data plane: azure-batch 15.1
(``clients.batch_account(accountEndpoint)``). Both planes share one pool state; resizes advance with the
emulator's virtual clock (tests move it; nothing sleeps on allocation).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from emulator.azure import Emulator
from emulator.batch.formats import bare_etag, format_duration, parse_duration
from emulator.server import EmulatorServer
from shared.resources.clients import AzureClients
from tests.conftest import SUBSCRIPTION_ID

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "azure"
RG = "rg-batch"
LOCATION = "westeurope"
ACCOUNT = "autopilotbatch"
SKU = "batch.node.ubuntu 24.04"
VM = "Standard_D4ds_v5"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def image_version(version: str = "1.0.0", definition: str = "ubuntu-family") -> str:
    return (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/autopilot"
            f"/images/{definition}/versions/{version}")


def raw(pipeline_response: Any, _deserialized: Any, headers: Any) -> tuple[dict[str, Any], Any]:
    """``cls=`` hook for SDK calls: the body as sent on the wire, and the response headers."""
    body = pipeline_response.http_response.text()
    return (json.loads(body) if body else {}), pipeline_response.http_response.headers


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


class FakeImages:
    """Stands in for the compute backend's image queries (the compute service is a separate contract)."""

    def __init__(self) -> None:
        self.missing: set[str] = set()
        self.generation: dict[str, str] = {}

    def image_available(self, image_id: str, region: str) -> bool:
        return image_id.lower() not in self.missing

    def image_hyperv_generation(self, image_id: str) -> str | None:
        return self.generation.get(image_id.lower(), "V1")


@pytest.fixture
def images(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> FakeImages:
    fake = FakeImages()
    monkeypatch.setattr(emulator.compute, "image_available", fake.image_available)
    monkeypatch.setattr(emulator.compute, "image_hyperv_generation", fake.image_hyperv_generation)
    return fake


@pytest.fixture
def quiet(emulator: Emulator) -> None:
    """No transient failures and no jitter: node counts per minute are exact."""
    emulator.batch.configure_capacity(dedicated_failure_rate=0, low_priority_failure_rate=0, rate_jitter=0)


@pytest.fixture
def account(emulator: Emulator, emulator_server: EmulatorServer, clients: AzureClients,
            images: FakeImages) -> dict[str, Any]:
    emulator.resources.put_group(SUBSCRIPTION_ID, RG, LOCATION)
    created = clients.batch_management.batch_account.begin_create(
        RG, ACCOUNT, {"location": LOCATION, "properties": {}}).result()
    return {"name": created.name, "endpoint": created.properties.account_endpoint}


@pytest.fixture
def data(clients: AzureClients, account: dict[str, Any]) -> Any:
    return clients.batch_account(account["endpoint"])


@pytest.fixture
def mgmt(clients: AzureClients, account: dict[str, Any]) -> Any:
    return clients.batch_management


def pool_body(targets: tuple[int, int] | None = None, *, vm_size: str = VM, image: str | None = None,
              timeout: str | None = None,
              metadata: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "vmSize": vm_size,
        "deploymentConfiguration": {"virtualMachineConfiguration": {"imageReference": {"id": image or image_version()},
                                                                    "nodeAgentSkuId": SKU}},
    }
    if targets is not None:
        fixed: dict[str, Any] = {"targetDedicatedNodes": targets[0], "targetLowPriorityNodes": targets[1]}
        if timeout:
            fixed["resizeTimeout"] = timeout
        props["scaleSettings"] = {"fixedScale": fixed}
    if metadata:
        props["metadata"] = [{"name": k, "value": v} for k, v in metadata.items()]
    props.update(extra)
    return {"properties": props}


def create_pool(mgmt: Any, name: str, targets: tuple[int, int] | None = None, **kwargs: Any) -> Any:
    return mgmt.pool.create(RG, ACCOUNT, name, pool_body(targets, **kwargs))


def advance(emulator: Emulator, minutes: float) -> None:
    emulator.clock.advance(timedelta(minutes=minutes))


def resize(data: Any, pool_id: str, dedicated: int, low: int = 0, *, timeout: timedelta | None = None,
           **kwargs: Any) -> Any:
    options = bm.BatchPoolResizeOptions(target_dedicated_nodes=dedicated, target_low_priority_nodes=low,
                                        resize_timeout=timeout)
    return data.begin_resize_pool(pool_id, options, polling_interval=1, **kwargs)


def until_steady(emulator: Emulator, data: Any, pool_id: str, *, step: float = 1, limit: int = 120) -> Any:
    for _ in range(limit):
        pool = data.get_pool(pool_id)
        if pool.allocation_state == "steady":
            return pool
        advance(emulator, step)
    raise AssertionError(f"pool {pool_id} did not become steady within {limit * step} virtual minutes")


# ---------------------------------------------------------------------------------------------
# accounts
# ---------------------------------------------------------------------------------------------


def test_account_shape_matches_the_spec_example_and_endpoint_has_no_scheme(emulator: Emulator,
                                                                           emulator_server: EmulatorServer,
                                                                            clients: AzureClients) -> None:
    emulator.resources.put_group(SUBSCRIPTION_ID, "default-azurebatch-japaneast", "japaneast")
    storage = (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/default-azurebatch-japaneast/providers"
               "/Microsoft.Storage/storageAccounts/samplestorage")
    poller = clients.batch_management.batch_account.begin_create(
        "default-azurebatch-japaneast", "sampleacct",
        {"location": "japaneast", "properties": {"autoStorage": {"storageAccountId": storage}}})
    assert poller.result().properties.provisioning_state == "Succeeded"

    body, _ = clients.batch_management.batch_account.get("default-azurebatch-japaneast", "sampleacct", cls=raw)
    expected = fixture("batchmgmt_BatchAccount_Get_2025-06-01.json")["responses"]["200"]["body"]
    assert set(expected) <= set(body)
    assert set(expected["properties"]) <= set(body["properties"])
    for k in ("name", "location", "type", "identity"):
        assert body[k] == expected[k]
    assert body["id"] == expected["id"].replace("/subid/", f"/{SUBSCRIPTION_ID}/")
    for k in ("provisioningState", "poolAllocationMode", "publicNetworkAccess"):
        assert body["properties"][k] == expected["properties"][k]
    assert body["properties"]["autoStorage"]["storageAccountId"] == storage
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", body["properties"]["autoStorage"]["lastKeySync"])
    # no scheme, host:port of the HTTPS emulator, then the account's data-plane path
    assert body["properties"]["accountEndpoint"] == f"127.0.0.1:{emulator_server.port}/batch/sampleacct"
    props = body["properties"]
    assert isinstance(props["dedicatedCoreQuota"], int) and isinstance(props["lowPriorityCoreQuota"], int)
    assert (isinstance(props["dedicatedCoreQuotaPerVMFamily"], list)
            and props["dedicatedCoreQuotaPerVMFamilyEnforced"] is False)

    names = [a.name
             for a in clients.batch_management.batch_account.list_by_resource_group("default-azurebatch-japaneast")]
    assert names == ["sampleacct"]
    assert "sampleacct" in [a.name for a in clients.batch_management.batch_account.list()]


def test_account_needs_its_resource_group_and_user_subscription_mode_hides_batch_quotas(emulator: Emulator,
                                                                                        emulator_server: EmulatorServer,
                                                                                        clients: AzureClients) -> None:
    with pytest.raises(ResourceNotFoundError) as err:
        clients.batch_management.batch_account.begin_create("no-such-rg", "orphan",
                                                            {"location": LOCATION, "properties": {}}).result()
    assert err.value.error.code == "ResourceGroupNotFound"

    emulator.resources.put_group(SUBSCRIPTION_ID, RG, LOCATION)
    byos = fixture("batchmgmt_BatchAccount_Create_BYOS_UserSubscription_2025-06-01.json")["parameters"]["parameters"]
    created = clients.batch_management.batch_account.begin_create(RG, "byosacct", byos).result()
    assert created.properties.pool_allocation_mode == "UserSubscription"
    body, _ = clients.batch_management.batch_account.get(RG, "byosacct", cls=raw)
    assert ("dedicatedCoreQuota" not in body["properties"]
            and body["properties"]["keyVaultReference"] == byos["properties"]["keyVaultReference"])

    emulator.batch.create_account(SUBSCRIPTION_ID, RG, "scenarioacct", LOCATION, dedicated_core_quota=40, pool_quota=3)
    assert clients.batch_management.batch_account.get(RG, "scenarioacct").properties.dedicated_core_quota == 40
    emulator.resources.delete_group(SUBSCRIPTION_ID, RG)
    assert emulator.batch.list_accounts(SUBSCRIPTION_ID) == []


# ---------------------------------------------------------------------------------------------
# pools: management plane
# ---------------------------------------------------------------------------------------------


def test_pool_create_from_gallery_image_matches_the_spec_example(mgmt: Any) -> None:
    example = fixture("batchmgmt_Pool_Create_SharedImageGallery_2025-06-01.json")
    request_body = example["parameters"]["parameters"]
    expected = example["responses"]["200"]
    body, headers = mgmt.pool.create(RG, ACCOUNT, "testpool", request_body, cls=raw)

    assert set(body) == set(expected["body"])
    assert set(body["properties"]) == set(expected["body"]["properties"])
    for k in ("provisioningState", "allocationState", "vmSize", "interNodeCommunication", "taskSlotsPerNode",
              "taskSchedulingPolicy",
              "deploymentConfiguration", "scaleSettings", "currentDedicatedNodes", "currentLowPriorityNodes"):
        assert body["properties"][k] == expected["body"]["properties"][k], k
    assert body["type"] == expected["body"]["type"] and body["name"] == "testpool"
    assert re.fullmatch(r'W/"0x[0-9A-F]+"', headers["ETag"]) and body["etag"] == headers["ETag"]

    pool = mgmt.pool.get(RG, ACCOUNT, "testpool")
    assert pool.properties.allocation_state == "Steady" and pool.etag == headers["ETag"]
    vm_config = request_body["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    assert (pool.properties.deployment_configuration.virtual_machine_configuration.image_reference.id
            == vm_config["imageReference"]["id"])

    sized = create_pool(mgmt, "sized", (3, 2), timeout="PT20M", metadata={"autopilot.managed": "true"})
    assert sized.properties.allocation_state == "Resizing"
    status = sized.properties.resize_operation_status
    assert (status.target_dedicated_nodes, status.target_low_priority_nodes,
            status.resize_timeout) == (3, 2, timedelta(minutes=20))
    assert [(m.name, m.value) for m in sized.properties.metadata] == [("autopilot.managed", "true")]


def test_pool_create_validation(mgmt: Any, emulator: Emulator) -> None:
    def code_of(body: dict[str, Any]) -> str:
        with pytest.raises(HttpResponseError) as err:
            mgmt.pool.create(RG, ACCOUNT, "bad", body)
        assert err.value.status_code == 400
        return err.value.error.code

    no_sku = pool_body()
    del no_sku["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]["nodeAgentSkuId"]
    assert code_of(no_sku) == "MissingRequiredProperty"
    assert code_of(pool_body(vm_size="Standard_Imaginary_v9")) == "InvalidPropertyValue"
    managed = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-images/providers/Microsoft.Compute/images/legacy"
    # managed images only up to api-version 2019-08-01
    assert code_of(pool_body(image=managed)) == "InvalidPropertyValue"
    assert code_of(pool_body((1, 0), timeout="PT4M")) == "InvalidPropertyValue"
    bad_nat = {"endpointConfiguration": {"inboundNatPools": [{"name": "ssh", "protocol": "TCP", "backendPort": 22,
                                                              "frontendPortRangeStart": 50000,
                                                              "frontendPortRangeEnd": 50010}]}}
    assert code_of(pool_body(networkConfiguration=bad_nat)) == "InvalidPropertyValue"
    emulator.batch.set_account_quotas(ACCOUNT, pool_quota=1)
    create_pool(mgmt, "only")
    with pytest.raises(ResourceExistsError) as err:
        create_pool(mgmt, "second")
    assert err.value.error.code == "PoolQuotaReached"


def test_inbound_nat_ranges_batch_reserves_or_overlapping_are_refused_with_400(mgmt: Any) -> None:
    """azure-batch 15.1.0 BatchInboundNatPool / BatchPoolEndpointConfiguration: reserved, overlapping or too many ->
    400."""
    def nat_body(*ranges: tuple[int, int, int]) -> dict[str, Any]:
        pools = [{"name": f"p{i}", "protocol": "TCP", "backendPort": backend, "frontendPortRangeStart": start,
                  "frontendPortRangeEnd": end}
                 for i, (backend, start, end) in enumerate(ranges)]
        return pool_body(networkConfiguration={"endpointConfiguration": {"inboundNatPools": pools}})

    for body in (nat_body((22, 50000, 54999)), nat_body((22, 49990, 50040)), nat_body((22, 54990, 55100)),
                 nat_body((22, 40000, 40100), (23, 40050, 40200)), nat_body((29876, 40000, 40100)),
                 nat_body((22, 40000, 40100), (22, 41000, 41100)),
                 nat_body(*((20 + i, 1000 + 100 * i, 1050 + 100 * i) for i in range(6)))):
        with pytest.raises(HttpResponseError) as err:
            mgmt.pool.create(RG, ACCOUNT, "natbad", body)
        assert err.value.status_code == 400 and err.value.error.code == "InvalidPropertyValue"
    ok = mgmt.pool.create(RG, ACCOUNT, "natok", nat_body((22, 40000, 40039), (3389, 55001, 55100)))
    assert ok.network_configuration.endpoint_configuration.inbound_nat_pools[1].frontend_port_range_start == 55001


def test_if_none_match_makes_create_only_and_if_match_guards_updates(mgmt: Any, data: Any) -> None:
    first = mgmt.pool.create(RG, ACCOUNT, "guarded", pool_body(), match_condition=MatchConditions.IfMissing)
    with pytest.raises(ResourceExistsError) as err:  # 412: the pool exists
        mgmt.pool.create(RG, ACCOUNT, "guarded", pool_body(), match_condition=MatchConditions.IfMissing)
    assert err.value.status_code == 412

    updated = mgmt.pool.update(RG, ACCOUNT, "guarded",
                               {"properties": {"metadata": [{"name": "autopilot.family", "value": "ubuntu"}]}},
                               etag=first.etag, match_condition=MatchConditions.IfNotModified)
    assert updated.etag != first.etag
    with pytest.raises(ResourceModifiedError) as err:
        mgmt.pool.update(RG, ACCOUNT, "guarded", {"properties": {"metadata": []}}, etag=first.etag,
                         match_condition=MatchConditions.IfNotModified)
    assert err.value.status_code == 412
    with pytest.raises(ResourceNotFoundError):  # If-Match: * on a pool that does not exist
        mgmt.pool.update(RG, ACCOUNT, "nope", {"properties": {}}, match_condition=MatchConditions.IfPresent)

    # one state: the data plane sees the metadata and the same ETag (bare there, weak here)
    pool, headers = data.get_pool("guarded", cls=raw)
    assert pool["metadata"] == [{"name": "autopilot.family", "value": "ubuntu"}]
    assert headers["ETag"] == pool["eTag"] == bare_etag(updated.etag)


def test_management_patch_resizes_and_lists_with_select_and_paging(emulator: Emulator, mgmt: Any, quiet: None) -> None:
    for i in range(12):
        emulator.batch.create_pool(ACCOUNT, f"pool-{i:02d}", vm_size=VM, image_id=image_version(),
                                   node_agent_sku_id=SKU)
    example = fixture("batchmgmt_Pool_Update_ResizePool_2025-06-01.json")
    patched = mgmt.pool.update(RG, ACCOUNT, "pool-03", example["parameters"]["parameters"])
    props = patched.properties
    assert props.allocation_state == "Resizing"
    assert props.scale_settings.fixed_scale.node_deallocation_option == "TaskCompletion"
    assert (props.resize_operation_status.target_dedicated_nodes == 5
            and props.resize_operation_status.resize_timeout == timedelta(minutes=8))
    with pytest.raises(ResourceExistsError) as err:  # a different size while it is resizing
        mgmt.pool.update(RG, ACCOUNT, "pool-03",
                         {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 9}}}})
    assert err.value.error.code == "PoolBeingResized"

    listed = list(mgmt.pool.list_by_batch_account(RG, ACCOUNT, maxresults=5, select="properties/allocationState"))
    assert [p.name for p in listed] == [f"pool-{i:02d}" for i in range(12)]
    assert {p.properties.allocation_state for p in listed} == {"Steady", "Resizing"}
    assert all(p.properties.vm_size is None for p in listed)
    assert len(emulator.log.entries(action="Microsoft.Batch/batchAccounts/pools/read", path_contains="/pools")) >= 3
    only = list(mgmt.pool.list_by_batch_account(RG, ACCOUNT, filter="startswith(name, 'pool-1')"))
    assert [p.name for p in only] == ["pool-10", "pool-11"]


def test_pool_delete_is_a_long_running_operation_that_raises_its_event_when_done(
        emulator: Emulator, mgmt: Any, data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # delete events only (the dispatcher raises the write events through the same method)
    raised: list[dict[str, Any]] = []
    monkeypatch.setattr(emulator.eventgrid, "emit_resource_event",
                        lambda **kw: raised.append(kw) if "Delete" in kw["event_type"] else None,
                        raising=False)
    create_pool(mgmt, "doomed", (2, 0))
    emulator.batch.timings.pool_delete = timedelta(minutes=2)
    poller = mgmt.pool.begin_delete(RG, ACCOUNT, "doomed", polling_interval=0)
    assert mgmt.pool.get(RG, ACCOUNT, "doomed").properties.provisioning_state == "Deleting"
    assert data.get_pool("doomed").state == "deleting"
    assert raised == []
    with pytest.raises(ResourceExistsError):
        resize(data, "doomed", 5)
    advance(emulator, 3)
    poller.result(timeout=10)
    with pytest.raises(ResourceNotFoundError):
        mgmt.pool.get(RG, ACCOUNT, "doomed")
    with pytest.raises(ResourceNotFoundError):
        data.get_pool("doomed")
    assert [(e["event_type"], e["operation_name"]) for e in raised] == [
        ("Microsoft.Resources.ResourceDeleteSuccess", "Microsoft.Batch/batchAccounts/pools/delete")]
    assert raised[0]["subject"].endswith("/batchAccounts/autopilotbatch/pools/doomed")
    assert raised[0]["claims"]["appid"] == "batch-image-autopilot"

    emulator.batch.timings.pool_delete = timedelta(0)  # the default: gone before the next request is answered
    create_pool(mgmt, "quick")
    mgmt.pool.begin_delete(RG, ACCOUNT, "quick", polling_interval=0).result(timeout=10)
    assert [p.name for p in mgmt.pool.list_by_batch_account(RG, ACCOUNT)] == []


# ---------------------------------------------------------------------------------------------
# pools: data plane
# ---------------------------------------------------------------------------------------------


def test_data_plane_get_and_list_with_select_filter_and_paging(emulator: Emulator, mgmt: Any, data: Any) -> None:
    for i in range(25):
        emulator.batch.create_pool(ACCOUNT, f"p{i:03d}", vm_size=VM, image_id=image_version(), node_agent_sku_id=SKU,
                                   metadata={"autopilot.managed": "true"})
    create_pool(mgmt, "Mixed-Case", (1, 0))

    ids = [p.id for p in data.list_pools(max_results=10, select=["id", "allocationState"])]
    assert ids == ["Mixed-Case", *[f"p{i:03d}" for i in range(25)]]
    pages = emulator.log.entries(action="Microsoft.Batch/batchAccounts/pools/read", plane="batch")
    assert len(pages) == 3 and all(e.api_version == "2025-06-01" for e in pages)

    selected, _ = data.get_pool("p007", select=["id", "metadata", "eTag"], cls=raw)
    assert {k for k in selected if not k.startswith("odata.")} == {"id", "metadata", "eTag"}
    first_page = data.send_request(HttpRequest("GET", "/pools?api-version=2025-06-01&maxresults=4&$select=id")).json()
    assert ([p["id"] for p in first_page["value"]] == ["Mixed-Case", "p000", "p001", "p002"]
            and "odata.nextLink" in first_page)

    assert [p.id for p in data.list_pools(filter="id eq 'p010'")] == ["p010"]
    assert [p.id for p in data.list_pools(filter="startswith(id,'p02')")] == ["p020", "p021", "p022", "p023", "p024"]
    assert [p.id for p in data.list_pools(filter="allocationState eq 'resizing'")] == ["Mixed-Case"]
    assert data.get_pool("mixed-case").id == "Mixed-Case"  # pool ids are case-insensitive

    full, headers = data.get_pool("Mixed-Case", cls=raw)
    assert full["virtualMachineConfiguration"] == {"imageReference": {"virtualMachineImageId": image_version()},
                                                   "nodeAgentSKUId": SKU}
    assert full["allocationState"] == "resizing" and full["vmSize"] == VM.lower() and full["resizeTimeout"] == "PT15M"
    assert full["enableAutoScale"] is False and full["state"] == "active"
    assert headers["ETag"] == full["eTag"] and re.fullmatch(r"0x[0-9A-F]+", full["eTag"])
    assert data.get_pool("Mixed-Case", etag=full["eTag"],
                         match_condition=MatchConditions.IfNotModified).id == "Mixed-Case"

    with pytest.raises(ResourceNotFoundError) as err:
        data.get_pool("absent")
    assert err.value.error.code == "PoolNotFound"


def test_resize_goes_resizing_then_steady_with_nodes_after_virtual_minutes(
        emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "grow")
    before = data.get_pool("grow")
    poller = resize(data, "grow", 120, 20, timeout=timedelta(minutes=15))
    pool = data.get_pool("grow")
    assert (pool.allocation_state == "resizing" and pool.target_dedicated_nodes == 120
            and pool.target_low_priority_nodes == 20)
    assert pool.etag != before.etag and pool.resize_errors is None
    advance(emulator, 1)
    pool = data.get_pool("grow")
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (50, 20)
    advance(emulator, 2)
    pool = data.get_pool("grow")
    assert pool.allocation_state == "steady" and pool.current_dedicated_nodes == 120 and pool.resize_errors is None
    assert pool.allocation_state_transition_time == emulator.now()  # 50 + 50 + 20 nodes: steady at minute 3
    poller.result(timeout=10)  # the SDK's poller ends when the pool is steady

    shrink = resize(data, "grow", 10, 0)
    advance(emulator, 0.5)  # shrinks complete quickly
    pool = data.get_pool("grow")
    assert (pool.allocation_state, pool.current_dedicated_nodes, pool.current_low_priority_nodes) == ("steady", 10, 0)
    shrink.result(timeout=10)

    counts = {c.pool_id: c for c in data.list_pool_node_counts()}
    assert (counts["grow"].dedicated.idle == 10 and counts["grow"].dedicated.total == 10
            and counts["grow"].low_priority.total == 0)
    filtered = list(data.list_pool_node_counts(filter="poolId eq 'grow'"))
    assert [c.pool_id for c in filtered] == ["grow"]


def test_resize_conflicts_stale_etags_and_autoscale(emulator: Emulator, mgmt: Any, data: Any) -> None:
    create_pool(mgmt, "busy")
    resize(data, "busy", 10)
    with pytest.raises(ResourceExistsError) as err:
        resize(data, "busy", 20)
    assert err.value.status_code == 409 and err.value.error.code == "PoolBeingResized"

    create_pool(mgmt, "tagged")
    etag = data.get_pool("tagged").etag
    data.update_pool("tagged",
                     bm.BatchPoolUpdateOptions(metadata=[bm.BatchMetadataItem(name="autopilot.version", value="2")]))
    with pytest.raises(ResourceModifiedError) as err:  # azure-batch quotes the bare ETag: If-Match: "0x..."
        resize(data, "tagged", 5, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert err.value.status_code == 412 and err.value.error.code == "ConditionNotMet"
    fresh = data.get_pool("tagged").etag
    unquoted = data.send_request(HttpRequest("POST", "/pools/tagged/resize?api-version=2025-06-01",
                                             json={"targetDedicatedNodes": 5},
                                             headers={"If-Match": fresh}))
    assert unquoted.status_code == 202  # the unquoted form is accepted too
    assert data.get_pool("tagged").allocation_state == "resizing"

    mgmt.pool.create(RG, ACCOUNT, "auto", {"properties": {**pool_body()["properties"],
                                                          "scaleSettings": {
                                                              "autoScale": {"formula": "$TargetDedicatedNodes=0;"}}}})
    assert data.get_pool("auto").enable_auto_scale is True
    with pytest.raises(ResourceExistsError) as err:
        resize(data, "auto", 3)
    assert err.value.status_code == 409

    with pytest.raises(HttpResponseError) as err:
        resize(data, "tagged-missing", 1)
    assert err.value.status_code == 404
    create_pool(mgmt, "short")
    with pytest.raises(HttpResponseError) as err:
        resize(data, "short", 1, timeout=timedelta(minutes=2))
    assert err.value.status_code == 400


def test_a_big_resize_stops_at_the_per_resize_cap_then_times_out(
        emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "big")
    resize(data, "big", 1000, timeout=timedelta(minutes=15))
    advance(emulator, 7)
    pool, _ = data.get_pool("big", cls=raw)
    assert (pool["allocationState"], pool["currentDedicatedNodes"]) == ("resizing", 300)
    assert "resizeErrors" not in pool  # only once steady
    assert "errors" not in mgmt.pool.get(RG, ACCOUNT, "big", cls=raw)[0]["properties"]["resizeOperationStatus"]
    advance(emulator, 8)
    pool, _ = data.get_pool("big", cls=raw)
    assert (pool["allocationState"], pool["currentDedicatedNodes"]) == ("steady", 300)
    assert [e["code"] for e in pool["resizeErrors"]] == ["AllocationTimedout"]  # Azure's spelling on the wire

    body, _ = mgmt.pool.get(RG, ACCOUNT, "big", cls=raw)
    status = body["properties"]["resizeOperationStatus"]
    assert (body["properties"]["allocationState"] == "Steady" and status["targetDedicatedNodes"] == 1000
            and status["resizeTimeout"] == "PT15M")
    assert status["errors"][0]["code"] == "AllocationTimedout"

    resize(data, "big", 1000, timeout=timedelta(minutes=15))  # the errors stay until the next resize, which clears them
    assert data.get_pool("big").resize_errors is None
    advance(emulator, 15)
    assert data.get_pool("big").current_dedicated_nodes == 600


def test_transient_allocation_failures_carry_their_reason_in_values(
        emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    region = LOCATION
    emulator.batch.configure_capacity(region, VM, dedicated_failure_rate=1.0, internal_error_share=1.0)
    create_pool(mgmt, "flaky")
    resize(data, "flaky", 10)
    pool = until_steady(emulator, data, "flaky")
    (error,) = pool.resize_errors
    assert error.code == "AllocationFailed"
    assert [(v.name, v.value) for v in error.error_values] == [("Reason", "The server encountered an internal error.")]

    emulator.batch.configure_capacity(region, VM, internal_error_share=0.0)
    resize(data, "flaky", 10)
    (error,) = until_steady(emulator, data, "flaky").resize_errors
    assert (error.error_values[0].value == "Deployment allocation failed due to insufficient capacity for the "
            "requested VM size in the region.")

    body, _ = mgmt.pool.get(RG, ACCOUNT, "flaky", cls=raw)  # management plane: details[{code, message}]
    assert body["properties"]["resizeOperationStatus"]["errors"][0][
        "details"] == [{"code": "Reason", "message": error.error_values[0].value}]

    # the region runs out: nodes up to what is free, then AllocationFailed / insufficient capacity
    emulator.batch.configure_capacity(region, VM, dedicated_failure_rate=0.0, dedicated_available=30)
    resize(data, "flaky", 50)
    pool = until_steady(emulator, data, "flaky")
    assert pool.current_dedicated_nodes == 30 and pool.resize_errors[0].code == "AllocationFailed"

    # Spot has its own knobs
    emulator.batch.configure_capacity(region, VM, low_priority_failure_rate=1.0, internal_error_share=1.0)
    resize(data, "flaky", 30, 5)
    (error,) = until_steady(emulator, data, "flaky").resize_errors
    assert error.message == "Desired number of low priority nodes could not be allocated"


def test_account_core_quotas_stop_allocation(emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=40, low_priority_cores=8)  # D4ds_v5: 4 cores
    create_pool(mgmt, "q1")
    resize(data, "q1", 25)
    pool = until_steady(emulator, data, "q1")
    assert pool.current_dedicated_nodes == 10 and [e.code for e in pool.resize_errors] == ["AccountCoreQuotaReached"]
    resize(data, "q1", 10, 5)
    pool = until_steady(emulator, data, "q1")
    assert (pool.current_low_priority_nodes == 2
            and [e.code for e in pool.resize_errors] == ["AccountLowPriorityCoreQuotaReached"])

    emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=1000, per_vm_family={"standardDDSv5Family": 48},
                                      per_vm_family_enforced=True)
    resize(data, "q1", 20, 2)
    pool = until_steady(emulator, data, "q1")
    assert (pool.current_dedicated_nodes == 12
            and [e.code for e in pool.resize_errors] == ["AccountVMSeriesCoreQuotaReached"])


def test_image_gone_gen2_mismatch_and_subnet_delegation_fail_allocation(emulator: Emulator, mgmt: Any, data: Any,
                                                                        images: FakeImages,
                                                                         quiet: None) -> None:
    gone = image_version("9.9.9")
    create_pool(mgmt, "orphaned", image=gone)
    images.missing.add(gone.lower())
    resize(data, "orphaned", 4)
    pool = until_steady(emulator, data, "orphaned")
    assert pool.current_dedicated_nodes == 0
    assert [(e.code, e.message) for e in pool.resize_errors] == [
        ("AllocationFailed", "There was an error encountered while performing the last resize on the pool. Please try "
         "resizing the pool again.")]

    gen2 = image_version("2.0.0")
    images.generation[gen2.lower()] = "V2"
    create_pool(mgmt, "tiny", vm_size="Standard_A1_v2", image=gen2)
    resize(data, "tiny", 2)
    (error,) = until_steady(emulator, data, "tiny").resize_errors
    values = {v.name: v.value for v in error.error_values}
    assert error.code == "AllocationFailed" and values["Provider Error Json Truncated"] == "False"
    provider = json.loads(values["Provider Error Json"])
    assert (provider["error"]["code"] == "BadRequest"
            and "cannot boot Hypervisor Generation '2'" in provider["error"]["message"])
    create_pool(mgmt, "roomy", vm_size="Standard_D2s_v5", image=gen2)  # Gen2-capable size: fine
    resize(data, "roomy", 2)
    assert until_steady(emulator, data, "roomy").resize_errors is None

    create_pool(mgmt, "delegated")
    emulator.batch.inject_failure(ACCOUNT, "delegated", "subnet_delegation")
    resize(data, "delegated", 3)
    (error,) = until_steady(emulator, data, "delegated").resize_errors
    assert (error.code, error.error_values[0].value) == ("AllocationFailed",
                                                         "Allocation failed as subnet has delegation to external "
                                                         "resources.")
    resize(data, "delegated", 3)  # one-shot by default: the next resize works
    assert until_steady(emulator, data, "delegated").current_dedicated_nodes == 3


def test_data_plane_create_with_inbound_nat_pools_and_the_custom_image_node_limit(emulator: Emulator, mgmt: Any,
                                                                                  data: Any,
                                                                                   quiet: None) -> None:
    nat = bm.BatchInboundNatPool(name="ssh", protocol="tcp", backend_port=22, frontend_port_range_start=40000,
                                 frontend_port_range_end=40039)
    data.create_pool(bm.BatchPoolCreateOptions(
        id="natted", vm_size=VM, target_dedicated_nodes=60, resize_timeout=timedelta(minutes=6),
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(virtual_machine_image_id=image_version()), node_agent_sku_id=SKU),
        network_configuration=bm.NetworkConfiguration(
            endpoint_configuration=bm.BatchPoolEndpointConfiguration(inbound_nat_pools=[nat]))))
    wire, _ = data.get_pool("natted", cls=raw)
    assert wire["networkConfiguration"]["endpointConfiguration"]["inboundNATPools"][0]["protocol"] == "tcp"
    props = mgmt.pool.get(RG, ACCOUNT, "natted", cls=raw)[0]["properties"]
    assert props["networkConfiguration"]["endpointConfiguration"]["inboundNatPools"][0]["protocol"] == "TCP"
    pool = until_steady(emulator, data, "natted")  # one frontend port per node: 40 ports, 40 nodes
    assert pool.current_dedicated_nodes == 40 and [e.code for e in pool.resize_errors] == ["AllocationTimedout"]



def test_the_custom_image_node_cap_binds_managed_image_pools_sharing_a_snapshot_only(emulator: Emulator, mgmt: Any,
                                                                                     data: Any,
                                                                                        quiet: None) -> None:
    """Batch quotas and limits page: "Compute nodes in pool created with a managed image resource" are capped (2,000
    dedicated today), shared by pools on one managed image or images of the same snapshot; gallery pools have no such
    cap."""
    assert emulator.batch.limits.custom_image_dedicated_nodes == 2000
    emulator.batch.limits.custom_image_dedicated_nodes = 100  # smaller, to keep the test quick
    compute = emulator.compute
    disk = compute.create_disk(SUBSCRIPTION_ID, RG, "osdisk", location=LOCATION, disk_size_gb=64)
    snap = compute.create_snapshot(SUBSCRIPTION_ID, RG, "snap", source_resource_id=disk.id)
    first = compute.create_image(SUBSCRIPTION_ID, RG, "img-a", os_snapshot_id=snap.id, instant=True)
    second = compute.create_image(SUBSCRIPTION_ID, RG, "img-b", os_snapshot_id=snap.id, instant=True)
    # pools created long ago, with an API version that took managed images
    for name, image in (("left", first.id), ("right", second.id)):
        emulator.batch.create_pool(ACCOUNT, name, image_id=image, vm_size=VM, node_agent_sku_id=SKU,
                                   api_version="2019-08-01")
    for name in ("gal-left", "gal-right"):
        create_pool(mgmt, name, image=image_version("3.0.0"))
    for name in ("left", "right", "gal-left", "gal-right"):
        resize(data, name, 70, timeout=timedelta(minutes=5))
    left, right = until_steady(emulator, data, "left"), until_steady(emulator, data, "right")
    assert left.current_dedicated_nodes + right.current_dedicated_nodes == 100  # images of one snapshot share the cap
    assert until_steady(emulator, data, "gal-left").current_dedicated_nodes == 70  # gallery pools: no cap
    assert until_steady(emulator, data, "gal-right").current_dedicated_nodes == 70


def test_a_pool_on_a_managed_image_is_refused_at_api_versions_after_2019_08_01(emulator: Emulator, mgmt: Any) -> None:
    compute = emulator.compute
    disk = compute.create_disk(SUBSCRIPTION_ID, RG, "osdisk", location=LOCATION, disk_size_gb=64)
    snap = compute.create_snapshot(SUBSCRIPTION_ID, RG, "snap", source_resource_id=disk.id)
    image = compute.create_image(SUBSCRIPTION_ID, RG, "img", os_snapshot_id=snap.id, instant=True)
    with pytest.raises(HttpResponseError) as err:  # whatever the date: the api-version decides
        mgmt.pool.create(RG, ACCOUNT, "legacy", pool_body(image=image.id))
    assert err.value.status_code == 400 and err.value.error.code == "InvalidPropertyValue"
    assert "api-version 2025-06-01" in err.value.error.message
    assert emulator.batch.create_pool(ACCOUNT, "legacy", image_id=image.id, vm_size=VM, node_agent_sku_id=SKU,
                                      api_version="2019-08-01")


def test_stop_resize_on_both_planes(emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "halt")
    resize(data, "halt", 500)
    advance(emulator, 2)
    data.begin_stop_pool_resize("halt", polling_interval=1)
    pool = data.get_pool("halt")
    assert pool.allocation_state == "stopping" and pool.current_dedicated_nodes == 100
    advance(emulator, 1)
    pool = data.get_pool("halt")
    assert (pool.allocation_state, pool.current_dedicated_nodes) == ("steady", 100)
    assert [e.code for e in pool.resize_errors] == ["ResizeStopped"]

    example = fixture("batchmgmt_Pool_StopResize_2025-06-01.json")["responses"]["200"]
    resize(data, "halt", 300)
    stopped, headers = mgmt.pool.stop_resize(RG, ACCOUNT, "halt", cls=raw)
    assert stopped["properties"]["allocationState"] == "Stopping"
    assert set(example["body"]["properties"]) <= set(stopped["properties"]) | {"resizeOperationStatus"}
    assert headers["ETag"] == stopped["etag"]
    advance(emulator, 1)
    assert mgmt.pool.get(RG, ACCOUNT, "halt").properties.allocation_state == "Steady"
    assert mgmt.pool.stop_resize(RG, ACCOUNT, "halt").properties.allocation_state == "Steady"  # nothing to stop


def test_management_plane_sees_the_data_plane_resize_in_its_own_casing(
        emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "shared")
    resize(data, "shared", 400, 3, timeout=timedelta(minutes=10))
    bm_pool, _ = mgmt.pool.get(RG, ACCOUNT, "shared", cls=raw)
    props = bm_pool["properties"]
    assert (props["allocationState"] == "Resizing"
            and props["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == 400)
    assert (props["resizeOperationStatus"]["targetLowPriorityNodes"] == 3
            and props["resizeOperationStatus"]["resizeTimeout"] == "PT10M")
    assert ("virtualMachineConfiguration" not in props
            and props["deploymentConfiguration"]["virtualMachineConfiguration"]["nodeAgentSkuId"] == SKU)
    advance(emulator, 10)
    model = mgmt.pool.get(RG, ACCOUNT, "shared")
    assert model.properties.allocation_state == "Steady" and model.properties.current_dedicated_nodes == 300
    assert [e.code for e in model.properties.resize_operation_status.errors] == ["AllocationTimedout"]
    assert data.get_pool("shared").resize_errors[0].code == "AllocationTimedout"
    assert emulator.log.entries(plane="batch", method="POST")[0].action == "Microsoft.Batch/batchAccounts/pools/write"


def test_supported_images(emulator: Emulator, data: Any) -> None:
    images = list(data.list_supported_images())
    by_ref = {(i.image_reference.publisher.lower(), i.image_reference.offer, i.image_reference.sku): i for i in images}
    assert by_ref[("canonical", "ubuntu-24_04-lts", "server")].node_agent_sku_id == "batch.node.ubuntu 24.04"
    assert by_ref[
        ("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts")].node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert by_ref[("microsoftwindowsserver", "WindowsServer",
                   "2022-datacenter")].node_agent_sku_id == "batch.node.windows amd64"
    assert by_ref[("microsoftwindowsserver", "WindowsServer", "2022-datacenter")].os_type == "windows"
    assert by_ref[("microsoft-dsvm", "ubuntu-hpc", "2204")].node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert any(i.verification_type == "unverified" for i in images)
    assert any(i.batch_support_end_of_life is not None for i in images)

    shape = fixture("batch_Pool_ListSupportedImages_2024-02-01.19.0.json")["responses"]["200"]["body"]["value"]
    wire = data.send_request(HttpRequest("GET", "/supportedimages?api-version=2025-06-01")).json()["value"]
    assert {k for row in wire for k in row} == {k for row in shape for k in row}  # same fields as the spec example
    assert ({row["osType"] for row in wire} == {"linux", "windows"}
            and {row["verificationType"] for row in wire} == {"verified", "unverified"})

    unverified = list(data.list_supported_images(filter="verificationType eq 'unverified'"))
    assert unverified and all(i.verification_type == "unverified" for i in unverified)
    paged = list(data.list_supported_images(max_results=3))
    assert len(paged) == len(images)

    emulator.batch.add_supported_image("canonical", "ubuntu-26_04-lts", "server", "batch.node.ubuntu 26.04")
    assert emulator.batch.remove_supported_image("canonical", "0001-com-ubuntu-server-focal", "20_04-lts") == 1
    skus = {i.node_agent_sku_id for i in data.list_supported_images()}
    assert "batch.node.ubuntu 26.04" in skus and "batch.node.ubuntu 20.04" not in skus


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def _run_scenario(seed: int, read_every_minute: bool) -> list[tuple[Any, ...]]:
    emulator = Emulator(seed=seed)
    fake = FakeImages()  # every image exists (the compute service is not part of this scenario)
    emulator.compute.image_available = fake.image_available  # type: ignore[method-assign]
    emulator.compute.image_hyperv_generation = fake.image_hyperv_generation  # type: ignore[method-assign]
    batch = emulator.batch
    batch.configure_capacity(dedicated_failure_rate=0.08, low_priority_failure_rate=0.15, rate_jitter=0.5)
    emulator.resources.put_group(SUBSCRIPTION_ID, RG, LOCATION)
    batch.create_account(SUBSCRIPTION_ID, RG, ACCOUNT, LOCATION, dedicated_core_quota=2000)
    pools = [f"d{i}" for i in range(8)]
    for name in pools:
        batch.create_pool(ACCOUNT, name, vm_size=VM, image_id=image_version(), node_agent_sku_id=SKU)
    outcomes = []
    for round_ in range(3):
        for i, name in enumerate(pools):
            if batch.get_pool(ACCOUNT, name).allocation_state == "steady":
                batch.resize_pool(ACCOUNT, name, 60 + 40 * i + round_, 10 * (i % 3),
                                  resize_timeout=timedelta(minutes=8))
        for _ in range(20):
            emulator.clock.advance(timedelta(minutes=1))
            if read_every_minute:
                for name in pools:
                    batch.get_pool(ACCOUNT, name)
                    batch.list_pools(ACCOUNT)
        for name in pools:
            p = batch.get_pool(ACCOUNT, name)
            outcomes.append((round_, name, p.allocation_state, dict(p.current),
                             [(e.code, tuple(e.values)) for e in p.resize_errors]))
    return outcomes


def test_same_seed_same_outcomes_whatever_the_read_frequency() -> None:
    often = _run_scenario(7, read_every_minute=True)
    rarely = _run_scenario(7, read_every_minute=False)
    assert often == rarely
    assert any(errors for *_, errors in often)  # the scenario really exercised failures
    assert _run_scenario(8, read_every_minute=False) != often


# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "minutes"),
                         [("PT15M", 15), ("PT15M00S", 15), ("PT1H30M", 90), ("P1DT2H", 26 * 60), ("PT900S", 15)])
def test_durations_round_trip(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)
    assert parse_duration(format_duration(timedelta(minutes=minutes))) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["P1M", "P1Y", "P1.5D", "PT1.5M", "PT1,5S", "-PT5M", "P", "PT", "P1DT", "15 minutes"])
def test_durations_without_a_fixed_length_or_with_odd_fractions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an ISO-8601 duration"):
        parse_duration(text)


def test_durations_are_answered_in_their_shortest_form() -> None:
    assert [format_duration(timedelta(hours=h)) for h in (0, 1, 26)] == ["PT0S", "PT1H", "P1DT2H"]
    assert format_duration(timedelta(seconds=90.5)) == "PT1M30.5S"


def test_etag_forms() -> None:
    assert bare_etag('W/"0x8D4"') == bare_etag('"0x8D4"') == bare_etag("0x8D4") == "0x8D4"


# ---------------------------------------------------------------------------------------------
# Pool - Update of the image (issue 15: inPlace rollouts)
# ---------------------------------------------------------------------------------------------


def image_patch(version: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {"properties": {
        "deploymentConfiguration": {"virtualMachineConfiguration": {"imageReference": {"id": image_version(version)},
                                                                    "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
        "metadata": [{"name": k, "value": v} for k, v in metadata.items()]}}


def test_the_image_changes_only_at_zero_nodes_and_with_its_metadata(
        emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "render", (4, 0), metadata={"autopilot.version": "1.0.0"})
    until_steady(emulator, data, "render")
    with pytest.raises(HttpResponseError) as refused:
        mgmt.pool.update(RG, ACCOUNT, "render", image_patch("1.1.0", {"autopilot.version": "1.1.0"}))
    assert refused.value.status_code == 409 and "zero dedicated" in str(refused.value)
    pool = mgmt.pool.get(RG, ACCOUNT, "render")
    # Nothing of the refused update landed: not the image, not the metadata.
    assert pool.deployment_configuration.virtual_machine_configuration.image_reference.id.endswith("/versions/1.0.0")
    assert [(m.name, m.value) for m in pool.metadata] == [("autopilot.version", "1.0.0")]

    mgmt.pool.update(RG, ACCOUNT, "render",
                     {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 0}}}})
    until_steady(emulator, data, "render")
    mgmt.pool.update(RG, ACCOUNT, "render", image_patch("1.1.0", {"autopilot.version": "1.1.0"}))
    pool = mgmt.pool.get(RG, ACCOUNT, "render")
    assert pool.deployment_configuration.virtual_machine_configuration.image_reference.id.endswith("/versions/1.1.0")
    assert [(m.name, m.value) for m in pool.metadata] == [("autopilot.version", "1.1.0")]
    # The next resize builds nodes from the new image (the data plane shows it too).
    mgmt.pool.update(RG, ACCOUNT, "render",
                     {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 2}}}})
    advance(emulator, 1)
    grown = until_steady(emulator, data, "render")
    assert grown.current_dedicated_nodes == 2
    assert grown.virtual_machine_configuration.image_reference.virtual_machine_image_id.endswith("/versions/1.1.0")


def test_a_resizing_pool_refuses_the_image_change(emulator: Emulator, mgmt: Any, data: Any, quiet: None) -> None:
    create_pool(mgmt, "busy", (0, 0))
    mgmt.pool.update(RG, ACCOUNT, "busy",
                     {"properties": {"scaleSettings": {"fixedScale": {"targetDedicatedNodes": 3}}}})
    assert data.get_pool("busy").allocation_state == "resizing"
    with pytest.raises(HttpResponseError) as refused:
        mgmt.pool.update(RG, ACCOUNT, "busy", image_patch("1.1.0", {}))
    assert refused.value.status_code == 409

