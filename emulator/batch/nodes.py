"""Compute nodes of an emulated pool: their states on the virtual clock, node counts, node list, remove nodes.

A node's state is computed from its allocation time and its fate (drawn once, when it is allocated), so no
scheduler event is needed per node:

* ``starting`` for ``NODE_BOOT`` after allocation (azure-batch 15.1.0 ``BatchNodeState.STARTING``: "The Compute
  Node is starting");
* then, when the pool has a start task with ``waitForSuccess``, ``waitingForStartTask`` for ``START_TASK_RUN``
  (``BatchNodeState.WAITING_FOR_START_TASK``: "The StartTask has started running on the Compute Node, but
  waitForSuccess is set and the StartTask has not yet completed"), then ``startTaskFailed`` or ``idle``
  (``START_TASK_FAILED``: "The StartTask has failed on the Compute Node (and exhausted all retries), and
  waitForSuccess is set. The Compute Node is not usable for running Tasks");
* or ``unusable`` (``UNUSABLE``: "The Compute Node cannot be used for Task execution due to errors"), with
  ``errors[]`` (``BatchNode.errors``: "The list of errors that are currently being encountered by the Compute Node");
* ``leavingPool`` while removed or while the pool is deleted (``LEAVING_POOL``).

Fates come from ``setImageHealth`` (per image id): ``startTaskFailedShare`` applies only to pools with a start
task that waits for success (without ``waitForSuccess`` a failed start task leaves the node ``idle`` with
``startTaskInfo.result = failure``, per ``BatchStartTask.wait_for_success``'s docstring), ``unusableShare`` to
every pool. The emulator has no task API; the scenario knob ``runTasks`` gives idle nodes one running task each
for a while (``busy_until``): such a node is ``running`` with ``runningTasksCount`` 1 (``BatchNodeState.RUNNING``:
"The Compute Node is running one or more Tasks"), and a shrink with ``taskcompletion`` removes it only once its task
ended.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.batch.capacity import DEDICATED, KINDS
from emulator.batch.formats import iso

if TYPE_CHECKING:
    from emulator.batch.models import Pool

# Virtual time a node spends booting, and running a waited-for start task. Batch publishes no figure; a few
# minutes is what custom-image nodes take (less convenient than instant: the app must cope with `starting`).
NODE_BOOT = timedelta(minutes=2)
START_TASK_RUN = timedelta(minutes=1)

# Every state of azure-batch 15.1.0 BatchNodeCounts, in its order (the /nodecounts row).
COUNT_STATES = ("creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting",
                "startTaskFailed",
                "leavingPool", "unknown", "unusable", "waitingForStartTask", "deallocated", "deallocating",
                "upgradingOS")

# ASSUMED: Batch does not publish the codes it puts in BatchNode.errors for a node that an image leaves unusable
# (BatchNodeError has only code/message/errorDetails). The emulator uses one plausible code; the app must show any code.
UNUSABLE_CODE = "NodeAgentNotReady"
UNUSABLE_MESSAGE = ("The Batch node agent did not report ready on the compute node; the node cannot run tasks. "
                    "Check that the image is generalized, has no VM extensions and keeps the default temporary disk.")
# The start task failure is reported in startTaskInfo.failureInfo (BatchTaskFailureInfo: category, code, message);
# "FailureExitCode" with category "usererror" is Batch's documented shape for a non-zero exit code.
START_TASK_FAILURE = {"category": "usererror", "code": "FailureExitCode",
                      "message": "The task process exited with an unexpected exit code",
                      "details": [{"name": "Message", "value": "The task process exited with an unexpected exit code"}]}


@dataclass(frozen=True)
class ImageHealth:
    """What share of nodes booted from an image fail, and how (scenario action ``setImageHealth``)."""

    start_task_failed_share: float = 0.0
    unusable_share: float = 0.0


@dataclass(eq=False)
class Node:
    id: str
    kind: str  # DEDICATED | LOW_PRIORITY
    allocated: datetime
    fate: str = "ok"  # ok | unusable | startTaskFailed | stuck
    leaving_since: datetime | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    busy_until: datetime | None = None  # a task runs on the node until then (scenario knob runTasks)

    def busy(self, now: datetime) -> bool:
        return self.busy_until is not None and now < self.busy_until

    def state(self, pool: Pool, now: datetime) -> str:
        if self.leaving_since is not None or pool.state == "deleting":
            return "leavingPool"
        booted = self.allocated + NODE_BOOT
        # ASSUMED: Batch publishes no time limit on BatchNodeState.STARTING ("The Batch service is starting on the
        # underlying virtual machine"), so a node whose boot hangs (fate "stuck", set by a test's world) stays starting.
        if now < booted or self.fate == "stuck":
            return "starting"
        if self.fate == "unusable":
            return "unusable"
        if waits_for_start_task(pool):
            if now < booted + START_TASK_RUN:
                return "waitingForStartTask"
            if self.fate == "startTaskFailed":
                return "startTaskFailed"
        return "running" if self.busy(now) else "idle"

    def state_time(self, pool: Pool, now: datetime) -> datetime:
        state = self.state(pool, now)
        if state == "leavingPool":
            return self.leaving_since or pool.state_time or now
        if state == "starting":
            return self.allocated
        if state in ("unusable", "waitingForStartTask") or not waits_for_start_task(pool):
            return self.allocated + NODE_BOOT
        return self.allocated + NODE_BOOT + START_TASK_RUN


def waits_for_start_task(pool: Pool) -> bool:
    start = pool.spec.start_task or {}
    return bool(start.get("commandLine")) and bool(start.get("waitForSuccess", True))


def draw_fate(health: ImageHealth | None, pool: Pool, seed: int, node_id: str) -> str:
    """Same seed, pool and node id: same fate."""
    if health is None:
        return "ok"
    rng = random.Random(f"node:{seed}:{pool.key}:{node_id}")
    roll = rng.random()
    if roll < health.unusable_share:
        return "unusable"
    if waits_for_start_task(pool) and roll < health.unusable_share + health.start_task_failed_share:
        return "startTaskFailed"
    return "ok"


def counts(pool: Pool, now: datetime) -> dict[str, dict[str, int]]:
    """The pool's /nodecounts rows: per kind, nodes by state and ``total``."""
    rows = {k: dict.fromkeys(COUNT_STATES, 0) for k in KINDS}
    for node in pool.nodes.values():
        rows[node.kind][node.state(pool, now)] += 1
    for kind in KINDS:
        rows[kind]["total"] = sum(rows[kind][s] for s in COUNT_STATES)
    return rows


def node_json(pool: Pool, node: Node, now: datetime, base_url: str) -> dict[str, Any]:
    """A BatchNode as the data plane publishes it (azure-batch 15.1.0 ``BatchNode`` wire names)."""
    state = node.state(pool, now)
    body: dict[str, Any] = {
        "id": node.id,
        "url": f"{base_url}/batch/{pool.account.name}/pools/{pool.id}/nodes/{node.id}",
        "state": state,
        "schedulingState": "enabled",
        "stateTransitionTime": iso(node.state_time(pool, now)),
        "allocationTime": iso(node.allocated),
        "vmSize": pool.spec.vm_size.lower(),
        "totalTasksRun": 1 if node.busy_until is not None else 0,
        "runningTasksCount": 1 if state == "running" else 0,  # BatchNode.running_tasks_count: one task per node here
        "runningTaskSlotsCount": 1 if state == "running" else 0,
        "totalTasksSucceeded": 0,
        "isDedicated": node.kind == DEDICATED,
    }
    if now >= node.allocated + NODE_BOOT and state != "starting":
        body["lastBootTime"] = iso(node.allocated + NODE_BOOT)
    start = pool.spec.start_task
    if (start and start.get("commandLine") and now >= node.allocated + NODE_BOOT
        and node.fate not in ("unusable", "stuck")):
        body["startTask"] = dict(start)
        started = node.allocated + NODE_BOOT
        if now < started + START_TASK_RUN:
            body["startTaskInfo"] = {"state": "running", "startTime": iso(started), "retryCount": 0}
        else:
            failed = node.fate == "startTaskFailed"
            info: dict[str, Any] = {"state": "completed", "startTime": iso(started),
                                    "endTime": iso(started + START_TASK_RUN),
                                    "exitCode": 1 if failed else 0, "retryCount": 0,
                                    "result": "failure" if failed else "success"}
            if failed:
                info["failureInfo"] = dict(START_TASK_FAILURE)
            body["startTaskInfo"] = info
    if state == "unusable":
        body["errors"] = [{"code": UNUSABLE_CODE, "message": UNUSABLE_MESSAGE,
                           "errorDetails": [{"name": "ImageId", "value": pool.image_id or ""}]}]
    return body
