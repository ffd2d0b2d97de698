"""The worker's view of the app: what app.get_functions() indexes, and what importing it costs."""

from __future__ import annotations

import json
import subprocess
import sys

from shared.core.event_routing import SUBSCRIPTIONS
from tests.conftest import ROOT

EXPECTED = {
    "image_pipeline": ("eventGridTrigger", None),
    "image_guard_events": ("eventGridTrigger", None),
    "resize_stalled": ("eventGridTrigger", None),
    "pool_watch": ("timerTrigger", "%AUTOPILOT_WATCH_SCHEDULE%"),
    "image_guard_reconcile": ("timerTrigger", "%AUTOPILOT_GUARD_SCHEDULE%"),
    "pipeline_sweep": ("timerTrigger", "%AUTOPILOT_PIPELINE_SCHEDULE%"),
}


def _index() -> dict[str, dict]:
    import function_app
    from emulator.functions_host import indexed_functions

    out = {}
    for function in indexed_functions(function_app.app):
        out[function.get_function_name()] = json.loads(function.get_function_json())
    return out


def test_the_worker_indexes_exactly_the_expected_functions_and_bindings() -> None:
    index = _index()
    assert set(index) == set(EXPECTED)
    for name, (binding_type, schedule) in EXPECTED.items():
        bindings = index[name]["bindings"]
        assert len(bindings) == 1, f"{name} should have only its trigger binding (outputs go through the SDK)"
        trigger = bindings[0]
        assert trigger["type"] == binding_type and trigger["direction"] == "IN"
        if schedule:
            assert trigger["schedule"] == schedule
            assert trigger["runOnStartup"] is False  # a restart must not fire an extra tick
            assert trigger["useMonitor"] is True


def test_every_event_subscription_targets_an_event_grid_function() -> None:
    index = _index()
    for sub in SUBSCRIPTIONS:
        assert index[sub.function]["bindings"][0]["type"] == "eventGridTrigger", sub


def test_importing_function_app_reads_no_settings_and_loads_no_azure_sdk() -> None:
    # A fresh interpreter with an empty environment: import must succeed and stay light.
    code = (
        "import sys, function_app\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['azure','mgmt'],['azure','batch'],['azure','identity'],"
        "['azure','data'],['azure','eventgrid']))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"heavy SDK modules imported by function_app: {result.stdout}"
