"""The ceilings Batch enforces, enforced by the watch before asking (issue 12): the managed-image node cap and core
quotas.

Pre-existing managed-image pools are made the way they were made long ago (api-version 2019-08-01, the last one
known to take a managed image); the app drives them through their autopilot metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from autopilot.local import SUBSCRIPTION_ID as SUB
from autopilot.local import LocalAzure
from shared.core import pool_metadata
from shared.core.resource_ids import batch_account_id
from shared.watch import tick as watch
from tests.e2e.watch_support import (
    ACCOUNT,
    SKU,
    VM,
    Resizes,
    add_pool,
    at,
    custom_image,
    pool_alerts,
    resize_posts,
    run_until,
)


def managed_images(la: LocalAzure, *names: str) -> list[str]:
    """Managed images built from one snapshot: their pools share one node cap."""
    compute = la.emulator.compute
    disk = la.add_prepared_disk("legacy-osdisk")
    snapshot = compute.create_snapshot(SUB, "images-rg", "legacy-os", source_resource_id=disk)
    return [compute.create_image(SUB, "images-rg", name, os_snapshot_id=snapshot.id, hyper_v_generation="V2",
                                 instant=True).id for name in names]


def legacy_pool(la: LocalAzure, pool_id: str, image: str, *, desired: int, target: int = 0) -> None:
    la.emulator.batch.create_pool(ACCOUNT, pool_id, image_id=image, vm_size=VM, node_agent_sku_id=SKU,
                                  target_dedicated=target,
                                  resize_timeout=timedelta(minutes=30), api_version="2019-08-01",
                                  metadata={pool_metadata.MANAGED: "true",
                                            pool_metadata.DESIRED_DEDICATED: str(desired)})


def set_desired(la: LocalAzure, pool_id: str, dedicated: int) -> None:
    """What a person does: change the pool's autopilot metadata through ARM."""
    body = {"properties": {"metadata": [{"name": pool_metadata.MANAGED, "value": "true"},
                                        {"name": pool_metadata.DESIRED_DEDICATED, "value": str(dedicated)}]}}
    la.operator.batch_management.pool.update("batch-rg", ACCOUNT, pool_id, body)


def test_managed_image_pools_grow_to_the_shared_cap_alert_once_and_resume_when_the_sharing_pool_shrinks(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    la.emulator.batch.configure_capacity("westeurope", VM, dedicated_per_minute=500, max_nodes_per_resize=2000)
    first, second = managed_images(la, "legacy-a", "legacy-b")
    legacy_pool(la, "old-a", first, desired=1500, target=1500)
    legacy_pool(la, "old-b", second, desired=800)
    resizes = Resizes(la, "old-a", "old-b")
    run_until(la, at(10, 0), resizes)

    # 2,000 dedicated nodes for every pool on images of the snapshot: old-b gets the 500 that old-a leaves, never more.
    assert la.pool(ACCOUNT, "old-a").current["dedicated"] == 1500
    assert la.pool(ACCOUNT, "old-b").current["dedicated"] == 500
    asked = resizes.of["old-b"]
    assert asked and all(r.dedicated <= 500 for r in asked)  # never asked Batch for what it refuses
    assert not la.pool(ACCOUNT, "old-b").resize_errors
    [alert] = pool_alerts(la, "old-b", "NodeLimitReached")
    data = alert["data"]
    assert "cannot grow past 500 dedicated / 0 Spot of its target 800 / 0" in data["title"]
    assert "old-a: 1,500 dedicated" in data["diagnosis"] and "2,000 dedicated" in data["diagnosis"]
    assert "Shrink or delete the other pools sharing the cap" in data["fix"]
    assert not pool_alerts(la, "old-b", "ResizeGaveUp") and not pool_alerts(la, "old-b", "AllocationFailed")

    set_desired(la, "old-a", 1000)  # the fix: shrink the pool sharing the cap
    run_until(la, at(11, 0), resizes)
    assert la.pool(ACCOUNT, "old-a").current["dedicated"] == 1000
    assert la.pool(ACCOUNT, "old-b").current["dedicated"] == 800
    assert len(pool_alerts(la, "old-b", "NodeLimitReached")) == 1
    assert len(pool_alerts(la, "old-b", "PoolRecovered")) == 1


def test_a_resize_that_does_not_fit_the_core_quota_is_sized_to_fit_and_resumes_when_the_quota_is_raised(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    la.emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=200)  # 50 nodes of 4 cores
    add_pool(la, "other", desired=20, target=20)  # holds 80 cores
    add_pool(la, "p", desired=60)
    resizes = Resizes(la, "p")
    run_until(la, at(8, 30), resizes)

    assert la.pool(ACCOUNT, "p").current["dedicated"] == 30  # (200 - 80) / 4
    assert resizes.of["p"] and all(r.dedicated <= 30 for r in resizes.of["p"])
    assert not la.pool(ACCOUNT, "p").resize_errors  # Batch never had to refuse
    [alert] = pool_alerts(la, "p", "QuotaReached")
    assert ("240 cores needed for 60 nodes" in alert["data"]["diagnosis"]
            and "120 free of the 200-core quota" in alert["data"]["diagnosis"])

    # the quota request is granted; nobody touches the pool
    la.emulator.batch.set_account_quotas(ACCOUNT, dedicated_cores=400)
    run_until(la, at(9, 0))
    assert la.pool(ACCOUNT, "p").current["dedicated"] == 60
    assert len(pool_alerts(la, "p", "PoolRecovered")) == 1 and len(pool_alerts(la, "p", "QuotaReached")) == 1


# ---------------------------------------------------------------------------------------------
# Resize errors Batch documents, and ones the app does not know
# ---------------------------------------------------------------------------------------------


def test_dependent_resource_not_found_on_a_deleted_image_is_diagnosed_image_missing(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    image = custom_image(la)
    add_pool(la, "p", desired=10, image_id=image)
    la.emulator.compute.delete_gallery_image_version(SUB, "images-rg", "autopilotGallery", "render", "1.0.0")
    la.emulator.batch.inject_failure(ACCOUNT, "p", "custom", code="DependentResourceNotFound", count=None,
                                     message="A resource the pool depends on was not found.")
    run_until(la, at(10, 0))

    [missing] = pool_alerts(la, "p", "ImageMissing")
    assert (missing["data"]["codes"] == ["DependentResourceNotFound"]
            and image.lower() in missing["data"]["diagnosis"].lower())
    assert not pool_alerts(la, "p", "ResizeGaveUp") and not pool_alerts(la, "p", "AllocationFailed")
    assert len(resize_posts(la, "p")) == 1  # the image was read, found gone, and nothing more was asked


def test_configuration_codes_stop_at_once_and_unknown_codes_after_two_retries(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local()
    add_pool(la, "identity", desired=10)
    la.emulator.batch.inject_failure(ACCOUNT, "identity", "custom", code="FailedIdentityOperation", count=None,
                                     message="The user assigned identity could not be assigned.")
    add_pool(la, "novel", desired=10)
    la.emulator.batch.inject_failure(ACCOUNT, "novel", "custom", code="SomethingBatchAddsNext", count=None,
                                     message="Something new.")
    run_until(la, at(14, 0))

    assert len(resize_posts(la, "identity")) == 1
    [config] = pool_alerts(la, "identity")
    assert (config["data"]["codes"] == ["FailedIdentityOperation"]
            and "The user assigned identity could not be assigned." in config["data"]["diagnosis"])
    assert len(resize_posts(la, "novel")) == 3  # the first try and at most two retries, then a person hears of it
    [unknown] = pool_alerts(la, "novel")
    assert (unknown["eventType"] == "BatchImageAutopilot.AllocationFailed"
            and unknown["data"]["codes"] == ["SomethingBatchAddsNext"])
    assert "Something new." in unknown["data"]["diagnosis"] and "Batch error reference" in unknown["data"]["fix"]


def test_a_user_subscription_account_is_not_judged_and_says_so(make_local: Callable[..., LocalAzure]) -> None:
    """In UserSubscription mode Batch's core quotas do not apply (the subscription's do): the app cannot judge them."""
    la = make_local(accounts=("usersub",))
    # made in BatchService mode; the mode cannot be changed
    la.emulator.batch.delete_account(SUB, "batch-rg", "usersub")
    la.emulator.batch.create_account(SUB, "batch-rg", "usersub", "westeurope", pool_allocation_mode="UserSubscription",
                                     dedicated_core_quota=8)
    la.emulator.batch.create_pool("usersub", "p", vm_size=VM, node_agent_sku_id=SKU,
                                  resize_timeout=timedelta(minutes=20),
                                  image_reference={"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                                   "sku": "server", "version": "latest"},
                                  metadata={pool_metadata.MANAGED: "true", pool_metadata.DESIRED_DEDICATED: "10"})
    report = watch.tick(la.context, dry_run=True)
    assert report.quota_not_judged == [batch_account_id(SUB, "batch-rg", "usersub")]
    run_until(la, at(8, 30))
    # not held to the (irrelevant) Batch core quota of 8 cores
    assert la.pool("usersub", "p").current["dedicated"] == 10
    assert not pool_alerts(la, "p", "QuotaReached")
