"""Azure Batch: constants, the plane-shaped error helper and the backend plumbing every Batch mixin shares."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.batch.capacity import CapacityModel, Limits, Timings
from emulator.batch.catalog import VmSize
from emulator.batch.formats import make_etag
from emulator.batch.nodes import ImageHealth

if TYPE_CHECKING:
    from emulator.azure import Emulator
    from emulator.batch.accounts import BatchAccount
    from emulator.batch.pools import DeleteOperation

# Learn "Update Batch pool properties": the first management API version whose Pool - Update may change the image.
IMAGE_UPDATE_API_VERSION = "2024-07-01"
MINUTE = timedelta(minutes=1)
# The 2019 custom-image article (azure-docs batch-custom-images.md@0147304) documents managed images as a pool image
# source; the current SDK docstrings (azure-mgmt-batch 19 / azure-batch 15 ImageReference.id) name only Compute Gallery
# images. The last API version known to take a managed image is 2019-08-01; later ones are refused (the less convenient
# choice).
MANAGED_IMAGE_LAST_API_VERSION = "2019-08-01"
# The one api-version each plane serves: what azure-mgmt-batch sends to Microsoft.Batch and exactly what azure-batch
# 15.1.0 sends to the data plane. The planes are versioned separately; they only happen to agree today.
MGMT_API_VERSION = "2025-06-01"
DATA_API_VERSION = "2025-06-01"
API_VERSION = MGMT_API_VERSION  # what a create without an explicit api-version is taken to use (the SDKs' version)
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")

_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_GALLERY_IMAGE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/[^/]+/images"
    r"/[^/]+(/versions/[^/]+)?$", re.IGNORECASE)
_MANAGED_IMAGE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/images/[^/]+$",
                            re.IGNORECASE)
_FORMULA_DEDICATED = re.compile(r"\$TargetDedicated(?:Nodes)?\s*=\s*(\d+)\s*;?", re.IGNORECASE)
_FORMULA_LOW = re.compile(r"\$TargetLowPriorityNodes\s*=\s*(\d+)\s*;?", re.IGNORECASE)


class BatchCore:
    """What every Batch mixin shares: the state (set up by ``BatchBackend.__init__``) and the plumbing."""

    emulator: Emulator
    _lock: threading.RLock
    accounts: dict[str, BatchAccount]
    _by_name: dict[str, BatchAccount]
    vm_sizes: dict[str, VmSize]
    supported_images: list[dict[str, Any]]
    capacity: CapacityModel
    timings: Timings
    limits: Limits
    image_usage: dict[tuple[tuple[str, str], str], int]
    image_health: dict[str, ImageHealth]
    delete_operations: dict[str, DeleteOperation]
    _pending_events: dict[str, list[dict[str, Any]]]
    account_defaults: dict[str, Any]
    _serial: Iterator[int]
    _pool_seq: Iterator[int]

    # ------------------------------------------------------------------------------------------
    # time and helpers
    # ------------------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.emulator.clock.now()

    def _sync(self) -> None:
        """Run whatever virtual time made due (resize minutes, deletions) before answering a read."""
        self.emulator.scheduler.run_due()

    def _new_etag(self, now: datetime) -> str:
        return make_etag(now, next(self._serial))

    def vm_size(self, name: str) -> VmSize | None:
        return self.vm_sizes.get(name.lower())

    def known_node_agent_skus(self) -> set[str]:
        return {str(i.get("nodeAgentSKUId", "")).lower() for i in self.supported_images}
