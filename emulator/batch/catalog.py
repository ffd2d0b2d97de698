"""Static facts the Batch emulator needs: VM sizes, supported images and resize-error wording.

Scenario code may change all of them at run time through :class:`~emulator.batch.models.BatchBackend`
(``register_vm_size``, ``set_supported_images``, ``add_supported_image``, ``remove_supported_image``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class VmSize:
    """One VM size: its cores (for Batch core quotas), its quota family, and whether it boots Gen2 images."""

    name: str
    cores: int
    family: str
    hyperv_gen2: bool = True


def _sizes(*rows: tuple[str, int, str, bool]) -> dict[str, VmSize]:
    return {name.lower(): VmSize(name, cores, family, gen2) for name, cores, family, gen2 in rows}


# A small, realistic table. Av2, A (classic) and D (v1) sizes cannot boot Hyper-V Generation 2 images.
DEFAULT_VM_SIZES: dict[str, VmSize] = _sizes(
    ("Standard_A1", 1, "standardA0_A7Family", False),
    ("Standard_A1_v2", 1, "standardAv2Family", False),
    ("Standard_A2_v2", 2, "standardAv2Family", False),
    ("Standard_A4_v2", 4, "standardAv2Family", False),
    ("Standard_D4", 8, "standardDFamily", False),
    # Dv3 without premium storage ("s") is Gen1-only, as shared/pipeline/image_rules.py's table says.
    ("Standard_D2_v3", 2, "standardDv3Family", False),
    ("Standard_D4_v3", 4, "standardDv3Family", False),
    ("Standard_D2s_v3", 2, "standardDSv3Family", True),
    ("Standard_D4s_v3", 4, "standardDSv3Family", True),
    ("Standard_D8s_v3", 8, "standardDSv3Family", True),
    ("Standard_D2s_v5", 2, "standardDSv5Family", True),
    ("Standard_D4s_v5", 4, "standardDSv5Family", True),
    ("Standard_D2ds_v5", 2, "standardDDSv5Family", True),
    ("Standard_D4ds_v5", 4, "standardDDSv5Family", True),
    ("Standard_D8ds_v5", 8, "standardDDSv5Family", True),
    ("Standard_D16ds_v5", 16, "standardDDSv5Family", True),
    ("Standard_D32ds_v5", 32, "standardDDSv5Family", True),
    ("Standard_E4ds_v5", 4, "standardEDSv5Family", True),
    ("Standard_E8ds_v5", 8, "standardEDSv5Family", True),
    ("Standard_F2s_v2", 2, "standardFSv2Family", True),
    ("Standard_F4s_v2", 4, "standardFSv2Family", True),
    ("Standard_F8s_v2", 8, "standardFSv2Family", True),
    ("Standard_F16s_v2", 16, "standardFSv2Family", True),
    ("Standard_NC6s_v3", 6, "standardNCSv3Family", True),
    ("Standard_NC24ads_A100_v4", 24, "StandardNCADSA100v4Family", True),
    ("Standard_HB120rs_v3", 120, "standardHBrsv3Family", True),
)


def default_supported_images() -> list[dict]:
    """The built-in answer of ``GET /supportedimages`` (data-plane shape, lower-case enums).

    Includes a verified image per common OS, an *unverified* one and one past ``batchSupportEndOfLife``.
    """
    def image(publisher: str, offer: str, sku: str, agent: str, os_type: str = "linux", *, verified: bool = True,
              capabilities: list[str] | None = None, end_of_life: str | None = None) -> dict:
        row: dict = {
            "nodeAgentSKUId": agent,
            "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
            "verificationType": "verified" if verified else "unverified",
            "osType": os_type,
        }
        if capabilities:
            row["capabilities"] = list(capabilities)
        if end_of_life:
            row["batchSupportEndOfLife"] = end_of_life
        return row

    return [
        image("canonical", "ubuntu-24_04-lts", "server", "batch.node.ubuntu 24.04", capabilities=["DockerCompatible"]),
        image("canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04",
              capabilities=["DockerCompatible"]),
        image("canonical", "0001-com-ubuntu-server-focal", "20_04-lts", "batch.node.ubuntu 20.04",
              end_of_life="2025-04-23T00:00:00.0000000Z"),
        image("microsoft-dsvm", "ubuntu-hpc", "2204", "batch.node.ubuntu 22.04",
              capabilities=["DockerCompatible", "NvidiaTeslaDriverInstalled",
                            "SupportsRDMAOnlyInSizesWithRDMACapability"]),
        image("almalinux", "almalinux-x86_64", "9-gen2", "batch.node.el 9"),
        image("debian", "debian-12", "12", "batch.node.debian 12", verified=False),
        image("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter", "batch.node.windows amd64", "windows"),
        image("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter-core", "batch.node.windows amd64", "windows",
              capabilities=["DockerCompatible"]),
    ]


# ---------------------------------------------------------------------------------------------
# Resize-error wording. Codes and the "values" names are Azure's (contracts §4.3/§4.6); the
# English messages follow the observed ones where the docs quote them.
# ---------------------------------------------------------------------------------------------

REASON_INTERNAL_ERROR = "The server encountered an internal error."
REASON_INSUFFICIENT_CAPACITY = ("Deployment allocation failed due to insufficient capacity for the requested VM size "
                                "in the region.")
REASON_SUBNET_DELEGATED = "Allocation failed as subnet has delegation to external resources."
MESSAGE_IMAGE_GONE = ("There was an error encountered while performing the last resize on the pool. Please try "
                      "resizing the pool again.")


def node_kind_label(kind: str) -> str:
    return "dedicated" if kind == "dedicated" else "low priority"


def allocation_failed_message(kind: str) -> str:
    return f"Desired number of {node_kind_label(kind)} nodes could not be allocated"


def timed_out_message(kind: str) -> str:
    return f"Desired number of {node_kind_label(kind)} nodes could not be allocated as the resize timeout was reached"


def stopped_message(kind: str) -> str:
    return f"Desired number of {node_kind_label(kind)} nodes could not be allocated due to a stop resize operation"


def gen2_provider_error(vm_size: str) -> str:
    """The ``Provider Error Json`` value Batch reports when a VM size cannot boot a Gen2 image (contracts §4.6)."""
    return json.dumps({"error": {
        "code": "BadRequest",
        "message": f"The selected VM size '{vm_size.upper()}' cannot boot Hypervisor Generation '2'. "
                   "Select a VM size that supports Hypervisor Generation '2', or use an image of Hypervisor "
        "Generation '1'.",
    }}, separators=(",", ":"))
