"""Azure Batch: the nodes of a pool as the backend handles them (placement, removeNodes, image health, counts).

The node records and their fates live in ``emulator/batch/nodes.py``.
"""


from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from emulator.batch.base import BatchCore
from emulator.batch.capacity import DEDICATED, KINDS, LOW_PRIORITY
from emulator.batch.exceptions import AutoScalingEnabled, InvalidPropertyValue, NodeNotFound, PoolBeingDeleted
from emulator.batch.nodes import ImageHealth, Node, draw_fate
from emulator.batch.nodes import counts as node_state_counts
from emulator.ids import key

if TYPE_CHECKING:
    from emulator.batch.pools import Pool


class PoolNodesMixin(BatchCore):
    """Which nodes a resize adds or removes, removeNodes, scenario image health and node counts."""

    def _place_nodes(self, pool: Pool, kind: str, delta: int, when: datetime) -> None:
        """Allocate (delta > 0) or release (delta < 0) node objects. Released first: nodes a removeNodes call named
        (BatchNodeRemoveOptions.node_ids), then the newest. Which nodes Batch picks on a plain shrink is not
        published; newest-first keeps the oldest (and so the first-booted) nodes, which is the less convenient
        case for a health check that hopes a shrink sweeps away its broken nodes."""
        if delta > 0:
            health = self.image_health.get(key(pool.image_id)) if pool.image_id else None
            for _ in range(delta):
                pool.node_seq += 1
                suffix = "d" if kind == DEDICATED else "p"
                node_id = f"tvmps_{uuid.uuid5(uuid.NAMESPACE_URL, f'{pool.key}|{pool.node_seq}').hex}_{suffix}"
                pool.nodes[node_id] = Node(node_id, kind, when, draw_fate(health, pool, self.emulator.seed, node_id))
            return
        mine = [n for n in pool.nodes.values() if n.kind == kind]
        order = [n for n in mine if n.leaving_since is not None]
        order += [n for n in reversed(mine) if n.leaving_since is None and not n.busy(when)]
        order += [n for n in mine if n.leaving_since is None and n.busy(when)]  # nodes running tasks go last
        for node in order[:-delta]:
            del pool.nodes[node.id]

    def run_tasks(self, account_name: str, pool_id: str, nodes: int, duration: timedelta) -> int:
        """Scenario knob (the emulator has no task API): up to ``nodes`` idle nodes each run one task for ``duration``.
        Returns how many nodes got a task."""
        with self._lock:
            pool = self._pool(self._account_by_name(account_name, "batch"), pool_id, "batch")
            now = self._now()
            idle = [n for n in pool.nodes.values() if n.state(pool, now) == "idle"][:max(0, nodes)]
            for node in idle:
                node.busy_until = now + duration
            return len(idle)

    def set_image_health(self, image_id: str, *, start_task_failed_share: float = 0.0,
                         unusable_share: float = 0.0) -> None:
        """Nodes allocated from now on from ``image_id`` (a gallery image version or managed image id) fail this way."""
        for share in (start_task_failed_share, unusable_share):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"a share must be between 0 and 1, got {share}")
        with self._lock:
            self.image_health[key(image_id)] = ImageHealth(start_task_failed_share, unusable_share)

    def remove_nodes(self, account_name: str, pool_id: str, node_ids: list[str], *,
                     resize_timeout: timedelta | None = None,
                     node_deallocation_option: str | None = None, if_match: str | None = None,
                     plane: str = "batch") -> Pool:
        """POST /pools/{poolId}/removenodes (REST reference "Pool - Remove Nodes"; azure-batch 15.1.0
        BatchNodeRemoveOptions).

        "This operation can only run when the allocation state of the Pool is steady. When this operation runs, the
        allocation state changes from steady to resizing. Each request may remove up to 100 nodes." The pool's target
        drops by the nodes removed (azure-contracts.md 9.7), so Batch does not replace them on its own.
        """
        now = self._now()
        self._sync()
        with self._lock:
            pool = self.find_pool(account_name, pool_id, plane)
            self.check_conditions(pool, plane, if_match=if_match)
            if not node_ids or len(node_ids) > 100:
                # BatchNodeRemoveOptions.node_ids: "A list containing the IDs of the Compute Nodes to be removed ... max
                # 100".
                raise InvalidPropertyValue("The value provided for one of the properties in the request body is "
                                           "invalid.",
                                           {"PropertyName": "nodeList",
                                            "Reason": "nodeList must hold between 1 and 100 node ids."},
                                           plane=plane)
            if pool.state == "deleting":
                raise PoolBeingDeleted(plane=plane)
            self._require_resizable(pool, plane)
            if pool.auto_scale:
                raise AutoScalingEnabled(plane=plane)
            unknown = [n for n in node_ids if n not in pool.nodes]
            if unknown:
                # ASSUMED code: the reference does not list it; a node id that is not in the pool is refused.
                raise NodeNotFound(None, {"NodeId": unknown[0]}, plane=plane)
            removing = {k: 0 for k in KINDS}
            for node_id in dict.fromkeys(node_ids):
                node = pool.nodes[node_id]
                if node.leaving_since is None:
                    node.leaving_since = now
                    removing[node.kind] += 1
            timeout = resize_timeout or timedelta(minutes=15)
            self._check_timeout(timeout, plane)
            self._start_resize(pool, now, max(0, pool.target[DEDICATED] - removing[DEDICATED]),
                               max(0, pool.target[LOW_PRIORITY] - removing[LOW_PRIORITY]), timeout,
                               node_deallocation_option or "requeue")
            self._touch(pool, now)
            return pool

    # ------------------------------------------------------------------------------------------
    # node counts
    # ------------------------------------------------------------------------------------------
    def node_counts(self, pool: Pool) -> dict[str, dict[str, int]]:
        """Per node kind, nodes by state on the virtual clock (emulator/batch/nodes.py; azure-batch 15.1.0
        BatchNodeCounts)."""
        return node_state_counts(pool, self._now())
