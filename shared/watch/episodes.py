"""The pool watch's decision: given a pool, its target and its episode record, what to do now.

An **episode** is the stretch of time during which the app drives one pool towards a target it has
not reached. It starts when the watch first finds the pool steady and off target, counts the
failed resizes (``attempts``) and the backoff between them, and ends when the pool reaches its
target. Its record (:class:`Episode`) is what makes the watch safe to run every few minutes:

* **one outcome, one reaction.** Each resize request is answered once: the pool goes steady with an
  ``allocationStateTransitionTime`` newer than our request (ga4gh-tes's test). Until then the
  watch waits; errors already counted are never counted again.
* **bounded.** Retryable failures are re-issued with per-pool exponential backoff
  (:mod:`shared.watch.backoff`), at most ``max_resize_attempts`` failed attempts and ``max_episode`` of
  failing per episode; beyond either the watch gives up loudly (``ResizeGaveUp``). Every peer that
  re-drives resizes shipped a "retry forever" bug (ga4gh-tes #574, Shipyard #95): this is the fix.
* **a person when needed.** Quota, configuration and missing-image failures stop the re-issuing and
  raise one alert with the diagnosis and the fix. The watch resumes by itself once something
  changes: the desired target, the pool's image, or the pool's state (someone resized it).
* **quiet alerts.** At most one alert of each type per episode, never the same type for the same
  pool within ``alert_cooldown`` (the record outlives a recovery by the cooldown, so a flapping pool
  does not page every cycle), and a ``PoolRecovered`` notice when a pool that alerted reaches its target.

:func:`decide` is pure: the handler reads the pool, calls it, performs the action, raises the alerts
and stores ``decision.episode`` (deleting the record when it is None). For ``resize``, store the
episode only once Batch accepted the request; for ``verify_image``, read the pool's image and call
:func:`decide` again with ``image_exists``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.core.alerts import POOL_ALERT_SEVERITY, Alert
from shared.core.clock import iso
from shared.core.resource_ids import normalize, pool_resource_id
from shared.watch import pool_limits
from shared.watch.backoff import BackoffState
from shared.watch.episode_record import Episode, iso_time
from shared.watch.pool_limits import Ceiling
from shared.watch.pool_policy import (
    DesiredTarget,
    PoolView,
    ResizeStep,
    WatchPolicy,
    at_target,
    awaiting_request,
    next_resize,
    request_answered,
)
from shared.watch.resize_errors import (
    MAX_UNKNOWN_RETRIES,
    NEXT_TICK_CAUSES,
    AlertType,
    Cause,
    Diagnosis,
    ErrorClass,
    classify,
    dependent_resource_diagnosis,
    image_missing_diagnosis,
    image_present_diagnosis,
    not_applied_diagnosis,
)

__all__ = ["Action", "Alert", "Decision", "Episode", "WatchPolicy", "decide", "note_stop_resize"]

_FAILURE_ALERTS = frozenset({AlertType.ALLOCATION_FAILED, AlertType.QUOTA_REACHED, AlertType.IMAGE_MISSING,
                             AlertType.RESIZE_GAVE_UP,
                             AlertType.NODE_LIMIT_REACHED})
_QUOTA_CAUSES = frozenset({Cause.CORE_QUOTA, Cause.SPOT_QUOTA, Cause.VM_SERIES_QUOTA})
# A transient internal error (Batch's "internal error" while allocating) says nothing about capacity: it is re-issued
# without backoff, in the look that sees it (issue 18 allows the next tick; the look that sees it is as safe, as the
# re-issue is the same decision the stall handler makes from the stored record). At most this many in a row, so a
# service that keeps failing internally meets the backoff (and its alert); capacity and timeouts always back off.
MAX_NEXT_TICK_RETRIES = 2
_CEILING_ALERTS = {pool_limits.NODE_CAP: AlertType.NODE_LIMIT_REACHED, pool_limits.QUOTA: AlertType.QUOTA_REACHED}


class Action(StrEnum):
    NOTHING = "nothing"  # at target, not ours, resizing, or waiting for Batch to act on our request
    WAIT = "wait"  # backing off after a failure: ``retry_at`` says when the next resize may go out
    RESIZE = "resize"  # issue ``step``
    VERIFY_IMAGE = "verify_image"  # read ``image_id``, then call decide again with image_exists
    STOP = "stop"  # a person must act; no more resizes until something changes
    GIVE_UP = "give_up"  # the episode's bounds are spent
    REPORT_AUTOSCALE = "report_autoscale"  # the pool has autoscale on: never resized, reported instead


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # one line for the log: why this action
    episode: Episode | None  # the record to store; None: delete it
    step: ResizeStep | None = None  # for RESIZE
    retry_at: datetime | None = None  # for WAIT (and with alerts about retryable failures)
    alerts: tuple[Alert, ...] = ()
    diagnosis: Diagnosis | None = None
    image_id: str | None = None  # for VERIFY_IMAGE: the image to read


# --------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------


def decide(
    pool: PoolView,
    desired: DesiredTarget | None,
    episode: Episode | None,
    now: datetime,
    policy: WatchPolicy | None = None,
    image_exists: bool | None = None,
    ceilings: Sequence[Ceiling] = (),
) -> Decision:
    """What to do about ``pool`` now. See the module docstring for the rules; every branch says why in ``reason``.

    ``ceilings`` are what Batch would hold the pool under (the managed-image node cap, the account's core quotas;
    :mod:`shared.watch.pool_limits`): a resize is sized to fit under them, and a ceiling that leaves the target undone
    raises one alert (NodeLimitReached, QuotaReached). A pool stopped for quota resumes when a fresh quota ceiling has
    room.
    """
    policy = policy or WatchPolicy()
    if desired is None:
        return Decision(Action.NOTHING, "the pool is not managed by the autopilot (or has no desired target)", None)
    if pool.enable_auto_scale:
        return Decision(
            Action.REPORT_AUTOSCALE,
            f"the pool has autoscale enabled, so the autopilot never resizes it (desired {desired.dedicated} "
            "dedicated / "
            f"{desired.spot} Spot); disable autoscale or remove the autopilot's desired target",
            None,
        )

    history = episode
    current = episode if episode is not None and not episode.is_closed else None

    if not pool.is_steady:
        return Decision(Action.NOTHING, f"the pool is {pool.allocation_state or 'in an unknown state'}; Batch accepts "
                        "a resize only when steady",
                        _expire(history, now, policy) if current is None else current)

    if at_target(pool, desired):
        return _reached(pool, desired, history, current, now, policy)

    # Steady and off target: this is (or becomes) an episode.
    ep = current or _new_episode(pool, desired, now, history)
    if _resumes(ep, pool, desired, ceilings):
        ep = _restart(ep, pool, desired, now)

    if ep.is_halted:
        what = "gave up" if ep.gave_up else "stopped"
        return Decision(Action.NOTHING,
                        f"the autopilot {what} on this pool ({ep.stopped_reason}); it resumes when the desired target, "
                        "the image or the pool's size changes. Fix: " + (ep.last_fix or "see the last alert"), ep)

    if ep.failing_since is not None and now - ep.failing_since >= policy.max_episode:
        return _give_up(pool, desired, ep, now, policy, f"failing for more than {_hours(policy.max_episode)}")

    if ep.awaiting_outcome and awaiting_request(pool, ep.last_request_time, now, policy.request_grace):
        return Decision(Action.NOTHING,
                        f"waiting for Batch to act on the resize requested at {iso_time(ep.last_request_time)}", ep)

    transition = pool.allocation_state_transition_time
    if ep.awaiting_outcome or (pool.resize_errors and _is_new_transition(transition, ep.last_seen_transition)):
        # News: the answer to our last request, or fresh errors from someone else's resize (e.g. the pool's first
        # allocation).
        news = _on_news(pool, desired, ep, now, policy, image_exists, ceilings)
        if isinstance(news, Decision):
            return news
        ep = news

    return _drive(pool, desired, ep, now, policy, ceilings)


def _on_news(pool: PoolView, desired: DesiredTarget, ep: Episode, now: datetime, policy: WatchPolicy,
             image_exists: bool | None, ceilings: Sequence[Ceiling]) -> Decision | Episode:
    """The answer to our last request (or someone else's fresh errors): a decision, or the episode to drive on."""
    outcome = _outcome(pool, ep, image_exists)
    if isinstance(outcome, Decision):
        return outcome
    ep = replace(ep, awaiting_outcome=False, last_seen_transition=pool.allocation_state_transition_time or now)
    if outcome is None:
        # the step completed: internal errors get their next-tick retries again
        return replace(ep, next_tick_retries=0)
    if outcome.error_class is ErrorClass.NEEDS_PERSON:
        quota = _quota_allowance(pool, desired, ceilings) if outcome.cause in _QUOTA_CAUSES else None
        if quota is not None:
            ep = replace(ep, quota_dedicated_at_stop=quota[0], quota_spot_at_stop=quota[1])
        return _stop(pool, desired, _with_error(ep, outcome), now, policy,
                     _with_quota_numbers(outcome, ceilings))
    if outcome.error_class is ErrorClass.IGNORE:  # someone else stopped the resize: do not fight them
        stopped = replace(_with_error(ep, outcome), stopped_reason="the resize was stopped by someone else "
                                                                   "(ResizeStopped)", stopped_at=now)
        return Decision(Action.STOP, "the pool's last resize was stopped by someone else; the autopilot leaves "
                        "it until the desired "
                        "target or the pool's size changes", stopped, diagnosis=outcome)
    failed = _failed(pool, desired, ep, now, policy, outcome)
    if (failed.action is not Action.WAIT or failed.episode is None
            or failed.episode.next_tick_retries <= ep.next_tick_retries):
        return failed
    # A transient internal error: re-issued in this same look, without backoff (bounded: MAX_NEXT_TICK_RETRIES
    # in a row).
    retry = _drive(pool, desired, failed.episode, now, policy, ceilings)
    if retry.action is not Action.RESIZE:
        return failed if retry.action is Action.NOTHING else retry
    return replace(retry, reason=f"{failed.reason}; re-issued at once: {retry.reason}", diagnosis=outcome)


def note_stop_resize(episode: Episode | None, pool: PoolView, now: datetime) -> Episode:
    """Record that the app itself stopped the pool's resize, so the ResizeStopped that follows is not taken for someone
    else's."""
    base = episode if episode is not None and not episode.is_closed else Episode(pool.account_id, pool.pool_id,
                                                                                 started=now, image_id=pool.image_id)
    return replace(base, stop_resize_time=now)


# --------------------------------------------------------------------------------------------


def _outcome(pool: PoolView, ep: Episode, image_exists: bool | None) -> Diagnosis | Decision | None:
    """What the news says: a failure's diagnosis, a VERIFY_IMAGE decision, or None for a success."""
    if ep.awaiting_outcome and not request_answered(pool, ep.last_request_time):
        return not_applied_diagnosis(iso_time(ep.last_request_time))  # the grace ran out and the pool never moved
    if pool.resize_errors:
        diagnosis = classify(pool.resize_errors)
    elif pool.current_dedicated < pool.target_dedicated or pool.current_spot < pool.target_spot:
        diagnosis = classify([])  # steady short of its own target without a word: no progress
    else:
        return None  # the step completed
    if diagnosis.error_class is ErrorClass.VERIFY_IMAGE:
        # The generic message, or DependentResourceNotFound: read the image; gone -> ImageMissing. Present, the generic
        # message is a one-off (retry, as Batch advises) while a missing dependent resource is configuration (a person).
        present = (dependent_resource_diagnosis if diagnosis.cause is Cause.DEPENDENT_RESOURCE_MISSING
                   else image_present_diagnosis)
        if pool.image_id is None:
            return present(diagnosis, None)
        if image_exists is None:
            return Decision(Action.VERIFY_IMAGE,
                            f"Batch reported {diagnosis.code or 'its generic resize failure'}: check whether image "
                            f"{pool.image_id} still exists", ep, diagnosis=diagnosis, image_id=pool.image_id)
        return present(diagnosis, pool.image_id) if image_exists else image_missing_diagnosis(diagnosis, pool.image_id)
    if diagnosis.error_class is ErrorClass.IGNORE and _stopped_by_us(ep, pool.allocation_state_transition_time):
        return None
    return diagnosis


def _resumes(ep: Episode, pool: PoolView, desired: DesiredTarget, ceilings: Sequence[Ceiling] = ()) -> bool:
    """A new desired target always starts afresh; a halted episode also resumes when a person evidently acted:
    the pool's image changed, or the pool went through a resize since the outcome the autopilot stopped on; and a
    pool stopped for a core quota resumes by itself once a freshly read quota has room for more nodes."""
    if (ep.desired_dedicated, ep.desired_spot) != (desired.dedicated, desired.spot):
        return True
    if not ep.is_halted:
        return False
    if not ep.gave_up and ep.last_error_cause in _QUOTA_CAUSES and _quota_has_room(pool, desired, ceilings, ep):
        return True
    if normalize(ep.image_id or "") != normalize(pool.image_id or ""):
        return True
    return ep.last_seen_transition is not None and _is_new_transition(pool.allocation_state_transition_time,
                                                                      ep.last_seen_transition)


def _is_new_transition(transition: datetime | None, seen: datetime | None) -> bool:
    if seen is None:
        return True
    return transition is not None and transition > seen


def _stopped_by_us(ep: Episode, transition: datetime | None) -> bool:
    return ep.stop_resize_time is not None and (transition is None or transition >= ep.stop_resize_time)


def _quota_allowance(pool: PoolView, desired: DesiredTarget, ceilings: Sequence[Ceiling]) -> tuple[int, int] | None:
    quotas = [c for c in ceilings if c.kind == pool_limits.QUOTA]
    return _capped(pool, desired, quotas) if quotas else None


def _quota_has_room(pool: PoolView, desired: DesiredTarget, ceilings: Sequence[Ceiling], ep: Episode) -> bool:
    """A freshly read quota lets the pool grow, and allows more than when it stopped (so a quota only Batch sees never
    loops)."""
    if (ep.quota_dedicated_at_stop is None or ep.quota_spot_at_stop is None
        or not any(c.fresh for c in ceilings if c.kind == pool_limits.QUOTA)):
        return False
    allowance = _quota_allowance(pool, desired, ceilings)
    if allowance is None:
        return False
    dedicated, spot = allowance
    grows = dedicated > pool.current_dedicated or spot > pool.current_spot
    return grows and (dedicated > ep.quota_dedicated_at_stop or spot > ep.quota_spot_at_stop)


def _capped(pool: PoolView, desired: DesiredTarget, ceilings: Sequence[Ceiling]) -> tuple[int, int]:
    """``desired`` cut to the ceilings, but never below what the pool already has: a ceiling holds growth back, it never
    shrinks."""
    dedicated, spot = pool_limits.clamp(desired.dedicated, desired.spot, ceilings)
    return (min(desired.dedicated, max(dedicated, pool.current_dedicated)),
            min(desired.spot, max(spot, pool.current_spot)))


def _with_quota_numbers(diagnosis: Diagnosis, ceilings: Sequence[Ceiling]) -> Diagnosis:
    """Batch's quota error, with the cores needed and free as the app counts them (when it can)."""
    quota = next((c for c in ceilings if c.kind == pool_limits.QUOTA), None)
    if quota is None or diagnosis.cause not in _QUOTA_CAUSES:
        return diagnosis
    return replace(diagnosis, diagnosis=f"{diagnosis.diagnosis} {quota.diagnosis}", fix=pool_limits.QUOTA_FIX)


def _drive(pool: PoolView, desired: DesiredTarget, ep: Episode, now: datetime, policy: WatchPolicy,
           ceilings: Sequence[Ceiling] = ()) -> Decision:
    if ep.attempts >= policy.max_resize_attempts:
        return _give_up(pool, desired, ep, now, policy, f"{ep.attempts} failed attempts")
    held = pool_limits.binding(desired.dedicated, desired.spot, ceilings)
    alerts: tuple[Alert, ...] = ()
    if held:
        dedicated, spot = _capped(pool, desired, ceilings)
        wanted = desired
        desired = DesiredTarget(dedicated, spot, desired.source, desired.fired_at)
        if pool.current_dedicated < dedicated or pool.current_spot < spot:
            # grow to the ceiling first; the alert comes once the pool is there (raised by the tick, sent before it is
            # stored)
            held = []
        for ceiling in held:
            alert_type = _CEILING_ALERTS[ceiling.kind]
            what = ("the shared managed-image node cap" if ceiling.kind == pool_limits.NODE_CAP else "the account's "
                    "core quota")
            title = (f"Pool {pool.pool_id} cannot grow past {dedicated:,} dedicated / {spot:,} Spot of its target "
                     f"{wanted.dedicated:,} / {wanted.spot:,}: {what}")
            cause = Cause.NODE_CAP if ceiling.kind == pool_limits.NODE_CAP else Cause.CORE_QUOTA
            source = Diagnosis(ErrorClass.NEEDS_PERSON, cause, alert_type, "", "", ceiling.diagnosis, ceiling.fix)
            ep, raised = _raise(ep, alert_type, pool, now, policy, title, ceiling.diagnosis, ceiling.fix, source, None)
            alerts += raised
        if pool.current_dedicated >= dedicated and pool.current_spot >= spot:
            return Decision(Action.NOTHING, f"held at {dedicated} dedicated / {spot} Spot by "
                            + ", ".join(c.kind for c in held)
                            + "; the autopilot grows the pool when the ceiling allows", ep, alerts=alerts)
    step = next_resize(pool, desired, policy)
    if step is None:
        return Decision(Action.NOTHING, "the pool asks for no resize", ep)
    if policy.backoff.is_backing_off(ep.backoff, now):
        retry_at = policy.backoff.retry_at(ep.backoff, now)
        return Decision(Action.WAIT,
                        f"backing off after {ep.attempts} failed attempt(s); next try at {iso_time(retry_at)}",
                        ep, retry_at=retry_at)
    ep = replace(
        ep, requests=ep.requests + 1, last_request_time=now, awaiting_outcome=True,
        requested_dedicated=step.target_dedicated, requested_spot=step.target_spot,
        requested_from_dedicated=pool.current_dedicated, requested_from_spot=pool.current_spot,
    )
    staged = (" (staged growth)" if (step.target_dedicated, step.target_spot) != (desired.dedicated, desired.spot)
              else "")
    return Decision(
        Action.RESIZE,
        f"resize to {step.target_dedicated} dedicated / {step.target_spot} Spot{staged} towards {desired.dedicated} / "
        f"{desired.spot} "
        f"({desired.source}); resizeTimeout {step.resize_timeout_iso}",
        ep, step=step,
    )


def _failed(pool: PoolView, desired: DesiredTarget, ep: Episode, now: datetime, policy: WatchPolicy,
            diagnosis: Diagnosis) -> Decision:
    progress = diagnosis.cause is Cause.CAPACITY and _grew(pool, ep)
    next_tick = (diagnosis.cause in NEXT_TICK_CAUSES or progress) and ep.next_tick_retries < MAX_NEXT_TICK_RETRIES
    if not next_tick:
        backoff = policy.backoff.record_failure(ep.backoff, now)
    elif progress:  # a capacity failure still counts: one that follows waits the next delay, not the first
        backoff = policy.backoff.record_failure_retried_at_once(ep.backoff, now)
    else:  # an internal error says nothing about capacity: the backoff's count is left alone
        backoff = ep.backoff
    ep = replace(
        _with_error(ep, diagnosis), attempts=ep.attempts + 1, failing_since=ep.failing_since or now, backoff=backoff,
        next_tick_retries=ep.next_tick_retries + 1 if next_tick else 0,
    )
    if ep.attempts >= policy.max_resize_attempts:
        return _give_up(pool, desired, ep, now, policy, f"{ep.attempts} failed attempts", diagnosis)
    if diagnosis.cause is Cause.UNRECOGNISED and ep.attempts > MAX_UNKNOWN_RETRIES:
        # A code the app does not know is not assumed transient: after MAX_UNKNOWN_RETRIES retries a person hears of it.
        return _stop(pool, desired, ep, now, policy, diagnosis)
    if ep.failing_since is not None and now - ep.failing_since >= policy.max_episode:
        return _give_up(pool, desired, ep, now, policy, f"failing for more than {_hours(policy.max_episode)}",
                        diagnosis)
    retry_at = policy.backoff.retry_at(ep.backoff, now)
    if next_tick:  # no alert either: a person hears of it if it persists (then it backs off and alerts)
        return Decision(Action.WAIT, f"{diagnosis.cause}: attempt {ep.attempts} of {policy.max_resize_attempts} failed "
                        f"({ep.next_tick_retries} of {MAX_NEXT_TICK_RETRIES} retried without backoff)", ep,
                        retry_at=now, diagnosis=diagnosis)
    alerts: tuple[Alert, ...] = ()
    # unknown codes: one alert, when retries stop
    if diagnosis.alert_type is not None and diagnosis.cause is not Cause.UNRECOGNISED:
        title = (f"Pool {pool.pool_id} could not reach {desired.dedicated} dedicated / {desired.spot} Spot nodes "
                 f"({diagnosis.cause}): "
                 f"attempt {ep.attempts} of {policy.max_resize_attempts} failed, next try at {iso_time(retry_at)}")
        ep, alerts = _raise(ep, diagnosis.alert_type, pool, now, policy, title, diagnosis.diagnosis, diagnosis.fix,
                            diagnosis, retry_at)
    return Decision(Action.WAIT, f"{diagnosis.cause}: attempt {ep.attempts} of {policy.max_resize_attempts} failed; "
                    f"next try at {iso_time(retry_at)}",
                    ep, retry_at=retry_at, alerts=alerts, diagnosis=diagnosis)


def _grew(pool: PoolView, ep: Episode) -> bool:
    """The failed resize was granted nodes before it failed: the pool has more than when the request went out.

    A capacity failure that ends a resize which was being granted nodes shows capacity there minutes ago: it is
    re-issued at the next look instead of after the first backoff delay (issue 18: each minute of that delay was lost
    in the time-to-target benchmark). It still counts as a backoff failure, and in the run of next-look retries, so a
    shortage that lasts (the next resize granted nothing) waits the second delay: in scenarios/capacity-crunch.json
    that costs one request. A capacity failure that granted nothing waits out the backoff as cluster-autoscaler and
    Karpenter do.
    """
    if ep.requested_from_dedicated is None and ep.requested_from_spot is None:
        return False  # a record written before this was kept: no baseline, so no claim of progress
    return (pool.current_dedicated > (ep.requested_from_dedicated or 0)
            or pool.current_spot > (ep.requested_from_spot or 0))


def _stop(pool: PoolView, desired: DesiredTarget, ep: Episode, now: datetime, policy: WatchPolicy,
          diagnosis: Diagnosis) -> Decision:
    ep = replace(ep, stopped_reason=f"{diagnosis.code or diagnosis.cause}: {diagnosis.cause}", stopped_at=now,
                 failing_since=ep.failing_since or now)
    alert_type = diagnosis.alert_type or AlertType.ALLOCATION_FAILED
    title = {
        AlertType.QUOTA_REACHED: f"Pool {pool.pool_id} hit a core quota and cannot grow to {desired.dedicated} "
                                 f"dedicated / {desired.spot} Spot",
        AlertType.IMAGE_MISSING: f"Pool {pool.pool_id} cannot grow: its image {pool.image_id or ''} no longer exists",
    }.get(alert_type, f"Pool {pool.pool_id} cannot allocate nodes ({diagnosis.cause}): a person must fix the cause")
    ep, alerts = _raise(ep, alert_type, pool, now, policy, title, diagnosis.diagnosis, diagnosis.fix, diagnosis, None)
    return Decision(Action.STOP, f"{diagnosis.cause} needs a person; resizes stop until it is fixed. {diagnosis.fix}",
                    ep,
                    alerts=alerts, diagnosis=diagnosis)


def _give_up(
    pool: PoolView, desired: DesiredTarget, ep: Episode, now: datetime, policy: WatchPolicy, why: str,
    diagnosis: Diagnosis | None = None
) -> Decision:
    # Whatever the pool shows now is what the autopilot gave up on: only a later change resumes it.
    ep = replace(ep, gave_up=True, stopped_reason=f"gave up: {why}", stopped_at=now,
                 failing_since=ep.failing_since or now, awaiting_outcome=False,
                 last_seen_transition=pool.allocation_state_transition_time or ep.last_seen_transition or now)
    last = f" The last error: {ep.last_diagnosis}" if ep.last_diagnosis else ""
    title = (f"Pool {pool.pool_id}: gave up resizing to {desired.dedicated} dedicated / {desired.spot} Spot "
             f"after {why} "
             f"(now {pool.current_dedicated} / {pool.current_spot})")
    fix = (ep.last_fix or "Find out why the pool cannot grow (resize errors, node errors, capacity in the region).") + (
        " The autopilot resumes when the desired target, the pool's image or its size changes (resize it once by hand "
        "to retry).")
    ep, alerts = _raise(ep, AlertType.RESIZE_GAVE_UP, pool, now, policy, title,
                        f"The autopilot stopped re-issuing resizes after {why}.{last}", fix, diagnosis, None)
    return Decision(Action.GIVE_UP, f"giving up after {why}", ep, alerts=alerts, diagnosis=diagnosis)


def _reached(pool: PoolView, desired: DesiredTarget, history: Episode | None, current: Episode | None, now: datetime,
             policy: WatchPolicy) -> Decision:
    reason = f"the pool is at its target ({desired.dedicated} dedicated / {desired.spot} Spot)"
    if current is None:
        return Decision(Action.NOTHING, reason, _expire(history, now, policy))
    alerts: tuple[Alert, ...] = ()
    # Reaching the target removes the backoff, count included (cluster-autoscaler's RemoveBackoff on a successful
    # scale-up): a later failure starts again at the first delay. The alert cooldown still spaces repeated alerts.
    closed = Episode(
        current.account_id, current.pool_id, started=current.started,
        backoff=policy.backoff.record_success(current.backoff),
        alert_times=current.alert_times,
        recovered_at=now, last_seen_transition=pool.allocation_state_transition_time, image_id=pool.image_id,
        desired_dedicated=desired.dedicated, desired_spot=desired.spot,
    )
    if current.alerted & _FAILURE_ALERTS:
        # Pairs with the failure alert(s) of this episode, so no cooldown: whoever was told it failed must hear it
        # recovered.
        title = f"Pool {pool.pool_id} reached its target: {desired.dedicated} dedicated / {desired.spot} Spot"
        alert = _alert(AlertType.POOL_RECOVERED, pool, closed, now, title,
                       f"The pool recovered after {current.attempts} failed attempt(s) since "
                       f"{iso_time(current.failing_since or current.started)}.",
                       "Nothing to do.", attempt=current.attempts, max_attempts=policy.max_resize_attempts)
        closed = replace(closed, alert_times={**closed.alert_times, AlertType.POOL_RECOVERED: now})
        alerts = (alert,)
        reason += "; recovered"
    return Decision(Action.NOTHING, reason, _expire(closed, now, policy), alerts=alerts)


def _raise(
    ep: Episode, alert_type: AlertType, pool: PoolView, now: datetime, policy: WatchPolicy, title: str, diagnosis: str,
    fix: str,
    source: Diagnosis | None, next_try: datetime | None,
) -> tuple[Episode, tuple[Alert, ...]]:
    """The alert if it is due: once per type per episode, and not within the cooldown of the same type for this pool."""
    if alert_type in ep.alerted:
        return ep, ()
    last = ep.alert_times.get(alert_type)
    if last is not None and now - last < policy.alert_cooldown:
        return ep, ()
    alert = _alert(
        alert_type, pool, ep, now, title, diagnosis, fix,
        code=source.code if source else (ep.last_error_code or ""),
        cause=str(source.cause) if source else (ep.last_error_cause or ""),
        attempt=ep.attempts, max_attempts=policy.max_resize_attempts, next_try=next_try,
    )
    return replace(ep, alerted=ep.alerted | {alert_type}, alert_times={**ep.alert_times, alert_type: now}), (alert,)


def _alert(alert_type: AlertType, pool: PoolView, ep: Episode, now: datetime, title: str, diagnosis: str, fix: str, *,
           code: str = "", cause: str = "", attempt: int = 0, max_attempts: int = 0,
           next_try: datetime | None = None) -> Alert:
    """A pool alert as published: one of a type per failure episode, across instances (decide() keeps the cooldown)."""
    return Alert(
        type=alert_type,
        severity=POOL_ALERT_SEVERITY[alert_type],
        subject=pool_resource_id(pool.account_id, pool.pool_id),
        title=title,
        diagnosis=diagnosis,
        fix=fix,
        dedupe_key=iso(ep.started),
        occurred_at=now,
        details={
            "account": pool.account_id,
            "pool": pool.pool_id,
            "codes": [code] if code else [],
            "reason": cause,
            "attempt": attempt,
            "maxAttempts": max_attempts,
            "nextTryTime": iso(next_try) if next_try else None,
            "currentDedicatedNodes": pool.current_dedicated,
            "currentLowPriorityNodes": pool.current_spot,
            "desiredDedicatedNodes": ep.desired_dedicated,
            "desiredLowPriorityNodes": ep.desired_spot,
            "episodeStarted": iso(ep.started),
        },
    )


def _new_episode(pool: PoolView, desired: DesiredTarget, now: datetime, history: Episode | None) -> Episode:
    return Episode(
        pool.account_id, pool.pool_id, started=now, desired_dedicated=desired.dedicated, desired_spot=desired.spot,
        image_id=pool.image_id,
        backoff=history.backoff if history else BackoffState(),
        alert_times=history.alert_times if history else {},
        last_seen_transition=history.last_seen_transition if history else None,
        stop_resize_time=history.stop_resize_time if history else None,
    )


def _restart(ep: Episode, pool: PoolView, desired: DesiredTarget, now: datetime) -> Episode:
    """A new intent (or a person's fix): fresh attempt count and time bound, no wait; alerts already raised stay raised
    (so a PoolRecovered still follows them), and the alert times still honour the cooldown."""
    return replace(
        ep, started=now, attempts=0, failing_since=None, backoff=replace(ep.backoff, backoff_until=None),
        desired_dedicated=desired.dedicated, desired_spot=desired.spot, image_id=pool.image_id,
        gave_up=False, stopped_reason=None, stopped_at=None, awaiting_outcome=False, quota_dedicated_at_stop=None,
        quota_spot_at_stop=None,
        next_tick_retries=0,
    )


def _with_error(ep: Episode, d: Diagnosis) -> Episode:
    return replace(ep, last_error_code=d.code or None, last_error_cause=str(d.cause), last_diagnosis=d.diagnosis,
                   last_fix=d.fix)


def _expire(record: Episode | None, now: datetime, policy: WatchPolicy) -> Episode | None:
    """A closed record is kept while it still matters: an alert within the cooldown, or backoff not yet forgotten."""
    if record is None or not record.is_closed:
        return record
    recent_alert = any(now - t < policy.alert_cooldown for t in record.alert_times.values())
    if recent_alert or not policy.backoff.is_quiet(record.backoff, now):
        return record
    return None


def _hours(d: timedelta) -> str:
    hours = d.total_seconds() / 3600
    return f"{hours:g} h"
