"""``autopilot sandbox``: the local emulator, Azurite and the app on the local Functions host, left running for a person
to poke from another shell.

The sandbox seeds the emulated subscription from a scenario's initial state (its timeline is not run), runs the app
as a deployed Function App runs (its timers on the emulator's clock, its Event Grid deliveries), and writes the
settings a shell needs to reach it: with them exported, ``autopilot status``, ``plan`` and ``reconcile`` talk to the
sandbox exactly as they talk to a subscription, and ``autopilot replay`` hands its events to the sandbox's app
(``AUTOPILOT_SANDBOX_URL``) instead of starting a private emulator.

Virtual time follows the wall clock, ``speed`` times faster (``--speed 60``: a minute per second).
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

SANDBOX_PATH = "/_emulator/sandbox"
# Settings another shell does not need (the sandbox's own retry pace) or must not take from the sandbox.
_PRIVATE = {"AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS", "AUTOPILOT_HTTP_RETRY_BACKOFF_MAX_SECONDS"}
# With no scenario: an empty subscription with one watched Batch account, so the app has something to watch.
EMPTY = {"name": "sandbox", "duration": "1m", "batchAccounts": [{"name": "sandbox"}]}


class Sandbox:
    def __init__(self, scenario: Any, azurite_connection: str, *, speed: float = 1.0, tls: Any = None) -> None:
        from autopilot.initial_state import apply_initial_state, initial_state_error, local_azure_for
        from emulator.core import Route

        self.scenario = scenario
        self.speed = speed
        self.local = local_azure_for(scenario, azurite_connection, tls=tls)
        try:
            apply_initial_state(self.local, scenario)
        except Exception as exc:
            self.local.close()
            raise initial_state_error(scenario, exc) from exc
        self._lock = threading.RLock()  # one thing at a time drives the host: the clock loop or a replay
        self.local.emulator.add_routes([Route("POST", f"{SANDBOX_PATH}/replay", self._replay_route, plane="admin",
                                              auth=False),
                                        Route("GET", SANDBOX_PATH, self._info_route, plane="admin", auth=False)])

    # ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.local.server.base_url}{SANDBOX_PATH}"

    def env(self) -> dict[str, str]:
        """The settings for another shell: the app's, as the Function App has them, plus where the sandbox listens."""
        out = {k: v for k, v in self.local.env.items() if k not in _PRIVATE}
        out["AUTOPILOT_SANDBOX_URL"] = self.url
        return out

    def write_env(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# autopilot sandbox: source this file in another shell (`. " + str(path)
                 + "`), then run autopilot status / plan / "
                 "reconcile / replay"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(self.env().items())]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------------------------------
    def step(self, wall_seconds: float) -> None:
        """Let ``wall_seconds`` × speed of virtual time pass, as Azure would: due work, deliveries, timers."""
        with self._lock:
            self.local.host.run_for(timedelta(seconds=wall_seconds * self.speed), timedelta(minutes=1))

    def serve(self, stop: threading.Event, *, interval: float = 0.5) -> None:
        last = time.monotonic()
        while not stop.wait(interval):
            now = time.monotonic()
            self.step(now - last)
            last = now

    def close(self) -> None:
        self.local.close()

    # ------------------------------------------------------------------------------------------
    def _replay_route(self, request: Any) -> Any:
        from autopilot.replay import ReplayInputError, parse_events, replay
        from emulator.core import json_response
        from emulator.exceptions import InvalidRequestContent

        body = request.json()
        try:
            events = parse_events(body.get("events"), source="the request", topic=str(body.get("topic") or "auto"))
        except ReplayInputError as exc:
            raise InvalidRequestContent("; ".join(exc.problems)) from None
        minutes = body.get("advanceMinutes", 0)
        if not isinstance(minutes, int | float) or minutes < 0:
            raise InvalidRequestContent('Send "advanceMinutes": N with N >= 0.')
        with self._lock:
            result = replay(self.local, events, advance=timedelta(minutes=minutes))
        return json_response(result.to_json())

    def _info_route(self, request: Any) -> Any:
        from emulator.core import json_response

        return json_response({"scenario": self.scenario.name, "now": self.local.emulator.now().isoformat(),
                              "speed": self.speed})


def replay_to_sandbox(url: str, ca_bundle: str | None, events: list[Any], *, topic: str,
                      advance_minutes: float) -> dict[str, Any]:
    """POST the events to a running sandbox; its app handles them. Returns ReplayResult.to_json() from the sandbox."""
    import ssl
    import urllib.request

    body = json.dumps({"events": [e.event for e in events], "topic": topic, "advanceMinutes": advance_minutes}).encode()
    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    request = urllib.request.Request(f"{url}/replay", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=600) as response:
        return dict(json.loads(response.read()))


__all__ = ["EMPTY", "SANDBOX_PATH", "Sandbox", "replay_to_sandbox"]
