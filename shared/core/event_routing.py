"""Which events reach which function: the app's Event Grid subscriptions, declared once.

``infra/`` creates these subscriptions in Azure and the local Functions host routes the emulator's
events with the same table; a test keeps the two in step. Filtering on ``data.operationName`` (as
Cloud Custodian does) keeps lock writes and everything else the app does not act on from ever
invoking a function; Tags-API writes reach it through their own subscription, filtered on the subject
so that only snapshots' tag writes do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SYSTEM = "system"  # the subscription's Azure Resource Manager system topic
CUSTOM = "custom"  # the app's own custom topic (stall events and alerts)

EVENT_NAMESPACE = "BatchImageAutopilot"
POOL_RESIZE_STALLED = f"{EVENT_NAMESPACE}.PoolResizeStalled"


@dataclass(frozen=True)
class EventSubscription:
    name: str
    function: str
    topic: str
    included_event_types: tuple[str, ...]
    operation_names: tuple[str, ...] = ()  # advanced filter StringIn on data.operationName; () = any
    # Advanced filter StringContains on subject (any of the values; ANDed with the filters above, case-insensitive
    # like every Event Grid string comparison); () = any subject.
    subject_contains: tuple[str, ...] = ()
    # Advanced filter StringBeginsWith on subject: only the configured image/snapshot resource groups
    # (infra: the imageResourceGroups parameter; here: shared/pipeline/scope.watched_groups of the families).
    resource_group_scoped: bool = False

    def matches(self, event_type: str | None, operation_name: str | None, subject: str | None = None,
                prefixes: tuple[str, ...] | None = None) -> bool:
        if not event_type or event_type.lower() not in {t.lower() for t in self.included_event_types}:
            return False
        in_groups = bool(subject) and str(subject).lower().startswith(tuple(p.lower() for p in prefixes or ()))
        if self.resource_group_scoped and prefixes is not None and not in_groups:
            return False
        if self.subject_contains and not (isinstance(subject, str)
                                          and any(s.lower() in subject.lower() for s in self.subject_contains)):
            return False
        if not self.operation_names:
            return True
        return bool(operation_name) and operation_name.lower() in {o.lower() for o in self.operation_names}


# Event Grid allows 25 filter values per event subscription, across its advanced filters.
MAX_FILTER_VALUES = 25


def subject_prefixes(subscription_id: str, resource_groups: list[str]) -> tuple[str, ...]:
    """The StringBeginsWith values of a resource-group-scoped subscription (case-insensitive in Event Grid)."""
    return tuple(f"/subscriptions/{subscription_id}/resourceGroups/{g}/".lower() for g in resource_groups)


SUBSCRIPTIONS: tuple[EventSubscription, ...] = (
    EventSubscription(
        name="image-pipeline",
        function="image_pipeline",
        topic=SYSTEM,
        included_event_types=("Microsoft.Resources.ResourceWriteSuccess",),
        operation_names=(
            "Microsoft.Compute/snapshots/write",
            "Microsoft.Compute/images/write",
            "Microsoft.Compute/galleries/images/versions/write",
        ),
        resource_group_scoped=True,  # snapshots of the whole subscription are not the app's business
    ),
    # Tags written through the Tags API (portal Tags blade, az tag update/delete, Update-AzTag) arrive as
    # Microsoft.Resources/tags/write|delete about any resource in the subscription, so they get their own
    # subscription whose subject filter keeps everything but snapshots out (Event Grid ANDs advanced filters, so the
    # filter cannot sit on image-pipeline without dropping its image and gallery-version events). A snapshot's own
    # delete comes here too: a deleted snapshot leaves its set.
    EventSubscription(
        name="snapshot-tags",
        function="image_pipeline",
        topic=SYSTEM,
        included_event_types=("Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess"),
        operation_names=(
            "Microsoft.Resources/tags/write",
            "Microsoft.Resources/tags/delete",
            "Microsoft.Compute/snapshots/delete",
        ),
        subject_contains=("/providers/Microsoft.Compute/snapshots/",),
        resource_group_scoped=True,  # like image-pipeline: only snapshots in the configured groups
    ),
    EventSubscription(
        name="image-guard",
        function="image_guard_events",
        topic=SYSTEM,
        included_event_types=(
            "Microsoft.Resources.ResourceDeleteSuccess",
            "Microsoft.Resources.ResourceDeleteFailure",
            "Microsoft.Resources.ResourceWriteSuccess",
        ),
        operation_names=(
            "Microsoft.Compute/images/delete",
            "Microsoft.Compute/snapshots/delete",
            "Microsoft.Compute/galleries/images/versions/delete",
            "Microsoft.Authorization/locks/delete",
            "Microsoft.Batch/batchAccounts/pools/write",
            "Microsoft.Batch/batchAccounts/pools/delete",
        ),
    ),
    EventSubscription(
        name="pool-resize-stalled",
        function="resize_stalled",
        topic=CUSTOM,
        included_event_types=(POOL_RESIZE_STALLED,),
    ),
)


def read_stall_event(envelope: Mapping[str, Any]) -> tuple[str, str] | str:
    """``(account id, pool id)`` a PoolResizeStalled event names, or why it is ignored (a log line, shown safely).

    The event only names the pool; everything else is re-read. The pool id must be one Batch could have issued: it ends
    up in a data-plane URL the app builds ("..", "a/b", "%2F" and line breaks never reach it). The subject, when
    present, must name the same pool as the data.
    """
    from shared.core.resource_ids import is_batch_account_id
    from shared.core.triggers import shown
    from shared.pipeline.naming import pool_id_problem

    event_type, data = envelope.get("eventType"), envelope.get("data")
    stall = isinstance(event_type, str) and event_type.lower() == POOL_RESIZE_STALLED.lower()
    if not stall or not isinstance(data, dict):
        return f"of type {shown(event_type)}"
    account_id, pool_id = data.get("accountId"), data.get("poolId")
    if not is_batch_account_id(account_id) or not isinstance(pool_id, str) or pool_id_problem(pool_id) is not None:
        return f"without a valid accountId/poolId ({shown(account_id)}, {shown(pool_id)})"
    subject = envelope.get("subject")
    if subject is not None and (not isinstance(subject, str)
                                or subject.strip("/").lower() != f"{account_id}/pools/{pool_id}".strip("/").lower()):
        return f"whose subject {shown(subject)} does not name the pool in its data"
    return account_id, pool_id
