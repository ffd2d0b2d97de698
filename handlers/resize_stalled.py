"""Event Grid (custom topic): re-issue the resize of one stalled pool, with backoff and stop conditions."""

from __future__ import annotations

import logging
import re
from typing import Any

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.resize_stalled")

# Batch pool ids: 1-64 letters, digits, hyphens and underscores. Anything else never names a pool, and must never
# reach the data-plane URL the app builds from it ("..", "a/b", "%2F", line breaks).
_POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ACCOUNT_ID = re.compile(r"^/subscriptions/[^/\s]+/resourceGroups/[^/\s]+/providers/Microsoft\.Batch/batchAccounts/[a-z0-9]{3,24}$",
                         re.IGNORECASE)


@bp.event_grid_trigger(arg_name="event")
def resize_stalled(event: func.EventGridEvent) -> None:
    from shared.context import get_context
    from shared.event_routing import POOL_RESIZE_STALLED
    from shared.triggers import event_envelope, shown
    from shared.watch import handle_stall

    envelope = event_envelope(event)
    event_id, data = shown(envelope.get("id")), envelope.get("data")
    # parse: the event only names the pool; everything else is re-read
    event_type = envelope.get("eventType")
    if not isinstance(event_type, str) or event_type.lower() != POOL_RESIZE_STALLED.lower() or not isinstance(data, dict):
        log.warning("resize_stalled: ignored event %s of type %s", event_id, shown(event_type))
        return
    account_id, pool_id = data.get("accountId"), data.get("poolId")
    if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id) or not isinstance(pool_id, str) or not _POOL_ID.match(pool_id):
        log.warning("resize_stalled: ignored event %s without a valid accountId/poolId (%s, %s)", event_id, shown(account_id), shown(pool_id))
        return
    subject = envelope.get("subject")
    if subject is not None and (not isinstance(subject, str) or subject.strip("/").lower() != f"{account_id}/pools/{pool_id}".strip("/").lower()):
        log.warning("resize_stalled: ignored event %s whose subject %s does not name the pool in its data", event_id, shown(subject))
        return
    context = get_context()
    if account_id.lower() not in {a.lower() for a in _watched_accounts(context)}:
        log.warning("resize_stalled: ignored event %s for account %s, which the app does not watch", event_id, shown(account_id))
        return
    etag = data.get("eTag")
    from shared.pool_limits import Ceiling

    raw_ceilings = data.get("ceilings") if isinstance(data.get("ceilings"), list) else []
    ceilings = [c for c in (Ceiling.from_dict(item) for item in raw_ceilings if isinstance(item, dict)) if c is not None]
    result = handle_stall(context, account_id, pool_id, observed_etag=etag if isinstance(etag, str) and etag else None, ceilings=ceilings)
    log.info("resize_stalled: %s/%s -> %s", account_id, pool_id, result)


def _watched_accounts(context: Any) -> list[str]:
    from shared.references import account_ids

    return account_ids(context)
