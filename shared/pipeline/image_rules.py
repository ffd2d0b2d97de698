"""The Batch custom-image rules, as pure checks that return findings.

Each rule comes from Microsoft's "Use a managed image to create a custom image pool" article and
its 2026 updates (README.md, "What the app refuses, and what to do", lists each finding and its fix).
A check never raises for a rule violation: it returns :class:`Finding` values, ``refuse`` (the
pipeline must not build or create anything) or ``warn`` (go ahead, tell a person). Every finding names
the resource, says what is wrong and what to do, because the reader is an operator looking at an alert,
not at this code.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core.resource_ids import ResourceId, normalize
from shared.pipeline.snapshot_sets import SnapshotMember, SnapshotSet
from shared.watch.schedules import MAX_TARGET

if TYPE_CHECKING:  # families imports this module for the limits; only the type is needed here
    from shared.config.families import FamilyConfig

# How a person replaces snapshots (a rebuilt VM, a copy): the set follows the tags, so moving them is the fix.
MOVE_TAGS = (", snapshot its disks again and move the autopilot.* tags from the old snapshots to the new ones (remove "
             "them from "
             "the old ones, or delete those)")
MOVE_TAGS_SHORT = " and move the autopilot.* tags to its snapshots (remove them from the old ones)"
REFUSE = "refuse"
WARN = "warn"

# Batch's "quotas and limits" page, Pool size limits: "Compute nodes in pool created with a managed
# image resource": 2,000 dedicated and 1,000 Spot/low-priority (the 2020 article said 2,500). The cap
# is shared by the pools on one managed image or on managed images of the same snapshot. It applies
# to managed-image pools only: Batch's gallery doc (batch-sig-images) says gallery images let pools
# grow larger given enough replicas, so pools on a gallery image version have no such cap.
CUSTOM_IMAGE_DEDICATED_LIMIT = 2000
CUSTOM_IMAGE_SPOT_LIMIT = 1000
# The page adds that inbound NAT pools can lower the cap but gives no number. These are our own
# conservative guesses - half of the dedicated cap, half of the Spot cap. A family can set its own
# numbers through nodeLimits.inboundNatDedicated / inboundNatSpot once the real ceiling is known.
INBOUND_NAT_DEDICATED_LIMIT = 1000
INBOUND_NAT_SPOT_LIMIT = 500
# A sanity bound on one pool's configured size: defined once, beside the schedules that are held to it too.
MAX_POOL_NODES = MAX_TARGET
# 2026 guidance for Compute Gallery images used by Batch: at least 1 replica per 300 VMs, and at
# least 15 minutes of resize timeout per 1,000 VMs.
NODES_PER_REPLICA = 300
RESIZE_MINUTES_PER_1000_NODES = 15
# Warn this long before Batch stops supporting the base image (batchSupportEndOfLife).
END_OF_LIFE_WARNING = timedelta(days=60)

# VM sizes that cannot boot a generation 2 image. Deliberately short: it lists only series for
# which Azure itself says so - the Av2-series size page ("VM Generation Support: Generation 1"),
# the Gen2 allocation error Batch reports ("The selected VM size 'STANDARD_A1_V2' cannot boot
# Hypervisor Generation '2'", SupportArticles azure-batch-pool-resizing-failure, scenario 2), the
# same error seen for Standard_D2_v2 and Standard_D2_v3 (the non-"s" Dv2/Dv3 sizes), and the
# classic Basic_A / A v1 / D v1 sizes that predate generation 2. Unknown sizes pass: a false
# refusal blocks a good pipeline, while a missed one still surfaces as a classified, non-retryable
# allocation error from the pool watch.
GEN1_ONLY_VM_SIZES = (
    re.compile(r"^basic_a\d+$"),  # Basic A0-A4
    re.compile(r"^standard_a\d+$"),  # A v1, including A8-A11
    re.compile(r"^standard_a\d+m?_v2$"),  # Av2: A1_v2 ... A8m_v2
    re.compile(r"^standard_d\d+$"),  # D v1: D1-D4, D11-D14
    re.compile(r"^standard_d\d+_v2(_promo)?$"),  # Dv2 (not DSv2)
    re.compile(r"^standard_d\d+_v3$"),  # Dv3 (not Dsv3)
)

_MARKETPLACE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/locations/(?P<loc>[^/]+)/publishers"
    r"/(?P<publisher>[^/]+)"
    r"/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions/(?P<version>[^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Finding:
    severity: str  # REFUSE | WARN
    code: str
    resource_id: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f" [{self.resource_id}]" if self.resource_id else ""
        return f"{self.severity.upper()} {self.code}{where}: {self.message}. {self.fix[:1].upper()}{self.fix[1:]}"


def refusals(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == REFUSE]


def warnings(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == WARN]


def has_refusal(findings: Iterable[Finding]) -> bool:
    return any(f.severity == REFUSE for f in findings)


def normalize_region(name: str) -> str:
    """``"West Europe"`` and ``"westeurope"`` are one region: ARM returns either form."""
    return "".join(name.split()).lower()


# --- subscription and region ------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetAccount:
    """A Batch account the version's pools go to, with its region (``location`` of the account)."""

    account_id: str
    region: str

    @property
    def subscription_id(self) -> str:
        return ResourceId.parse(self.account_id).subscription_id


def check_location(members: Sequence[SnapshotMember], accounts: Sequence[TargetAccount], *,
                   gallery_location: str | None = None, gallery_subscription: str | None = None,
                   allow_cross_subscription_gallery: bool = False) -> list[Finding]:
    """Snapshots in the account's subscription, and in the region where the image is built; the gallery in the account's
    subscription.

    The image and the gallery version are built where the snapshots are, so the snapshots must be in the gallery's
    region (or, with no gallery location given, the account's). The gallery itself may be in another region than a
    Batch account: Batch's gallery doc (batch-sig-images) says "the image can be in different regions as long as it
    has replicas in the same region as your Batch account", and the pipeline replicates the version to every region
    with a target account (shared/pipeline/request_bodies.py gallery_version_body). A gallery in another subscription is
    uncertain: Batch's gallery doc (batch-sig-images) allows one in another subscription of the same tenant once
    the Microsoft.Batch resource provider is registered there, while the data-plane ImageReference doc says the
    gallery image must be "in the same subscription as the Azure Batch account". So it is refused unless
    AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY is true, which turns the refusal into a warning.
    """
    findings: list[Finding] = []
    for account in accounts:
        account_sub = account.subscription_id.lower()
        build_region = gallery_location or account.region
        foreign = [m for m in members if m.subscription_id.lower() != account_sub]
        if foreign:
            findings.append(Finding(
                REFUSE, "SNAPSHOT_SUBSCRIPTION", account.account_id,
                f"snapshot(s) {', '.join(m.snapshot_id for m in foreign)} are in subscription "
                f"{foreign[0].subscription_id}, "
                f"but Batch account {account.account_id} is in {account.subscription_id}",
                "copy the snapshots into the Batch account's subscription (az snapshot create --source ...) "
                "and move the "
                "autopilot.* tags to the copies (remove them from the originals), or remove this account from the "
                "family's pools "
                "and re-tag one snapshot of the set"))
        elsewhere = [m for m in members if normalize_region(m.region) != normalize_region(build_region)]
        if elsewhere:
            where = (f"the family's gallery, where the image is built, is in {gallery_location}" if gallery_location
                     else f"Batch account {account.account_id} is in {account.region}")
            findings.append(Finding(
                REFUSE, "SNAPSHOT_REGION", account.account_id,
                f"snapshot(s) {', '.join(m.snapshot_id for m in elsewhere)} are in {elsewhere[0].region}, but {where}",
                f"copy the snapshots to {build_region} (az snapshot create --incremental --copy-start --source "
                "<incremental "
                f"snapshot> -l {build_region}) and move the autopilot.* tags to the copies (remove them from the "
                "originals): the "
                "copies join the set once their copy completes; or set the family's gallery.location to the "
                "snapshots' region "
                "(the version is replicated to the accounts' regions) and re-tag one snapshot of the set"))
        if gallery_subscription is not None and gallery_subscription.lower() != account_sub:
            if allow_cross_subscription_gallery:
                findings.append(Finding(
                    WARN, "GALLERY_SUBSCRIPTION", account.account_id,
                    f"the family's gallery is in subscription {gallery_subscription}, Batch account "
                    f"{account.account_id} in {account.subscription_id} "
                    "(allowed by AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY)",
                    "make sure the Microsoft.Batch resource provider is registered in subscription "
                    f"{gallery_subscription} and both subscriptions are in one tenant; if Batch refuses the pool, "
                    "use a gallery in the account's subscription"))
            else:
                findings.append(Finding(
                    REFUSE, "GALLERY_SUBSCRIPTION", account.account_id,
                    f"the family's gallery is in subscription {gallery_subscription}, but Batch account "
                    f"{account.account_id} is in {account.subscription_id}; the app refuses a gallery in another "
                    "subscription unless told otherwise (Batch's documents disagree on whether it works)",
                    "use a gallery in the Batch account's subscription (remove gallery.subscription to use the app's "
                    "subscription); or, if the gallery's subscription is in the same tenant and has the "
                    "Microsoft.Batch resource provider registered, set the app setting "
                    "AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY=true and grant the app's identity its roles on the "
                    "gallery's resource group; then re-tag one snapshot of the set"))
    return findings


# --- the base image -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketplaceImage:
    """A Marketplace image as a disk's ``creationData.imageReference.id`` names it."""

    subscription_id: str
    location: str
    publisher: str
    offer: str
    sku: str
    version: str

    @property
    def urn(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}:{self.version}"


def parse_marketplace_image_id(value: object) -> MarketplaceImage | None:
    """``/Subscriptions/{s}/Providers/Microsoft.Compute/Locations/{loc}/Publishers/{p}/ArtifactTypes/VMImage/Offers/{o}/Skus/{sku}/Versions/{v}``.

    None for anything else (a gallery image, a managed image, an empty disk, garbage).
    """
    if not isinstance(value, str) or len(value) > 1024:
        return None
    m = _MARKETPLACE.match("/" + value.strip().strip("/"))
    if m is None:
        return None
    return MarketplaceImage(m["sub"], m["loc"], m["publisher"], m["offer"], m["sku"], m["version"])


@dataclass(frozen=True)
class SupportedImage:
    """One entry of the Batch account's supported images list (``GET {account}/supportedimages``)."""

    node_agent_sku_id: str
    publisher: str
    offer: str
    sku: str
    version: str
    verification_type: str  # verified | unverified
    os_type: str  # linux | windows
    batch_support_end_of_life: datetime | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> SupportedImage:
        """From the REST JSON (``nodeAgentSKUId``, ``imageReference``...) or the SDK's ``as_dict()`` (snake_case)."""
        ref = item.get("imageReference") or item.get("image_reference") or {}
        eol = item.get("batchSupportEndOfLife") or item.get("batch_support_end_of_life")
        if isinstance(eol, str):
            eol = datetime.fromisoformat(eol)
        return cls(
            node_agent_sku_id=str(item.get("nodeAgentSKUId") or item.get("nodeAgentSkuId")
                                  or item.get("node_agent_sku_id") or ""),
            publisher=str(ref.get("publisher") or ""), offer=str(ref.get("offer") or ""), sku=str(ref.get("sku") or ""),
            version=str(ref.get("version") or "latest"),
            verification_type=str(item.get("verificationType") or item.get("verification_type") or "unverified"),
            os_type=str(item.get("osType") or item.get("os_type") or ""),
            batch_support_end_of_life=eol if isinstance(eol, datetime) else None,
        )

    def matches(self, image: MarketplaceImage) -> bool:
        """Same publisher/offer/sku (case-insensitively), and this entry's version is "latest" or the disk's."""
        return (self.publisher.lower() == image.publisher.lower() and self.offer.lower() == image.offer.lower()
                and self.sku.lower() == image.sku.lower() and self.version.lower() in ("latest", image.version.lower()))


def source_image_id_of_disk(disk: Mapping[str, Any]) -> str | None:
    """``properties.creationData.imageReference.id`` of a managed disk's JSON (``GET .../disks/{name}``), if any; else
    ``galleryImageReference.id`` (a disk from an Azure Compute Gallery image: not a Marketplace image, and said so)."""
    props = disk.get("properties") if isinstance(disk.get("properties"), Mapping) else disk
    creation = props.get("creationData") if isinstance(props, Mapping) else None
    for field_name in ("imageReference", "galleryImageReference"):
        reference = creation.get(field_name) if isinstance(creation, Mapping) else None
        value = reference.get("id") if isinstance(reference, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def purchase_plan_of(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``properties.purchasePlan`` of a disk's or snapshot's JSON: present for images with Marketplace terms."""
    props = resource.get("properties") if isinstance(resource.get("properties"), Mapping) else resource
    plan = props.get("purchasePlan") if isinstance(props, Mapping) else None
    return plan if isinstance(plan, Mapping) and plan else None


@dataclass(frozen=True)
class BaseImageResult:
    node_agent_sku_id: str | None  # the configured one, else the one derived from the supported image
    image: MarketplaceImage | None
    supported: SupportedImage | None
    findings: tuple[Finding, ...]


def check_base_image(source_image_id: str | None, supported_images: Sequence[SupportedImage], *, now: datetime,
                     resource_id: str | None = None, account_id: str | None = None,
                     purchase_plan: Mapping[str, Any] | None = None,
                     os_type: str | None = None, node_agent_sku_id: str | None = None) -> BaseImageResult:
    """The base must be a first-party Marketplace image that this Batch account supports.

    ``source_image_id`` is the OS disk's ``creationData.imageReference.id`` (None when the disk is
    gone or says nothing); ``resource_id`` the snapshot or disk the finding should name;
    ``purchase_plan`` the disk's or snapshot's ``purchasePlan``; ``os_type`` the family's
    gallery osType; ``node_agent_sku_id`` the one the pool configures, if any.
    """
    findings: list[Finding] = []
    where = f" for Batch account {account_id}" if account_id else ""
    if purchase_plan:
        findings.append(_purchase_plan_finding(purchase_plan, resource_id))
    if source_image_id is None:
        findings.append(_base_unknown_finding(resource_id, node_agent_sku_id, where))
        return BaseImageResult(node_agent_sku_id, None, None, tuple(findings))

    image = parse_marketplace_image_id(source_image_id)
    if image is None:
        findings.append(Finding(
            REFUSE, "NOT_MARKETPLACE_IMAGE", resource_id,
            f"the OS disk was created from {source_image_id[:200]}, not from an Azure Marketplace image",
            "build the VM from a first-party Marketplace image that Batch supports" + MOVE_TAGS))
        return BaseImageResult(node_agent_sku_id, None, None, tuple(findings))

    same_sku = [s for s in supported_images if s.publisher.lower() == image.publisher.lower()
                and s.offer.lower() == image.offer.lower()
                and s.sku.lower() == image.sku.lower()]
    candidates = [s for s in same_sku if s.matches(image)]
    if not candidates:
        findings.append(_not_supported_finding(image, same_sku, resource_id, where))
        return BaseImageResult(node_agent_sku_id, image, None, tuple(findings))

    # Prefer an entry for this exact version over "latest", then a verified entry over an unverified one.
    chosen = sorted(candidates, key=lambda s: (s.version.lower() != image.version.lower(),
                                               s.verification_type.lower() != "verified"))[0]
    findings += _supported_image_findings(image, chosen, now=now, resource_id=resource_id, where=where,
                                          os_type=os_type, node_agent_sku_id=node_agent_sku_id)
    return BaseImageResult(node_agent_sku_id or chosen.node_agent_sku_id or None, image, chosen, tuple(findings))


def _purchase_plan_finding(purchase_plan: Mapping[str, Any], resource_id: str | None) -> Finding:
    plan = (", ".join(f"{k}={purchase_plan[k]}" for k in ("publisher", "product", "name") if purchase_plan.get(k))
            or "a purchase plan")
    return Finding(
        REFUSE, "THIRD_PARTY_PURCHASE_PLAN", resource_id,
        f"the OS disk carries a Marketplace purchase plan ({plan}); third-party images with extra license or "
        "purchase terms cannot be the base of a Batch custom image",
        "rebuild the VM from a first-party Marketplace image that Batch supports (az batch pool "
        "supported-images list)" + MOVE_TAGS)


def _base_unknown_finding(resource_id: str | None, node_agent_sku_id: str | None, where: str) -> Finding:
    """The OS disk's base image cannot be read: a warning when the pool names its node agent, else a refusal."""
    if node_agent_sku_id:
        return Finding(
            WARN, "BASE_IMAGE_UNKNOWN", resource_id,
            "the OS disk's base image cannot be read (the source disk is gone or has no imageReference), so it "
            "was not checked"
            f"{where}; using the configured nodeAgentSkuId {node_agent_sku_id!r}",
            "keep the source disk until the image is built so the base image can be checked")
    return Finding(
        REFUSE, "BASE_IMAGE_UNKNOWN", resource_id,
        "the OS disk's base image cannot be read (the source disk is gone or has no imageReference), so "
        "neither Batch support nor the nodeAgentSkuId can be determined",
        "keep the source disk until the image is built, or set nodeAgentSkuId on the family's pools; then "
        "re-tag one snapshot of the set")


def _not_supported_finding(image: MarketplaceImage, same_sku: list[SupportedImage], resource_id: str | None,
                           where: str) -> Finding:
    if same_sku:
        versions = ", ".join(sorted({s.version for s in same_sku}))
        message = (f"Batch supports {image.publisher}:{image.offer}:{image.sku} only in version(s) "
                   f"{versions}{where}, not {image.version}")
    else:
        message = f"the base image {image.urn} is not in the supported images list{where}"
    return Finding(REFUSE, "BASE_IMAGE_NOT_SUPPORTED", resource_id, message,
                   "pick a base image from az batch pool supported-images list --account-name <account> "
                   "and rebuild the VM" + MOVE_TAGS)


def _supported_image_findings(image: MarketplaceImage, chosen: SupportedImage, *, now: datetime,
                              resource_id: str | None, where: str, os_type: str | None,
                              node_agent_sku_id: str | None) -> list[Finding]:
    """What the supported-images entry chosen for the base says: verified, end of life, OS type, node agent."""
    findings: list[Finding] = []
    if chosen.verification_type.lower() != "verified":
        findings.append(Finding(
            REFUSE, "UNVERIFIED_IMAGE", resource_id,
            f"Batch lists the base image {image.urn} as {chosen.verification_type}{where}: it is not verified to work "
            "with Batch",
            "rebuild the VM from a base image Batch lists as verified" + MOVE_TAGS))
    eol = chosen.batch_support_end_of_life
    if eol is not None:
        if eol <= now:
            findings.append(Finding(
                REFUSE, "IMAGE_END_OF_LIFE", resource_id,
                f"Batch support for the base image {image.urn} ended on {eol:%Y-%m-%d}{where}",
                "rebuild the VM from a currently supported base image" + MOVE_TAGS))
        elif eol - now <= END_OF_LIFE_WARNING:
            findings.append(Finding(
                WARN, "IMAGE_END_OF_LIFE_SOON", resource_id,
                f"Batch support for the base image {image.urn} ends on {eol:%Y-%m-%d}{where}",
                "plan a new image version on a newer base image before then"))
    if os_type and chosen.os_type and chosen.os_type.lower() != os_type.lower():
        findings.append(Finding(
            REFUSE, "OS_TYPE_MISMATCH", resource_id,
            f"the base image {image.urn} is a {chosen.os_type} image, but the family's gallery osType is {os_type}",
            "correct gallery.osType in the families configuration and re-tag one snapshot of the set, or tag the "
            "snapshots "
            "with the right family"))
    derived = chosen.node_agent_sku_id or None
    if node_agent_sku_id and derived and node_agent_sku_id.lower() != derived.lower():
        findings.append(Finding(
            WARN, "NODE_AGENT_MISMATCH", resource_id,
            f"the pool sets nodeAgentSkuId {node_agent_sku_id!r}, but Batch pairs the base image {image.urn} with "
            f"{derived!r}{where}",
            "remove nodeAgentSkuId from the pool to use the derived one, unless you know the configured agent fits "
            "this image"))
    return findings


# --- the disks --------------------------------------------------------------------------------------------


def check_os_disk(snapshot_set: SnapshotSet, *, os_type: str | None = None) -> list[Finding]:
    """An image needs exactly one OS-disk snapshot, of the family's OS type."""
    findings: list[Finding] = []
    os_member = snapshot_set.os_member
    if os_member is None:
        return [Finding(REFUSE, "NO_OS_DISK", None, f"snapshot set {snapshot_set.key} has no OS-disk snapshot",
                        "tag the OS disk's snapshot with autopilot.disk=os (and the same family, version and "
                        "diskCount)")]
    if os_member.os_type is None:
        findings.append(Finding(
            WARN, "OS_DISK_WITHOUT_OS_TYPE", os_member.snapshot_id,
            "the snapshot tagged as the OS disk has no osType, which snapshots of data disks usually lack",
            "check that autopilot.disk=os is on the OS disk's snapshot"))
    elif os_type and os_member.os_type.lower() != os_type.lower():
        findings.append(Finding(
            REFUSE, "OS_TYPE_MISMATCH", os_member.snapshot_id,
            f"the OS-disk snapshot is {os_member.os_type}, but the family's gallery osType is {os_type}",
            "correct gallery.osType in the families configuration and re-tag one snapshot of the set, or tag the "
            "snapshots "
            "with the right family"))
    for m in snapshot_set.data_members:
        if m.os_type:
            findings.append(Finding(
                WARN, "DATA_DISK_WITH_OS_TYPE", m.snapshot_id,
                f"the snapshot tagged as data disk LUN {m.lun} has osType {m.os_type}, as OS-disk snapshots do",
                "check the autopilot.disk tags: only the OS disk's snapshot should be autopilot.disk=os"))
    return findings


def is_gen1_only_vm_size(vm_size: str) -> bool:
    size = vm_size.strip().lower()
    return any(p.match(size) for p in GEN1_ONLY_VM_SIZES)


def check_hyper_v_generation(snapshot_generation: str | None, image_generation: str, pools: Sequence[tuple[str, str]],
                             *,
                             snapshot_id: str | None = None) -> list[Finding]:
    """The image's generation must be the snapshot's, and every pool's VM size must boot it.

    ``pools`` holds (pool label, vmSize). A snapshot without hyperVGeneration is treated as V1,
    which is what Azure assumes for disks that do not say.
    """
    findings: list[Finding] = []
    disk_generation = (snapshot_generation or "V1").upper()
    if disk_generation != image_generation.upper():
        findings.append(Finding(
            REFUSE, "HYPERV_GENERATION_MISMATCH", snapshot_id,
            f"the OS-disk snapshot is hyperVGeneration {disk_generation}, but the family's gallery image is "
            f"{image_generation.upper()}; "
            "a mismatched image fails pool allocation",
            f"set gallery.hyperVGeneration to {disk_generation} in the families configuration (it must match the image "
            f"definition) and re-tag one snapshot of the set, or snapshot a {image_generation.upper()} VM"
            + MOVE_TAGS_SHORT))
    if image_generation.upper() == "V2":
        for label, vm_size in pools:
            if is_gen1_only_vm_size(vm_size):
                findings.append(Finding(
                    REFUSE, "GEN2_IMAGE_ON_GEN1_SIZE", label,
                    f"pool {label} uses VM size {vm_size}, which cannot boot a generation 2 image",
                    "choose a VM size that supports generation 2 (e.g. Standard_D4ds_v5) in the family's pools and "
                    "re-tag one "
                    "snapshot of the set, or build a V1 image"))
    return findings


# --- node limits ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLimits:
    """The custom-image node caps that apply to one group of pools sharing an image or snapshot."""

    dedicated: int = CUSTOM_IMAGE_DEDICATED_LIMIT
    spot: int = CUSTOM_IMAGE_SPOT_LIMIT
    inbound_nat_dedicated: int = INBOUND_NAT_DEDICATED_LIMIT
    inbound_nat_spot: int = INBOUND_NAT_SPOT_LIMIT

    def for_group(self, inbound_nat: bool) -> tuple[int, int]:
        if inbound_nat:
            return min(self.inbound_nat_dedicated, self.dedicated), min(self.inbound_nat_spot, self.spot)
        return self.dedicated, self.spot


@dataclass(frozen=True)
class PoolUsage:
    """A pool for the node-limit count: planned (this version) or existing (any version).

    ``pool_key`` identifies the pool across both lists (e.g. ``{account id}/pools/{pool id}``);
    ``dedicated``/``spot`` are the most it is asked for (target, or the largest scheduled size).
    """

    pool_key: str
    image_id: str | None
    snapshot_ids: tuple[str, ...]
    dedicated: int
    spot: int
    inbound_nat: bool = False

    def shared_resources(self) -> set[tuple[str, str]]:
        keys = {("pool", self.pool_key.lower())}
        if self.image_id:
            keys.add(("image", normalize(self.image_id)))
        keys.update(("snapshot", normalize(s)) for s in self.snapshot_ids if s)
        return keys


@dataclass
class _Combined:
    pool_key: str
    dedicated: int
    spot: int
    inbound_nat: bool
    resources: set[tuple[str, str]]
    image_ids: set[str]


def _combine(pools: Iterable[PoolUsage]) -> dict[str, _Combined]:
    """One entry per pool key (case-insensitive). A pool listed twice - planned and existing, as
    when the pipeline runs again after creating it - counts once, with its larger numbers and
    every image and snapshot either listing names, so that merging can never lower a total."""
    out: dict[str, _Combined] = {}
    for p in pools:
        key = p.pool_key.lower()
        images = {normalize(p.image_id)} if p.image_id else set()
        if key in out:
            c = out[key]
            c.dedicated, c.spot = max(c.dedicated, p.dedicated), max(c.spot, p.spot)
            c.inbound_nat = c.inbound_nat or p.inbound_nat
            c.resources |= p.shared_resources()
            c.image_ids |= images
        else:
            out[key] = _Combined(p.pool_key, p.dedicated, p.spot, p.inbound_nat, p.shared_resources(), images)
    return out


def check_node_limits(planned: Sequence[PoolUsage], existing: Sequence[PoolUsage] = (),
                      limits: NodeLimits | None = None) -> list[Finding]:
    """Refuse when the pools sharing an image, or images from the same snapshot, exceed the custom-image caps.

    Counted per shared resource: for the planned pools' image and each of their snapshots, every
    pool (planned or existing) using it is summed. A group containing a pool with inbound NAT
    pools uses the lower NAT limits. Adding pools can only add to the sums and lower the limits,
    so the check is monotonic: more pools never turn a refusal into a pass.
    """
    limits = limits or NodeLimits()
    # Only pools created with a managed image resource share a cap; gallery pools have none.
    planned = [p for p in planned if is_managed_image(p.image_id)]
    pools = _combine([p for p in [*planned, *existing] if is_managed_image(p.image_id)])
    planned_resources: set[tuple[str, str]] = set()
    original: dict[tuple[str, str], str] = {}  # resource key -> the id as first given, for messages
    for p in planned:
        planned_resources |= p.shared_resources()
        original.setdefault(("pool", p.pool_key.lower()), p.pool_key)
        if p.image_id:
            original.setdefault(("image", normalize(p.image_id)), p.image_id)
        for snapshot in p.snapshot_ids:
            original.setdefault(("snapshot", normalize(snapshot)), snapshot)

    findings: list[Finding] = []
    reported: set[tuple[str, frozenset[str]]] = set()
    for resource in sorted(planned_resources, key=lambda r: ({"image": 0, "snapshot": 1, "pool": 2}[r[0]], r[1])):
        group = {key: p for key, p in pools.items() if resource in p.resources}
        nat = any(p.inbound_nat for p in group.values())
        dedicated_limit, spot_limit = limits.for_group(nat)
        for kind, limit, total in (("dedicated", dedicated_limit, sum(p.dedicated for p in group.values())),
                                   ("Spot", spot_limit, sum(p.spot for p in group.values()))):
            if total <= limit:
                continue
            signature = (kind, frozenset(group))
            if signature in reported:  # the same pools over the same cap: one finding is enough
                continue
            reported.add(signature)
            detail = ", ".join(f"{p.pool_key}: {p.dedicated if kind == 'dedicated' else p.spot:,}"
                               for p in sorted(group.values(), key=lambda p: p.pool_key.lower()))
            spelled = original.get(resource, resource[1])
            who = {"image": f"the pools using image {spelled} would total",
                   "snapshot": f"the pools using images built from snapshot {spelled} would total",
                   "pool": f"pool {spelled} alone would have"}[resource[0]]
            nat_text = f" (lowered to {limit:,} because a pool has inbound NAT pools)" if nat else ""
            findings.append(Finding(
                REFUSE, f"NODE_LIMIT_{kind.upper()}", None if resource[0] == "pool" else spelled,
                f"{who} {total:,} {kind} nodes ({detail}), above Batch's custom-image limit of {limit:,}{nat_text}",
                f"lower {kind} (and scheduled sizes) in the family's pools, shrink or delete the other pools listed, "
                "or give pools their "
                "own snapshots and images - Batch counts every pool using the same image or images from the same "
                "snapshot; then "
                "re-tag one snapshot of the set"))
    return findings


_MANAGED_IMAGE = re.compile(r"/providers/microsoft\.compute/images/[^/]+$", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)  # the watch asks for every pool on every tick; a few hundred image ids repeat
def is_managed_image(image_id: str | None) -> bool:
    """A managed image resource id (``.../Microsoft.Compute/images/{name}``), not a gallery image or a Marketplace
    image."""
    return bool(image_id) and _MANAGED_IMAGE.search(image_id.strip()) is not None


def check_shared_image(pools: Sequence[PoolUsage]) -> list[Finding]:
    """Warn when several pools use one image: the article recommends a unique image per pool."""
    by_image: dict[str, list[_Combined]] = {}
    for p in _combine(pools).values():
        for image in p.image_ids:
            by_image.setdefault(image, []).append(p)
    findings = []
    for image, group in sorted(by_image.items()):
        if len(group) > 1:
            findings.append(Finding(
                WARN, "SHARED_IMAGE", image,
                f"{len(group)} pools use this image ({', '.join(sorted(p.pool_key for p in group))}); they share one "
                "custom-image node limit "
                "and Batch recommends a unique image for each pool",
                "give each large pool its own family, or keep the pools' total well under the node limits"))
    return findings


def planned_pool_usages(family: FamilyConfig, version: str, image_id: str,
                        snapshot_ids: Sequence[str]) -> list[PoolUsage]:
    """The family's pools for ``version``, as the node-limit check counts them (their peak sizes).

    Pool keys are ``{account id}/pools/{pool id}`` - the pool's resource id - so a pool that already
    exists (listed again among the existing pools) is recognised and counted once.
    """
    return [PoolUsage(pool_key=f"{pool.account}/pools/{pool.pool_id(family.name, version)}", image_id=image_id,
                      snapshot_ids=tuple(snapshot_ids), dedicated=pool.peak_dedicated, spot=pool.peak_spot,
                      inbound_nat=pool.inbound_nat_pools)
            for pool in family.pools]


# --- replicas and resize timeouts -------------------------------------------------------------------------


def replica_count(planned_nodes: int, per: int = NODES_PER_REPLICA, minimum: int = 1) -> int:
    """Gallery replicas for a region: ``max(minimum, ceil(nodes / per))`` (at least 1 replica per 300 VMs)."""
    if planned_nodes < 0 or per < 1 or minimum < 1:
        raise ValueError(f"replica_count needs planned_nodes >= 0, per >= 1, minimum >= 1 (got {planned_nodes}, {per}, "
                         f"{minimum})")
    return max(minimum, math.ceil(planned_nodes / per))


def check_resize_timeout(pool_label: str, resize_timeout_minutes: int, planned_nodes: int) -> list[Finding]:
    """Warn below the 2026 guidance of 15 minutes of resize timeout per 1,000 VMs."""
    needed = RESIZE_MINUTES_PER_1000_NODES * math.ceil(planned_nodes / 1000)
    if planned_nodes > 0 and resize_timeout_minutes < needed:
        return [Finding(
            WARN, "RESIZE_TIMEOUT_SHORT", pool_label,
            f"pool {pool_label} may grow to {planned_nodes:,} nodes with a {resize_timeout_minutes}-minute "
            "resize timeout; "
            f"the guidance is at least {RESIZE_MINUTES_PER_1000_NODES} minutes per 1,000 nodes ({needed} minutes)",
            f"set resizeTimeoutMinutes to {needed} with allowResizeTimeoutOutsideBand: true, or rely on the watch to "
            "resize again")]
    return []


# --- a whole family ----------------------------------------------------------------------------------------


def check_family(family: FamilyConfig) -> list[Finding]:
    """Configuration-level warnings for one family (nothing here needs Azure)."""
    findings: list[Finding] = []
    label = f"families.{family.name}"
    if len(family.pools) > 1:
        findings.append(Finding(
            WARN, "SHARED_IMAGE", label,
            f"family {family.name} creates {len(family.pools)} pools per version, which will all use one image and "
            "share its "
            "custom-image node limit; Batch recommends a unique image for each pool",
            "split large pools into their own families (each with its own snapshots), or keep their total well under "
            "the limits"))
    for i, pool in enumerate(family.pools):
        nodes = pool.peak_dedicated + pool.peak_spot
        findings.extend(check_resize_timeout(f"{label}.pools[{i}]", pool.resize_timeout_minutes, nodes))
    # Generation 2 on a size that cannot boot it is known from the configuration alone.
    generation = family.gallery.hyper_v_generation
    findings.extend(check_hyper_v_generation(generation, generation,
                                             [(f"{label}.pools[{i}]", p.vm_size) for i, p in enumerate(family.pools)]))
    return findings
