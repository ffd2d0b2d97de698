"""What the Functions runtime hands a trigger, turned into plain values (no business logic here)."""

from __future__ import annotations

import logging
from typing import Any

from shared.system_events import IgnoredEvent, ResourceEvent, parse_event


def event_envelope(event: Any) -> dict[str, Any]:
    """A ``func.EventGridEvent`` or ``func.CloudEvent`` as a plain dict with Event Grid field names."""
    try:
        data = event.get_json()
    except (ValueError, TypeError):
        data = None
    if hasattr(event, "event_type"):  # Event Grid schema
        return {"id": event.id, "topic": getattr(event, "topic", None), "subject": event.subject, "eventType": event.event_type,
                "eventTime": event.event_time, "data": data}
    return {"id": getattr(event, "id", None), "topic": getattr(event, "source", None), "subject": getattr(event, "subject", None),
            "eventType": getattr(event, "type", None), "eventTime": getattr(event, "time", None), "data": data}


def resource_event(event: Any, subscription_id: str) -> ResourceEvent | IgnoredEvent:
    """Parse an ARM system event delivered to a trigger; events of other subscriptions are ignored."""
    envelope = event_envelope(event)
    when = envelope.get("eventTime")
    return parse_event(envelope.get("id"), envelope.get("topic"), envelope.get("subject"), envelope.get("eventType"),
                       when.isoformat() if hasattr(when, "isoformat") else when, envelope.get("data"),
                       expected_subscription=subscription_id)


def log_ignored(log: logging.Logger, ignored: IgnoredEvent) -> None:
    # One line per ignored event, at debug for the expected kinds (other resources' events) and at
    # warning for malformed or hostile deliveries.
    level = logging.DEBUG if ignored.code in {"not-a-resource-event", "temporary-deployment"} else logging.WARNING
    log.log(level, "ignored event %s (%s): %s [%s]", ignored.id, ignored.type, ignored.reason, ignored.code)
