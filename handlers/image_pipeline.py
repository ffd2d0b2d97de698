"""Event Grid (system topic): snapshot writes, deletes and Tags-API tag writes, image and gallery-version writes drive
the image pipeline."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.image_pipeline")


@bp.event_grid_trigger(arg_name="event")
def image_pipeline(event: func.EventGridEvent) -> None:
    from shared.core import system_events
    from shared.core.triggers import shown, system_event
    from shared.pipeline import stages as pipeline

    delivered = system_event(event, log)  # parse: never trust the payload beyond "this resource changed"
    if delivered is None:
        return
    context, parsed = delivered
    resource_id = parsed.resource_id.raw if parsed.resource_id else parsed.subject
    # observe -> decide -> act: the pipeline re-reads the resource and advances its version
    if system_events.is_snapshot_write(parsed) or system_events.is_snapshot_delete(parsed):
        outcome = pipeline.on_snapshot_written(context, resource_id, dict(parsed.claims), event_time=parsed.time)
    elif system_events.is_snapshot_tags_write(parsed) or system_events.is_snapshot_tags_delete(parsed):
        tagged = system_events.tagged_resource(parsed)  # the event may name the tags resource or the snapshot itself
        assert tagged is not None
        # allowedPrincipals judges the tagger: the claims of a Tags-API write are whoever wrote the tags
        outcome = pipeline.on_snapshot_written(context, tagged.raw, dict(parsed.claims), event_time=parsed.time)
    elif system_events.is_image_write(parsed) or system_events.is_gallery_image_version_write(parsed):
        outcome = pipeline.on_image_written(context, resource_id)
    else:
        log.debug("image_pipeline: %s %s is not a pipeline event", parsed.type, shown(resource_id))
        return
    # report: snapshots that are not opted in (and resources that are gone) are the common case, so
    # they get one debug line; anything the pipeline acted on is worth an info line.
    level = logging.DEBUG if outcome.stage == "ignored" else logging.INFO
    log.log(level, "image_pipeline: %s %s -> %s %s", parsed.operation_name, shown(resource_id), outcome.stage,
            shown(outcome.detail))
