"""vCPUs and quota family of the VM sizes the watch can judge core quotas for.

The pool list gives only ``vmSize``; Batch counts quota in cores, per dedicated / Spot and (when the
account enforces it) per VM family. Reading Resource SKUs per region would add requests to the watch, so
this is a table. A size missing here is not judged: the watch leaves the quota to Batch (and classifies
its ``Account*QuotaReached`` error as before).

Refresh it from Azure (the names and numbers are those of the Resource SKUs API)::

    az vm list-skus --location westeurope --resource-type virtualMachines \\
      --query "[].{name:name, family:family, vCPUs:capabilities[?name=='vCPUs'].value | [0]}" -o tsv

and add the sizes your pools use to ``VM_SIZES`` (name: (vCPUs, family)).
"""

from __future__ import annotations

import functools

VM_SIZES: dict[str, tuple[int, str]] = {
    "standard_a1_v2": (1, "standardAv2Family"),
    "standard_a2_v2": (2, "standardAv2Family"),
    "standard_a4_v2": (4, "standardAv2Family"),
    "standard_d2_v3": (2, "standardDv3Family"),
    "standard_d4_v3": (4, "standardDv3Family"),
    "standard_d2s_v3": (2, "standardDSv3Family"),
    "standard_d4s_v3": (4, "standardDSv3Family"),
    "standard_d8s_v3": (8, "standardDSv3Family"),
    "standard_d2s_v5": (2, "standardDSv5Family"),
    "standard_d4s_v5": (4, "standardDSv5Family"),
    "standard_d2ds_v5": (2, "standardDDSv5Family"),
    "standard_d4ds_v5": (4, "standardDDSv5Family"),
    "standard_d8ds_v5": (8, "standardDDSv5Family"),
    "standard_d16ds_v5": (16, "standardDDSv5Family"),
    "standard_d32ds_v5": (32, "standardDDSv5Family"),
    "standard_e4ds_v5": (4, "standardEDSv5Family"),
    "standard_e8ds_v5": (8, "standardEDSv5Family"),
    "standard_f2s_v2": (2, "standardFSv2Family"),
    "standard_f4s_v2": (4, "standardFSv2Family"),
    "standard_f8s_v2": (8, "standardFSv2Family"),
    "standard_f16s_v2": (16, "standardFSv2Family"),
    "standard_nc6s_v3": (6, "standardNCSv3Family"),
    "standard_nc24ads_a100_v4": (24, "StandardNCADSA100v4Family"),
    "standard_hb120rs_v3": (120, "standardHBrsv3Family"),
}


@functools.lru_cache(maxsize=1024)  # asked for every pool on every tick; a handful of sizes repeat
def _entry(vm_size: str | None) -> tuple[int, str] | None:
    return VM_SIZES.get((vm_size or "").strip().lower())


def cores(vm_size: str | None) -> int | None:
    """vCPUs of one node of ``vm_size``; None when the table does not know it."""
    entry = _entry(vm_size)
    return entry[0] if entry else None


def family(vm_size: str | None) -> str | None:
    entry = _entry(vm_size)
    return entry[1] if entry else None
