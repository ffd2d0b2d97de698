"""What the app built, told apart from whatever happens to sit at a name the app derives.

Names derive from (family, version), so a repeated step finds its own earlier result - but anyone can
create a resource at that name first. The app therefore reuses, deletes or unlocks a resource only
when it is provably its own:

* everything it creates carries its tags: ``autopilot.managedBy`` (the app), ``autopilot.family`` and
  ``autopilot.version`` (the set's key) and ``autopilot.sources`` (a digest of the snapshots it was
  built from);
* before reuse it also reads the resource's *own* definition (what it was built from), since tags
  are only a claim: anyone who can write the resource can write its tags;
* a pool at a derived id must carry the app's metadata for this family, version and image.

Pure decisions: every function takes the resource as read, and returns None (the app's own) or the
reason it is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from shared.core import pool_metadata
from shared.core.resource_ids import normalize
from shared.guard.lock_plan import GALLERY_VERSION, MANAGED_IMAGE, image_sources

MANAGED_BY_TAG = "autopilot.managedBy"
MANAGED_BY = "batch-image-autopilot"
SOURCES_TAG = "autopilot.sources"
TAG_FAMILY = "autopilot.family"
TAG_VERSION = "autopilot.version"
NAME_TAKEN = "NAME_TAKEN"


def sources_digest(resource_ids: Iterable[str]) -> str:
    """A short, order- and case-independent digest of the resources something was built from (fits a 256-character
    tag)."""
    text = "\n".join(sorted({normalize(r) for r in resource_ids}))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def app_tags(family: str, version: str, sources: Iterable[str]) -> dict[str, str]:
    return {TAG_FAMILY: family, TAG_VERSION: version, MANAGED_BY_TAG: MANAGED_BY, SOURCES_TAG: sources_digest(sources)}


def _tags(resource: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (resource.get("tags") or {}).items()}


def not_ours(resource: Mapping[str, Any], kind: str, family: str, version: str,
             expected_sources: Iterable[str]) -> str | None:
    """None when ``resource`` (a managed image or gallery image version, as read) is the app's build of
    (family, version) from exactly ``expected_sources``; else why it is not, in one sentence."""
    tags = _tags(resource)
    if tags.get(MANAGED_BY_TAG.lower()) != MANAGED_BY:
        return f"it does not carry the app's tag {MANAGED_BY_TAG}={MANAGED_BY}"
    if tags.get(TAG_FAMILY, "").lower() != family.lower() or tags.get(TAG_VERSION, "") != version:
        return (f"its tags name family {tags.get(TAG_FAMILY, '')!r} version {tags.get(TAG_VERSION, '')!r}, "
                f"not {family!r} {version!r}")
    expected = {normalize(s) for s in expected_sources}
    actual = {normalize(s) for s in image_sources(kind, resource)}
    if actual != expected:
        # Tags are a claim anyone with write access can make; the definition says what it really holds.
        return ("it was built from " + (", ".join(sorted(actual)) or "nothing the app can read") + ", not from "
                + ", ".join(sorted(expected)))
    recorded = tags.get(SOURCES_TAG.lower())
    if recorded is not None and recorded != sources_digest(expected):
        return f"its {SOURCES_TAG} tag does not match the snapshots it is being reused for"
    return None


def image_not_ours(image: Mapping[str, Any], family: str, version: str, snapshot_ids: Iterable[str]) -> str | None:
    return not_ours(image, MANAGED_IMAGE, family, version, snapshot_ids)


def version_not_ours(gallery_version: Mapping[str, Any], family: str, version: str,
                     sources: Iterable[str]) -> str | None:
    return not_ours(gallery_version, GALLERY_VERSION, family, version, sources)


def pool_not_ours(pool: Mapping[str, Any], family: str, version: str, image_id: str, *,
                  in_place: bool = False) -> str | None:
    """None when the pool (either plane's JSON) carries the app's metadata for (family, version) and uses ``image_id``.

    ``in_place``: the family keeps one pool id for every version (rollout inPlace), so its standing pool is the app's
    when its metadata names the family and it runs any version of the same gallery image definition; the rollout then
    moves it to ``version``.
    """
    props = pool.get("properties", pool)
    metadata = pool_metadata.as_dict(props.get("metadata"))
    if not pool_metadata.is_managed(metadata):
        return f"it has no {pool_metadata.MANAGED}=true metadata"
    same_version = metadata.get(pool_metadata.VERSION, "") == version or in_place
    if metadata.get(pool_metadata.FAMILY, "").lower() != family.lower() or not same_version:
        return (f"its metadata names family {metadata.get(pool_metadata.FAMILY, '')!r} version "
                f"{metadata.get(pool_metadata.VERSION, '')!r}")
    vm = (props.get("virtualMachineConfiguration")
          or (props.get("deploymentConfiguration") or {}).get("virtualMachineConfiguration") or {})
    reference = vm.get("imageReference") or {}
    used = reference.get("virtualMachineImageId") or reference.get("id") or ""
    if in_place:
        definition = normalize(image_id).rsplit("/versions/", 1)[0] + "/versions/"
        if not normalize(used).startswith(definition):
            return f"it uses image {used or '(none)'}, not a version of {image_id.rsplit('/versions/', 1)[0]}"
        return None
    if normalize(used) != normalize(image_id):
        return f"it uses image {used or '(none)'}, not {image_id}"
    return None


def name_taken_fix(resource_id: str, family: str, version: str, *, kind: str) -> str:
    """What a person does about a foreign resource at a derived name (the app never adopts, locks or deletes it)."""
    if kind == "pool":
        delete = (f"delete or rename pool {resource_id} if nobody needs it (Batch pool ids cannot be reused while "
                  "it exists)")
        other = "or give the family's pool a different poolId template"
    else:
        delete = f"delete or move {resource_id} if nobody needs it"
        other = "or set the family's imageResourceGroup / gallery to a place where the app's names are free"
    return (f"{delete}: the app retries at its next sweep and builds {family} {version}; or tag the snapshots "
            "with another "
            f"autopilot.version, {other}")


def lock_removal_refusal(lock: Any, owner: str | None, *, lock_name: str, notes_head: str) -> str | None:
    """None when the app may remove ``lock`` (a ``resources.locks.Lock`` as just re-read); else why not.

    ``owners`` is a convention, not proof: anyone with ``locks/write`` can write any owner. The app still
    checks it, with the lock's name and its notes, so that it never removes a lock a person placed.
    Without its own client id (``AZURE_CLIENT_ID``; production) the app cannot tell its locks from
    anyone's, and removes none.
    """
    if owner is None:
        return ("the app does not know its own client id (set AZURE_CLIENT_ID to the identity's client id): it "
                "removes no lock")
    if lock is None:
        return "the lock is gone"
    if lock.name.lower() != lock_name.lower():
        return f"the lock is named {lock.name!r}, not {lock_name!r}"
    if owner.lower() not in {o.lower() for o in lock.owners}:
        return f"its owners {list(lock.owners)} do not include the app ({owner})"
    if not lock.notes.startswith(notes_head):
        return "its notes are not the app's"
    return None
