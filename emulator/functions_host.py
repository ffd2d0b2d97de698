"""A local stand-in for the Azure Functions host and Event Grid delivery, on the emulator's clock.

It loads ``function_app`` exactly as the Python worker does (``app.get_functions()``), then:

* routes the emulator's system-topic and custom-topic events to the Event Grid-triggered functions
  with the app's subscription table (``shared.core.event_routing``), decoding each event with
  ``azure.functions``' own trigger converter, as the worker does;
* delivers at least once: a function that raises is retried on Event Grid's schedule (10 s, 30 s,
  1 min, 5 min, 10 min, 30 min, 1 h, then hourly) until the attempt limit or time-to-live, then the
  event is dead-lettered;
* fires timer triggers on their NCRONTAB schedules (``%SETTING%`` references resolved from the app
  settings) as the virtual clock passes them.

Work is queued by emulator callbacks and run by :meth:`FunctionsHost.pump` in the caller's thread,
never inside the emulator's HTTP threads, so a function may freely call the emulator.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from emulator.azure import Emulator
from shared.core.event_routing import CUSTOM, SUBSCRIPTIONS, SYSTEM, EventSubscription
from shared.watch import ncrontab

log = logging.getLogger("emulator.functions_host")

# Event Grid's documented retry schedule; after the last entry it retries hourly.
RETRY_SCHEDULE = (timedelta(seconds=10), timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=5),
                  timedelta(minutes=10), timedelta(minutes=30), timedelta(hours=1))
_SETTING_REF = re.compile(r"^%([A-Za-z0-9_]+)%$")


def indexed_functions(app: Any) -> list[Any]:
    """``app.get_functions()`` as the worker calls it - once per app object (a second call fails
    azure-functions' unique-name check), cached so several hosts can run in one process."""
    cached = getattr(app, "_local_host_functions", None)
    if cached is None:
        cached = app.get_functions()
        app._local_host_functions = cached
    return cached


@dataclass
class Delivery:
    subscription: EventSubscription
    event: dict[str, Any]
    first_attempt: datetime
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class InvocationRecord:
    time: datetime
    function: str
    trigger: str  # "eventGrid" | "timer"
    ok: bool
    detail: str
    duration_s: float


@dataclass
class TimerFunction:
    name: str
    schedule: str
    arg_name: str
    call: Callable[..., Any]
    next_fire: datetime


@dataclass
class EventFunction:
    name: str
    arg_name: str
    call: Callable[..., Any]


class FunctionsHost:
    def __init__(self, emulator: Emulator, settings_env: Mapping[str, str], *, app_module: str = "function_app",
                 max_delivery_attempts: int = 30, event_ttl: timedelta = timedelta(hours=24),
                 function_timeout: timedelta = timedelta(minutes=5), custom_topic: str = "autopilot") -> None:
        self.emulator = emulator
        self.env = dict(settings_env)
        self.max_delivery_attempts = max_delivery_attempts
        self.event_ttl = event_ttl
        self.function_timeout = function_timeout
        self.custom_topic = custom_topic
        self._queue: deque[Delivery] = deque()
        self._lock = threading.Lock()
        self.invocations: list[InvocationRecord] = []
        self.dead_letters: list[Delivery] = []
        self.delivered = 0
        self.retried = 0
        self.timer_functions: dict[str, TimerFunction] = {}
        self.event_functions: dict[str, EventFunction] = {}
        self._load(app_module)
        emulator.eventgrid.subscribe(SYSTEM, lambda event: self._enqueue(SYSTEM, event))
        emulator.eventgrid.subscribe(custom_topic, lambda event: self._enqueue(CUSTOM, event))

    # ------------------------------------------------------------------------------------------
    def _load(self, app_module: str) -> None:
        module = importlib.import_module(app_module) if app_module not in sys.modules else sys.modules[app_module]
        now = self.emulator.now()
        for function in indexed_functions(module.app):
            trigger = function.get_trigger()
            name = function.get_function_name()
            call = function.get_user_function()
            if trigger.get_binding_name() == "timerTrigger":
                schedule = self._resolve_setting(trigger.schedule)
                ncrontab.parse(schedule)  # fail loudly at start-up, as the real host does
                self.timer_functions[name] = TimerFunction(name, schedule, trigger.name, call,
                                                           ncrontab.next_after(schedule, now))
            elif trigger.get_binding_name() == "eventGridTrigger":
                self.event_functions[name] = EventFunction(name, trigger.name, call)
            else:
                raise ValueError(f"the local host cannot drive {name}: trigger type {trigger.get_binding_name()!r}")
        for sub in SUBSCRIPTIONS:
            if sub.function not in self.event_functions:
                raise ValueError(f"event subscription {sub.name!r} targets {sub.function!r}, which function_app does "
                                 "not define")

    def _resolve_setting(self, value: str) -> str:
        m = _SETTING_REF.match(value.strip())
        if m is None:
            return value
        name = m.group(1)
        if name not in self.env:
            raise ValueError(f"timer schedule refers to app setting {name}, which is not set")
        return self.env[name]

    # ------------------------------------------------------------------------------------------
    def _enqueue(self, topic: str, event: dict[str, Any], *, subject_filter: bool = True) -> None:
        event_type = event.get("eventType") or event.get("type")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        operation = data.get("operationName") if isinstance(data, dict) else None
        now = self.emulator.now()
        subject = event.get("subject") if isinstance(event.get("subject"), str) else None
        prefixes = self._subject_prefixes() if subject_filter else None
        with self._lock:
            for sub in SUBSCRIPTIONS:
                if sub.topic == topic and sub.matches(event_type, operation, subject, prefixes):
                    self._queue.append(Delivery(sub, event, now))

    def _subject_prefixes(self) -> tuple[str, ...] | None:
        """The resource-group filter infra puts on scoped subscriptions, from the app's families (None: not
        configured)."""
        from shared.config.families import FamilyConfigError, parse_families
        from shared.core.event_routing import subject_prefixes
        from shared.pipeline.scope import watched_groups

        text = self.env.get("AUTOPILOT_FAMILIES")
        subscription = self.env.get("AUTOPILOT_SUBSCRIPTION_ID", "")
        if not text:
            return None
        try:
            groups = watched_groups(parse_families(text))
        except FamilyConfigError:
            return None  # the app reports its configuration; the host routes unfiltered
        return subject_prefixes(subscription, groups)

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        """Deliver an event as if Event Grid had received it on ``topic`` ("system" or "custom").

        The subscriptions' event-type and operation filters apply; their resource-group filter does not, so
        that tests can hand the app events a subscription deployed without it would deliver (the app must
        cope with those too). Events the emulator raises itself go through every filter, as in Azure.
        """
        self._enqueue(topic, event, subject_filter=False)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def pump(self, max_deliveries: int = 10_000) -> int:
        """Deliver every queued event (including ones raised while delivering). Returns deliveries made."""
        done = 0
        while done < max_deliveries:
            with self._lock:
                if not self._queue:
                    break
                delivery = self._queue.popleft()
            self._deliver(delivery)
            done += 1
        return done

    def _deliver(self, delivery: Delivery) -> None:
        from azure.functions.eventgrid import EventGridEventInConverter
        from azure.functions.meta import Datum

        function = self.event_functions[delivery.subscription.function]
        delivery.attempts += 1

        def call() -> None:
            # Decode with the worker's own converter (CloudEvent when the body has 'specversion'),
            # inside the invocation: a body the converter rejects fails the invocation, as in Azure.
            payload = EventGridEventInConverter.decode(data=Datum(type="json", value=json.dumps(delivery.event)),
                                                       trigger_metadata=None)
            function.call(**{function.arg_name: payload})

        ok, detail = self._invoke(function.name, "eventGrid", call)
        if ok:
            self.delivered += 1
            return
        delivery.errors.append(detail)
        now = self.emulator.now()
        if delivery.attempts >= self.max_delivery_attempts or now - delivery.first_attempt >= self.event_ttl:
            self.dead_letters.append(delivery)
            log.warning("dead-lettered event %s for %s after %d attempts: %s", delivery.event.get("id"),
                        function.name, delivery.attempts, detail)
            return
        self.retried += 1
        delay = RETRY_SCHEDULE[min(delivery.attempts - 1, len(RETRY_SCHEDULE) - 1)]
        self.emulator.scheduler.at(now + delay, lambda: self._requeue(delivery))

    def _requeue(self, delivery: Delivery) -> None:
        with self._lock:
            self._queue.append(delivery)

    def _invoke(self, name: str, trigger: str, call: Callable[[], Any]) -> tuple[bool, str]:
        started = time.perf_counter()
        at = self.emulator.now()
        try:
            call()
        except Exception as exc:  # the host turns any exception into a failed invocation
            duration = time.perf_counter() - started
            detail = f"{type(exc).__name__}: {exc}"
            log.info("function %s failed: %s", name, detail, exc_info=log.isEnabledFor(logging.DEBUG))
            self.invocations.append(InvocationRecord(at, name, trigger, False, detail, duration))
            return False, detail
        duration = time.perf_counter() - started
        if duration > self.function_timeout.total_seconds():
            detail = f"exceeded functionTimeout ({duration:.1f} s > {self.function_timeout.total_seconds():.0f} s)"
            self.invocations.append(InvocationRecord(at, name, trigger, False, detail, duration))
            return False, detail
        self.invocations.append(InvocationRecord(at, name, trigger, True, "ok", duration))
        return True, "ok"

    # ------------------------------------------------------------------------------------------
    def fire_due_timers(self) -> int:
        from azure.functions.timer import TimerRequest

        now = self.emulator.now()
        fired = 0
        for timer in self.timer_functions.values():
            if timer.next_fire <= now:
                past_due = now - timer.next_fire > timedelta(seconds=1)
                self._invoke(timer.name, "timer",
                             lambda t=timer, p=past_due: t.call(**{t.arg_name: TimerRequest(past_due=p)}))
                timer.next_fire = ncrontab.next_after(timer.schedule, now)
                fired += 1
        return fired

    def fire_timer(self, name: str) -> bool:
        """Run one timer function now (the portal's "Run" button); returns whether it succeeded."""
        from azure.functions.timer import TimerRequest

        timer = self.timer_functions[name]
        ok, _ = self._invoke(timer.name, "timer", lambda: timer.call(**{timer.arg_name: TimerRequest(past_due=False)}))
        return ok

    def run_for(self, duration: timedelta, step: timedelta = timedelta(minutes=1),
                on_step: Callable[[datetime], None] | None = None) -> None:
        """Advance virtual time by ``duration`` in ``step``s, delivering events and firing timers."""
        end = self.emulator.now() + duration
        self.pump()
        while self.emulator.now() < end:
            self.emulator.clock.advance(min(step, end - self.emulator.now()))
            self.emulator.scheduler.run_due()
            self.pump()
            if self.fire_due_timers():
                self.pump()
            if on_step is not None:
                on_step(self.emulator.now())

    @staticmethod
    def new_event_id() -> str:
        return str(uuid.uuid4())
