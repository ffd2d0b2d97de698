"""Timer: finish versions whose events were missed, and alert on snapshot sets that never completed."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.pipeline_sweep")


@bp.timer_trigger(arg_name="timer", schedule="%AUTOPILOT_PIPELINE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def pipeline_sweep(timer: func.TimerRequest) -> None:
    from shared.core.context import get_context
    from shared.pipeline import stages as pipeline

    outcomes = pipeline.sweep(get_context())
    if outcomes:
        log.info("pipeline_sweep: %s", "; ".join(f"{o.stage} {o.detail}" for o in outcomes))
