"""A pool's episode record - how its drive to the desired target has gone so far (attempts, backoff, alerts, the
request awaiting an answer) - and its flat form in the Episodes table. The decisions on it are in
shared/watch/episodes.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.watch.backoff import BackoffState
from shared.watch.pool_policy import parse_datetime
from shared.watch.resize_errors import AlertType

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Episode:
    """A pool's episode record. Times are aware UTC datetimes. Stored flat with :meth:`to_dict` / :meth:`from_dict`."""

    account_id: str
    pool_id: str
    started: datetime
    attempts: int = 0  # failed resizes in this episode
    requests: int = 0  # resize requests issued in this episode
    failing_since: datetime | None = None  # first failure of this episode: the time bound runs from here
    backoff: BackoffState = field(default_factory=BackoffState)
    last_request_time: datetime | None = None
    requested_dedicated: int | None = None
    requested_spot: int | None = None
    # what the pool had when the last request went out: a failed resize that got past it made progress
    requested_from_dedicated: int | None = None
    requested_from_spot: int | None = None
    awaiting_outcome: bool = False  # our last request has not been answered (or given up on) yet
    last_seen_transition: datetime | None = None  # the pool's transition time when an outcome was last handled
    desired_dedicated: int | None = None
    desired_spot: int | None = None
    image_id: str | None = None
    last_error_code: str | None = None
    last_error_cause: str | None = None
    last_diagnosis: str | None = None
    last_fix: str | None = None
    alerted: frozenset[AlertType] = frozenset()  # alert types raised in this episode
    # latest of each type for this pool, across episodes
    alert_times: Mapping[AlertType, datetime] = field(default_factory=dict)
    gave_up: bool = False
    stopped_reason: str | None = None
    stopped_at: datetime | None = None
    # set: the episode is over; the record stays only for the alert cooldown and backoff
    recovered_at: datetime | None = None
    # when the app itself stopped a resize (its ResizeStopped is not a failure)
    stop_resize_time: datetime | None = None
    # Stopped for a core quota: the nodes the app's own quota count allowed then. Only a count that allows more (a
    # raised quota, other pools shrinking) resumes the pool by itself, so a quota Batch enforces and the app cannot see
    # stays stopped.
    quota_dedicated_at_stop: int | None = None
    quota_spot_at_stop: int | None = None
    # Failures retried at the next tick without backoff since the last success or backed-off failure (transient
    # internal errors, at most MAX_NEXT_TICK_RETRIES in a row).
    next_tick_retries: int = 0

    @property
    def is_closed(self) -> bool:
        return self.recovered_at is not None

    @property
    def is_halted(self) -> bool:
        """Gave up or stopped: no resizes until something changes."""
        return self.gave_up or self.stopped_reason is not None

    @property
    def last_alert_type(self) -> AlertType | None:
        return max(self.alert_times, key=lambda t: self.alert_times[t]) if self.alert_times else None

    @property
    def last_alert_time(self) -> datetime | None:
        return max(self.alert_times.values()) if self.alert_times else None

    # -- storage -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, str | int | float | bool]:
        """A flat dict of str/int/bool values (datetimes as ISO 8601 UTC strings; None values left out) for Table
        storage."""
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "account_id": self.account_id,
            "pool_id": self.pool_id,
            "started": self.started,
            "attempts": self.attempts,
            "requests": self.requests,
            "failing_since": self.failing_since,
            "backoff_failures": self.backoff.failures,
            "backoff_last_failure": self.backoff.last_failure,
            "backoff_until": self.backoff.backoff_until,
            "last_request_time": self.last_request_time,
            "requested_dedicated": self.requested_dedicated,
            "requested_spot": self.requested_spot,
            "requested_from_dedicated": self.requested_from_dedicated,
            "requested_from_spot": self.requested_from_spot,
            "awaiting_outcome": self.awaiting_outcome,
            "last_seen_transition": self.last_seen_transition,
            "desired_dedicated": self.desired_dedicated,
            "desired_spot": self.desired_spot,
            "image_id": self.image_id,
            "last_error_code": self.last_error_code,
            "last_error_cause": self.last_error_cause,
            "last_diagnosis": self.last_diagnosis,
            "last_fix": self.last_fix,
            "alerted": ",".join(sorted(self.alerted)),
            "gave_up": self.gave_up,
            "stopped_reason": self.stopped_reason,
            "stopped_at": self.stopped_at,
            "recovered_at": self.recovered_at,
            "stop_resize_time": self.stop_resize_time,
            "quota_dedicated_at_stop": self.quota_dedicated_at_stop,
            "quota_spot_at_stop": self.quota_spot_at_stop,
            "next_tick_retries": self.next_tick_retries,
            # For people reading the table; derived from alert_time_* on load.
            "last_alert_type": str(self.last_alert_type) if self.last_alert_type else None,
            "last_alert_time": self.last_alert_time,
        }
        for alert_type, when in self.alert_times.items():
            out[f"alert_time_{alert_type}"] = when
        return {k: _flat(v) for k, v in out.items() if v is not None and v != ""}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Episode:
        """Read a record written by :meth:`to_dict` (extra keys such as PartitionKey/RowKey/Timestamp are ignored)."""
        schema = int(data.get("schema", SCHEMA_VERSION))
        if schema > SCHEMA_VERSION:
            raise ValueError(f"episode record for pool {data.get('pool_id')!r} has schema {schema}, newer than this "
                             f"app's {SCHEMA_VERSION}: "
                             "deploy the newer app version everywhere or delete the record")
        started = parse_datetime(data.get("started"))
        if started is None:
            raise ValueError(f"episode record for pool {data.get('pool_id')!r} has no valid 'started' time: delete the "
                             "record to start afresh")
        alert_times: dict[AlertType, datetime] = {}
        for alert_type in AlertType:
            when = parse_datetime(data.get(f"alert_time_{alert_type}"))
            if when is not None:
                alert_times[alert_type] = when
        known = {t.value for t in AlertType}
        alerted = frozenset(AlertType(a) for a in str(data.get("alerted") or "").split(",") if a in known)
        return cls(
            account_id=str(data.get("account_id") or ""),
            pool_id=str(data.get("pool_id") or ""),
            started=started,
            attempts=int(data.get("attempts") or 0),
            requests=int(data.get("requests") or 0),
            failing_since=parse_datetime(data.get("failing_since")),
            backoff=BackoffState(
                failures=int(data.get("backoff_failures") or 0),
                last_failure=parse_datetime(data.get("backoff_last_failure")),
                backoff_until=parse_datetime(data.get("backoff_until")),
            ),
            last_request_time=parse_datetime(data.get("last_request_time")),
            requested_dedicated=_opt_int(data.get("requested_dedicated")),
            requested_spot=_opt_int(data.get("requested_spot")),
            requested_from_dedicated=_opt_int(data.get("requested_from_dedicated")),
            requested_from_spot=_opt_int(data.get("requested_from_spot")),
            awaiting_outcome=_bool(data.get("awaiting_outcome")),
            last_seen_transition=parse_datetime(data.get("last_seen_transition")),
            desired_dedicated=_opt_int(data.get("desired_dedicated")),
            desired_spot=_opt_int(data.get("desired_spot")),
            image_id=_opt_str(data.get("image_id")),
            last_error_code=_opt_str(data.get("last_error_code")),
            last_error_cause=_opt_str(data.get("last_error_cause")),
            last_diagnosis=_opt_str(data.get("last_diagnosis")),
            last_fix=_opt_str(data.get("last_fix")),
            alerted=alerted,
            alert_times=alert_times,
            gave_up=_bool(data.get("gave_up")),
            stopped_reason=_opt_str(data.get("stopped_reason")),
            stopped_at=parse_datetime(data.get("stopped_at")),
            recovered_at=parse_datetime(data.get("recovered_at")),
            stop_resize_time=parse_datetime(data.get("stop_resize_time")),
            quota_dedicated_at_stop=_opt_int(data.get("quota_dedicated_at_stop")),
            quota_spot_at_stop=_opt_int(data.get("quota_spot_at_stop")),
            next_tick_retries=_opt_int(data.get("next_tick_retries")) or 0,
        )


def _flat(value: Any) -> str | int | float | bool:
    """Plain types only: Table storage clients map by exact type, so enums become their str value and datetimes ISO
    strings."""
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, bool | int | float) and not isinstance(value, str):
        return value
    return str(value)


def iso_time(t: datetime | None) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t is not None else ""


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)
