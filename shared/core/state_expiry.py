"""Finished state expires: rows of versions that reached a terminal stage are deleted after
``AUTOPILOT_STATE_RETENTION_DAYS`` (default 30), so the sweep's reads stay proportional to open work.

Expiry must not forget what was built: each built version leaves a tombstone (``Built`` table: family,
version, the gallery version id), so that a re-tag of an old, expired set is recognised as built and is
not built again. Alert de-duplication rows that were sent, and old ignore counters, expire the same way.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.core.clock import iso
from shared.core.state import ALERTS, PIPELINE, SNAPSHOT_SETS, ConcurrencyConflict

if TYPE_CHECKING:
    from shared.core.context import AppContext

log = logging.getLogger("autopilot.retention")

BUILT = "Built"  # tombstones: PK family, RK version
TERMINAL = ("done", "refused", "failed")


def built_before(context: AppContext, partition: str, row: str) -> bool:
    """Whether (family, version) was built and its rows have since expired."""
    return context.state.table(BUILT).get(partition, row) is not None


def expire_finished(context: AppContext) -> int:
    """Delete finished rows older than the retention (tombstoning built versions). Returns how many versions expired."""
    days = context.settings.state_retention_days
    cutoff = iso(context.clock.now() - timedelta(days=days))
    pipeline, sets = context.state.table(PIPELINE), context.state.table(SNAPSHOT_SETS)
    expired = 0
    for row in list(pipeline.query_filter("updatedAt lt @cutoff", {"cutoff": cutoff})):
        if row.data.get("stage") not in TERMINAL or row.data.get("outbox"):
            continue
        if row.data.get("stage") == "done":
            with contextlib.suppress(ConcurrencyConflict):  # tombstoned before
                context.state.table(BUILT).insert(row.partition, row.row, {"builtAt": row.data.get("updatedAt", ""),
                                                                          "detail": str(row.data.get("detail",
                                                                                                     ""))[:4000]})
        snapshot_set = sets.get(row.partition, row.row)
        try:
            if snapshot_set is not None:
                sets.delete(snapshot_set)
            pipeline.delete(row)
        except ConcurrencyConflict:
            continue  # changed meanwhile (a re-created snapshot reopened it): not finished after all
        expired += 1
    alerts = context.state.table(ALERTS)
    for record in list(alerts.query_filter("claimedAt lt @cutoff", {"cutoff": cutoff})):
        if record.data.get("sent"):
            try:
                alerts.delete(record)
            except ConcurrencyConflict:
                continue
    from shared.pipeline.scope import IGNORED

    ignored = context.state.table(IGNORED)
    oldest_hour = (context.clock.now() - timedelta(days=days)).strftime("%Y%m%d%H")
    for record in list(ignored.query_filter("PartitionKey lt @hour", {"hour": oldest_hour})):
        try:
            ignored.delete(record)
        except ConcurrencyConflict:
            continue
    if expired:
        log.info("expired %d finished version(s) older than %d days", expired, days)
    return expired

