"""Pure ownership decisions: tags are a claim, the definition is the proof; locks are removed only when provably the
app's."""

from __future__ import annotations

from shared.core import ownership
from shared.guard.lock_plan import LOCK_NAME, NOTES_HEAD, lock_notes
from shared.resources.locks import Lock

SUB = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/images-rg/providers/Microsoft.Compute"
SNAP = f"{SUB}/snapshots/gpu-os"
OTHER = f"{SUB}/snapshots/theirs"
IMAGE = f"{SUB}/images/gpu-1.0.0"


def image(tags: dict[str, str], snapshot: str) -> dict:
    return {"tags": tags, "properties": {"storageProfile": {"osDisk": {"snapshot": {"id": snapshot}}, "dataDisks": []}}}


def test_the_apps_own_image_is_recognised_whatever_the_casing() -> None:
    tags = ownership.app_tags("gpu", "1.0.0", [SNAP])
    assert ownership.image_not_ours(image(tags, SNAP.upper()), "GPU", "1.0.0", [SNAP]) is None


def test_untagged_forged_or_mismatched_images_are_not_the_apps() -> None:
    assert "autopilot.managedBy" in ownership.image_not_ours(image({}, SNAP), "gpu", "1.0.0", [SNAP])
    forged = {"autopilot.managedBy": "batch-image-autopilot", "autopilot.family": "gpu", "autopilot.version": "1.0.0"}
    assert "built from" in ownership.image_not_ours(image(forged, OTHER), "gpu", "1.0.0", [SNAP])
    assert "family" in ownership.image_not_ours(image(ownership.app_tags("cpu", "1.0.0", [SNAP]), SNAP), "gpu", "1.0.0",
                                                [SNAP])
    wrong_digest = {**ownership.app_tags("gpu", "1.0.0", [SNAP]), "autopilot.sources": "0" * 32}
    assert "autopilot.sources" in ownership.image_not_ours(image(wrong_digest, SNAP), "gpu", "1.0.0", [SNAP])


def test_a_pool_is_the_apps_only_with_its_metadata_and_image() -> None:
    meta = [{"name": "autopilot.managed", "value": "true"}, {"name": "autopilot.family", "value": "gpu"},
            {"name": "autopilot.version", "value": "1.0.0"}]
    pool = {"metadata": meta, "virtualMachineConfiguration": {"imageReference": {"virtualMachineImageId": IMAGE}}}
    assert ownership.pool_not_ours(pool, "gpu", "1.0.0", IMAGE) is None
    assert ownership.pool_not_ours({**pool, "metadata": []}, "gpu", "1.0.0", IMAGE) is not None
    assert "uses image" in ownership.pool_not_ours(pool, "gpu", "1.0.0", f"{SUB}/images/other")


def test_lock_removal_needs_name_owner_notes_and_a_known_identity() -> None:
    notes = lock_notes([])
    mine = Lock(LOCK_NAME, "CanNotDelete", notes, ("app-id",), IMAGE)
    assert ownership.lock_removal_refusal(mine, "app-id", lock_name=LOCK_NAME, notes_head=NOTES_HEAD) is None
    assert "AZURE_CLIENT_ID" in ownership.lock_removal_refusal(mine, None, lock_name=LOCK_NAME, notes_head=NOTES_HEAD)
    assert ownership.lock_removal_refusal(None, "app-id", lock_name=LOCK_NAME,
                                          notes_head=NOTES_HEAD) == "the lock is gone"
    rewritten = Lock(LOCK_NAME, "CanNotDelete", notes, ("someone-else",), IMAGE)
    assert "owners" in ownership.lock_removal_refusal(rewritten, "app-id", lock_name=LOCK_NAME, notes_head=NOTES_HEAD)
    foreign_notes = Lock(LOCK_NAME, "CanNotDelete", "keep: legal hold", ("app-id",), IMAGE)
    assert "notes" in ownership.lock_removal_refusal(foreign_notes, "app-id", lock_name=LOCK_NAME,
                                                     notes_head=NOTES_HEAD)
