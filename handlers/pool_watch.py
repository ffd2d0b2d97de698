"""Timer: find pools whose resize stalled and publish a PoolResizeStalled event for each."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.pool_watch")


@bp.timer_trigger(arg_name="timer", schedule="%AUTOPILOT_WATCH_SCHEDULE%", run_on_startup=False, use_monitor=True)
def pool_watch(timer: func.TimerRequest) -> None:
    from shared.core.context import get_context
    from shared.watch.tick import tick

    report = tick(get_context())
    log.info("pool_watch: %d account(s), %d pool(s), %d managed, %d stalled, %d alert(s)%s", report.accounts,
             report.pools,
             report.managed, len(report.stalled), report.alerts,
             f"; unreadable: {', '.join(report.unreadable_accounts)}" if report.unreadable_accounts else "")
    if report.autoscale:
        log.warning("pool_watch: %d managed pool(s) have autoscale enabled and are never resized: %s",
                    len(report.autoscale),
                    ", ".join(report.autoscale))
    if report.invalid_pools:
        log.warning("pool_watch: %d pool(s) skipped for invalid autopilot metadata: %s", len(report.invalid_pools),
                    "; ".join(report.invalid_pools.values()))
