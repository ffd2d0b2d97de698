"""A missing role reaches a person: a 403 on any write the app makes raises one PermissionDenied alert naming the
action, the scope and the role to grant, and a step that could not be taken is never reported as done. Roles are taken
away with the emulator's deny rules (ARM's 403 AuthorizationFailed), then granted back, as the alert's fix says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from autopilot.local import LocalAzure
from tests.e2e.test_pipeline import (
    ACCOUNT,
    ACCOUNT_ID,
    alerts_of,
    families,
    no_failed_invocations,
    pipeline_stage,
    version_id,
)
from tests.e2e.test_pipeline import make_azure as _make_azure_fixture

make_azure = _make_azure_fixture
APP = "batch-image-autopilot"


def denied(la: LocalAzure) -> list[dict]:
    return [a["data"] for a in alerts_of(la, "PermissionDenied")]


@pytest.mark.parametrize(("action", "role"), [
    ("Microsoft.Compute/images/write", "Batch Image Autopilot images"),
    ("Microsoft.Compute/galleries/images/versions/write", "Batch Image Autopilot images"),
    ("Microsoft.Batch/batchAccounts/pools/write", "Batch Image Autopilot pools"),
    ("Microsoft.Authorization/locks/write", "Batch Image Autopilot images"),
])
def test_a_denied_write_alerts_once_blocks_success_and_granting_the_role_finishes(make_azure: Callable[..., LocalAzure],
                                                                                  action: str, role: str) -> None:
    la = make_azure(families())
    rule = la.emulator.authorization.deny(action, principal=APP)
    la.snapshot_set("gpu", "1.0.0")
    la.run(timedelta(minutes=40))

    assert rule.denied >= 1
    [alert] = denied(la)  # de-duplicated across redeliveries and sweeps
    assert alert["action"] == action and alert["role"] == role
    assert role in alert["fix"] and alert["roleScope"] in alert["fix"]
    assert pipeline_stage(la, "gpu", "1.0.0") != "done"
    assert alerts_of(la, "PoolsCreated") == []

    la.emulator.authorization.clear()  # the role is granted, as the fix says
    la.run(timedelta(minutes=90))
    assert pipeline_stage(la, "gpu", "1.0.0") == "done"
    assert len(alerts_of(la, "PoolsCreated")) == 1
    assert la.locks_on(version_id("gpu", "1.0.0"))  # what the pools use is protected
    assert la.host.dead_letters == []


def test_a_denied_lock_removal_alerts(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.snapshot_set("gpu", "2.0.0")
    la.run(timedelta(minutes=30))
    no_failed_invocations(la)
    assert la.locks_on(version_id("gpu", "2.0.0"))

    la.emulator.authorization.deny("Microsoft.Authorization/locks/delete", principal=APP)
    la.emulator.batch.delete_pool(ACCOUNT, "gpu-2-0-0")
    la.run(timedelta(minutes=20))
    [alert] = denied(la)
    assert alert["action"] == "Microsoft.Authorization/locks/delete"
    assert la.locks_on(version_id("gpu", "2.0.0"))  # kept, and a person knows why


def test_a_denied_resize_alerts_naming_the_pools_role(make_azure: Callable[..., LocalAzure]) -> None:
    la = make_azure(families())
    la.emulator.batch.create_pool(ACCOUNT, "team-pool", vm_size="Standard_D4ds_v5",
                                  node_agent_sku_id="batch.node.ubuntu 24.04",
                                  image_reference={"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                                   "sku": "server", "version": "latest"},
                                  metadata={"autopilot.managed": "true", "autopilot.desiredDedicated": "4"})
    rule = la.emulator.authorization.deny("Microsoft.Batch/batchAccounts/pools/write", principal=APP)
    la.run(timedelta(minutes=10))
    assert rule.denied >= 1  # the data-plane resize is authorised by the same pools/write action
    [alert] = denied(la)
    assert (alert["action"] == "Microsoft.Batch/batchAccounts/pools/write"
            and alert["role"] == "Batch Image Autopilot pools")
    la.emulator.authorization.clear()
    la.run(timedelta(minutes=10))
    assert la.pool(ACCOUNT, "team-pool").target["dedicated"] == 4


def exists(la: LocalAzure, version: str) -> bool:
    return any(key.lower().endswith(f"/versions/{version}") for key in la.emulator.compute.gallery_image_versions)


def test_retention_without_its_opt_in_role_alerts_and_deletes_once_the_role_is_granted(
        make_azure: Callable[..., LocalAzure]) -> None:
    from shared.core.pool_metadata import VERSION

    la = make_azure(families(pools=[{"account": ACCOUNT_ID, "vmSize": "Standard_D4ds_v5", "dedicated": 1,
                                     "poolId": "{family}"}],
                             rollout={"mode": "inPlace", "applyWhen": "drain"}, retention={"keepVersions": 1}))
    rule = la.emulator.authorization.deny("Microsoft.Compute/galleries/images/versions/delete", principal=APP)
    for version in ("1.0.0", "1.1.0"):
        la.snapshot_set("gpu", version)
        la.run(timedelta(minutes=30))
    assert la.pool(ACCOUNT, "gpu").metadata[VERSION] == "1.1.0"
    assert rule.denied >= 1
    [alert] = denied(la)
    assert alert["role"] == "Batch Image Autopilot retention" and "AUTOPILOT_ENABLE_RETENTION true" in alert["fix"]
    assert exists(la, "1.0.0")

    # `azd env set AUTOPILOT_ENABLE_RETENTION true` + `azd provision`: the role is granted
    la.emulator.authorization.clear()
    la.run(timedelta(minutes=10))
    assert not exists(la, "1.0.0")
    assert len(alerts_of(la, "VersionDeleted")) == 1
