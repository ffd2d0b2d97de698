"""Azure Resource Manager system events (Event Grid), parsed defensively.

The Functions runtime hands a trigger either an Event Grid schema event (``id``, ``topic``,
``subject``, ``eventType``, ``eventTime``, ``data``) or a CloudEvent (``id``, ``source``,
``subject``, ``type``, ``time``, ``data``). :func:`parse_event` takes those fields, whatever their
names, and returns a frozen :class:`ResourceEvent` - or an :class:`IgnoredEvent` with one clear
reason. It never raises: an exception in an Event Grid trigger makes Event Grid retry the same bad
event for up to 24 hours, so a malformed or hostile event is answered once, logged and dropped.

What the official payloads taught (contracts §1.5-1.6), and how this module copes:

* ids vary in case (``resourcegroups`` / ``resourceGroups``): compared case-insensitively;
* ``data.resourceGroup`` is missing from real payloads: the group is taken from the resource id;
* the *Failure* examples say ``status: "Succeeded"``: outcome comes from the event **type**;
* the first of two write events can name a temporary deployment instead of the resource
  (same correlation id): ignored, the real event follows;
* one example spells ``specVersion`` in camelCase: both spellings are accepted;
* an older spec typed ``claims`` and ``httpRequest`` as JSON *strings*: decoded when they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from shared.core.resource_ids import TAGS, InvalidResourceId, ResourceId, is_within, lock_target, same_id

PREFIX = "Microsoft.Resources."
WRITE_SUCCESS = PREFIX + "ResourceWriteSuccess"
WRITE_FAILURE = PREFIX + "ResourceWriteFailure"
WRITE_CANCEL = PREFIX + "ResourceWriteCancel"
DELETE_SUCCESS = PREFIX + "ResourceDeleteSuccess"
DELETE_FAILURE = PREFIX + "ResourceDeleteFailure"
DELETE_CANCEL = PREFIX + "ResourceDeleteCancel"
ACTION_SUCCESS = PREFIX + "ResourceActionSuccess"
ACTION_FAILURE = PREFIX + "ResourceActionFailure"
ACTION_CANCEL = PREFIX + "ResourceActionCancel"
EVENT_TYPES = (WRITE_SUCCESS, WRITE_FAILURE, WRITE_CANCEL, DELETE_SUCCESS, DELETE_FAILURE, DELETE_CANCEL,
               ACTION_SUCCESS, ACTION_FAILURE, ACTION_CANCEL)
_CANONICAL_TYPE = {t.lower(): t for t in EVENT_TYPES}

SNAPSHOTS = "Microsoft.Compute/snapshots"
IMAGES = "Microsoft.Compute/images"
GALLERY_IMAGE_VERSIONS = "Microsoft.Compute/galleries/images/versions"
POOLS = "Microsoft.Batch/batchAccounts/pools"
DEPLOYMENTS = "Microsoft.Resources/deployments"
LOCKS = "Microsoft.Authorization/locks"

CLAIM_NAME = "name"
CLAIM_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
CLAIM_APPID = "appid"
CLAIM_OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"

# Bounds well above anything ARM sends (ids are at most a few hundred characters) and well below
# what could hurt a log line or a Table entity.
MAX_ID = 256
MAX_TYPE = 256
MAX_RESOURCE_ID = 2048
MAX_TEXT = 1024
MAX_CLAIMS = 200
MAX_CLAIM_VALUE = 8192

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOSTILE_ID = re.compile(r"[\x00-\x1f\x7f\\?#%<>\"'`]|(^|/)\.\.?(/|$)|//")
TAGS_WRITE = "Microsoft.Resources/tags/write"
TAGS_DELETE = "Microsoft.Resources/tags/delete"
SNAPSHOTS_DELETE = "Microsoft.Compute/snapshots/delete"


@dataclass(frozen=True)
class ResourceEvent:
    """One ARM system event, validated. Re-read the resource before acting: the event is a hint, not the truth."""

    id: str
    type: str  # canonical casing, one of EVENT_TYPES
    subject: str
    resource_id: ResourceId | None
    operation_name: str
    subscription_id: str
    status: str | None
    correlation_id: str | None
    claims: Mapping[str, str] = field(hash=False, compare=False)
    caller: str | None
    http_method: str | None
    time: datetime | None
    topic: str | None = None

    @property
    def action(self) -> str:
        """``Write`` | ``Delete`` | ``Action``."""
        return re.sub(r"^Microsoft\.Resources\.Resource|Success$|Failure$|Cancel$", "", self.type)

    @property
    def outcome(self) -> str:
        """``Success`` | ``Failure`` | ``Cancel``, from the type (``data.status`` is unreliable)."""
        return next(o for o in ("Success", "Failure", "Cancel") if self.type.endswith(o))

    @property
    def resource_type(self) -> str:
        return self.resource_id.resource_type if self.resource_id else ""

    @property
    def resource_group(self) -> str | None:
        return self.resource_id.resource_group if self.resource_id else None

    @property
    def caller_app_id(self) -> str | None:
        return self.claims.get(CLAIM_APPID)


@dataclass(frozen=True)
class IgnoredEvent:
    """An event the app will not act on, with the one reason why (for a log line)."""

    reason: str
    # not-a-resource-event | missing-field | wrong-type | too-large | hostile-id | subject-mismatch |
    # foreign-subscription
    # | temporary-deployment | bad-time | internal-error
    code: str
    id: str | None = None
    type: str | None = None
    subject: str | None = None


class _Ignore(Exception):  # internal: unwinds to parse_event, never escapes it
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(name: str, value: object, limit: int, *, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _Ignore("missing-field", f"the event has no {name}")
        return None
    if not isinstance(value, str):
        raise _Ignore("wrong-type", f"{name} is a {type(value).__name__}, not a string")
    if len(value) > limit:
        raise _Ignore("too-large", f"{name} has {len(value)} characters (at most {limit} expected)")
    if _CONTROL.search(value):
        raise _Ignore("hostile-id" if "id" in name.lower() or name in ("subject", "topic") else "wrong-type",
                      f"{name} contains control characters")
    return value.strip()


def _resource(name: str, value: str) -> ResourceId:
    if _HOSTILE_ID.search(value):
        raise _Ignore("hostile-id", f"{name} {_short(value)} contains characters or segments no ARM id has")
    try:
        return ResourceId.parse(value)
    except InvalidResourceId:
        raise _Ignore("not-a-resource-event", f"{name} {_short(value)} is not an ARM resource id") from None


def _mapping(name: str, value: object) -> Mapping[str, Any] | None:
    """An object field; the old spec typed claims and httpRequest as JSON strings, so decode those."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_CLAIMS * MAX_CLAIM_VALUE:
            raise _Ignore("too-large", f"data.{name} is too large")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _Ignore("wrong-type", f"data.{name} is a string that is not a JSON object") from None
    if not isinstance(value, Mapping):
        raise _Ignore("wrong-type", f"data.{name} is a {type(value).__name__}, not an object")
    return value


def _claims(value: object) -> dict[str, str]:
    raw = _mapping("claims", value)
    if raw is None:
        return {}
    if len(raw) > MAX_CLAIMS:
        raise _Ignore("too-large", f"data.claims has {len(raw)} entries (at most {MAX_CLAIMS} expected)")
    out: dict[str, str] = {}
    for k, v in raw.items():
        # Claims are all strings in the spec; anything else (a nested object from some other
        # identity provider) is dropped rather than failing the whole event.
        if isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_TEXT and len(v) <= MAX_CLAIM_VALUE:
            out[k] = v
    return out


def _caller(claims: Mapping[str, str]) -> str | None:
    """The most readable name of whoever made the call: display name, UPN, app id, object id."""
    for key in (CLAIM_NAME, CLAIM_UPN, "upn", "unique_name", CLAIM_APPID, CLAIM_OBJECT_ID, "oid"):
        value = claims.get(key)
        if value and value.strip():
            return value.strip()[:MAX_TEXT]
    return None


def _time(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise _Ignore("wrong-type", f"eventTime is a {type(value).__name__}, not a string")
    if len(value) > 64:
        raise _Ignore("too-large", "eventTime is too long to be a time")
    text = value.strip()
    # Event Grid writes 7 fractional digits ("...04.6117357Z"); keep the 6 Python can hold.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Ignore("bad-time", f"eventTime {_short(value)} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _operation_type(operation_name: str) -> str | None:
    """``Microsoft.Compute/snapshots/write`` -> ``Microsoft.Compute/snapshots``."""
    parts = operation_name.split("/")
    if len(parts) < 3:
        return None
    if parts[-1].lower() == "action":
        return None  # Microsoft.Compute/disks/beginGetAccess/action names a verb, not only a type
    return "/".join(parts[:-1])


def parse_event(event_id: object = None, topic: object = None, subject: object = None, event_type: object = None,
                event_time: object = None,
                data: object = None, *, expected_subscription: str | None = None) -> ResourceEvent | IgnoredEvent:
    """Validate one delivered event. Never raises.

    ``expected_subscription``: when given, events about any other subscription are ignored (a
    mis-wired Event Grid subscription must not make the app act on resources it does not own).
    """
    shown_id = event_id if isinstance(event_id, str) and len(event_id) <= MAX_ID else None
    shown_type = event_type if isinstance(event_type, str) and len(event_type) <= MAX_TYPE else None
    shown_subject = subject if isinstance(subject, str) and len(subject) <= MAX_RESOURCE_ID else None
    try:
        return _parse(event_id, topic, subject, event_type, event_time, data, expected_subscription)
    except _Ignore as ignore:
        return IgnoredEvent(reason=ignore.reason, code=ignore.code, id=shown_id, type=shown_type, subject=shown_subject)
    except Exception as exc:
        # The contract is "never raises": a bug here must not become 24 hours of Event Grid retries.
        # The property tests assert this branch is never reached.
        return IgnoredEvent(reason=f"the event could not be read ({type(exc).__name__}: {str(exc)[:120]})",
                            code="internal-error",
                            id=shown_id, type=shown_type, subject=shown_subject)


def _parse(event_id: object, topic: object, subject: object, event_type: object, event_time: object, data: object,
           expected_subscription: str | None) -> ResourceEvent:
    type_text = _text("event type", event_type, MAX_TYPE)
    assert type_text is not None
    canonical = _CANONICAL_TYPE.get(type_text.lower())
    if canonical is None:
        raise _Ignore("not-a-resource-event",
                      f"event type {_short(type_text)} is not an Azure Resource Manager resource event")
    ident = _text("event id", event_id, MAX_ID)
    assert ident is not None
    subject_text = _text("subject", subject, MAX_RESOURCE_ID)
    assert subject_text is not None
    topic_text = _text("topic", topic, MAX_RESOURCE_ID, required=False)
    when = _time(event_time)

    if not isinstance(data, Mapping):
        raise _Ignore("missing-field" if data is None else "wrong-type",
                      "the event has no data" if data is None else f"data is a {type(data).__name__}, not an object")
    operation = _text("data.operationName", data.get("operationName"), MAX_TEXT)
    assert operation is not None
    resource_uri = _text("data.resourceUri", data.get("resourceUri"), MAX_RESOURCE_ID, required=False)
    data_subscription = _text("data.subscriptionId", data.get("subscriptionId"), MAX_ID, required=False)
    status = _text("data.status", data.get("status"), MAX_TEXT, required=False)
    correlation = _text("data.correlationId", data.get("correlationId"), MAX_ID, required=False)
    claims = _claims(data.get("claims"))
    http = _mapping("httpRequest", data.get("httpRequest"))
    method = http.get("method") if http else None
    method = method.strip().upper() if isinstance(method, str) and 0 < len(method.strip()) <= 16 else None

    resource = _resource("subject", subject_text)
    if resource_uri is not None:
        _resource("data.resourceUri", resource_uri)
        if not same_id(resource_uri, subject_text):
            raise _Ignore("subject-mismatch", f"subject {_short(subject_text)} and data.resourceUri "
                          f"{_short(resource_uri)} name different resources")
    if data_subscription is not None and data_subscription.lower() != resource.subscription_id.lower():
        raise _Ignore("subject-mismatch",
                      f"data.subscriptionId {data_subscription} is not the subscription of {_short(subject_text)}")
    if topic_text is not None and topic_text.lower().startswith("/subscriptions/"):
        topic_id = _resource("topic", topic_text)
        if not is_within(subject_text, topic_id.raw):
            raise _Ignore("subject-mismatch",
                          f"subject {_short(subject_text)} is outside the event's topic {_short(topic_text)}")
    if expected_subscription is not None and resource.subscription_id.lower() != expected_subscription.strip().lower():
        raise _Ignore("foreign-subscription",
                      f"the event is about subscription {resource.subscription_id}, not {expected_subscription}")

    op_type = _operation_type(operation)
    if resource.is_type(DEPLOYMENTS) and op_type is not None and op_type.lower() != DEPLOYMENTS.lower():
        # ARM can raise ResourceWriteSuccess twice for one write, the first naming a temporary
        # deployment; the second, with the same correlationId, names the real resource.
        raise _Ignore("temporary-deployment",
                      f"the event names a temporary deployment for {operation} (correlation id {correlation}); "
                      "the event for the resource itself follows")

    return ResourceEvent(
        id=ident, type=canonical, subject=resource.raw, resource_id=resource, operation_name=operation,
        subscription_id=resource.subscription_id, status=status, correlation_id=correlation,
        claims=MappingProxyType(claims),
        caller=_caller(claims), http_method=method, time=when, topic=topic_text,
    )


def parse_envelope(envelope: object, *, expected_subscription: str | None = None) -> ResourceEvent | IgnoredEvent:
    """Parse a raw delivered JSON object in either schema (Event Grid or CloudEvents 1.0). Never raises."""
    if not isinstance(envelope, Mapping):
        return IgnoredEvent(reason=f"the delivery is a {type(envelope).__name__}, not an event object",
                            code="wrong-type")

    def pick(*names: str) -> object:
        for n in names:
            if n in envelope:
                return envelope[n]
        return None

    return parse_event(
        pick("id"), pick("topic", "source"), pick("subject"), pick("eventType", "type"), pick("eventTime", "time"),
        pick("data"),
        expected_subscription=expected_subscription,
    )


# --- predicates -----------------------------------------------------------------------------------------


def _is(event: ResourceEvent | IgnoredEvent, event_type: str, resource_type: str) -> bool:
    return (isinstance(event, ResourceEvent) and event.type == event_type and event.resource_id is not None
            and event.resource_id.is_type(resource_type))


def is_snapshot_write(event: ResourceEvent | IgnoredEvent) -> bool:
    return _is(event, WRITE_SUCCESS, SNAPSHOTS)


def is_image_write(event: ResourceEvent | IgnoredEvent) -> bool:
    return _is(event, WRITE_SUCCESS, IMAGES)


def is_gallery_image_version_write(event: ResourceEvent | IgnoredEvent) -> bool:
    return _is(event, WRITE_SUCCESS, GALLERY_IMAGE_VERSIONS)


def tagged_resource(event: ResourceEvent | IgnoredEvent) -> ResourceId | None:
    """The resource a Tags-API event is about: the subject itself, or the scope of
    ``.../providers/Microsoft.Resources/tags/default``."""
    # A Tags-API event may name the tags resource ({scope}/providers/Microsoft.Resources/tags/default) or, as public
    # code shows, the tagged resource itself: both are accepted, and the tagged resource is what the app re-reads.
    if not isinstance(event, ResourceEvent) or event.resource_id is None:
        return None
    rid = event.resource_id
    if not (rid.is_type(TAGS) and rid.name.lower() == "default" and rid.scope):
        return rid
    try:
        return ResourceId.parse(rid.scope)
    except InvalidResourceId:
        return None


def _tags_event(event: ResourceEvent | IgnoredEvent, event_type: str, operation: str) -> bool:
    if (not isinstance(event, ResourceEvent) or event.type != event_type
        or event.operation_name.lower() != operation.lower()):
        return False
    resource = tagged_resource(event)
    return resource is not None and resource.is_type(SNAPSHOTS)


def is_snapshot_tags_write(event: ResourceEvent | IgnoredEvent) -> bool:
    """Tags written through the Tags API (Merge, Replace or Delete of some tags) on a snapshot."""
    return _tags_event(event, WRITE_SUCCESS, TAGS_WRITE)


def is_snapshot_tags_delete(event: ResourceEvent | IgnoredEvent) -> bool:
    """Every tag of a snapshot removed through the Tags API (``az tag delete --resource-id``): a delete event."""
    return _tags_event(event, DELETE_SUCCESS, TAGS_DELETE)


def is_snapshot_delete(event: ResourceEvent | IgnoredEvent) -> bool:
    return (_is(event, DELETE_SUCCESS, SNAPSHOTS) and isinstance(event, ResourceEvent)
            and event.operation_name.lower() == SNAPSHOTS_DELETE.lower())


def is_pool_write(event: ResourceEvent | IgnoredEvent) -> bool:
    return _is(event, WRITE_SUCCESS, POOLS)


def is_delete_success(event: ResourceEvent | IgnoredEvent) -> bool:
    return isinstance(event, ResourceEvent) and event.type == DELETE_SUCCESS


def is_delete_failure(event: ResourceEvent | IgnoredEvent) -> bool:
    """A delete that ARM refused or that failed - e.g. 409 ScopeLocked on a locked image."""
    return isinstance(event, ResourceEvent) and event.type == DELETE_FAILURE


def is_failure(event: ResourceEvent | IgnoredEvent) -> bool:
    return isinstance(event, ResourceEvent) and event.outcome == "Failure"


def lock_of(event: ResourceEvent | IgnoredEvent) -> tuple[str, str] | None:
    """(locked scope, lock name) when the event is about a management lock, else None.

    Lock ids nest under the locked resource (``{scope}/providers/Microsoft.Authorization/locks/{name}``):
    an extension resource, which the id parser splits into the lock and its scope.
    """
    if not isinstance(event, ResourceEvent) or event.resource_id is None:
        return None
    return lock_target(event.resource_id)


def is_lock_delete(event: ResourceEvent | IgnoredEvent) -> bool:
    return isinstance(event, ResourceEvent) and event.type == DELETE_SUCCESS and lock_of(event) is not None


def is_lock_write(event: ResourceEvent | IgnoredEvent) -> bool:
    return isinstance(event, ResourceEvent) and event.type == WRITE_SUCCESS and lock_of(event) is not None


def is_caused_by(event: ResourceEvent | IgnoredEvent, app_ids: set[str] | frozenset[str]) -> bool:
    """Whether the app itself made the call (its own writes come back as events: skip them to avoid loops)."""
    if not isinstance(event, ResourceEvent):
        return False
    app_id = event.caller_app_id
    return app_id is not None and app_id.lower() in {a.lower() for a in app_ids}
