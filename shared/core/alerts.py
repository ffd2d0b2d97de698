"""Alerts: typed events on the app's custom topic, and the same alert as a Teams Adaptive Card.

De-duplication is done in Table storage across instances, in two phases, so that an alert is never
sent twice and never lost: the first instance *claims* the alert (insert-once), sends it, then
marks it sent. A claim left unsent (the instance died, or Event Grid refused) is taken over after
``STALE_CLAIM`` by whichever instance sees it next, guarded by the row's ETag.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core.clock import iso, parse_iso
from shared.core.event_routing import EVENT_NAMESPACE
from shared.core.state import ALERTS, ConcurrencyConflict, safe_key

if TYPE_CHECKING:
    from shared.core.context import AppContext

log = logging.getLogger("autopilot.alerts")

DATA_VERSION = "1.0"
STALE_CLAIM = timedelta(minutes=5)  # longer than one publish with retries; shorter than a watch tick
OUTBOX = "~outbox"  # Alerts table partition: alerts the topic did not confirm, as the events to send again
LOST_ANSWER_RESENDS = 3  # times a publish whose answer was lost (connection dropped) is sent again, as the same event

# Alert types (the event type is f"{EVENT_NAMESPACE}.{type}"). README.md, "Alerts runbook", is the runbook.
ALLOCATION_FAILED = "AllocationFailed"
QUOTA_REACHED = "QuotaReached"
IMAGE_MISSING = "ImageMissing"
RESIZE_GAVE_UP = "ResizeGaveUp"
POOL_RECOVERED = "PoolRecovered"
NODE_LIMIT_REACHED = "NodeLimitReached"  # a managed-image pool held at the shared custom-image node cap
NEEDS_ATTENTION = "PoolNeedsAttention"  # configuration problems (subnet, VM size, Gen2) and autoscale pools
SNAPSHOT_SET_INCOMPLETE = "SnapshotSetIncomplete"
IMAGE_REFUSED = "ImageRefused"
IMAGE_BUILD_FAILED = "ImageBuildFailed"
POOLS_CREATED = "PoolsCreated"
DELETE_BLOCKED = "DeleteBlocked"
SNAPSHOT_SET_CHANGED = "SnapshotSetChanged"  # a built version's snapshot was re-tagged: reported, not acted on
# a 401/403 on a write (or on a read inside the configured scope): shared/core/permissions.py
PERMISSION_DENIED = "PermissionDenied"
NODES_UNHEALTHY = "NodesUnhealthy"  # node replacement budget spent, or the subnet to blame: shared/watch/node_watch.py
IMAGE_UNHEALTHY = "ImageUnhealthy"  # a version's nodes fail on first boot: shared/watch/node_watch.py
ROLLOUT_STARTED = "RolloutStarted"  # image rollouts: shared/lifecycle/rollout_runner.py
ROLLOUT_COMPLETED = "RolloutCompleted"
ROLLOUT_BLOCKED = "RolloutBlocked"
ROLLOUT_ROLLED_BACK = "RolloutRolledBack"  # an inPlace canary failed: the pool went back to its previous version
VERSION_DELETED = "VersionDeleted"  # retention deleted an unused version: shared/lifecycle/version_retention.py

SEVERITY_INFO, SEVERITY_WARNING, SEVERITY_CRITICAL = "info", "warning", "critical"
# The pool watch's alerts (shared/watch/episodes.py raises them) and how loud each is.
POOL_ALERT_SEVERITY = {
    ALLOCATION_FAILED: SEVERITY_WARNING,
    QUOTA_REACHED: SEVERITY_WARNING,
    IMAGE_MISSING: SEVERITY_CRITICAL,
    RESIZE_GAVE_UP: SEVERITY_CRITICAL,
    POOL_RECOVERED: SEVERITY_INFO,
    NODE_LIMIT_REACHED: SEVERITY_WARNING,
}


@dataclass(frozen=True)
class Alert:
    # One of the names above; a StrEnum member (shared/watch/resize_errors.AlertType) is stored as its plain value.
    type: str
    severity: str
    subject: str  # the resource the alert is about (a pool path, an image id, a snapshot id)
    title: str
    diagnosis: str
    fix: str
    dedupe_key: str  # one alert per (subject, type, dedupe_key): e.g. the failure episode's start
    occurred_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    # None: once ever per (subject, type, dedupe_key). Otherwise the same alert may go out again this long after
    # it was last sent (at most one per key per period); a changed situation is a different key anyway.
    repeat_after: timedelta | None = None

    @property
    def event_type(self) -> str:
        return f"{EVENT_NAMESPACE}.{self.type}"

    def data(self) -> dict[str, Any]:
        return {
            "alertType": self.type,
            "severity": self.severity,
            "subject": self.subject,
            "title": self.title,
            "diagnosis": self.diagnosis,
            "fix": self.fix,
            "occurredAt": iso(self.occurred_at),
            **self.details,
        }

    def event(self) -> dict[str, Any]:
        """The Event Grid schema event published on the custom topic."""
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.subject}|{self.type}|{self.dedupe_key}"
                                 + (f"|{iso(self.occurred_at)}" if self.repeat_after is not None else ""))),
            "subject": self.subject,
            "eventType": self.event_type,
            "eventTime": iso(self.occurred_at),
            "dataVersion": DATA_VERSION,
            "data": self.data(),
        }


# Adaptive Card TextBlocks and FactSet values render a markdown subset (emphasis, lists, [text](url) links).
# Alert text carries untrusted values (tag values, resource names): every such character is escaped, URLs
# are broken so nothing auto-links, and each field is cut short.
_MARKDOWN = re.compile(r"([\\`*_\[\]()~<>#])")  # emphasis, code, links, strike-through, HTML-ish and headings
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)(\s)")  # a list only forms at the start of a line
CARD_TITLE_CHARS, CARD_TEXT_CHARS, CARD_FACT_CHARS = 200, 1500, 300


def card_text(text: str, limit: int) -> str:
    """Untrusted text as plain text in an Adaptive Card: one line, markdown escaped, links defused, at most ``limit``
    characters."""
    # line breaks, control and bidi overrides
    text = re.sub(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]", " ", str(text))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _LIST_START.sub(r"\1\\\2\3", _MARKDOWN.sub(r"\\\1", text))
    return text.replace("://", ":\u200b//").replace("www.", "www\u200b.")  # nothing auto-links


def adaptive_card(alert: Alert) -> dict[str, Any]:
    """A Teams Workflows webhook message carrying the alert as an Adaptive Card (v1.4)."""
    colour = {SEVERITY_CRITICAL: "Attention", SEVERITY_WARNING: "Warning"}.get(alert.severity, "Good")
    facts = [{"title": "Alert", "value": alert.type}, {"title": "Severity", "value": alert.severity},
             {"title": "Resource", "value": card_text(alert.subject, CARD_FACT_CHARS)},
             {"title": "When", "value": iso(alert.occurred_at)}]
    for key in ("account", "pool", "codes", "attempt", "nextTryTime", "pools", "action", "role", "roleScope"):
        value = alert.details.get(key)
        if value not in (None, "", []):
            facts.append({"title": key,
                          "value": card_text(value if isinstance(value, str) else json.dumps(value), CARD_FACT_CHARS)})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": card_text(alert.title, CARD_TITLE_CHARS), "size": "Large", "weight": "Bolder",
             "color": colour,
             "wrap": True},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": card_text(alert.diagnosis, CARD_TEXT_CHARS), "wrap": True},
            {"type": "TextBlock", "text": f"**What to do:** {card_text(alert.fix, CARD_TEXT_CHARS)}", "wrap": True},
        ],
    }
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": card}]}


class AlertPublisher:
    def __init__(self, context: AppContext) -> None:
        self._context = context

    def publish(self, alert: Alert) -> bool:
        """Send the alert once across all instances. Returns False when it was already sent."""
        table = self._context.state.table(ALERTS)
        partition, row = safe_key(alert.subject), safe_key(f"{alert.type}|{alert.dedupe_key}")
        now = self._context.clock.now()
        # What a person needs to act on it is kept with the claim, so `autopilot status` can show recent alerts.
        claim_data = {"type": str(alert.type), "subject": alert.subject, "claimedAt": iso(now), "sent": False,
                      "severity": alert.severity,
                      "title": alert.title, "diagnosis": alert.diagnosis, "fix": alert.fix,
                      "occurredAt": iso(alert.occurred_at)}
        try:
            record = table.insert(partition, row, claim_data)
        except ConcurrencyConflict:
            existing = table.get(partition, row)
            if existing is None:
                return False
            if existing.data.get("sent"):
                sent_at = parse_iso(existing.data.get("sentAt"))
                if alert.repeat_after is None or sent_at is None or now - sent_at < alert.repeat_after:
                    return False
            claimed = parse_iso(existing.data.get("claimedAt"))
            if claimed is not None and now - claimed < STALE_CLAIM:
                return False  # another instance is sending it right now
            try:
                record = table.replace(existing, claim_data)
            except ConcurrencyConflict:
                return False
        try:
            self._send(alert)
        except Exception as exc:
            if self._to_outbox(alert, exc):
                # The alert is kept, as this very event, in the outbox: the next full watch scan sends it. The caller
                # can record it as raised, so the failure episode it belongs to (its de-duplication key) survives.
                with contextlib.suppress(Exception):
                    table.replace(record, {**claim_data, "sent": True, "outbox": True,
                                           "sentAt": iso(self._context.clock.now())})
                return True
            # Hand the claim back so the retry (redelivery, next tick) sends it instead of seeing
            # "already claimed" and dropping the alert.
            with contextlib.suppress(ConcurrencyConflict):
                table.delete(record)
            raise
        try:
            table.replace(record, {**claim_data, "sent": True, "sentAt": iso(self._context.clock.now())})
        except ConcurrencyConflict:
            log.warning("alert %s for %s was sent, but its claim changed meanwhile", alert.type, alert.subject)
        except Exception as exc:
            # The alert went out: the caller must record it as raised. Failing here would leave the episode it belongs
            # to unstored, and the next look would raise it again under a new episode (a second alert; issue 18's long
            # fault run found it). The claim stays unmarked, and is only looked at again for this very key.
            log.warning("alert %s for %s was sent, but marking its claim as sent failed: %s", alert.type,
                        alert.subject, exc)
        return True

    def _to_outbox(self, alert: Alert, error: Exception) -> bool:
        """Keep an alert the topic did not confirm (refused, or its answer lost after it may have taken it) in the
        outbox; True when it is stored there (or already was)."""
        event = alert.event()
        try:
            self._context.state.table(ALERTS).insert(OUTBOX, event["id"], {
                "type": str(alert.type), "subject": alert.subject, "event": json.dumps(event),
                "queuedAt": iso(self._context.clock.now()),
                "error": str(error)[:1000]})
        except ConcurrencyConflict:
            return True  # already queued
        except Exception as exc:  # Table storage failing too: the caller raises, and the retry decides again
            log.warning("alert %s for %s: not sent (%s) and could not be kept in the outbox: %s", alert.type,
                        alert.subject, error, exc)
            return False
        log.warning("alert %s for %s: not confirmed by the topic (%s); kept in the outbox, sent again at the next full "
                    "watch scan",
                    alert.type, alert.subject, error)
        return True

    def flush_outbox(self) -> int:
        """Send the alerts kept in the outbox (each as the same event, so a copy the topic did take is a duplicate by
        ``id`` only), and drop them once the topic confirms. Returns how many were sent; a failure leaves the row for
        next time."""
        table = self._context.state.table(ALERTS)
        sent = 0
        for record in list(table.query(OUTBOX)):
            try:
                event = json.loads(str(record.data.get("event") or ""))
                self._publish_event(event)
            except Exception as exc:
                log.warning("alert outbox: %s for %s still not sent: %s", record.data.get("type"),
                            record.data.get("subject"), exc)
                continue
            with contextlib.suppress(ConcurrencyConflict):
                table.delete(record)
            log.info("alert outbox: sent %s for %s (event %s)", record.data.get("type"), record.data.get("subject"),
                     record.row)
            sent += 1
        return sent

    def _send_event(self, alert: Alert) -> None:
        self._publish_event(alert.event())

    def _publish_event(self, event: dict[str, Any]) -> None:
        """Publish, resending after a lost answer. azure-core resends a publish (a POST) after a 500/503/504 but not
        after a dropped connection, where the topic may well have taken the event. Resending it is safe for the
        reader because every copy is the same event (the same ``id``, from the alert's subject, type and key):
        delivery is at least once, and subscribers de-duplicate by ``id`` (docs/events.md)."""
        from azure.core.exceptions import ServiceResponseError

        for attempt in range(LOST_ANSWER_RESENDS + 1):
            try:
                self._context.clients.event_publisher.send([event])
                return
            except ServiceResponseError:
                if attempt == LOST_ANSWER_RESENDS:
                    raise
                log.info("alert %s: the topic's answer was lost; sending the same event (id %s) again",
                         event.get("eventType"), event.get("id"))

    def _send(self, alert: Alert) -> None:
        # The topic is the contract other teams subscribe to: a failure here propagates, so the
        # invocation fails and is retried (Event Grid redelivery, or the next tick).
        self._send_event(alert)
        log.info("alert %s (%s) for %s: %s", alert.type, alert.severity, alert.subject, alert.title)
        teams = self._context.clients.teams_webhook
        if teams is None:
            return
        from azure.core.rest import HttpRequest

        try:
            response = teams.send_request(HttpRequest("POST", self._context.settings.teams_webhook_url or "",
                                                      json=adaptive_card(alert)))
            response.raise_for_status()
        except Exception as exc:  # Teams is a courtesy copy; the topic event already carries the alert
            log.warning("could not post alert %s for %s to Teams: %s", alert.type, alert.subject, exc)
