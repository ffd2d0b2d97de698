"""The version's pools: the pool body (metadata the watch reads, staged first growth, canary, NAT) and their creation,
reporting which exist, which Batch refused or did not create, and which ids hold someone else's pool."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.config.families import FamilyConfig
from shared.config.family_parts import PoolSpec
from shared.core import alerts, ownership, permissions, pool_metadata
from shared.core.alerts import Alert
from shared.core.context import AppContext
from shared.core.durations import format_iso_duration
from shared.pipeline import naming
from shared.pipeline.snapshot_sets import SnapshotSet
from shared.resources import batch_accounts, batch_pools
from shared.watch import canary

log = logging.getLogger("autopilot.pipeline")


def pool_body(family: FamilyConfig, spec: PoolSpec, snapshot_set: SnapshotSet, pool_image_id: str, image_id: str | None,
              node_agent_sku_id: str, growth_step: int) -> dict[str, Any]:
    metadata = dict(spec.metadata_dict())
    metadata.update({
        pool_metadata.MANAGED: "true",
        pool_metadata.FAMILY: family.name,
        pool_metadata.VERSION: snapshot_set.key.version,
        pool_metadata.IMAGE_ID: pool_image_id,
        pool_metadata.SNAPSHOT_IDS: ",".join(snapshot_set.snapshot_ids),
        pool_metadata.DESIRED_DEDICATED: str(spec.dedicated),
        pool_metadata.DESIRED_SPOT: str(spec.spot),
        pool_metadata.DEALLOCATION: spec.node_deallocation_option.lower(),
        # Recorded on the pool: every later resize the watch issues uses it too, never less
        # (shared/watch/pool_policy.py).
        pool_metadata.RESIZE_TIMEOUT: str(spec.resize_timeout_minutes),
    })
    if image_id is not None and family.keep_managed_image:
        metadata[pool_metadata.MANAGED_IMAGE_ID] = image_id
    if spec.schedule:
        metadata[pool_metadata.SCHEDULE] = json.dumps([{"cron": s.cron, "dedicated": s.dedicated, "spot": s.spot}
                                                       for s in spec.schedule],
                                                      separators=(",", ":"))
    metadata.update(canary.metadata_for(family.canary_nodes))
    # One growth budget for both kinds, dedicated first, exactly as the watch's next_resize spends it.
    first_dedicated = min(spec.dedicated, growth_step)
    first_spot = min(spec.spot, growth_step - first_dedicated)
    # The canary first (shared/watch/canary.py): the pool grows past canaryNodes only once those nodes work.
    first_dedicated, first_spot = canary.first_target(first_dedicated, first_spot, family.canary_nodes)
    body: dict[str, Any] = {
        "properties": {
            "vmSize": spec.vm_size,
            "deploymentConfiguration": {"virtualMachineConfiguration": {
                "imageReference": {"id": pool_image_id}, "nodeAgentSkuId": node_agent_sku_id}},
            # Staged growth from the start: the first resize asks for at most one step; the pool
            # watch takes the pool the rest of the way (pools past 300 custom-image nodes may need
            # several resizes, per the Batch custom-image doc).
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": first_dedicated,
                                             "targetLowPriorityNodes": first_spot,
                                             "resizeTimeout": format_iso_duration(
                                                 timedelta(minutes=spec.resize_timeout_minutes)),
                                             "nodeDeallocationOption": spec.node_deallocation_option}},
            "metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())],
        }
    }
    if family.start_task is not None:
        body["properties"]["startTask"] = family.start_task.to_body()
    nat_pools = spec.nat_pools_for(family.gallery.os_type)
    if nat_pools:
        # Ranges Batch accepts (outside its reserved 50000-55000, >= 40 ports, no overlap): configured and
        # validated, or chosen by the app with one port per node of the pool's peak size (shared/pipeline/nat.py).
        body["properties"]["networkConfiguration"] = {
            "endpointConfiguration": {"inboundNatPools": [p.body() for p in nat_pools]}}
    return body


@dataclass(frozen=True)
class PoolsResult:
    names: tuple[str, ...]  # "{account}/{pool}" of every pool of the version that exists
    created: tuple[str, ...]  # those this call created
    missing: tuple[str, ...]  # pool resource ids Batch neither created nor has
    refused: tuple[batch_pools.PoolCreateRefused, ...] = ()  # pools Batch refused outright (400): no retry can help
    taken: tuple[tuple[str, str], ...] = ()  # (pool resource id, why) of pools at the derived id that are not the app's
    # "{account}/{pool}" of inPlace pools that exist on an earlier version: not created, the rollout moves them
    rolling: tuple[str, ...] = ()


def ready_alert(context: AppContext, snapshot_set: SnapshotSet, version_id: str, pools: PoolsResult) -> Alert | None:
    """PoolsCreated for the pools that exist for this version. None when every pool is an inPlace pool still on an
    earlier version: nothing was created, and RolloutStarted says when the rollout moves them."""
    key = snapshot_set.key
    fresh = [n for n in pools.names if n not in pools.rolling]
    if not fresh:
        return None
    moving = (f"; {', '.join(pools.rolling)} keep their id and move to {key.version} in place (RolloutStarted says "
              "when)") if pools.rolling else ""
    return Alert(alerts.POOLS_CREATED, alerts.SEVERITY_INFO, version_id, f"Image {key} is ready: pools created",
                 f"gallery image version {version_id} was built from {len(snapshot_set.members)} snapshot(s); "
                 f"pools: {', '.join(fresh)}{moving}",
                 "nothing to do; the pool watch drives the pools to their targets", f"done|{key}",
                 context.clock.now(), {"pools": fresh, "family": key.family, "version": key.version})


def create_pools(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, version_id: str,
                 image_id: str | None,
                 skus: dict[str, str]) -> PoolsResult:
    pool_image_id = naming.family_pool_image_id(family, snapshot_set.key.version, context.settings.subscription_id)
    names, created, missing, refused, taken, rolling = [], [], [], [], [], []
    for spec in family.pools:
        account = batch_accounts.get_account(context.clients, spec.account)
        pool_id = spec.pool_id(family.name, snapshot_set.key.version)
        sku = spec.node_agent_sku_id or skus.get(f"{account.id.lower()}|{pool_id}")
        if not sku:
            raise RuntimeError(f"no nodeAgentSkuId for pool {pool_id}: set nodeAgentSkuId in the family's pool "
                               "configuration")
        body = pool_body(family, spec, snapshot_set, pool_image_id, image_id, sku, context.settings.growth_step_nodes)
        try:
            with permissions.writing(context, "Microsoft.Batch/batchAccounts/pools/write",
                                     f"{account.id}/pools/{pool_id}"):
                created_now = batch_pools.create_pool(context.clients, account, pool_id, body)
        except batch_pools.PoolCreateRefused as exc:
            refused.append(exc)
            continue
        if created_now:
            created.append(f"{account.name}/{pool_id}")
            log.info("created pool %s in %s from %s", pool_id, account.id, pool_image_id)
        else:
            existing = batch_pools.get_pool(context.clients, account, pool_id)
            if existing is None:
                # "Not created" must mean "already there": a refusal such as PoolQuotaReached is not success.
                missing.append(f"{account.id}/pools/{pool_id}")
                continue
            if why := ownership.pool_not_ours(existing, family.name, snapshot_set.key.version, pool_image_id,
                                              in_place=spec.in_place):
                taken.append((f"{account.id}/pools/{pool_id}", why))
                continue
            ran = pool_metadata.as_dict(existing.get("metadata")).get(pool_metadata.VERSION)
            if spec.in_place and ran != snapshot_set.key.version:
                rolling.append(f"{account.name}/{pool_id}")
        names.append(f"{account.name}/{pool_id}")
    return PoolsResult(tuple(names), tuple(created), tuple(missing), tuple(refused), tuple(taken), tuple(rolling))
