"""Replay Event Grid deliveries against the app on the local emulator.

The file holds what Event Grid POSTs to a subscriber: a JSON array of events, in the Event Grid schema
(``id``, ``subject``, ``eventType``, ``eventTime``, ``data``, ``dataVersion``) or as CloudEvents v1.0
(``specversion``, ``id``, ``source``, ``type``, ``time``, ``data``). Each event is published on the topic
it belongs to (``Microsoft.Resources.*`` → the subscription's system topic, ``BatchImageAutopilot.*`` →
the app's custom topic), routed by the app's own subscription table to its functions and delivered by
the local Functions host, against a scenario's initial state (or an empty subscription).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

SYSTEM_PREFIX = "Microsoft.Resources."
CUSTOM_PREFIX = "BatchImageAutopilot."
EXAMPLE_EVENTGRID = {"id": "8a5d...",
                     "subject": "/subscriptions/<sub>/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots"
                                "/gpu-1-0-0-os",
                     "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2026-11-02T06:00:00Z",
                     "data": {"operationName": "Microsoft.Compute/snapshots/write", "status": "Succeeded"},
                     "dataVersion": "2"}
EXAMPLE_CLOUDEVENT = {"specversion": "1.0", "id": "8a5d...", "source": "/subscriptions/<sub>",
                      "type": "Microsoft.Resources.ResourceWriteSuccess",
                      "subject": "/subscriptions/<sub>/resourceGroups/...", "time": "2026-11-02T06:00:00Z",
                      "data": {"operationName": "..."}}


class ReplayInputError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass
class ReplayEvent:
    topic: str  # "system" | "custom"
    schema: str  # "EventGridSchema" | "CloudEventSchemaV1_0"
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("eventType") or self.event.get("type") or "")

    @property
    def subject(self) -> str:
        return str(self.event.get("subject") or "")


@dataclass
class ReplayResult:
    events: list[ReplayEvent]
    invocations: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    locks_added: list[str] = field(default_factory=list)
    locks_removed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(i["ok"] for i in self.invocations) and not self.dead_letters

    def to_json(self) -> dict[str, Any]:
        return {
            "events": [{"topic": e.topic, "schema": e.schema, "type": e.type, "subject": e.subject,
                        "id": str(e.event.get("id", ""))} for e in self.events],
            "invocations": self.invocations, "alerts": self.alerts, "created": self.created, "deleted": self.deleted,
            "locksAdded": self.locks_added, "locksRemoved": self.locks_removed, "deadLetters": self.dead_letters,
            "ok": self.ok,
        }


def load_events(path: str | Path, topic: str = "auto") -> list[ReplayEvent]:
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ReplayInputError(source, ["no such file"])
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReplayInputError(source, [f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    return parse_events(document, source=source, topic=topic)


def parse_events(document: Any, *, source: str = "<events>", topic: str = "auto") -> list[ReplayEvent]:
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not document:
        raise ReplayInputError(source,
                               ["$: expected a JSON array of events, as Event Grid delivers them; for example "
                                f"[{json.dumps(EXAMPLE_EVENTGRID)}]"])
    problems: list[str] = []
    events: list[ReplayEvent] = []
    for i, event in enumerate(document):
        path = f"$[{i}]"
        if not isinstance(event, dict):
            problems.append(f"{path}: an event is a JSON object; for example {json.dumps(EXAMPLE_EVENTGRID)}")
            continue
        cloud = "specversion" in event or "specVersion" in event
        if cloud and "specversion" not in event:
            event = {**{k: v for k, v in event.items() if k != "specVersion"}, "specversion": event["specVersion"]}
        required = ("id", "type", "source", "data") if cloud else ("id", "eventType", "subject", "data")
        missing = [k for k in required if k not in event]
        if missing:
            example = EXAMPLE_CLOUDEVENT if cloud else EXAMPLE_EVENTGRID
            problems.append(f"{path}: missing {', '.join(missing)} "
                            f"({'CloudEvents' if cloud else 'Event Grid schema'}); for example {json.dumps(example)}")
            continue
        if not cloud and "eventTime" not in event:
            event = {**event, "eventTime": "1970-01-01T00:00:00Z"}
        event_type = str(event.get("type") if cloud else event.get("eventType"))
        chosen = topic
        if chosen == "auto":
            if event_type.lower().startswith(SYSTEM_PREFIX.lower()):
                chosen = "system"
            elif event_type.lower().startswith(CUSTOM_PREFIX.lower()):
                chosen = "custom"
            else:
                problems.append(f"{path}.{'type' if cloud else 'eventType'}: cannot tell which topic {event_type!r} "
                                "comes from; "
                                "pass --topic system or --topic custom")
                continue
        events.append(ReplayEvent(chosen, "CloudEventSchemaV1_0" if cloud else "EventGridSchema", event))
    if problems:
        raise ReplayInputError(source, problems)
    return events


def _inventory(local: Any) -> tuple[dict[str, str], set[tuple[str, str]]]:
    emulator = local.emulator
    resources: dict[str, str] = {}
    compute = emulator.compute
    for store in (compute.disks, compute.snapshots, compute.images, compute.galleries, compute.gallery_images,
                  compute.gallery_image_versions):
        for key, resource in list(store.items()):
            resources[key] = resource.id
    for account in emulator.batch.accounts.values():
        for pool in emulator.batch.list_pools(account.name):
            resources[pool.key] = pool.arm_id
    locks = {(lock.scope, lock.name) for lock in emulator.locks.all_locks()}
    return resources, locks


def replay(local: Any, events: list[ReplayEvent], *, advance: timedelta = timedelta(0),
           step: timedelta = timedelta(minutes=1)) -> ReplayResult:
    """Deliver ``events`` to the app through ``local``'s Functions host; then let ``advance`` of virtual time pass."""
    from autopilot.messages import without_class_names
    from shared.core.clock import iso_z as iso

    before, locks_before = _inventory(local)
    first_invocation = len(local.host.invocations)
    first_alert = len(local.alerts())
    first_dead = len(local.host.dead_letters)
    for item in events:
        local.host.publish(item.topic, item.event)
    local.host.pump()
    if advance > timedelta(0):
        local.host.run_for(advance, step)
    after, locks_after = _inventory(local)
    result = ReplayResult(events)
    result.invocations = [{"time": iso(i.time), "function": i.function, "trigger": i.trigger, "ok": i.ok,
                           "detail": without_class_names(i.detail)}
                          for i in local.host.invocations[first_invocation:]]
    result.alerts = [{"time": a.get("eventTime"), "type": str(a.get("eventType", "")).removeprefix(CUSTOM_PREFIX),
                      "severity": (a.get("data") or {}).get("severity"), "subject": a.get("subject"),
                      "title": (a.get("data") or {}).get("title"),
                      "diagnosis": (a.get("data") or {}).get("diagnosis"), "fix": (a.get("data") or {}).get("fix"),
                      "codes": list((a.get("data") or {}).get("codes") or [])}
                     for a in local.alerts()[first_alert:]]
    result.created = sorted(after[k] for k in after.keys() - before.keys())
    result.deleted = sorted(before[k] for k in before.keys() - after.keys())
    result.locks_added = sorted(f"{scope} ({name})" for scope, name in locks_after - locks_before)
    result.locks_removed = sorted(f"{scope} ({name})" for scope, name in locks_before - locks_after)
    result.dead_letters = [{"function": d.subscription.function,
                            "eventType": str(d.event.get("eventType") or d.event.get("type")),
                            "subject": str(d.event.get("subject") or ""), "attempts": d.attempts,
                            "lastError": without_class_names(d.errors[-1]) if d.errors else ""}
                           for d in local.host.dead_letters[first_dead:]]
    return result
