"""The ceilings Batch would hold a pool under, known before asking: the managed-image node cap and the account's core
quotas.

Pure functions: the watch gives them what it already read (the pools of the accounts it listed, the
accounts' quotas) and gets back, per pool, the :class:`Ceiling` values that bind. :func:`shared.watch.episodes.decide`
sizes a resize to fit under them and raises one alert when a ceiling leaves the target undone.

* **Managed-image node cap.** Batch's "quotas and limits" page caps the "compute nodes in pool created
  with a managed image resource" at 2,000 dedicated and 1,000 Spot, shared by the pools on the same
  managed image or on managed images of the same snapshots; inbound NAT lowers it (the family's
  ``nodeLimits``). Pools on a gallery image version have no such cap.
* **Core quotas.** In a BatchService account the account's dedicated, Spot (low-priority) and, when
  enforced, per-VM-family core quotas bound the cores of all its pools. In UserSubscription mode the
  subscription's Compute quotas apply instead; the app does not read them (it would need the Compute
  usages API and a role to read it), so it does not judge those accounts and leaves the quota to Batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.core.resource_ids import normalize
from shared.pipeline.image_rules import NodeLimits, is_managed_image
from shared.watch import vm_cores

NODE_CAP = "node_cap"
QUOTA = "quota"


@dataclass(frozen=True)
class Ceiling:
    """At most ``dedicated`` / ``spot`` nodes (None: no bound of this kind), and why, for the alert."""

    kind: str  # NODE_CAP | QUOTA
    dedicated: int | None
    spot: int | None
    diagnosis: str
    fix: str
    fresh: bool = True  # read on this full scan (quotas): a raise seen here may resume a pool stopped for it

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dedicated": self.dedicated, "spot": self.spot, "diagnosis": self.diagnosis,
                "fix": self.fix,
                "fresh": self.fresh}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceiling | None:
        """A ceiling from a stall event's data; None when it is not one (a hand-made or older event)."""
        kind = data.get("kind")
        if kind not in (NODE_CAP, QUOTA):
            return None

        def count(value: Any) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

        return cls(kind, count(data.get("dedicated")), count(data.get("spot")), str(data.get("diagnosis") or ""),
                   str(data.get("fix") or ""), bool(data.get("fresh")))


def clamp(dedicated: int, spot: int, ceilings: Iterable[Ceiling]) -> tuple[int, int]:
    for c in ceilings:
        if c.dedicated is not None:
            dedicated = min(dedicated, c.dedicated)
        if c.spot is not None:
            spot = min(spot, c.spot)
    return dedicated, spot


def binding(dedicated: int, spot: int, ceilings: Iterable[Ceiling]) -> list[Ceiling]:
    """The ceilings that keep ``dedicated`` / ``spot`` out of reach."""
    return [c for c in ceilings if (c.dedicated is not None and dedicated > c.dedicated)
            or (c.spot is not None and spot > c.spot)]


# --- what a pool holds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """What one pool holds (or is being given) for the ceilings: nodes and the resources that share a cap."""

    pool_key: str  # "{account id}/pools/{pool id}", as shown
    account_id: str
    vm_size: str | None
    dedicated: int
    spot: int
    managed_image: str | None = None  # the pool's managed image id (None: a gallery or Marketplace pool)
    cap_resources: frozenset[str] = field(default_factory=frozenset)  # normalized managed image + its snapshots
    inbound_nat: bool = False


def held_nodes(steady: bool, current: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """(dedicated, Spot) nodes a pool holds for the ceilings: what it has when steady, else its target if larger."""
    if steady:
        return current
    return max(current[0], target[0]), max(current[1], target[1])


def holding(account_id: str, pool_id: str, *, vm_size: str | None, steady: bool, current: tuple[int, int],
            target: tuple[int, int],
            image_id: str | None, snapshot_ids: Sequence[str] = (), inbound_nat: bool = False) -> Holding:
    """A resizing pool is about to hold its target; a steady one holds what it has (a target a resize missed holds
    nothing)."""
    dedicated, spot = held_nodes(steady, current, target)
    managed = image_id if is_managed_image(image_id) else None
    resources = frozenset({normalize(managed), *(normalize(s) for s in snapshot_ids if s)}) if managed else frozenset()
    return Holding(f"{account_id}/pools/{pool_id}", account_id, vm_size, dedicated, spot, managed, resources,
                   inbound_nat)


# --- the managed-image node cap ------------------------------------------------------------------------


def node_cap(pool: Holding, everyone: Sequence[Holding], limits: NodeLimits | None = None) -> Ceiling | None:
    """The managed-image cap for ``pool`` given every pool sharing its image or snapshots; None for other pools."""
    if not pool.cap_resources:
        return None
    limits = limits or NodeLimits()
    me = pool.pool_key.lower()
    others = [h for h in everyone if h.pool_key.lower() != me and h.cap_resources & pool.cap_resources]
    nat = pool.inbound_nat or any(h.inbound_nat for h in others)
    cap_dedicated, cap_spot = limits.for_group(nat)
    used_dedicated, used_spot = sum(h.dedicated for h in others), sum(h.spot for h in others)
    sharing = "; ".join(f"{h.pool_key}: {h.dedicated:,} dedicated / {h.spot:,} Spot"
                        for h in sorted(others, key=lambda h: h.pool_key.lower()))
    nat_text = " (lowered because a pool in the group has inbound NAT pools)" if nat else ""
    diagnosis = (f"The pool runs on managed image {pool.managed_image}. Batch caps pools created with a managed image "
                 "resource at "
                 f"{cap_dedicated:,} dedicated and {cap_spot:,} Spot nodes{nat_text}, shared by every pool on the same "
                 "managed image or on "
                 f"managed images of the same snapshots. " + (f"The pools sharing the cap hold {sharing}." if others
                                                              else
                                                              "No other pool shares it."))
    fix = ("Shrink or delete the other pools sharing the cap (listed above), or lower this pool's target "
           "(autopilot.desiredDedicated / "
           "autopilot.desiredSpot); the autopilot grows the pool as soon as the cap allows. To grow past the cap, move "
           "the workload to a "
           "pool on the family's gallery image version, which has no shared cap.")
    return Ceiling(NODE_CAP, max(0, cap_dedicated - used_dedicated), max(0, cap_spot - used_spot), diagnosis, fix)


# --- core quotas ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountQuotas:
    account_id: str
    pool_allocation_mode: str
    dedicated_cores: int | None
    spot_cores: int | None
    per_family: Mapping[str, int] = field(default_factory=dict)
    per_family_enforced: bool = False

    @property
    def judged(self) -> bool:
        """Batch core quotas apply only in BatchService mode; in UserSubscription mode the subscription's do."""
        return self.pool_allocation_mode.lower() == "batchservice"


QUOTA_FIX = ("Request a core quota increase for the Batch account (Azure portal → Batch account → Quotas → Request "
             "quota increase), or "
             "shrink other pools of the account, or lower this pool's target. The autopilot resumes the pool by itself "
             "on the next full "
             "scan after the quota allows it (within AUTOPILOT_WATCH_FULL_SCAN_MINUTES).")


@dataclass
class AccountUsage:
    """Cores the pools of one account hold, summed once per tick (so judging a pool is O(1), not O(pools))."""

    dedicated: int = 0
    spot: int = 0
    per_family: dict[str, int] = field(default_factory=dict)  # lower-case family -> dedicated cores
    unknown: int = 0  # pools whose VM size shared/watch/vm_cores.py does not know

    def add(self, h: Holding, sign: int = 1) -> None:
        self.add_nodes(h.vm_size, h.dedicated, h.spot, sign)

    def add_nodes(self, vm_size: str | None, dedicated: int, spot: int, sign: int = 1) -> None:
        cores = vm_cores.cores(vm_size)
        if cores is None:
            self.unknown += sign
            return
        self.dedicated += sign * cores * dedicated
        self.spot += sign * cores * spot
        family = (vm_cores.family(vm_size) or "").lower()
        self.per_family[family] = self.per_family.get(family, 0) + sign * cores * dedicated

    @classmethod
    def of(cls, holdings: Iterable[Holding]) -> AccountUsage:
        usage = cls()
        for h in holdings:
            usage.add(h)
        return usage


def core_quota(pool: Holding, account_pools: Sequence[Holding] | AccountUsage, quotas: AccountQuotas,
               desired: tuple[int, int]) -> Ceiling | None:
    """How many nodes of each kind ``pool`` may have within its account's core quotas; None when the app cannot judge
    (UserSubscription mode, a VM size missing from shared/watch/vm_cores.py, or no quota given). ``account_pools``:
    every pool of the account (``pool`` included), or their :class:`AccountUsage`."""
    cores = vm_cores.cores(pool.vm_size)
    if not quotas.judged or cores is None:
        return None
    usage = account_pools if isinstance(account_pools, AccountUsage) else AccountUsage.of(account_pools)
    others = AccountUsage(usage.dedicated, usage.spot, dict(usage.per_family), usage.unknown)
    others.add(pool, -1)  # the pool's own cores do not count against it
    if others.unknown:
        return None  # another pool's cores cannot be counted: judging without them could over-promise
    held_dedicated, held_spot = others.dedicated, others.spot
    limits: list[tuple[str, int, int, int]] = []  # (what, quota, free cores, nodes wanted)
    dedicated = spot = None
    if quotas.dedicated_cores is not None:
        free = max(0, quotas.dedicated_cores - held_dedicated)
        dedicated = free // cores
        limits.append(("dedicated", quotas.dedicated_cores, free, desired[0]))
    family = vm_cores.family(pool.vm_size)
    if quotas.per_family_enforced and family is not None:
        family_quota = next((v for k, v in quotas.per_family.items() if k.lower() == family.lower()), 0)
        free = max(0, family_quota - others.per_family.get(family.lower(), 0))
        dedicated = min(dedicated if dedicated is not None else free // cores, free // cores)
        limits.append((f"dedicated {family}", family_quota, free, desired[0]))
    if quotas.spot_cores is not None:
        free = max(0, quotas.spot_cores - held_spot)
        spot = free // cores
        limits.append(("Spot", quotas.spot_cores, free, desired[1]))
    if dedicated is None and spot is None:
        return None
    parts = [f"{what}: {wanted * cores:,} cores needed for {wanted:,} nodes of {pool.vm_size} ({cores} each), {free:,} "
             "free of the "
             f"{quota:,}-core quota" for what, quota, free, wanted in limits if wanted * cores > free]
    diagnosis = (f"Batch account {quotas.account_id} cannot hold the pool's target within its core quotas. "
                 + "; ".join(parts) + "."
                 if parts else f"The pool fits within the core quotas of Batch account {quotas.account_id}.")
    return Ceiling(QUOTA, dedicated, spot, diagnosis, QUOTA_FIX)
