"""Event Grid (system topic): deletes of guarded images, pool changes and removed locks."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.image_guard_events")


@bp.event_grid_trigger(arg_name="event")
def image_guard_events(event: func.EventGridEvent) -> None:
    from shared import guard, system_events
    from shared.context import get_context
    from shared.triggers import log_ignored, resource_event

    context = get_context()
    parsed = resource_event(event, context.settings.subscription_id)
    if isinstance(parsed, system_events.IgnoredEvent):
        log_ignored(log, parsed)
        return
    result = guard.on_event(context, parsed)
    log.info("image_guard_events: %s %s -> %s", parsed.type, parsed.subject, result)
