"""What the Functions runtime hands a trigger, turned into plain values (no business logic here)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from shared.core.system_events import IgnoredEvent, ResourceEvent, parse_event

if TYPE_CHECKING:
    from shared.core.context import AppContext


def event_envelope(event: Any) -> dict[str, Any]:
    """A ``func.EventGridEvent`` or ``func.CloudEvent`` as a plain dict with Event Grid field names."""
    try:
        data = event.get_json()
    except (ValueError, TypeError):
        data = None
    if hasattr(event, "event_type"):  # Event Grid schema
        return {"id": event.id, "topic": getattr(event, "topic", None), "subject": event.subject,
                "eventType": event.event_type,
                "eventTime": event.event_time, "data": data}
    return {"id": getattr(event, "id", None), "topic": getattr(event, "source", None),
            "subject": getattr(event, "subject", None),
            "eventType": getattr(event, "type", None), "eventTime": getattr(event, "time", None), "data": data}


def resource_event(event: Any, subscription_id: str) -> ResourceEvent | IgnoredEvent:
    """Parse an ARM system event delivered to a trigger; events of other subscriptions are ignored."""
    envelope = event_envelope(event)
    when = envelope.get("eventTime")
    return parse_event(envelope.get("id"), envelope.get("topic"), envelope.get("subject"), envelope.get("eventType"),
                       when.isoformat() if hasattr(when, "isoformat") else when, envelope.get("data"),
                       expected_subscription=subscription_id)


SHOWN_CHARS = 300  # enough to recognise a resource id; bounded so a 10 kB hostile id cannot flood the log


def shown(value: Any) -> str:
    """An untrusted value for a log line: JSON-quoted (line breaks and control and bidi characters
    escaped, so nobody can forge log lines), and cut short."""
    text = json.dumps(value, ensure_ascii=True, default=repr)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def log_ignored(log: logging.Logger, ignored: IgnoredEvent) -> None:
    # One line per ignored event, at debug for the expected kinds (other resources' events) and at
    # warning for malformed or hostile deliveries.
    level = logging.DEBUG if ignored.code in {"not-a-resource-event", "temporary-deployment"} else logging.WARNING
    log.log(level, "ignored event %s (%s): %s [%s]", shown(ignored.id), shown(ignored.type), ignored.reason,
            ignored.code)


def system_event(event: Any, log: logging.Logger) -> tuple[AppContext, ResourceEvent] | None:
    """The *parse* step of a system-topic trigger: the app context and the validated event, or None
    (after one log line) when the delivery is not something the app acts on."""
    from shared.core.context import get_context

    context = get_context()
    parsed = resource_event(event, context.settings.subscription_id)
    if isinstance(parsed, IgnoredEvent):
        log_ignored(log, parsed)
        return None
    return context, parsed
