"""The ceilings the watch knows before asking Batch (shared/watch/pool_limits.py): the managed-image cap and core
quotas."""

from __future__ import annotations

from shared.pipeline.image_rules import NodeLimits
from shared.watch.pool_limits import (
    NODE_CAP,
    QUOTA,
    AccountQuotas,
    Ceiling,
    Holding,
    binding,
    clamp,
    core_quota,
    holding,
    node_cap,
)

SUB = "/subscriptions/s/resourceGroups/rg/providers"
ACCOUNT = f"{SUB}/Microsoft.Batch/batchAccounts/acct"
IMAGE_A = f"{SUB}/Microsoft.Compute/images/a"
IMAGE_B = f"{SUB}/Microsoft.Compute/images/b"
GALLERY = f"{SUB}/Microsoft.Compute/galleries/g/images/d/versions/1.0.0"
SNAP = f"{SUB}/Microsoft.Compute/snapshots/os"


def pool(pool_id: str, dedicated: int = 0, spot: int = 0, *, image: str | None = IMAGE_A,
         snaps: tuple[str, ...] = (SNAP,),
         vm: str = "Standard_D4ds_v5", nat: bool = False, steady: bool = True,
         target: tuple[int, int] | None = None) -> Holding:
    return holding(ACCOUNT, pool_id, vm_size=vm, steady=steady, current=(dedicated, spot),
                   target=target or (dedicated, spot),
                   image_id=image, snapshot_ids=snaps, inbound_nat=nat)


def test_gallery_and_marketplace_pools_have_no_node_cap() -> None:
    assert node_cap(pool("g", 3000, image=GALLERY), [pool("g", 3000, image=GALLERY)]) is None
    assert node_cap(pool("m", 3000, image=None), []) is None


def test_the_cap_is_shared_over_images_of_the_same_snapshot_and_lowered_by_nat_and_node_limits() -> None:
    me, other = pool("b", 100, image=IMAGE_B), pool("a", 1500, 200)
    cap = node_cap(me, [me, other])
    assert cap is not None and (cap.kind, cap.dedicated, cap.spot) == (NODE_CAP, 500, 800)
    assert f"{ACCOUNT}/pools/a: 1,500 dedicated / 200 Spot" in cap.diagnosis and "2,000 dedicated" in cap.diagnosis
    unrelated = pool("c", 1500, image=f"{SUB}/Microsoft.Compute/images/c",
                     snaps=(f"{SUB}/Microsoft.Compute/snapshots/other",))
    assert node_cap(me, [me, unrelated]).dedicated == 2000  # type: ignore[union-attr]
    assert node_cap(me, [me, pool("a", 500, nat=True)]).dedicated == 500  # type: ignore[union-attr]  # NAT: 1,000 by default
    assert node_cap(me, [me, other], NodeLimits(dedicated=1600)).dedicated == 100  # type: ignore[union-attr]
    resizing = pool("a", 1000, steady=False, target=(1800, 0))  # about to hold its target
    assert node_cap(me, [me, resizing]).dedicated == 200  # type: ignore[union-attr]


def test_core_quota_counts_the_other_pools_and_says_cores_needed_and_free() -> None:
    quotas = AccountQuotas(ACCOUNT, "BatchService", 200, 100)
    me, other = pool("p", 10, image=GALLERY), pool("o", 20, image=GALLERY)
    ceiling = core_quota(me, [me, other], quotas, (60, 0))
    assert ceiling is not None and (ceiling.kind, ceiling.dedicated, ceiling.spot) == (QUOTA, 30, 25)
    assert ("240 cores needed for 60 nodes" in ceiling.diagnosis
            and "120 free of the 200-core quota" in ceiling.diagnosis)


def test_core_quota_per_vm_family_when_enforced() -> None:
    quotas = AccountQuotas(ACCOUNT, "BatchService", 1000, 100, {"standardDDSv5Family": 40}, True)
    me = pool("p", 0, image=GALLERY)
    assert core_quota(me, [me], quotas, (50, 0)).dedicated == 10  # type: ignore[union-attr]


def test_what_the_app_cannot_judge_is_left_to_batch() -> None:
    me = pool("p", 0, image=GALLERY)
    assert core_quota(me, [me], AccountQuotas(ACCOUNT, "UserSubscription", None, None), (10, 0)) is None
    assert core_quota(pool("x", vm="Standard_Unknown_v9", image=GALLERY), [],
                      AccountQuotas(ACCOUNT, "BatchService", 10, 10), (1, 0)) is None
    stranger = pool("s", 5, vm="Standard_Unknown_v9", image=GALLERY)
    assert core_quota(me, [me, stranger], AccountQuotas(ACCOUNT, "BatchService", 10, 10), (1, 0)) is None


def test_clamp_binding_and_the_event_round_trip() -> None:
    c = Ceiling(QUOTA, 30, None, "d", "f", fresh=False)
    assert clamp(60, 5, [c]) == (30, 5) and binding(60, 5, [c]) == [c] and binding(30, 500, [c]) == []
    assert Ceiling.from_dict(c.to_dict()) == c
    assert Ceiling.from_dict({"kind": "other"}) is None
    assert Ceiling.from_dict(
        {"kind": QUOTA, "dedicated": -1, "spot": True}) == Ceiling(QUOTA, None, None, "", "", False)
