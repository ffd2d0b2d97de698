"""Event Grid (custom topic): re-issue the resize of one stalled pool, with backoff and stop conditions."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.resize_stalled")


@bp.event_grid_trigger(arg_name="event")
def resize_stalled(event: func.EventGridEvent) -> None:
    from shared.context import get_context
    from shared.event_routing import POOL_RESIZE_STALLED
    from shared.triggers import event_envelope
    from shared.watch import handle_stall

    envelope = event_envelope(event)
    data = envelope.get("data")
    # parse: the event only names the pool; everything else is re-read
    if (envelope.get("eventType") or "").lower() != POOL_RESIZE_STALLED.lower() or not isinstance(data, dict):
        log.warning("resize_stalled: ignored event %s of type %s", envelope.get("id"), envelope.get("eventType"))
        return
    account_id, pool_id = data.get("accountId"), data.get("poolId")
    if not isinstance(account_id, str) or not isinstance(pool_id, str) or not account_id or not pool_id or len(account_id) > 1024 or len(pool_id) > 64:
        log.warning("resize_stalled: ignored event %s without a valid accountId/poolId", envelope.get("id"))
        return
    context = get_context()
    if account_id.lower() not in {a.lower() for a in _watched_accounts(context)}:
        log.warning("resize_stalled: ignored event %s for account %s, which the app does not watch", envelope.get("id"), account_id)
        return
    result = handle_stall(context, account_id, pool_id)
    log.info("resize_stalled: %s/%s -> %s", account_id, pool_id, result)


def _watched_accounts(context) -> list[str]:
    from shared.references import account_ids

    return account_ids(context)
