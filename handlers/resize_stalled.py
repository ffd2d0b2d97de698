"""Event Grid (custom topic): re-issue the resize of one stalled pool, with backoff and stop conditions."""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.resize_stalled")


@bp.event_grid_trigger(arg_name="event")
def resize_stalled(event: func.EventGridEvent) -> None:
    from shared.core.context import get_context
    from shared.core.event_routing import read_stall_event
    from shared.core.triggers import event_envelope, shown
    from shared.watch.tick import handle_stall

    envelope = event_envelope(event)
    event_id = shown(envelope.get("id"))
    named = read_stall_event(envelope)
    if isinstance(named, str):
        log.warning("resize_stalled: ignored event %s %s", event_id, named)
        return
    account_id, pool_id = named
    data = envelope["data"]  # a dict: read_stall_event checked it
    context = get_context()
    if account_id.lower() not in {a.lower() for a in _watched_accounts(context)}:
        log.warning("resize_stalled: ignored event %s for account %s, which the app does not watch", event_id,
                    shown(account_id))
        return
    etag = data.get("eTag")
    from shared.watch.pool_limits import Ceiling

    raw_ceilings = data.get("ceilings") if isinstance(data.get("ceilings"), list) else []
    ceilings = [c for c in (Ceiling.from_dict(item) for item in raw_ceilings if isinstance(item, dict))
                if c is not None]
    result = handle_stall(context, account_id, pool_id, observed_etag=etag if isinstance(etag, str) and etag else None,
                          ceilings=ceilings)
    log.info("resize_stalled: %s/%s -> %s", account_id, pool_id, result)


def _watched_accounts(context: Any) -> list[str]:
    from shared.guard.references import account_ids

    return account_ids(context)
