"""The state a scenario starts from, created directly in the emulator: what already existed before the run, so
no Event Grid event is raised for it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from autopilot.scenario import (
    BATCH_RG,
    DEFAULT_REGION,
    IMAGES_RG,
    Scenario,
    ScenarioError,
    parse_duration,
)

DEFAULT_IMAGE = "Canonical:ubuntu-24_04-lts:server"
DEFAULT_NODE_AGENT = "batch.node.ubuntu 24.04"

CAPACITY_FIELDS = {
    "dedicatedAvailable": "dedicated_available", "spotAvailable": "low_priority_available",
    "dedicatedPerMinute": "dedicated_per_minute", "spotPerMinute": "low_priority_per_minute",
    "maxNodesPerResize": "max_nodes_per_resize", "dedicatedFailureRate": "dedicated_failure_rate",
    "spotFailureRate": "low_priority_failure_rate", "internalErrorShare": "internal_error_share",
    "rateJitter": "rate_jitter",
}


def local_azure_for(scenario: Scenario, azurite_connection: str, *, tls: Any = None) -> Any:
    """A LocalAzure configured as the scenario says (families, settings, seed, start), before its initial state."""
    from autopilot.local import LocalAzure

    return LocalAzure(azurite_connection=azurite_connection, seed=scenario.seed, start=scenario.start,
                      families=scenario.families,
                      accounts=scenario.watched_accounts() or None, settings=scenario.settings, tls=tls)


def apply_initial_state(local: Any, scenario: Scenario) -> None:
    """Put the subscription in the state the scenario starts from. No Event Grid events: this is what already
    existed."""
    local.emulator.compute.retry_after_seconds = 0  # nothing in a simulation should wait in real time for an SDK poller
    _world(local, scenario)
    _accounts(local, scenario)
    _galleries(local, scenario)
    _snapshots(local, scenario)
    _images(local, scenario)
    _gallery_versions(local, scenario)
    for pool in scenario.raw.get("pools") or []:
        _create_pool(local, scenario, pool)


def _world(local: Any, scenario: Scenario) -> None:
    """The emulator's knobs: how long Azure takes, the VM sizes, regional capacity, resource groups."""
    raw = scenario.raw
    compute, batch = local.emulator.compute, local.emulator.batch
    timings = raw.get("timings") or {}
    for key, attr in (("imageCreate", "image_create_duration"), ("galleryVersionBase", "version_base_duration"),
                      ("galleryVersionPerExtraReplica", "version_per_extra_replica"),
                      ("galleryVersionPerRemoteRegion", "version_per_remote_region")):
        if key in timings:
            setattr(compute, attr, parse_duration(timings[key]))
    if "poolShrink" in timings:
        batch.timings.shrink = parse_duration(timings["poolShrink"])
    if "poolDelete" in timings:
        batch.timings.pool_delete = parse_duration(timings["poolDelete"])
    for size in raw.get("vmSizes") or []:
        batch.register_vm_size(size["name"], size["cores"], size["family"], hyperv_gen2=size.get("hyperVGen2", True))
    for entry in raw.get("capacity") or []:
        configure_capacity(local, entry)
    for group in raw.get("resourceGroups") or []:
        local.emulator.resources.put_group(scenario.subscription_id, group["name"],
                                           group.get("location", DEFAULT_REGION))


def _accounts(local: Any, scenario: Scenario) -> None:
    for account in scenario.accounts:
        props: dict[str, Any] = {}
        for key, prop in (("poolAllocationMode", "pool_allocation_mode"), ("dedicatedCores", "dedicated_core_quota"),
                          ("spotCores", "low_priority_core_quota"), ("pools", "pool_quota"),
                          ("perVmFamily", "dedicated_core_quota_per_vm_family"),
                          ("perVmFamilyEnforced", "dedicated_core_quota_per_vm_family_enforced")):
            if key in account:
                props[prop] = account[key]
        local.add_batch_account(account["name"], resource_group=account.get("resourceGroup", BATCH_RG),
                                location=account.get("location", DEFAULT_REGION), **props)


def _galleries(local: Any, scenario: Scenario) -> None:
    """Galleries and their image definitions (their versions come after the snapshots and images they are built
    from)."""
    sub, compute = scenario.subscription_id, local.emulator.compute
    for gallery in scenario.raw.get("galleries") or []:
        rg = gallery.get("resourceGroup", IMAGES_RG)
        _ensure_group(local, rg, gallery.get("location", DEFAULT_REGION))
        compute.create_gallery(sub, rg, gallery["name"], location=gallery.get("location", DEFAULT_REGION))
        for image in gallery.get("images") or []:
            compute.create_gallery_image(sub, rg, gallery["name"], image["name"], os_type=image.get("osType", "Linux"),
                                         os_state=image.get("osState", "Generalized"),
                                         hyper_v_generation=image.get("hyperVGeneration", "V2"))


def _snapshots(local: Any, scenario: Scenario) -> None:
    """Single snapshots as given, and snapshot sets tagged as the image pipeline expects them."""
    raw, sub, compute = scenario.raw, scenario.subscription_id, local.emulator.compute
    for snap in raw.get("snapshots") or []:
        rg = snap.get("resourceGroup", IMAGES_RG)
        location = snap.get("location", DEFAULT_REGION)
        disk = prepared_disk(local, f"{snap['name']}-disk", rg, location, snap.get("image"), snap.get("dataDiskGb"))
        compute.create_snapshot(sub, rg, snap["name"], source_resource_id=disk, location=location,
                                tags=dict(snap.get("tags") or {}))
    for snapshot_set in raw.get("snapshotSets") or []:
        rg = snapshot_set.get("resourceGroup", IMAGES_RG)
        location = snapshot_set.get("location", DEFAULT_REGION)
        prefix = f"{snapshot_set['family']}-{snapshot_set['version'].replace('.', '-')}"
        luns = list(snapshot_set.get("dataLuns") or [])
        for role, tags in snapshot_set_tags(snapshot_set["family"], snapshot_set["version"], luns).items():
            name = f"{prefix}-os" if role == "os" else f"{prefix}-data{role}"
            disk = prepared_disk(local, f"{name}-disk", rg, location,
                                 snapshot_set.get("image") if role == "os" else None,
                                 None if role == "os" else 128)
            compute.create_snapshot(sub, rg, name, source_resource_id=disk, location=location, tags=tags)


def _images(local: Any, scenario: Scenario) -> None:
    sub, compute = scenario.subscription_id, local.emulator.compute
    for image in scenario.raw.get("managedImages") or []:
        rg = image.get("resourceGroup", IMAGES_RG)
        data = {int(lun): _compute_ref(scenario, ref, rg, "snapshots")
                for lun, ref in (image.get("dataSnapshots") or {}).items()}
        compute.create_image(sub, rg, image["name"],
                             os_snapshot_id=_compute_ref(scenario, image["osSnapshot"], rg, "snapshots"),
                             data_snapshot_ids=data, hyper_v_generation=image.get("hyperVGeneration"), instant=True)


def _gallery_versions(local: Any, scenario: Scenario) -> None:
    sub, compute = scenario.subscription_id, local.emulator.compute
    for gallery in scenario.raw.get("galleries") or []:
        rg = gallery.get("resourceGroup", IMAGES_RG)
        for version in gallery.get("versions") or []:
            data = {int(lun): _compute_ref(scenario, ref, rg, "snapshots")
                    for lun, ref in (version.get("dataSnapshots") or {}).items()}
            compute.create_gallery_image_version(
                sub, rg, gallery["name"], version["image"], version["name"],
                source_image_id=_compute_ref(scenario, version["managedImage"], rg, "images")
                if version.get("managedImage") else None,
                os_snapshot_id=_compute_ref(scenario, version["osSnapshot"], rg, "snapshots")
                if version.get("osSnapshot") else None,
                data_snapshot_ids=data, target_regions=version.get("regions"), instant=True,
                end_of_life=_date_time(version["endOfLifeDate"]) if version.get("endOfLifeDate") else None)


def _create_pool(local: Any, scenario: Scenario, pool: dict[str, Any]) -> None:
    """A pool as the scenario describes it; a managed one carries the app's metadata (desired size, schedule)."""
    metadata = dict(pool.get("metadata") or {})
    image_id = scenario.resource(pool["image"])
    if pool.get("managed", True):
        metadata["autopilot.managed"] = "true"
        metadata.setdefault("autopilot.imageId", image_id)
    if "desiredDedicated" in pool:
        metadata["autopilot.desiredDedicated"] = str(pool["desiredDedicated"])
    if "desiredSpot" in pool:
        metadata["autopilot.desiredSpot"] = str(pool["desiredSpot"])
    if pool.get("schedule"):
        metadata["autopilot.schedule"] = json.dumps(pool["schedule"], separators=(",", ":"))
    fields: dict[str, Any] = {"vm_size": pool["vmSize"],
                              "node_agent_sku_id": pool.get("nodeAgentSkuId", DEFAULT_NODE_AGENT),
                              "target_dedicated": pool.get("dedicated", 0),
                              "target_low_priority": pool.get("spot", 0)}
    if "resizeTimeout" in pool:
        fields["resize_timeout"] = parse_duration(pool["resizeTimeout"])
    if pool.get("autoScale"):  # Batch sizes an autoscale pool with its formula (the app never resizes it)
        fields["auto_scale_formula"] = pool["autoScale"]["formula"]
        fields["auto_scale_evaluation_interval"] = parse_duration(
            pool["autoScale"].get("evaluationInterval", "15m"))
    if pool.get("inboundNatPools"):
        fields["network_configuration"] = {"natPools": [{**nat, "protocol": str(nat.get("protocol", "tcp")).lower()}
                                                        for nat in pool["inboundNatPools"]]}
    # A pool of the initial state predates the run: one on a managed image was created with an API version that took
    # managed images (up to 2019-08-01); the app itself can no longer create such pools.
    api_version = "2019-08-01" if "/providers/microsoft.compute/images/" in image_id.lower() else None
    local.emulator.batch.create_pool(pool["account"], pool["id"], image_id=image_id, metadata=metadata,
                                     api_version=api_version, **fields)


def _date_time(text: str) -> datetime:
    """An ISO 8601 date-time with a time zone (the schema checks the shape)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def initial_state_error(scenario: Scenario, exc: Exception) -> ScenarioError:
    """What the emulator said when the initial state could not be created, as a scenario problem (exit 2)."""
    from emulator.exceptions import AzureError

    text = " ".join(str(exc).split()) or "the emulator refused it without a message"
    if isinstance(exc, AzureError):
        body = exc.body()
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        message = error.get("message")
        text = f"{error.get('code')}: {message.get('value') if isinstance(message, dict) else message}"
    return ScenarioError(scenario.source, [f"$: the initial state cannot be created: {text}"])


def snapshot_set_tags(family: str, version: str, data_luns: list[int]) -> dict[Any, dict[str, str]]:
    """The tags of each snapshot of a set (role "os" or the LUN), as the image pipeline expects them."""
    count = str(1 + len(data_luns))
    out: dict[Any, dict[str, str]] = {"os": {"autopilot.family": family, "autopilot.version": version,
                                             "autopilot.disk": "os", "autopilot.diskCount": count}}
    for lun in data_luns:
        out[lun] = {"autopilot.family": family, "autopilot.version": version, "autopilot.disk": str(lun),
                    "autopilot.diskCount": count}
    return out


def configure_capacity(local: Any, entry: dict[str, Any]) -> None:
    changes = {CAPACITY_FIELDS[k]: v for k, v in entry.items() if k in CAPACITY_FIELDS}
    local.emulator.batch.configure_capacity(entry.get("region"), entry.get("vmSize"), **changes)


def _ensure_group(local: Any, name: str, location: str) -> None:
    from emulator.exceptions import AzureError

    try:
        local.emulator.resources.require_group(local.subscription_id, name)
    except AzureError:
        local.emulator.resources.put_group(local.subscription_id, name, location)


def prepared_disk(local: Any, name: str, rg: str, location: str, image: str | None, data_disk_gb: int | None) -> str:
    _ensure_group(local, rg, location)
    if data_disk_gb is not None:
        return local.add_prepared_disk(name, resource_group=rg, location=location, data_disk_gb=data_disk_gb)
    return local.add_prepared_disk(name, image=image or DEFAULT_IMAGE, resource_group=rg, location=location)


def _compute_ref(scenario: Scenario, ref: str, rg: str, collection: str) -> str:
    """A snapshot / image given by name (in ``rg``) or by id."""
    if ref.startswith("/"):
        return scenario.resource(ref)
    return (f"/subscriptions/{scenario.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute"
            f"/{collection}/{ref}")

