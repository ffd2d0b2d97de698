"""HTTP <-> EventGridBackend: publishing to a custom topic (Event Grid basic tier, api-version 2018-01-01).

``POST /eventgrid/{topic}/api/events`` stands in for ``https://{topic}.{region}-1.eventgrid.azure.net/api/events``.
Authentication is the topic's, not ARM's: an ``aeg-sas-key`` header equal to the topic key, an
``aeg-sas-token`` signed with it (azure.eventgrid.generate_sas), or a Microsoft Entra bearer token (the
"EventGrid Data Sender" role; the emulator accepts any token, as it does for ARM).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from emulator.core import Request, Response
from emulator.eventgrid.exceptions import BadRequest, RequestEntityTooLarge, Unauthorized

if TYPE_CHECKING:
    from emulator.azure import Emulator
    from emulator.eventgrid.models import CustomTopic

MAX_PAYLOAD_BYTES = 1024 * 1024  # "Event batch size: 1 MB" (Event Grid quotas and limits)
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
CLOUDEVENTS_SINGLE = "application/cloudevents+json"
EVENTGRID_REQUIRED = ("id", "subject", "eventType", "eventTime", "data", "dataVersion")
CLOUDEVENT_REQUIRED = ("id", "source", "type", "specversion")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})$")


class EventGridResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backend = emulator.eventgrid

    def publish(self, request: Request) -> Response:
        topic = self.backend.get_topic(request.params["topicName"])
        self._authenticate(topic, request)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            raise RequestEntityTooLarge(f"The request is {len(request.body)} bytes; a batch of events may be at most "
                                        f"{MAX_PAYLOAD_BYTES} bytes (1 MB). Send the events in smaller batches.")
        try:
            payload = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type in (CLOUDEVENTS_BATCH, CLOUDEVENTS_SINGLE):
            events = self._cloud_events(payload, single=content_type == CLOUDEVENTS_SINGLE)
        else:
            events = self._eventgrid_events(payload, topic)
        self.backend.publish(topic.name, events)
        return Response(200)

    # ------------------------------------------------------------------------------------------
    def _authenticate(self, topic: CustomTopic, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and auth[7:].strip():
            return
        key = request.headers.get("aeg-sas-key")
        if key is not None and topic.key is not None and hmac.compare_digest(key.encode(), topic.key.encode()):
            return
        token = request.headers.get("aeg-sas-token")
        if token is not None and topic.key is not None and self._sas_valid(token, topic.key):
            return
        if key is None and token is None:
            reason = "The request has no aeg-sas-key, aeg-sas-token or Authorization header."
        elif topic.key is None:
            reason = (f"The topic '{topic.name}' accepts no access keys in the emulator: send a Microsoft Entra "
                      "token instead.")
        else:
            reason = "The access key or shared access signature is not valid for this topic."
        raise Unauthorized(f"The request authorization is not valid for topic '{topic.name}'. {reason}",
                           headers={"WWW-Authenticate":
                                    'Bearer authorization_uri="https://login.microsoftonline.com/common"'})

    def _sas_valid(self, token: str, key: str) -> bool:
        # generate_sas signs "r={encoded resource}&e={encoded expiry}" with HMAC-SHA256 of the base64 key.
        unsigned, sep, signature = token.rpartition("&s=")
        if not sep:
            return False
        try:
            digest = hmac.new(base64.b64decode(key), unsigned.encode("ascii"), hashlib.sha256).digest()
        except (binascii.Error, UnicodeEncodeError):
            return False
        expected = base64.b64encode(digest).decode()
        if not hmac.compare_digest(unquote(signature), expected):
            return False
        expiry = parse_qs(unsigned).get("e", [""])[0]
        try:
            expires = datetime.fromisoformat(expiry)
        except ValueError:
            return False
        return expires.tzinfo is not None and expires > self.emulator.now()

    @staticmethod
    def _cloud_events(payload: Any, *, single: bool) -> list[dict[str, Any]]:
        events = [payload] if single else payload
        if not isinstance(events, list):
            raise BadRequest("A CloudEvents batch (application/cloudevents-batch+json) must be a JSON array of events.")
        for i, event in enumerate(events):
            if not isinstance(event, dict):
                raise BadRequest(f"Event {i} is not a JSON object.")
            for name in CLOUDEVENT_REQUIRED:
                if not isinstance(event.get(name), str) or not event[name]:
                    raise BadRequest(f"Required property '{name}' was not set on CloudEvent {i}.")
            if event["specversion"] != "1.0":
                raise BadRequest(f"CloudEvent {i} has specversion '{event['specversion']}'; only '1.0' is supported.")
        return events

    @staticmethod
    def _eventgrid_events(payload: Any, topic: CustomTopic) -> list[dict[str, Any]]:
        if not isinstance(payload, list):
            raise BadRequest("Unexpected token when reading JSON. Expected: StartArray, actual: "
                             f"{'StartObject' if isinstance(payload, dict) else type(payload).__name__}. "
                             "Event Grid schema events are published as a JSON array.")
        out = []
        for i, event in enumerate(payload):
            if not isinstance(event, dict):
                raise BadRequest(f"Event {i} is not a JSON object.")
            for name in EVENTGRID_REQUIRED:
                if name not in event or (name != "data" and (not isinstance(event[name], str)
                                                             or (name != "subject" and not event[name]))):
                    raise BadRequest(f"Required property '{name}' was not set on event {i}.")
            if not _ISO_TIME.match(event["eventTime"]):
                raise BadRequest(f"Property 'eventTime' of event {i} ('{event['eventTime']}') "
                                 "is not an ISO 8601 UTC time.")
            # Event Grid fills in what only it knows: the topic's resource id and the metadata version.
            out.append({**event, "topic": event.get("topic") or topic.resource_id,
                        "metadataVersion": event.get("metadataVersion") or "1"})
        return out
