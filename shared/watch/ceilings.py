"""The watch's view of the ceilings over one tick: what the listed pools hold and what the accounts allow.

Built from what the tick already read (the accounts and their pool lists), so it costs no request per
pool: the only reads it adds are each managed image's snapshots, once per image per process (an image's
sources never change), and only for pools on a managed image.

* Core quotas come from the account GET, read afresh on every full scan (and cached between them), so a
  granted quota increase is seen by the next full scan. Quotas are per account, and a tick always lists
  every pool of an account it looks at, so they can be judged on every tick.
* The managed-image node cap is shared across accounts: it is judged only on full scans, when every
  account is listed. On the ticks in between, a managed-image pool is left for the next full scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.core import pool_metadata
from shared.core.resource_ids import normalize
from shared.pipeline.image_rules import NodeLimits, is_managed_image
from shared.watch.pool_limits import (
    AccountQuotas,
    AccountUsage,
    Ceiling,
    Holding,
    core_quota,
    held_nodes,
    holding,
    node_cap,
)
from shared.watch.pool_policy import DesiredTarget, PoolView

if TYPE_CHECKING:
    from shared.core.context import AppContext
    from shared.resources.batch_accounts import BatchAccount

log = logging.getLogger("autopilot.watch")

_image_sources: dict[str, tuple[str, ...]] = {}  # normalized managed image id -> its snapshot ids (never change)
_image_lock = threading.Lock()


def forget_images() -> None:
    with _image_lock:
        _image_sources.clear()


class TickLimits:
    """Ceilings for the pools of one tick. ``full``: every account was listed and quotas were read afresh."""

    def __init__(self, context: AppContext, full: bool) -> None:
        self.context = context
        self.full = full
        self.by_account: dict[str, AccountUsage] = {}  # cores held per account, summed as the accounts are listed
        # managed-image pools only (pool key, lower): the node cap is summed over these
        self.capped: dict[str, Holding] = {}
        self._held: dict[tuple[str, str], Holding] = {}  # managed-image pools: (account id, pool id) -> their holding
        self.quotas: dict[str, AccountQuotas] = {}
        self._node_limits: dict[str, NodeLimits] | None = None

    def add_account(self, account: BatchAccount, views: Sequence[PoolView]) -> None:
        self.quotas[account.id.lower()] = AccountQuotas(
            account.id, account.pool_allocation_mode, account.dedicated_core_quota, account.low_priority_core_quota,
            dict(account.dedicated_core_quota_per_vm_family), account.dedicated_core_quota_per_vm_family_enforced)
        usage = self.by_account.setdefault(account.id.lower(), AccountUsage())
        for view in views:
            if not self.shares_a_cap(view):
                # nearly every pool: only its cores count (a Holding is built for the few that a ceiling is asked of)
                usage.add_nodes(view.vm_size, *held_nodes(view.is_steady, (view.current_dedicated, view.current_spot),
                                                          (view.target_dedicated, view.target_spot)))
                continue
            h = self._holding(view)
            usage.add(h)
            self._held[view.account_id, view.pool_id] = h
            if h.cap_resources:
                self.capped[h.pool_key.lower()] = h

    def shares_a_cap(self, view: PoolView) -> bool:
        """The pool is on a managed image: its ceiling depends on pools in every account."""
        return is_managed_image(view.image_id)

    def waits_for_full_scan(self, view: PoolView) -> bool:
        """A managed-image pool between full scans: its shared cap is judged on the next full scan, not now."""
        return not self.full and self.shares_a_cap(view)

    def _holding(self, view: PoolView) -> Holding:
        snapshots: tuple[str, ...] = ()
        if is_managed_image(view.image_id):
            metadata_snapshots = tuple(s for s in view.metadata.get(pool_metadata.SNAPSHOT_IDS, "").split(",")
                                       if s.strip())
            snapshots = metadata_snapshots + self._snapshots_of(view.image_id or "")
        return holding(view.account_id, view.pool_id, vm_size=view.vm_size, steady=view.is_steady,
                       current=(view.current_dedicated, view.current_spot),
                       target=(view.target_dedicated, view.target_spot),
                       image_id=view.image_id, snapshot_ids=snapshots, inbound_nat=view.inbound_nat)

    def quota_judged(self, account_id: str) -> bool:
        quotas = self.quotas.get(account_id.lower())
        return quotas is not None and quotas.judged

    def ceilings(self, view: PoolView, desired: DesiredTarget) -> list[Ceiling] | None:
        """The ceilings over ``view``; None when one cannot be judged on this tick (a managed-image pool between full
        scans)."""
        mine = self._held.get((view.account_id, view.pool_id)) or self._holding(view)
        out: list[Ceiling] = []
        if mine.cap_resources:
            if not self.full:
                return None
            cap = node_cap(mine, list(self.capped.values()), self._limits_for(view))
            if cap is not None:
                out.append(cap)
        quotas = self.quotas.get(view.account_id.lower())
        if quotas is not None:
            quota = core_quota(mine, self.by_account.get(view.account_id.lower(), AccountUsage()), quotas,
                               (desired.dedicated, desired.spot))
            if quota is not None:
                out.append(Ceiling(quota.kind, quota.dedicated, quota.spot, quota.diagnosis, quota.fix,
                                   fresh=self.full))
        return out

    def _limits_for(self, view: PoolView) -> NodeLimits:
        """A family's nodeLimits lower the cap for the pools it made (autopilot.family); others get Batch's published
        cap."""
        if self._node_limits is None:
            from shared.config.families import FamilyConfigError, parse_families

            try:
                families = parse_families(self.context.settings.families_json)
                self._node_limits = {f.name: f.node_limits for f in families}
            except FamilyConfigError:
                self._node_limits = {}
        family = view.metadata.get(pool_metadata.FAMILY, "").strip().lower()
        return self._node_limits.get(family, NodeLimits())

    def _snapshots_of(self, image_id: str) -> tuple[str, ...]:
        key = normalize(image_id)
        with _image_lock:
            if key in _image_sources:
                return _image_sources[key]
        from shared.resources import compute

        try:
            image = compute.get_image(self.context.clients, image_id)
        except Exception as exc:  # an unreadable image: count the image itself, try its snapshots again next time
            log.warning("watch: cannot read managed image %s for the node cap: %s", image_id, exc)
            return ()
        profile = ((image or {}).get("properties") or {}).get("storageProfile") or {}
        disks = [profile.get("osDisk") or {}, *(profile.get("dataDisks") or [])]
        sources = tuple(d["snapshot"]["id"] for d in disks if isinstance(d.get("snapshot"), dict)
                        and d["snapshot"].get("id"))
        if image is not None:
            with _image_lock:
                _image_sources[key] = sources
        return sources
