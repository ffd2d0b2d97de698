"""Run a scenario: the subscription it describes on the local emulator, the app on the local Functions host, and
the scenario's timeline of actions on the virtual clock.

The app runs unchanged: it sees only its settings (emulator endpoints, Azurite, a fresh table prefix) and
the events and timers the local host delivers. People act through real SDK clients with their own
identity (``EmulatorCredential(name=..., appid=...)``), so their writes raise Event Grid events and hit
management locks exactly as in Azure; "the world" (regional capacity, quotas, failures) changes through
the emulator's scenario knobs. A :class:`Recorder` samples every pool at every step for the report and
the chart.

The parts: autopilot/initial_state.py (what exists before the run), autopilot/actions.py (the timeline's actions),
autopilot/recorder.py (what happened), autopilot/report.py (the report built from it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from autopilot.actions import ActionResult, ActionRunner, error_code_of
from autopilot.initial_state import apply_initial_state, initial_state_error, local_azure_for
from autopilot.recorder import Recorder, TimelineEntry
from autopilot.scenario import Action, Scenario, format_duration, format_offset

RESIZE_PATH = re.compile(r"/batch/(?P<account>[^/]+)/pools/(?P<pool>[^/]+)/resize$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulationResult:
    scenario: Scenario
    report: dict[str, Any]
    recorder: Recorder
    actions: list[ActionResult]
    wall_seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.report["result"]["ok"])


class Simulation:
    """One scenario run. Use as a context manager: the emulator server and SDK clients are closed on exit."""

    def __init__(self, scenario: Scenario, azurite_connection: str, *, tls: Any = None,
                 on_progress: Callable[[Simulation, datetime], None] | None = None) -> None:
        self.scenario = scenario
        self.local = local_azure_for(scenario, azurite_connection, tls=tls)
        try:
            apply_initial_state(self.local, scenario)
        except Exception as exc:
            self.local.close()
            raise initial_state_error(scenario, exc) from exc
        self.recorder = Recorder(self.local, scenario)
        self.runner = ActionRunner(self.local, scenario)
        self.results: list[ActionResult] = []
        self.on_progress = on_progress

    def close(self) -> None:
        self.runner.close()
        self.local.close()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def elapsed(self, now: datetime | None = None) -> timedelta:
        return (now or self.local.emulator.now()) - self.scenario.start

    def run(self) -> SimulationResult:
        from autopilot.report import build_report

        started = time.perf_counter()
        scenario = self.scenario
        local = self.local
        end = scenario.end
        pending = list(scenario.timeline)
        self.recorder.sample(local.emulator.now())

        def on_step(now: datetime) -> None:
            self.recorder.sample(now)
            if self.on_progress is not None:
                self.on_progress(self, now)

        while True:
            now = local.emulator.now()
            acted = False
            while pending and scenario.start + pending[0].at <= now:
                self._do(pending.pop(0))
                self.recorder.observe_resources(now)  # e.g. a lock removed, then put back by the app in the same minute
                acted = True
            if acted:
                local.host.pump()  # deliver what the actions raised, at the moment they happened
                self.recorder.observe_resources(now)
            if now >= end:
                break
            stop = min(scenario.start + pending[0].at, end) if pending else end
            local.host.run_for(stop - now, scenario.step, on_step=on_step)
        local.host.pump()  # whatever the last actions raised
        if self.recorder.times and self.recorder.times[-1] != local.emulator.now():
            self.recorder.sample(local.emulator.now())
        elif self.results and scenario.start + self.results[-1].action.at >= end:
            # actions at the very end changed something after the last sample
            self.recorder.sample(local.emulator.now())
        wall = time.perf_counter() - started
        report = build_report(self, wall)
        return SimulationResult(scenario, report, self.recorder, self.results, wall)

    def _do(self, action: Action) -> None:
        try:
            result = self.runner.run(action)
        except Exception as exc:  # a knob that cannot apply (e.g. the pool does not exist yet) is a scenario problem
            # the outcome is the Azure error code when there is one (e.g. PoolNotFound), never a Python class name
            result = ActionResult(action, self.local.emulator.now(), None, self.runner._target(action),
                                  error_code_of(exc), False,
                                  " ".join(str(exc).split())[:300])
        self.results.append(result)
        text = result.describe() if action.kind != "mark" else f"mark: {action.spec['text']}"
        if action.note:
            text += f" — {action.note}"
        self.recorder.add(result.time, "action" if action.kind != "mark" else "mark", text,
                          pool=action.spec.get("pool"), ok=result.ok, severity=None if result.ok else "error")
        if self.on_progress is not None:
            self.on_progress(self, result.time)


def describe_run(scenario: Scenario) -> str:
    return (f"{scenario.name}: {format_duration(scenario.duration)} of virtual time from "
            f"{scenario.start:%Y-%m-%d %H:%M} UTC "
            f"in {format_duration(scenario.step)} steps, seed {scenario.seed}, {len(scenario.timeline)} action(s)")


__all__ = ["ActionResult", "Recorder", "Simulation", "SimulationResult", "TimelineEntry", "apply_initial_state",
           "describe_run",
           "format_offset", "local_azure_for"]
