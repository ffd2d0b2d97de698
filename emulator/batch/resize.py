"""Azure Batch: the resize engine (see ``emulator/batch/models.py`` for the rules), stopResize and autoscale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from emulator.batch.base import (
    _FORMULA_DEDICATED,
    _FORMULA_LOW,
    _MANAGED_IMAGE,
    DEALLOCATION_OPTIONS,
    MINUTE,
    BatchCore,
)
from emulator.batch.capacity import DEDICATED, KINDS, LOW_PRIORITY, draw
from emulator.batch.catalog import (
    MESSAGE_IMAGE_GONE,
    REASON_INSUFFICIENT_CAPACITY,
    REASON_INTERNAL_ERROR,
    REASON_SUBNET_DELEGATED,
    allocation_failed_message,
    gen2_provider_error,
    node_kind_label,
    stopped_message,
    timed_out_message,
)
from emulator.batch.exceptions import (
    InvalidAutoScalingSettings,
    InvalidPropertyValue,
    OperationInvalidForCurrentState,
    PoolBeingDeleted,
    PoolBeingResized,
)
from emulator.ids import key

if TYPE_CHECKING:
    from emulator.batch.pools import Pool


@dataclass
class ResizeErrorRecord:
    """One resize error. Data plane: ``{code, message, values[{name, value}]}``; management: ``details``."""

    code: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class InjectedFailure:
    """A failure a scenario arranged for a pool's next growing resize(s)."""

    error: ResizeErrorRecord
    remaining: int | None = 1  # None: every resize until cleared


@dataclass
class ResizeOp:
    """One resize of a pool (explicit resize, PATCH of fixedScale, initial sizing, autoscale)."""

    number: int
    start: datetime
    target: dict[str, int]
    timeout: timedelta
    deallocation: str | None
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    next_minute: int = 1
    preflight_done: bool = False
    stopping: bool = False
    finished: bool = False

    @property
    def deadline(self) -> datetime:
        return self.start + self.timeout


class ResizeMixin(BatchCore):
    """Resizes minute by minute on the virtual clock, stopResize, and the (literal) autoscale formula."""

    # ------------------------------------------------------------------------------------------
    # resizes
    # ------------------------------------------------------------------------------------------
    def resize_pool(self, account_name: str, pool_id: str, target_dedicated: int = 0, target_low_priority: int = 0, *,
                    resize_timeout: timedelta | None = None, node_deallocation_option: str | None = None,
                    if_match: str | None = None, plane: str = "batch") -> Pool:
        """Start a resize (data-plane semantics: 409 unless steady, 409 with autoscale, 412 on a stale If-Match)."""
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            self._check_target("targetDedicatedNodes", target_dedicated, plane)
            self._check_target("targetLowPriorityNodes", target_low_priority, plane)
            timeout = resize_timeout if resize_timeout is not None else self.limits.default_resize_timeout
            self._check_timeout(timeout, plane)
            if node_deallocation_option is not None and node_deallocation_option not in DEALLOCATION_OPTIONS:
                raise InvalidPropertyValue(f"nodeDeallocationOption '{node_deallocation_option}' is invalid.",
                                           plane=plane)
            self._require_resizable(pool, plane)
            self._start_resize(pool, now, target_dedicated, target_low_priority, timeout, node_deallocation_option)
            self._touch(pool, now)
            return pool

    def _require_resizable(self, pool: Pool, plane: str) -> None:
        if pool.state == "deleting":
            raise PoolBeingDeleted(plane=plane)
        if pool.auto_scale:
            raise OperationInvalidForCurrentState("The specified operation is not valid for the current state of the "
                                                  "resource: the pool has automatic scaling enabled.",
                                                  {"Reason": "AutoScaleEnabled"}, plane=plane)
        if pool.allocation_state != "steady":
            raise PoolBeingResized("The specified pool is being resized.",
                                   {"Reason": f"The pool allocation state is {pool.allocation_state}; "
                                              "resize only when it is steady."},
                                   plane=plane)

    def _touch(self, pool: Pool, now: datetime) -> None:
        pool.last_modified = now
        pool.etag = self._new_etag(now)

    def _start_resize(self, pool: Pool, now: datetime, dedicated: int, low: int, timeout: timedelta,
                      deallocation: str | None) -> ResizeOp:
        pool.resize_count += 1
        op = ResizeOp(number=pool.resize_count, start=now, target={DEDICATED: dedicated, LOW_PRIORITY: low},
                      timeout=timeout,
                      deallocation=deallocation)
        pool.op = op
        pool.target = {DEDICATED: dedicated, LOW_PRIORITY: low}
        pool.resize_timeout = timeout
        pool.node_deallocation_option = deallocation
        pool.resize_errors = []
        pool.allocation_state, pool.allocation_state_time = "resizing", now
        first = now + (MINUTE if self._grows(pool, op) else self.timings.shrink)
        self._schedule(pool, op, min(first, op.deadline))
        return op

    @staticmethod
    def _grows(pool: Pool, op: ResizeOp) -> bool:
        return any(op.target[k] > pool.current[k] for k in KINDS)

    def _schedule(self, pool: Pool, op: ResizeOp, when: datetime) -> None:
        self.emulator.scheduler.at(when, lambda: self._on_resize_event(pool, op, when))

    def _on_resize_event(self, pool: Pool, op: ResizeOp, when: datetime) -> None:
        if pool.removed or pool.op is not op or op.finished or op.stopping:
            return
        image_state = None
        if not op.preflight_done and self._grows(pool, op) and when == op.start + op.next_minute * MINUTE:
            image_state = self._image_state(pool)  # another backend: called outside our lock
        with self._lock:
            if pool.removed or pool.op is not op or op.finished or op.stopping:
                return
            self._step(pool, op, when, image_state)

    def _cap_keys(self, pool: Pool) -> frozenset[tuple[str, str]]:
        """The resources whose pools share the custom-image node cap with ``pool``: its managed image and that image's
        snapshots ("Compute nodes in pool created with a managed image resource", Batch quotas and limits page; the 2020
        custom-image article: shared by pools on the same image or images of the same snapshot). None for other
        images."""
        image_id = pool.image_id
        if image_id is None or not _MANAGED_IMAGE.match(image_id):
            return frozenset()
        keys = {("image", key(image_id))}
        image = self.emulator.compute.images.get(key(image_id))  # a plain dict read: no compute lock taken under ours
        if image is not None:
            keys.update(("snapshot", key(source)) for store, source in image.source_ids() if store == "snapshots")
        return frozenset(keys)

    def _image_state(self, pool: Pool) -> tuple[bool, str | None]:
        image_id = pool.image_id
        if image_id is None:
            sku = str(pool.spec.image_reference.get("sku", "")).lower()
            return True, "V2" if "gen2" in sku else None
        compute = self.emulator.compute
        available = compute.image_available(image_id, pool.region)
        generation = compute.image_hyperv_generation(image_id) if available else None
        return bool(available), generation

    def _step(self, pool: Pool, op: ResizeOp, when: datetime, image_state: tuple[bool, str | None] | None) -> None:
        finish_tasks = op.deallocation == "taskcompletion"
        for kind in KINDS:  # shrinks happen at once, except for nodes whose tasks taskcompletion lets finish
            if pool.current[kind] > op.target[kind]:
                busy = sum(1 for n in pool.nodes.values() if n.kind == kind and n.busy(when)) if finish_tasks else 0
                self._set_nodes(pool, kind, max(op.target[kind], min(pool.current[kind], busy)), when=when)
        if finish_tasks and any(pool.current[k] > op.target[k] for k in KINDS):
            # Learn "Pool - Resize" nodeDeallocationOption taskcompletion: "Allow currently running Tasks to complete.
            # Schedule no new Tasks while waiting. Remove Compute Nodes when all Tasks have completed." The pool stays
            # resizing meanwhile.
            ends = [n.busy_until for n in pool.nodes.values() if n.busy_until is not None and n.busy(when)]
            self._schedule(pool, op, min(ends))
            return
        if when == op.start + op.next_minute * MINUTE:
            minute = op.next_minute
            op.next_minute += 1
            if self._grows(pool, op):
                if not op.preflight_done:
                    op.preflight_done = True
                    error = self._preflight(pool, image_state)
                    if error is not None:
                        self._finish(pool, op, when, [error])
                        return
                for kind in KINDS:
                    error = self._grow(pool, op, kind, minute)
                    if error is not None:
                        self._finish(pool, op, when, [error])
                        return
        if not self._grows(pool, op):
            self._finish(pool, op, when, [])
            return
        if when >= op.deadline:
            self._finish(pool, op, when, [ResizeErrorRecord("AllocationTimedout", timed_out_message(k))
                                          for k in KINDS if op.target[k] > pool.current[k]])
            return
        self._schedule(pool, op, min(op.start + op.next_minute * MINUTE, op.deadline))

    def _preflight(self, pool: Pool, image_state: tuple[bool, str | None] | None) -> ResizeErrorRecord | None:
        for failure in list(pool.failures):
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    pool.failures.remove(failure)
            return failure.error
        available, generation = image_state if image_state is not None else (True, None)
        if not available:
            return ResizeErrorRecord("AllocationFailed", MESSAGE_IMAGE_GONE)
        size = self.vm_size(pool.spec.vm_size)
        if generation is not None and generation.upper() == "V2" and size is not None and not size.hyperv_gen2:
            return self._failure_record("gen2_mismatch", pool)
        return None

    def _failure_record(self, kind: str, pool: Pool, *, code: str | None = None, message: str | None = None,
                        values: Mapping[str, str] | None = None) -> ResizeErrorRecord:
        grows_low = (pool.target[LOW_PRIORITY] > pool.current[LOW_PRIORITY]
                     and pool.target[DEDICATED] <= pool.current[DEDICATED])
        node_kind = LOW_PRIORITY if grows_low else DEDICATED
        if kind == "subnet_delegation":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind),
                                     [("Reason", REASON_SUBNET_DELEGATED)])
        if kind == "internal_error":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind),
                                     [("Reason", REASON_INTERNAL_ERROR)])
        if kind == "insufficient_capacity":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind),
                                     [("Reason", REASON_INSUFFICIENT_CAPACITY)])
        if kind == "image_gone":
            return ResizeErrorRecord("AllocationFailed", MESSAGE_IMAGE_GONE)
        if kind == "gen2_mismatch":
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(node_kind),
                                     [("Provider Error Json", gen2_provider_error(pool.spec.vm_size)),
                                      ("Provider Error Json Truncated", "False")])
        if kind == "quota":
            return self._quota_error(pool, DEDICATED, "AccountCoreQuotaReached")
        if kind == "low_priority_quota":
            return self._quota_error(pool, LOW_PRIORITY, "AccountLowPriorityCoreQuotaReached")
        if kind == "vm_series_quota":
            return self._quota_error(pool, DEDICATED, "AccountVMSeriesCoreQuotaReached")
        if kind == "custom":
            if not code:
                raise ValueError("a custom failure needs a code")
            return ResizeErrorRecord(code, message or allocation_failed_message(node_kind),
                                     list((values or {}).items()))
        raise ValueError(f"unknown failure kind {kind!r}")

    @staticmethod
    def _quota_error(pool: Pool, kind: str, code: str) -> ResizeErrorRecord:
        account = pool.account
        if code == "AccountVMSeriesCoreQuotaReached":
            size = pool.spec.vm_size
            return ResizeErrorRecord(code, "Desired number of dedicated nodes could not be allocated as the account "
                                     "has reached its "
                                     f"dedicated core quota for the VM family of size '{size}'")
        quota = account.dedicated_core_quota if kind == DEDICATED else account.low_priority_core_quota
        return ResizeErrorRecord(code, f"Desired number of {node_kind_label(kind)} nodes could not be allocated as the "
                                 "account has reached "
                                 f"its {node_kind_label(kind)} core quota of {quota} cores")

    def _grow(self, pool: Pool, op: ResizeOp, kind: str, minute: int) -> ResizeErrorRecord | None:
        short = op.target[kind] - pool.current[kind]
        if short <= 0:
            return None
        config = self.capacity.config(pool.region, pool.spec.vm_size)
        cap_left = config.max_nodes_per_resize - op.added[kind]
        if cap_left <= 0:
            return None  # this resize has added all it can: it waits for resizeTimeout
        rng = draw(self.emulator.seed, pool.key, op.number, minute, kind)
        if rng.random() < config.failure_rate(kind):
            reason = (REASON_INTERNAL_ERROR if rng.random() < config.internal_error_share
                      else REASON_INSUFFICIENT_CAPACITY)
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(kind), [("Reason", reason)])
        rate = (max(1, round(config.per_minute(kind) * (1 - config.rate_jitter * rng.random())))
                if config.per_minute(kind) > 0 else 0)
        free = self.capacity.free(pool.region, pool.spec.vm_size, kind)
        if free <= 0:
            return ResizeErrorRecord("AllocationFailed", allocation_failed_message(kind),
                                     [("Reason", REASON_INSUFFICIENT_CAPACITY)])
        limits = [short, cap_left, rate, free]
        account = pool.account
        size = self.vm_size(pool.spec.vm_size)
        cores = size.cores if size is not None else 1
        if account.batch_service_mode:
            quota = account.dedicated_core_quota if kind == DEDICATED else account.low_priority_core_quota
            room = (quota - account.used_cores[kind]) // cores
            if room <= 0:
                return self._quota_error(pool, kind,
                                         "AccountCoreQuotaReached" if kind == DEDICATED
                                         else "AccountLowPriorityCoreQuotaReached")
            limits.append(room)
            if kind == DEDICATED and account.per_family_enforced and size is not None:
                family_room = (account.per_family_quota.get(size.family, 0)
                               - account.used_family_cores.get(size.family, 0)) // cores
                if family_room <= 0:
                    return self._quota_error(pool, kind, "AccountVMSeriesCoreQuotaReached")
                limits.append(family_room)
        if pool.cap_keys:  # managed-image pools only: gallery pools have no shared cap (Batch gallery doc)
            cap = (self.limits.custom_image_dedicated_nodes if kind == DEDICATED
                   else self.limits.custom_image_low_priority_nodes)
            limits.append(cap - max(self.image_usage.get((k, kind), 0) for k in pool.cap_keys))
        node_limit = pool.node_limit()
        if node_limit is not None:
            limits.append(node_limit - pool.current[DEDICATED] - pool.current[LOW_PRIORITY])
        grant = min(limits)
        if grant > 0:
            self._set_nodes(pool, kind, pool.current[kind] + grant, when=op.start + minute * MINUTE)
            op.added[kind] += grant
        return None

    def _set_nodes(self, pool: Pool, kind: str, count: int, *, when: datetime | None = None) -> None:
        delta = count - pool.current[kind]
        if delta == 0:
            return
        self._place_nodes(pool, kind, delta, when or self._now())
        account = pool.account
        size = self.vm_size(pool.spec.vm_size)
        cores = size.cores if size is not None else 1
        account.used_cores[kind] += delta * cores
        if kind == DEDICATED and size is not None:
            account.used_family_cores[size.family] = account.used_family_cores.get(size.family, 0) + delta * cores
        self.capacity.add_usage(pool.region, pool.spec.vm_size, kind, delta)
        for cap_key in pool.cap_keys:
            self.image_usage[(cap_key, kind)] = self.image_usage.get((cap_key, kind), 0) + delta
        pool.current[kind] = count

    def _finish(self, pool: Pool, op: ResizeOp, when: datetime, errors: list[ResizeErrorRecord]) -> None:
        op.finished = True
        pool.resize_errors = errors
        pool.allocation_state, pool.allocation_state_time = "steady", when

    def stop_resize(self, account_name: str, pool_id: str, *, if_match: str | None = None,
                    plane: str = "batch") -> Pool:
        """Stop a resize: ``stopping`` now, ``steady`` after ``timings.stop`` with the nodes it had (and
        ``ResizeStopped``)."""
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            if pool.state == "deleting":
                raise PoolBeingDeleted(plane=plane)
            op = pool.op
            if pool.allocation_state == "resizing" and op is not None and not op.finished:
                op.stopping = True
                pool.allocation_state, pool.allocation_state_time = "stopping", now
                when = now + self.timings.stop
                self.emulator.scheduler.at(when, lambda: self._on_stop_done(pool, op, when))
                self._touch(pool, now)
            return pool

    def _on_stop_done(self, pool: Pool, op: ResizeOp, when: datetime) -> None:
        with self._lock:
            if pool.removed or pool.op is not op or op.finished:
                return
            self._finish(pool, op, when, [ResizeErrorRecord("ResizeStopped", stopped_message(k)) for k in KINDS
                                          if op.target[k] > pool.current[k]])

    # ------------------------------------------------------------------------------------------
    # autoscale (the formula is not a language here: literal $TargetDedicatedNodes/$TargetLowPriorityNodes
    # assignments are applied when autoscale is enabled; anything else keeps the pool's size)
    # ------------------------------------------------------------------------------------------
    def _evaluate_formula(self, pool: Pool, now: datetime) -> None:
        formula = pool.spec.auto_scale_formula or ""
        dedicated_match, low_match = _FORMULA_DEDICATED.search(formula), _FORMULA_LOW.search(formula)
        dedicated = int(dedicated_match.group(1)) if dedicated_match else pool.target[DEDICATED]
        low = int(low_match.group(1)) if low_match else pool.target[LOW_PRIORITY]
        pool.auto_scale_run = {"timestamp": now,
                               "results": f"$TargetDedicatedNodes={dedicated};$TargetLowPriorityNodes={low};"
                                                            "$NodeDeallocationOption=requeue"}
        if ((dedicated, low) != (pool.current[DEDICATED], pool.current[LOW_PRIORITY])
            and pool.allocation_state == "steady"):
            self._start_resize(pool, now, dedicated, low, self.limits.default_resize_timeout, None)

    def enable_auto_scale(self, pool: Pool, formula: str, interval: timedelta | None, plane: str,
                          now: datetime) -> None:
        if not formula or not formula.strip():
            raise InvalidAutoScalingSettings("The specified auto-scaling settings are not valid: the formula is "
                                             "empty.", plane=plane)
        if pool.allocation_state != "steady":
            raise PoolBeingResized(plane=plane)
        pool.spec.auto_scale_formula = formula
        pool.spec.auto_scale_evaluation_interval = interval or timedelta(minutes=15)
        pool.auto_scale = True
        self._evaluate_formula(pool, now)

    def disable_auto_scale(self, account_name: str, pool_id: str, plane: str = "arm") -> Pool:
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            if pool.auto_scale:
                pool.auto_scale = False
                pool.spec.auto_scale_formula = None
                pool.spec.auto_scale_evaluation_interval = None
                pool.auto_scale_run = None
                self._touch(pool, now)
            return pool
