"""Event Grid (system topic): deletes of guarded images, pool changes and removed locks."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.image_guard_events")


@bp.event_grid_trigger(arg_name="event")
def image_guard_events(event: func.EventGridEvent) -> None:
    from shared.core.triggers import shown, system_event
    from shared.guard import reconcile as guard

    parsed = system_event(event, log)  # parse
    if parsed is None:
        return
    context, resource_event = parsed
    result = guard.on_event(context, resource_event)  # observe -> decide -> act
    # report: deletes of resources no managed pool uses are routine (debug); anything acted on is info
    level = logging.INFO if result.acted else logging.DEBUG
    log.log(level, "image_guard_events: %s %s -> %s", resource_event.type, shown(resource_event.subject), result.detail)
