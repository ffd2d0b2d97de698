"""Timer: lock every image, gallery version and snapshot that managed pools use; release the rest."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("autopilot.handlers.image_guard_reconcile")


@bp.timer_trigger(arg_name="timer", schedule="%AUTOPILOT_GUARD_SCHEDULE%", run_on_startup=False, use_monitor=True)
def image_guard_reconcile(timer: func.TimerRequest) -> None:
    from shared.core.context import get_context
    from shared.guard.reconcile import reconcile

    report = reconcile(get_context())
    log.info("image_guard_reconcile: %d guarded, %d lock change(s), %d failure(s)%s", report.guarded,
             len(report.applied),
             len(report.failed), " (release skipped: an account could not be read)" if report.skipped_release else "")
    if report.kept:
        log.warning("image_guard_reconcile: kept %d lock(s) for pools whose image is missing: %s", len(report.kept),
                    ", ".join(report.kept))
    if report.failed:
        # Fail the invocation so the failure is visible in the Functions monitor; the next tick retries.
        raise RuntimeError(f"could not update locks on: {', '.join(sorted(report.failed))}")
