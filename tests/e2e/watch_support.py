"""Shared set-up for the pool-watch end-to-end tests: constants, pool creation, recorders and queries."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from autopilot.local import SUBSCRIPTION_ID as SUB
from autopilot.local import LocalAzure
from shared.config.settings import load_settings
from shared.core import pool_metadata
from shared.core.context import AppContext
from shared.core.resource_ids import batch_account_id
from shared.core.state import EPISODES, Record, safe_key

ACCOUNT = "renderweu"
ACCOUNT_ID = batch_account_id(SUB, "batch-rg", ACCOUNT)
START = datetime(2026, 5, 4, 7, 58, tzinfo=UTC)  # a Monday, two minutes before the 08:00 watch tick
VM = "Standard_D4ds_v5"  # 4 cores, boots Gen2
SKU = "batch.node.ubuntu 24.04"
MARKETPLACE = {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}
MIN = timedelta(minutes=1)


def at(hh: int, mm: int) -> datetime:
    return START.replace(hour=hh, minute=mm)


# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------


def custom_image(la: LocalAzure) -> str:
    """A Gen2 gallery image version, replicated in the region at once."""
    compute = la.emulator.compute
    compute.create_gallery(SUB, "images-rg", "autopilotGallery", location="westeurope")
    compute.create_gallery_image(SUB, "images-rg", "autopilotGallery", "render", hyper_v_generation="V2")
    disk = la.add_prepared_disk("render-osdisk")
    snapshot = compute.create_snapshot(SUB, "images-rg", "render-os", source_resource_id=disk)
    return compute.create_gallery_image_version(SUB, "images-rg", "autopilotGallery", "render", "1.0.0",
                                                os_snapshot_id=snapshot.id,
                                                instant=True).id


def add_pool(la: LocalAzure, pool_id: str, *, desired: int | None = None, spot: int | None = None,
             image_id: str | None = None,
             target: int = 0, schedule: list[dict[str, Any]] | None = None, deallocation: str | None = None,
             managed: str | None = "true",
             vm_size: str = VM, account: str = ACCOUNT, **spec: Any) -> None:
    """A pool as the pipeline creates it (managed, desired targets in metadata), or as a team does
    (``managed=None``)."""
    metadata: dict[str, str] = {}
    if managed is not None:
        metadata[pool_metadata.MANAGED] = managed
    if desired is not None:
        metadata[pool_metadata.DESIRED_DEDICATED] = str(desired)
    if spot is not None:
        metadata[pool_metadata.DESIRED_SPOT] = str(spot)
    if schedule is not None:
        metadata[pool_metadata.SCHEDULE] = json.dumps(schedule)
    if deallocation is not None:
        metadata[pool_metadata.DEALLOCATION] = deallocation
    if image_id is not None:
        metadata[pool_metadata.IMAGE_ID] = image_id
    else:
        spec["image_reference"] = dict(MARKETPLACE)
    la.emulator.batch.create_pool(account, pool_id, image_id=image_id, vm_size=vm_size, node_agent_sku_id=SKU,
                                  target_dedicated=target,
                                  resize_timeout=timedelta(minutes=20), metadata=metadata, **spec)


@dataclass(frozen=True)
class Resize:
    at: datetime
    dedicated: int
    spot: int
    from_dedicated: int
    from_spot: int
    timeout: timedelta
    deallocation: str | None

    @property
    def added(self) -> int:
        return max(0, self.dedicated - self.from_dedicated) + max(0, self.spot - self.from_spot)


class Resizes:
    """Every resize a pool starts, read from the Batch backend after each virtual minute (the request log has no
    bodies).

    A resize is answered at the earliest a minute (a shrink 30 s) after it starts, so the node counts read in the
    minute of the request are the ones the resize started from.
    """

    def __init__(self, la: LocalAzure, *pool_ids: str) -> None:
        self.batch = la.emulator.batch
        self.seen = {p: self.batch.find_pool(ACCOUNT, p).resize_count for p in pool_ids}
        self.of: dict[str, list[Resize]] = {p: [] for p in pool_ids}

    def __call__(self, now: datetime) -> None:
        for pool_id, count in self.seen.items():
            pool = self.batch.find_pool(ACCOUNT, pool_id)
            if pool.resize_count != count and pool.op is not None:
                assert pool.resize_count == count + 1, f"{pool_id}: two resizes within one minute at {now}"
                self.seen[pool_id] = pool.resize_count
                op = pool.op
                self.of[pool_id].append(Resize(op.start, op.target["dedicated"], op.target["low"],
                                               pool.current["dedicated"],
                                               pool.current["low"], op.timeout, op.deallocation))


def run_until(la: LocalAzure, until: datetime, recorder: Callable[[datetime], None] | None = None) -> None:
    la.host.run_for(until - la.emulator.now(), MIN, on_step=recorder)


def subject(pool_id: str) -> str:
    return f"{ACCOUNT_ID}/pools/{pool_id}"


def pool_alerts(la: LocalAzure, pool_id: str, alert_type: str | None = None) -> list[dict[str, Any]]:
    return [e for e in la.alerts(alert_type) if e["subject"] == subject(pool_id)]


def stalls(la: LocalAzure, pool_id: str) -> list[dict[str, Any]]:
    return [e for e in la.stall_events() if e["data"]["poolId"] == pool_id]


def resize_posts(la: LocalAzure, pool_id: str, *, account: str = ACCOUNT, status: int | None = None) -> list[Any]:
    path = f"/batch/{account}/pools/{pool_id}/resize".lower()
    return [e for e in la.emulator.log.entries(method="POST", plane="batch") if e.path.lower() == path
            and status in (None, e.status)]


def pool_writes(la: LocalAzure, pool_id: str) -> list[Any]:
    """Every call that could change a pool: data-plane POST/PATCH/PUT/DELETE and management-plane writes."""
    return [e for e in la.emulator.log.entries() if e.method != "GET" and e.method != "HEAD"
            and (f"/pools/{pool_id}".lower() in e.path.lower())]


def episode(context: AppContext, pool_id: str) -> Record | None:
    return context.state.table(EPISODES).get(safe_key(ACCOUNT_ID), safe_key(pool_id))


def fresh_context(la: LocalAzure) -> AppContext:
    """What a newly started process (or another scale-out instance) builds: new clients, nothing in memory."""
    return AppContext.from_settings(load_settings(la.env), clock=la.emulator.clock)


# ---------------------------------------------------------------------------------------------
# Staged growth, resize timeouts, AllocationTimedout
# ---------------------------------------------------------------------------------------------
