"""Event Grid: the subscription's Azure Resource Manager system topic, and custom topics.

System topic: ARM raises ``Microsoft.Resources.Resource{Write,Delete,Action}{Success,Failure}`` for every
management-plane PUT/PATCH, DELETE and POST (never for GETs, never for data-plane calls). The events are
built here in the Event Grid schema exactly as documented (contracts §1.3/§1.5) and handed to
subscribers; :func:`to_cloud_event` renders one as CloudEvents v1.0 (§1.4) for a subscription that asks
for ``CloudEventSchemaV1_0``.

Custom topics: ``POST /eventgrid/{topic}/api/events`` accepts Event Grid schema arrays or CloudEvents
batches (see ``responses.py``) and hands each event to that topic's subscribers, in the schema it was
published in.

Delivery is synchronous and in-process: a subscriber is a callable taking one event dict. A subscriber
that raises is logged and skipped; it never fails the HTTP call that raised the event.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from emulator.eventgrid.exceptions import NotFound

if TYPE_CHECKING:
    from emulator.azure import Emulator
    from emulator.core import Request, Route

log = logging.getLogger("emulator.eventgrid")

SYSTEM = "system"  # the subscription's Azure Resource Manager system topic
DEFAULT_TOPIC = "autopilot"  # the app's custom topic (AUTOPILOT_EVENTS_TOPIC_ENDPOINT)
EVENTGRID_SCHEMA = "EventGridSchema"
CLOUDEVENT_SCHEMA = "CloudEventSchemaV1_0"
RESOURCES_PREFIX = "Microsoft.Resources."
# Where custom topics "live" in ARM terms, for the envelope's ``topic``: the emulator accepts any
# subscription, so custom topics get a fixed, recognisable home unless create_topic says otherwise.
DEFAULT_TOPIC_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_TOPIC_RESOURCE_GROUP = "emulator-eventgrid"

# Failed management operations that still raise a *Failure event: the operation reached ARM's
# authorisation / the resource provider and was refused there (403 authorization, 409 conflict such as
# ScopeLocked, 412 precondition) or broke (5xx). Requests that never became an operation (400 bad
# request, 401, 404, 405) raise nothing. Injected faults raise nothing either (the dispatcher skips them).
FAILURE_STATUSES = frozenset({403, 409, 412})

EventCallback = Callable[[dict[str, Any]], None]


def format_event_time(when: datetime) -> str:
    """``2018-07-19T18:38:04.6117357Z``: UTC with 7 fractional digits, as Event Grid writes it."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0Z"


def to_cloud_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An Event Grid schema event rendered as CloudEvents v1.0 (contracts §1.4).

    ``topic`` becomes ``source``, ``eventType`` ``type``, ``eventTime`` ``time``; CloudEvents has no
    ``dataVersion``/``metadataVersion``. The lower-case ``specversion`` key is what azure-functions looks
    for to decode a ``func.CloudEvent``.
    """
    if "specversion" in event:
        return dict(event)
    return {
        "source": event.get("topic"),
        "subject": event.get("subject"),
        "type": event.get("eventType"),
        "time": event.get("eventTime"),
        "id": event.get("id"),
        "data": copy.deepcopy(event.get("data")),
        "specversion": "1.0",
    }


@dataclass
class CustomTopic:
    name: str
    # None: the topic accepts no access key, only Microsoft Entra tokens (what the app's default
    # settings use: AUTOPILOT_EVENTS_TOPIC_KEY unset -> token credential).
    key: str | None = None
    resource_id: str = ""

    def __post_init__(self) -> None:
        if not self.resource_id:
            self.resource_id = (f"/subscriptions/{DEFAULT_TOPIC_SUBSCRIPTION}/resourceGroups"
                                f"/{DEFAULT_TOPIC_RESOURCE_GROUP}"
                                f"/providers/Microsoft.EventGrid/topics/{self.name}")


@dataclass
class _Subscriber:
    callback: EventCallback
    schema: str | None  # None: deliver in the schema the event was published in
    event_types: frozenset[str] | None  # lower-cased; None: all


@dataclass
class _TopicState:
    events: list[dict[str, Any]] = field(default_factory=list)
    subscribers: list[_Subscriber] = field(default_factory=list)


class EventGridBackend:
    def __init__(self, emulator: Emulator, *, duplicate_writes: bool = False) -> None:
        self.emulator = emulator
        self._lock = threading.RLock()
        self._topics: dict[str, CustomTopic] = {}
        self._state: dict[str, _TopicState] = {SYSTEM: _TopicState()}
        # Azure can raise ResourceWriteSuccess twice for one write, the first copy naming a temporary
        # deployment resource, both with the same correlationId (product brief). Off by default.
        self.duplicate_writes = duplicate_writes
        # data.authorization.evidence.role of system events: the emulator has no RBAC, so it names
        # one role for every caller.
        self.evidence_role = "Owner"
        self.delivery_errors: list[tuple[str, str, str]] = []  # (topic, event id, error) from subscribers that raised
        self.create_topic(DEFAULT_TOPIC, key=None)

    # ------------------------------------------------------------------------------------------
    # Topics and subscribers
    # ------------------------------------------------------------------------------------------
    def create_topic(self, name: str, key: str | None = None, *, resource_id: str | None = None) -> CustomTopic:
        """Create a custom topic, or change an existing topic's key (its events and subscribers stay).

        ``key=None`` means no access key works: publishers must send a bearer token.
        """
        if not name or name.lower() == SYSTEM:
            raise ValueError(f"invalid custom topic name {name!r}")
        with self._lock:
            existing = self._topics.get(name.lower())
            if existing is not None:
                existing.key = key
                if resource_id:
                    existing.resource_id = resource_id
                return existing
            topic = CustomTopic(name, key, resource_id or "")
            self._topics[name.lower()] = topic
            self._state.setdefault(name.lower(), _TopicState())
            return topic

    def get_topic(self, name: str) -> CustomTopic:
        topic = self._topics.get(name.lower())
        if topic is None:
            raise NotFound(f"The topic '{name}' does not exist in the emulator. "
                           "Create it with emulator.eventgrid.create_topic(name, key=...).")
        return topic

    def subscribe(self, topic: str, callback: EventCallback, *, schema: str | None = None,
                  event_types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``callback(event)`` for every event published on ``topic`` ("system" or a custom topic name).

        ``schema``: None delivers each event in the schema it was published in (system events are Event
        Grid schema); ``"CloudEventSchemaV1_0"`` renders Event Grid schema events as CloudEvents, like an
        event subscription with that ``eventDeliverySchema``. ``event_types`` filters like
        ``includedEventTypes`` (case-insensitive). Returns a function that cancels the subscription.
        """
        if schema not in (None, EVENTGRID_SCHEMA, CLOUDEVENT_SCHEMA):
            raise ValueError(f"schema must be None, {EVENTGRID_SCHEMA!r} or {CLOUDEVENT_SCHEMA!r}, not {schema!r}")
        subscriber = _Subscriber(callback, schema,
                                 frozenset(t.lower() for t in event_types) if event_types is not None else None)
        with self._lock:
            state = self._topic_state(topic)
            state.subscribers.append(subscriber)

        def cancel() -> None:
            with self._lock:
                if subscriber in state.subscribers:
                    state.subscribers.remove(subscriber)

        return cancel

    def events(self, topic: str = SYSTEM) -> list[dict[str, Any]]:
        """Copies of every event published on ``topic`` so far, oldest first, as published."""
        with self._lock:
            return copy.deepcopy(self._topic_state(topic).events)

    def clear(self, topic: str | None = None) -> None:
        """Forget the recorded events of one topic (or all); subscribers stay."""
        with self._lock:
            for name, state in self._state.items():
                if topic is None or name == topic.lower():
                    state.events.clear()

    def _topic_state(self, topic: str) -> _TopicState:
        if topic.lower() == SYSTEM:
            return self._state[SYSTEM]
        self.get_topic(topic)
        return self._state[topic.lower()]

    # ------------------------------------------------------------------------------------------
    # Publishing
    # ------------------------------------------------------------------------------------------
    def publish(self, topic: str, events: Iterable[Mapping[str, Any]]) -> None:
        """Record events on a topic and hand each to that topic's subscribers.

        Callbacks run outside the backend's lock, so a subscriber may call the emulator again.
        """
        batch = [copy.deepcopy(dict(e)) for e in events]
        with self._lock:
            state = self._topic_state(topic)
            state.events.extend(copy.deepcopy(batch))
            subscribers = list(state.subscribers)
        for event in batch:
            for subscriber in subscribers:
                self._deliver(topic, subscriber, event)

    def _deliver(self, topic: str, subscriber: _Subscriber, event: dict[str, Any]) -> None:
        event_type = str(event.get("eventType") or event.get("type") or "")
        if subscriber.event_types is not None and event_type.lower() not in subscriber.event_types:
            return
        payload = to_cloud_event(event) if subscriber.schema == CLOUDEVENT_SCHEMA else copy.deepcopy(event)
        try:
            subscriber.callback(payload)
        except Exception as exc:  # a subscriber's failure is its own; the publisher's call succeeded
            log.exception("Event Grid subscriber %r on topic %r failed for event %s", subscriber.callback, topic,
                          event.get("id"))
            with self._lock:
                self.delivery_errors.append((topic, str(event.get("id")), f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------------------------------
    # The ARM system topic
    # ------------------------------------------------------------------------------------------
    def emit_for_request(self, request: Request, route: Route, status: int) -> dict[str, Any] | None:
        """Raise the system event for one answered management-plane PUT/PATCH/POST/DELETE.

        Returns the event raised (None when the outcome raises none, see FAILURE_STATUSES).
        """
        kind = {"PUT": "Write", "PATCH": "Write", "DELETE": "Delete", "POST": "Action"}.get(request.method)
        if kind is None:
            return None
        if 200 <= status < 300:
            outcome = "Success"
        elif status in FAILURE_STATUSES or 500 <= status < 600:
            outcome = "Failure"
        else:
            return None
        subject = request.path.rsplit("/", 1)[0] if request.method == "POST" else request.path
        operation_name = self.emulator._action(route, request) or f"{request.method} {request.path}"
        http_request = None
        if request.method in ("PATCH", "DELETE", "POST"):
            # "only included when updating an existing resource or deleting a resource" (docs); the
            # Delete and Action examples carry it, the WriteSuccess example does not.
            query = f"?{urlencode(request.query)}" if request.query else ""
            http_request = {
                "clientRequestId": request.headers.get("x-ms-client-request-id") or str(uuid.uuid4()),
                "clientIpAddress": request.headers.get("x-forwarded-for") or "127.0.0.1",
                "method": request.method,
                "url": f"{request.base_url or self.emulator.base_url}{request.path}{query}",
            }
        return self.emit_resource_event(
            event_type=f"Resource{kind}{outcome}",
            subject=subject,
            operation_name=operation_name,
            claims=request.caller,
            status="Succeeded" if outcome == "Success" else "Failed",
            http_request=http_request,
            correlation_id=request.headers.get("x-ms-correlation-request-id"),
        )

    def emit_resource_event(self, *, event_type: str, subject: str, operation_name: str,
                            claims: Mapping[str, str] | None,
                            status: str, http_request: Mapping[str, str] | None = None,
                            correlation_id: str | None = None) -> dict[str, Any] | None:
        """Raise one ``Microsoft.Resources.*`` event on the system topic (LRO completions call this).

        ``event_type`` may be given with or without the ``Microsoft.Resources.`` prefix; ``status`` is
        ``data.status`` ("Succeeded", "Failed", "Canceled"). Returns the event raised (the real one when
        duplicate writes are on), or None when ``subject`` is not under a subscription.
        """
        if not event_type.startswith(RESOURCES_PREFIX):
            event_type = RESOURCES_PREFIX + event_type
        segments = [s for s in subject.split("/") if s]
        if len(segments) < 2 or segments[0].lower() != "subscriptions":
            log.warning("no system event for %s on %r: not a subscription-scoped resource id", event_type, subject)
            return None
        subscription_id = segments[1]
        correlation_id = correlation_id or str(uuid.uuid4())
        event = self._system_event(event_type, subject, subscription_id, operation_name, dict(claims or {}), status,
                                   http_request, correlation_id)
        batch = [event]
        if self.duplicate_writes and event_type == RESOURCES_PREFIX + "ResourceWriteSuccess":
            temporary = _deployment_variant(segments, correlation_id)
            first = self._system_event(event_type, temporary, subscription_id, operation_name, dict(claims or {}),
                                       status,
                                       http_request, correlation_id)
            batch = [first, event]
        self.publish(SYSTEM, batch)
        return event

    def _system_event(self, event_type: str, subject: str, subscription_id: str, operation_name: str,
                      claims: dict[str, str],
                      status: str, http_request: Mapping[str, str] | None, correlation_id: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "authorization": {"scope": subject, "action": operation_name, "evidence": {"role": self.evidence_role}},
            "claims": claims,
            "correlationId": correlation_id,
        }
        if http_request is not None:
            data["httpRequest"] = dict(http_request)
        data.update({
            "resourceProvider": _resource_provider(subject, operation_name),
            "resourceUri": subject,
            "operationName": operation_name,
            "status": status,
            "subscriptionId": subscription_id,
            "tenantId": self.emulator.tenant_id,
        })
        return {
            "subject": subject,
            "eventType": event_type,
            "eventTime": format_event_time(self.emulator.now()),
            "id": str(uuid.uuid4()),
            "data": data,
            "dataVersion": "2",
            "metadataVersion": "1",
            "topic": f"/subscriptions/{subscription_id}",
        }


def _resource_provider(subject: str, operation_name: str) -> str:
    """The namespace of the operation (``Microsoft.Compute/images/write`` -> ``Microsoft.Compute``), else of
    the id's last ``providers/{namespace}``, else Microsoft.Resources (subscriptions, resource groups)."""
    head = operation_name.split("/", 1)[0]
    if "." in head and " " not in head:
        return head
    segments = subject.strip("/").split("/")
    for i in range(len(segments) - 2, -1, -1):
        if segments[i].lower() == "providers":
            return segments[i + 1]
    return "Microsoft.Resources"


def _deployment_variant(segments: list[str], correlation_id: str) -> str:
    """A temporary deployment-style resource id for the first copy of a duplicated write event."""
    name = f"tmp-{correlation_id.replace('-', '')[:12]}"
    if len(segments) >= 4 and segments[2].lower() == "resourcegroups":
        return (f"/subscriptions/{segments[1]}/resourcegroups/{segments[3]}/providers/Microsoft.Resources"
                f"/deployments/{name}")
    return f"/subscriptions/{segments[1]}/providers/Microsoft.Resources/deployments/{name}"
