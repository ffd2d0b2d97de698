"""ARM ids: one parser (shared/core/resource_ids.py) on azure.mgmt.core.tools; extensions split at the last
/providers/."""

from __future__ import annotations

import pytest
from azure.mgmt.core.tools import parse_resource_id

from shared.core.resource_ids import LOCKS, InvalidResourceId, ResourceId, batch_account_id, lock_target, same_id

SUB = "00000000-0000-0000-0000-000000000001"
VERSION = (f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/gal/images/gpu"
           "/versions/1.0.0")
LOCK = f"{VERSION}/providers/Microsoft.Authorization/locks/batch-image-autopilot"


def test_a_lock_on_a_gallery_version_is_a_lock_whose_scope_is_the_version() -> None:
    # The library alone folds the version into the lock's parent (why the app needs its own split).
    assert parse_resource_id(LOCK)["resource_parent"].startswith("galleries/gal/images/gpu/versions/1.0.0/providers/")
    rid = ResourceId.parse(LOCK)
    assert rid.resource_type == LOCKS and rid.is_type("microsoft.authorization/LOCKS")
    assert rid.name == "batch-image-autopilot" and rid.scope == VERSION
    assert rid.subscription_id == SUB and rid.resource_group == "images-rg" and rid.parent_path == ""
    assert lock_target(LOCK) == (VERSION, "batch-image-autopilot") == lock_target(rid)
    assert ResourceId.parse(rid.scope).is_type("Microsoft.Compute/galleries/images/versions")


def test_an_ordinary_id_keeps_its_parent_path_and_group_as_scope() -> None:
    rid = ResourceId.parse(VERSION.replace("resourceGroups", "resourcegroups") + "/")
    assert rid.resource_type == "Microsoft.Compute/galleries/images/versions"
    assert rid.types == ("galleries", "images", "versions") and rid.names == ("gal", "gpu", "1.0.0")
    assert rid.parent_path == "galleries/gal/images/gpu"
    assert rid.scope is not None and same_id(rid.scope, f"/subscriptions/{SUB}/resourceGroups/images-rg")
    assert rid == ResourceId.parse(VERSION.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))
    assert lock_target(VERSION) is None
    sub_lock = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/locks/l"
    assert lock_target(sub_lock) == (f"/subscriptions/{SUB}", "l")


@pytest.mark.parametrize("text", [
    "", "/", "not-an-id", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots",
    f"{VERSION}/providers/Microsoft.Authorization/locks", "/providers/Microsoft.Authorization/locks/l"])
def test_what_is_not_an_id(text: str) -> None:
    with pytest.raises(InvalidResourceId, match="not an ARM resource id"):
        ResourceId.parse(text)


def test_batch_account_id_is_built_by_the_library() -> None:
    built = batch_account_id(SUB, "batch-rg", "acct")
    assert built == f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct"
    assert ResourceId.parse(built).is_type("Microsoft.Batch/batchAccounts")
