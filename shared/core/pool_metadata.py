"""The pool metadata keys that carry the app's intent on the pool itself.

The image pipeline writes them when it creates a pool; the pool watch and the image guard read them.
Keeping intent on the pool (not only in Table storage) means another team, the CLI, or a rebuilt
state table can always see what the app wants for a pool. Batch metadata is a list of name/value
string pairs on the pool (``metadata`` in both planes).
"""

from __future__ import annotations

from collections.abc import Mapping

MANAGED = "autopilot.managed"  # "true": the app created the pool, or a team opted it in
FAMILY = "autopilot.family"
VERSION = "autopilot.version"
IMAGE_ID = "autopilot.imageId"  # the gallery image version (or legacy managed image) id the pool uses
MANAGED_IMAGE_ID = "autopilot.managedImageId"  # the intermediate managed image, when kept
SNAPSHOT_IDS = "autopilot.snapshotIds"  # comma-separated source snapshot ids
DESIRED_DEDICATED = "autopilot.desiredDedicated"  # the target the watch drives towards
DESIRED_SPOT = "autopilot.desiredSpot"
SCHEDULE = "autopilot.schedule"  # JSON list of {"cron", "dedicated", "spot"} entries
# for scheduled shrinks: requeue|terminate|taskcompletion|retaineddata
DEALLOCATION = "autopilot.nodeDeallocationOption"
# every resize the watch issues uses it (the family's resizeTimeoutMinutes)
RESIZE_TIMEOUT = "autopilot.resizeTimeoutMinutes"

# Added by an image rollout (shared/lifecycle/rollout.py): "drain" (inPlace, being emptied for the patch) or "retired"
# (newPools, replaced). A hold wins over the desired values and schedule, which stay on the pool for when it lifts.
HOLD = "autopilot.rolloutHold"
HOLD_DRAIN = "drain"
HOLD_RETIRED = "retired"

ALL_KEYS = (MANAGED, FAMILY, VERSION, IMAGE_ID, MANAGED_IMAGE_ID, SNAPSHOT_IDS, DESIRED_DEDICATED, DESIRED_SPOT,
            SCHEDULE, DEALLOCATION,
            RESIZE_TIMEOUT)


def as_dict(pairs: list[dict[str, str]] | list[object] | None) -> dict[str, str]:
    """Batch metadata (list of ``{name, value}`` dicts or SDK ``MetadataItem`` objects) as a dict."""
    if type(pairs) is list and all(type(item) is dict for item in pairs):
        # the list pages' JSON: the watch's hot path, once per pool per tick
        return {name: value for name, value in ((item.get("name"), item.get("value")) for item in pairs)
                if type(name) is str and type(value) is str}
    out: dict[str, str] = {}
    for item in pairs or []:
        if type(item) is dict:  # the list pages' JSON: the watch's hot path, once per pool per tick
            name, value = item.get("name"), item.get("value")
        else:
            name, value = getattr(item, "name", None), getattr(item, "value", None)
        if type(name) is str and type(value) is str:
            out[name] = value
    return out


def is_managed(metadata: dict[str, str]) -> bool:
    return metadata.get(MANAGED, "").strip().lower() == "true"


def hold_of(metadata: Mapping[str, str]) -> str | None:
    """The rollout's hold on a pool ("drain" or "retired"), or None."""
    value = metadata.get(HOLD, "").strip().lower()
    return value if value in (HOLD_DRAIN, HOLD_RETIRED) else None
