"""The Batch custom-image rules: each refusal names the resource and says what to do."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.families import parse_families
from shared.pipeline.image_rules import (
    REFUSE,
    WARN,
    Finding,
    NodeLimits,
    PoolUsage,
    SupportedImage,
    TargetAccount,
    check_base_image,
    check_family,
    check_hyper_v_generation,
    check_location,
    check_node_limits,
    check_os_disk,
    check_resize_timeout,
    check_shared_image,
    has_refusal,
    is_gen1_only_vm_size,
    normalize_region,
    parse_marketplace_image_id,
    planned_pool_usages,
    purchase_plan_of,
    refusals,
    replica_count,
    source_image_id_of_disk,
    warnings,
)
from shared.pipeline.snapshot_sets import ROLE_DATA, ROLE_OS, SnapshotMember, SnapshotSet, SnapshotSetKey

SUB = "00000000-0000-4000-8000-000000000001"
OTHER_SUB = "00000000-0000-4000-8000-000000000009"
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/renderweu"
SNAPSHOT = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots/gpu-os"

# A supported-images answer (GET {account}/supportedimages), shaped like the spec example
# Pool_ListSupportedImages.json, with entries as a 2026 account would list them.
SUPPORTED_IMAGES_RESPONSE = {"value": [
    {"nodeAgentSKUId": "batch.node.ubuntu 22.04",
     "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2",
                        "version": "latest"},
     "verificationType": "verified", "capabilities": ["DockerCompatible", "NvidiaTeslaDriverInstalled"],
     "osType": "linux"},
    {"nodeAgentSKUId": "batch.node.ubuntu 24.04",
     "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
     "verificationType": "verified", "osType": "linux"},
    {"nodeAgentSKUId": "batch.node.ubuntu 20.04",
     "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-focal", "sku": "20_04-lts-gen2",
                        "version": "latest"},
     "verificationType": "verified", "osType": "linux", "batchSupportEndOfLife": "2026-06-15T00:00:00.0Z"},
    {"nodeAgentSKUId": "batch.node.centos 7",
     "imageReference": {"publisher": "openlogic", "offer": "centos", "sku": "7_9-gen2", "version": "latest"},
     "verificationType": "verified", "osType": "linux", "batchSupportEndOfLife": "2024-06-30T00:00:00.0Z"},
    {"nodeAgentSKUId": "batch.node.debian 12",
     "imageReference": {"publisher": "debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"},
     "verificationType": "unverified", "osType": "linux"},
    {"nodeAgentSKUId": "batch.node.windows amd64",
     "imageReference": {"publisher": "microsoftwindowsserver", "offer": "windowsserver", "sku": "2022-datacenter-g2",
                        "version": "latest"},
     "verificationType": "verified", "osType": "windows"},
    {"nodeAgentSKUId": "batch.node.el 9",
     "imageReference": {"publisher": "almalinux", "offer": "almalinux-x86_64", "sku": "9-gen2",
                        "version": "9.5.202411260"},
     "verificationType": "verified", "osType": "linux"},
]}
SUPPORTED = [SupportedImage.from_api(item) for item in SUPPORTED_IMAGES_RESPONSE["value"]]


def marketplace(publisher: str, offer: str, sku: str, version: str, location: str = "westeurope") -> str:
    # As a disk's creationData.imageReference.id spells it: capitalised segments.
    return (f"/Subscriptions/{SUB}/Providers/Microsoft.Compute/Locations/{location}/Publishers/{publisher}"
            "/ArtifactTypes/VMImage"
            f"/Offers/{offer}/Skus/{sku}/Versions/{version}")


JAMMY = marketplace("Canonical", "0001-com-ubuntu-server-jammy", "22_04-LTS-gen2", "22.04.202604010")


def codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.severity, f.code) for f in findings]


def member(name: str, lun: int | None, *, region: str = "westeurope", sub: str = SUB,
           os_type: str | None = None) -> SnapshotMember:
    return SnapshotMember(snapshot_id=f"/subscriptions/{sub}/resourceGroups/images-rg/providers/Microsoft.Compute"
                                      f"/snapshots/{name}",
                          role=ROLE_OS if lun is None else ROLE_DATA, lun=lun, disk_count=2, region=region,
                          subscription_id=sub,
                          os_type=os_type if os_type is not None else ("Linux" if lun is None else None))


# --- location ------------------------------------------------------------------------------------------


def test_region_names_normalise() -> None:
    assert normalize_region("West Europe") == normalize_region("westeurope") == "westeurope"


def test_snapshots_in_the_accounts_subscription_and_region_pass() -> None:
    members = [member("os", None, region="West Europe"), member("d0", 0)]
    assert check_location(members, [TargetAccount(ACCOUNT, "westeurope")], gallery_location="West Europe",
                          gallery_subscription=SUB) == []


def test_snapshots_elsewhere_are_refused_per_account_with_what_to_do() -> None:
    members = [member("os", None), member("d0", 0, region="northeurope"), member("d1", 1, sub=OTHER_SUB)]
    findings = check_location(members, [TargetAccount(ACCOUNT, "West Europe")], gallery_location="West Europe",
                              gallery_subscription=OTHER_SUB)
    assert codes(findings) == [(REFUSE, "SNAPSHOT_SUBSCRIPTION"), (REFUSE, "SNAPSHOT_REGION"),
                               (REFUSE, "GALLERY_SUBSCRIPTION")]
    region = findings[1]
    assert region.resource_id == ACCOUNT and "snapshots/d0" in region.message and "northeurope" in region.message
    assert "copy the snapshots to West Europe" in region.fix


def test_a_gallery_in_another_region_than_the_account_is_accepted() -> None:
    """Batch's gallery doc: the image may be elsewhere once it has a replica in the account's region (the pipeline adds
    it)."""
    members = [member("os", None, region="northeurope")]
    assert check_location(members, [TargetAccount(ACCOUNT, "westeurope")], gallery_location="northeurope",
                          gallery_subscription=SUB) == []
    [finding] = check_location(members, [TargetAccount(ACCOUNT, "westeurope")], gallery_location="westeurope",
                               gallery_subscription=SUB)
    assert finding.code == "SNAPSHOT_REGION" and "gallery.location to the snapshots' region" in finding.fix


# --- base image ------------------------------------------------------------------------------------------


def test_marketplace_ids_parse_case_insensitively() -> None:
    image = parse_marketplace_image_id(JAMMY)
    assert image is not None and image.urn == "Canonical:0001-com-ubuntu-server-jammy:22_04-LTS-gen2:22.04.202604010"
    assert parse_marketplace_image_id(JAMMY.lower()) is not None
    assert parse_marketplace_image_id(f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/galleries/x"
                                      "/images/y/versions/1.0.0") is None
    assert parse_marketplace_image_id(None) is None


def test_supported_images_read_rest_and_sdk_shapes() -> None:
    sdk = SupportedImage.from_api({"node_agent_sku_id": "batch.node.ubuntu 22.04",
                                   "image_reference": {"publisher": "canonical",
                                   "offer": "o", "sku": "s", "version": "latest"}, "verification_type": "verified",
                                   "os_type": "linux",
                                   "batch_support_end_of_life": datetime(2027, 1, 1, tzinfo=UTC)})
    assert (sdk.node_agent_sku_id == "batch.node.ubuntu 22.04"
            and sdk.batch_support_end_of_life == datetime(2027, 1, 1, tzinfo=UTC))
    assert SUPPORTED[3].batch_support_end_of_life == datetime(2024, 6, 30, tzinfo=UTC)


DISK_GET = {  # GET .../disks/{name} of a VM's OS disk created from a Marketplace image
    "name": "gpu-build-vm_OsDisk_1", "location": "westeurope",
    "properties": {"osType": "Linux", "hyperVGeneration": "V2", "diskSizeGB": 64, "provisioningState": "Succeeded",
                   "creationData": {"createOption": "FromImage", "imageReference": {"id": JAMMY}}},
}


def test_the_base_image_and_purchase_plan_come_from_the_disk_json() -> None:
    assert source_image_id_of_disk(DISK_GET) == JAMMY
    assert source_image_id_of_disk({"properties": {"creationData": {"createOption": "Empty"}}}) is None
    assert purchase_plan_of(DISK_GET) is None
    plan = {"name": "test_sku", "publisher": "test_test_pmc2pc1", "product": "marketplace_vm_test"}
    assert purchase_plan_of({"properties": {"purchasePlan": plan}}) == plan


def test_a_supported_base_derives_the_node_agent() -> None:
    result = check_base_image(JAMMY, SUPPORTED, now=NOW, resource_id=SNAPSHOT, os_type="Linux")
    assert result.findings == ()
    assert result.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert result.supported is SUPPORTED[0]


def test_a_configured_node_agent_wins_but_a_mismatch_warns() -> None:
    result = check_base_image(JAMMY, SUPPORTED, now=NOW, node_agent_sku_id="batch.node.ubuntu 24.04")
    assert result.node_agent_sku_id == "batch.node.ubuntu 24.04"
    assert codes(list(result.findings)) == [(WARN, "NODE_AGENT_MISMATCH")]
    same = check_base_image(JAMMY, SUPPORTED, now=NOW, node_agent_sku_id="BATCH.NODE.UBUNTU 22.04")
    assert same.findings == ()


@pytest.mark.parametrize(("image_id", "code"), [
    (marketplace("debian", "debian-12", "12-gen2", "0.20260101.1"), "UNVERIFIED_IMAGE"),
    (marketplace("OpenLogic", "CentOS", "7_9-gen2", "7.9.2024"), "IMAGE_END_OF_LIFE"),
    (marketplace("bitnami", "wordpress", "4-4", "1.0.0"), "BASE_IMAGE_NOT_SUPPORTED"),
    (marketplace("almalinux", "almalinux-x86_64", "9-gen2", "9.4.202405010"), "BASE_IMAGE_NOT_SUPPORTED"),
    (f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/galleries/x/images/y/versions/1.0.0",
     "NOT_MARKETPLACE_IMAGE"),
])
def test_bases_batch_cannot_use_are_refused(image_id: str, code: str) -> None:
    result = check_base_image(image_id, SUPPORTED, now=NOW, resource_id=SNAPSHOT, account_id=ACCOUNT)
    assert (REFUSE, code) in codes(list(result.findings))
    refusal = next(f for f in result.findings if f.code == code)
    assert refusal.resource_id == SNAPSHOT and refusal.fix


def test_a_pinned_supported_version_matches_only_itself() -> None:
    result = check_base_image(marketplace("almalinux", "almalinux-x86_64", "9-gen2", "9.5.202411260"), SUPPORTED,
                              now=NOW)
    assert result.findings == () and result.node_agent_sku_id == "batch.node.el 9"
    other = check_base_image(marketplace("almalinux", "almalinux-x86_64", "9-gen2", "9.4.202405010"), SUPPORTED,
                             now=NOW)
    assert "only in version(s) 9.5.202411260" in other.findings[0].message


def test_end_of_life_soon_warns() -> None:
    result = check_base_image(marketplace("canonical", "0001-com-ubuntu-server-focal", "20_04-lts-gen2", "20.04.1"),
                              SUPPORTED, now=NOW)
    assert codes(list(result.findings)) == [(WARN, "IMAGE_END_OF_LIFE_SOON")]
    assert "2026-06-15" in result.findings[0].message


def test_a_purchase_plan_is_refused_even_on_a_supported_image() -> None:
    # purchasePlan as in the Snapshot_Get example.
    plan = {"name": "test_sku", "publisher": "test_test_pmc2pc1", "product": "marketplace_vm_test"}
    result = check_base_image(JAMMY, SUPPORTED, now=NOW, purchase_plan=plan, resource_id=SNAPSHOT)
    assert (REFUSE, "THIRD_PARTY_PURCHASE_PLAN") in codes(list(result.findings))
    assert "marketplace_vm_test" in result.findings[0].message


def test_os_type_of_the_base_must_match_the_family() -> None:
    result = check_base_image(JAMMY, SUPPORTED, now=NOW, os_type="Windows")
    assert codes(list(result.findings)) == [(REFUSE, "OS_TYPE_MISMATCH")]


def test_an_unknown_base_is_refused_unless_the_node_agent_is_configured() -> None:
    assert codes(list(check_base_image(None, SUPPORTED, now=NOW).findings)) == [(REFUSE, "BASE_IMAGE_UNKNOWN")]
    configured = check_base_image(None, SUPPORTED, now=NOW, node_agent_sku_id="batch.node.ubuntu 22.04")
    assert codes(list(configured.findings)) == [(WARN, "BASE_IMAGE_UNKNOWN")]
    assert configured.node_agent_sku_id == "batch.node.ubuntu 22.04"


# --- disks and generations ------------------------------------------------------------------------------


def test_the_os_disk_must_be_present_and_of_the_family_os() -> None:
    key = SnapshotSetKey("gpu", "1.0.0")
    no_os = SnapshotSet(key, 2, (member("d0", 0),), NOW)
    assert codes(check_os_disk(no_os)) == [(REFUSE, "NO_OS_DISK")]
    ok = SnapshotSet(key, 2, (member("os", None), member("d0", 0)), NOW)
    assert check_os_disk(ok, os_type="linux") == []
    assert codes(check_os_disk(ok, os_type="Windows")) == [(REFUSE, "OS_TYPE_MISMATCH")]
    no_os_type = SnapshotMember(**{**member("os", None).__dict__, "os_type": None})
    odd = SnapshotSet(key, 2, (no_os_type, member("d0", 0, os_type="Linux")), NOW)
    assert codes(check_os_disk(odd)) == [(WARN, "OS_DISK_WITHOUT_OS_TYPE"), (WARN, "DATA_DISK_WITH_OS_TYPE")]


@pytest.mark.parametrize(("size", "gen1_only"), [
    ("Standard_A1_v2", True), ("STANDARD_A1_V2", True), ("Standard_A8m_v2", True), ("Basic_A1", True),
    ("Standard_A4", True),
    ("Standard_D2_v2", True), ("Standard_D3", True), ("Standard_D2_v3", True),
    ("Standard_D2s_v3", False), ("Standard_DS2_v2", False), ("Standard_D4ds_v5", False),
    ("Standard_NC24ads_A100_v4", False),
    ("Standard_HB120rs_v3", False), ("Something_New_v9", False),
])
def test_gen1_only_sizes(size: str, gen1_only: bool) -> None:
    assert is_gen1_only_vm_size(size) is gen1_only


def test_generation_mismatch_and_gen2_on_gen1_sizes_are_refused() -> None:
    pools = [("renderweu/gpu-1-0-0", "Standard_D4ds_v5"), ("renderweu/small", "Standard_A1_v2")]
    assert codes(check_hyper_v_generation("V2", "V2", pools)) == [(REFUSE, "GEN2_IMAGE_ON_GEN1_SIZE")]
    assert check_hyper_v_generation("V1", "V1", pools) == []
    mismatch = check_hyper_v_generation(None, "V2", pools[:1], snapshot_id=SNAPSHOT)
    assert codes(mismatch) == [(REFUSE, "HYPERV_GENERATION_MISMATCH")]
    assert mismatch[0].resource_id == SNAPSHOT and "set gallery.hyperVGeneration to V1" in mismatch[0].fix


# --- node limits -----------------------------------------------------------------------------------------

# The cap applies to pools created with a managed image resource (Batch quotas and limits page); gallery pools have
# none.
IMAGE = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/images/gpu-1.4.0"
OLD_IMAGE = f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/images/gpu-1.3.0"
GALLERY_IMAGE = (f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/gal/images/gpu"
                 "/versions/1.4.0")
SNAPS = (SNAPSHOT, SNAPSHOT.replace("gpu-os", "gpu-d0"))


def usage(key: str, dedicated: int = 0, spot: int = 0, *, image: str | None = IMAGE, snaps: tuple[str, ...] = SNAPS,
          nat: bool = False) -> PoolUsage:
    return PoolUsage(key, image, snaps, dedicated, spot, nat)


def test_pools_within_the_limits_pass() -> None:
    assert check_node_limits([usage("a/p1", 1500, 1000)], [usage("a/old", 500, image=OLD_IMAGE, snaps=())]) == []


def test_gallery_pools_have_no_shared_cap() -> None:
    assert check_node_limits([usage("a/p1", 3000, 1200, image=GALLERY_IMAGE)],
                             [usage("a/p2", 2500, image=GALLERY_IMAGE)]) == []
    assert check_node_limits([usage("a/p1", 3000, image=None, snaps=())]) == []


def test_the_limit_is_summed_over_pools_sharing_the_image() -> None:
    [finding] = check_node_limits([usage("a/p1", 1500)], [usage("a/p2", 501, snaps=())])
    assert (finding.severity, finding.code, finding.resource_id) == (REFUSE, "NODE_LIMIT_DEDICATED", IMAGE)
    assert finding.message.startswith(f"the pools using image {IMAGE} would total 2,001 dedicated nodes")
    assert ("2,001 dedicated nodes" in finding.message and "a/p1: 1,500" in finding.message
            and "a/p2: 501" in finding.message)
    assert "2,000" in finding.message


def test_the_limit_is_summed_over_images_built_from_the_same_snapshot() -> None:
    other_image_same_snapshot = usage("b/legacy", 0, 600, image=OLD_IMAGE,
                                      snaps=(SNAPSHOT.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"),))
    [finding] = check_node_limits([usage("a/p1", 0, 500)], [other_image_same_snapshot])
    assert finding.code == "NODE_LIMIT_SPOT" and f"images built from snapshot {SNAPSHOT}" in finding.message
    assert check_node_limits([usage("a/p1", 0, 500)], [usage("b/other", 0, 600, image=OLD_IMAGE, snaps=())]) == []


def test_inbound_nat_pools_lower_the_limit_and_the_family_can_set_it() -> None:
    assert check_node_limits([usage("a/p1", 1200)]) == []
    [finding] = check_node_limits([usage("a/p1", 1200, nat=True)])
    assert "lowered to 1,000" in finding.message
    assert check_node_limits([usage("a/p1", 1200, nat=True)], limits=NodeLimits(inbound_nat_dedicated=1500)) == []


def test_a_single_managed_image_pool_over_the_limit_is_refused() -> None:
    [finding] = check_node_limits([usage("a/p1", 2600, snaps=())])
    assert finding.resource_id == IMAGE and "2,600 dedicated nodes" in finding.message


def test_a_pool_listed_as_planned_and_existing_counts_once() -> None:
    assert check_node_limits([usage("a/p1", 2000)], [usage("A/P1", 2000)]) == []


def test_planned_pool_usages_from_the_family() -> None:
    config = parse_families((Path(__file__).resolve().parents[2] / "docs" / "families.example.json").read_text())
    usages = planned_pool_usages(config.families["gpu"], "1.4.0", IMAGE, SNAPS)
    account = ("/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/batch-rg/providers/Microsoft.Batch"
               "/batchAccounts/renderweu")
    assert usages == [PoolUsage(f"{account}/pools/gpu-1-4-0", IMAGE, SNAPS, 40, 0, False),  # peak of the schedule
                      PoolUsage(f"{account}/pools/gpu-1-4-0-spot", IMAGE, SNAPS, 0, 200, False)]
    assert check_node_limits(usages) == []
    assert codes(check_shared_image(usages)) == [(WARN, "SHARED_IMAGE")]


def test_shared_image_warning() -> None:
    assert check_shared_image([usage("a/p1", 1)]) == []
    [warning] = check_shared_image([usage("a/p1", 1), usage("a/p2", 1)])
    assert (warning.severity, warning.code) == (WARN, "SHARED_IMAGE") and "a/p1, a/p2" in warning.message


POOLS = st.builds(
    PoolUsage,
    pool_key=st.sampled_from([f"acct/p{i}" for i in range(8)]),
    image_id=st.sampled_from([IMAGE, OLD_IMAGE, None]),
    snapshot_ids=st.lists(st.sampled_from(
        [*SNAPS, "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/x"]),
                          max_size=2).map(tuple),
    dedicated=st.integers(0, 2600),
    spot=st.integers(0, 1100),
    inbound_nat=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(POOLS, min_size=1, max_size=4), st.lists(POOLS, max_size=4), POOLS, st.booleans())
def test_adding_a_pool_never_turns_a_refusal_into_a_pass(planned: list[PoolUsage], existing: list[PoolUsage],
                                                         extra: PoolUsage,
                                                          as_planned: bool) -> None:
    before = has_refusal(check_node_limits(planned, existing))
    after = has_refusal(check_node_limits([*planned, extra], existing) if as_planned
                        else check_node_limits(planned, [*existing, extra]))
    assert not (before and not after)


@settings(max_examples=200, deadline=None)
@given(st.lists(POOLS, min_size=1, max_size=4))
def test_node_limit_refusals_match_a_plain_recount(planned: list[PoolUsage]) -> None:
    # Independent oracle for pools that all share one image and have unique keys.
    pools = [PoolUsage(f"k{i}", IMAGE, (), p.dedicated, p.spot, p.inbound_nat) for i, p in enumerate(planned)]
    nat = any(p.inbound_nat for p in pools)
    over = (sum(p.dedicated for p in pools) > (1000 if nat else 2000)
            or sum(p.spot for p in pools) > (500 if nat else 1000))
    assert has_refusal(check_node_limits(pools)) == over


# --- replicas, timeouts, families ---------------------------------------------------------------------------


@pytest.mark.parametrize(("nodes", "replicas"), [(0, 1), (1, 1), (300, 1), (301, 2), (2500, 9), (3500, 12)])
def test_replica_count(nodes: int, replicas: int) -> None:
    assert replica_count(nodes) == replicas


def test_replica_count_respects_a_minimum_and_refuses_nonsense() -> None:
    assert replica_count(10, per=200, minimum=3) == 3
    with pytest.raises(ValueError):
        replica_count(-1)


def test_resize_timeout_guidance() -> None:
    assert check_resize_timeout("p", 25, 1000) == []
    [warning] = check_resize_timeout("p", 25, 2500)
    assert warning.code == "RESIZE_TIMEOUT_SHORT" and "45" in warning.fix


def test_check_family_warns_about_shared_images_and_gen1_sizes() -> None:
    gallery = {"resourceGroup": "rg", "name": "gal", "imageDefinition": "gpu", "osType": "Linux",
               "hyperVGeneration": "V2", "location": "westeurope"}
    pools = [{"account": ACCOUNT, "vmSize": "Standard_A2_v2", "dedicated": 2},
             {"account": ACCOUNT, "vmSize": "Standard_D4ds_v5", "poolId": "{family}-{version}-b", "dedicated": 2000}]
    document = {"families": {"gpu": {"gallery": gallery, "imageResourceGroup": "rg", "pools": pools}}}
    config = parse_families(json.dumps(document))
    findings = check_family(config.families["gpu"])
    assert codes(findings) == [(WARN, "SHARED_IMAGE"), (WARN, "RESIZE_TIMEOUT_SHORT"),
                               (REFUSE, "GEN2_IMAGE_ON_GEN1_SIZE")]
    assert len(refusals(findings)) == 1 and len(warnings(findings)) == 2
    assert str(findings[0]).startswith("WARN SHARED_IMAGE [families.gpu]: family gpu creates 2 pools")
    assert ". Split large pools into their own families" in str(findings[0])
