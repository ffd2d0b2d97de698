"""Durable state in Azure Table storage, with optimistic concurrency.

Several function instances may run at once (scale-out, Event Grid redelivery, overlapping timer
ticks). Every read returns the entity's ETag and every update is conditional on it, so exactly one
writer wins a race and the others get :class:`ConcurrencyConflict` and re-read. Tables live in the
Function App's own storage account (``AzureWebJobsStorage``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

# The app's tables and what they hold. Names get the settings' table prefix.
EPISODES = "Episodes"  # per-pool resize episode: attempts, backoff, last request, last alert
ALERTS = "Alerts"  # alert de-duplication across instances: one row per (subject, alert type, episode)
SNAPSHOT_SETS = "SnapshotSets"  # snapshot sets being assembled into an image version
PIPELINE = "Pipeline"  # per image version: stage reached (image requested, version requested, pools created)
WATCH = "Watch"  # the pool watch's own bookkeeping: when the last full scan of every account ran

_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f%]")
# Every write carries a fresh token in this property, so that a write whose answer was lost (the connection
# dropped or timed out after Table storage committed it; a 5xx after the commit, retried by the SDK into a
# 409 or 412) is recognised as the app's own when it is read back, instead of as someone else's work.
WRITE_ID = "writeId"
_AMBIGUOUS_ATTEMPTS = 3
_TRANSACTION_MAX = 100  # operations in one entity group transaction
T = TypeVar("T")


class ConcurrencyConflict(Exception):
    """Someone else changed (or created, or deleted) the entity since we read it. Re-read and retry."""


# Table storage keys are at most 1 KiB; keys are kept well inside it, since free text (tag values, up to 256
# characters each, several in one key) can be triple its length once escaped.
MAX_KEY_CHARS = 512
_KEY_HEAD = 400


def safe_key(text: str) -> str:
    """A PartitionKey/RowKey from free text: see :func:`_safe_key`. The watch turns every account and pool id into
    keys on every tick (four per pool) and the ids repeat from tick to tick, so short texts (ids: pool ids are at most
    64 characters, account ids about 150) are cached; long free text (tags) is not, so the cache stays small."""
    return _cached_key(text) if len(text) <= 256 else _safe_key(text)


@functools.lru_cache(maxsize=1 << 14)
def _cached_key(text: str) -> str:
    return _safe_key(text)


def _safe_key(text: str) -> str:
    """A PartitionKey/RowKey from free text (resource ids contain '/', which keys forbid).

    Lower-cased, because Azure resource ids compare case-insensitively; forbidden characters are
    percent-escaped, so the mapping is reversible and collision-free for every key up to
    ``MAX_KEY_CHARS``. A longer one (untrusted input: long tags) keeps its head and ends in a SHA-256
    of the whole text, so it stays within the service's limit and distinct keys stay distinct.
    """
    import hashlib

    key = _FORBIDDEN_KEY_CHARS.sub(lambda m: f"%{ord(m.group(0)):02X}", text.lower())
    if len(key) <= MAX_KEY_CHARS:
        return key
    return f"{key[:_KEY_HEAD]}~{hashlib.sha256(text.lower().encode('utf-8')).hexdigest()}"


@dataclass(frozen=True)
class Record:
    partition: str
    row: str
    data: dict[str, Any]
    etag: str
    write_id: str | None = None  # the token of the write that produced this version (see WRITE_ID)


def _to_entity(partition: str, row: str, data: Mapping[str, Any]) -> dict[str, Any]:
    from azure.data.tables import EdmType, EntityProperty

    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row}
    for name, value in data.items():
        if (name == "PartitionKey" and value == partition) or (name == "RowKey" and value == row):
            continue  # an entity shape that already carries its keys
        if name in {"PartitionKey", "RowKey", "Timestamp", "etag", WRITE_ID}:
            raise ValueError(f"{name} is reserved in Table storage entities")
        if isinstance(value, bool) or value is None or isinstance(value, str | float):
            entity[name] = value
        elif isinstance(value, int):
            # Table storage ints are 32-bit unless typed explicitly; node counts and epoch
            # seconds need 64 bits, so every int is stored as Int64.
            entity[name] = EntityProperty(value, EdmType.INT64)
        else:
            raise TypeError(f"state field {name!r} has unsupported type {type(value).__name__}: store str, int, float, "
                            "bool or None")
    return {k: v for k, v in entity.items() if v is not None}


def _from_entity(entity: Any) -> Record:
    data: dict[str, Any] = {}
    for name, value in entity.items():
        if name in {"PartitionKey", "RowKey", WRITE_ID}:
            continue
        data[name] = value.value if hasattr(value, "edm_type") else value
    return Record(entity["PartitionKey"], entity["RowKey"], data, entity.metadata["etag"], entity.get(WRITE_ID))


class StateTable:
    """One table. It is created by the first write that needs it, so read-only callers (the CLI's
    ``plan`` and ``status``) never write to storage, and a steady app makes no create calls."""

    def __init__(self, client: TableClient, create: Callable[[], object] | None = None) -> None:
        self._client = client
        self._create = create

    def _create_entity(self, entity: dict[str, Any]) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._client.create_entity(entity)
        except ResourceNotFoundError:
            if self._create is None:
                raise
            self._create()  # TableNotFound: the first write of this table
            return self._client.create_entity(entity)

    @property
    def name(self) -> str:
        return self._client.table_name

    def get(self, partition: str, row: str) -> Record | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _from_entity(self._client.get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    def insert(self, partition: str, row: str, data: Mapping[str, Any]) -> Record:
        """Create the entity; :class:`ConcurrencyConflict` if it already exists (and is not this call's own write).

        An insert (POST) whose answer was lost is ambiguous: azure-core does not retry a POST after a dropped
        connection, and retries it into a 409 after a 5xx. Both are settled by reading the row back: this
        call's token there means the insert committed; no row means it did not, and it is sent again.
        """
        from azure.core.exceptions import ResourceExistsError, ServiceRequestError, ServiceResponseError

        token = uuid.uuid4().hex
        entity = {**_to_entity(partition, row, data), WRITE_ID: token}
        for attempt in range(_AMBIGUOUS_ATTEMPTS):
            try:
                meta = self._create_entity(entity)
            except ResourceExistsError as exc:
                if (mine := self._own_write(partition, row, token)) is not None:
                    return mine
                raise ConcurrencyConflict(f"{self.name}/{partition}/{row} already exists") from exc
            except (ServiceRequestError, ServiceResponseError):
                existing = self.get(partition, row)
                if existing is not None:
                    if existing.write_id == token:
                        return existing  # committed; only the answer was lost
                    raise ConcurrencyConflict(f"{self.name}/{partition}/{row} already exists") from None
                if attempt == _AMBIGUOUS_ATTEMPTS - 1:
                    raise
                continue  # not there: the insert never committed; send it again
            return Record(partition, row, dict(data), meta["etag"], token)
        raise AssertionError("unreachable")

    def replace(self, record: Record, data: Mapping[str, Any]) -> Record:
        """Replace the entity only if it is unchanged since ``record`` was read.

        A conditional replace (PUT If-Match) whose answer was lost after it committed is retried by azure-core
        into a 412; reading the row back with this call's token in it means the replace was ours and succeeded.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceModifiedError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.data.tables import UpdateMode

        token = uuid.uuid4().hex
        entity = {**_to_entity(record.partition, record.row, data), WRITE_ID: token}
        for attempt in range(_AMBIGUOUS_ATTEMPTS):
            try:
                meta = self._client.update_entity(entity, mode=UpdateMode.REPLACE, etag=record.etag,
                                                  match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError) as exc:
                if (mine := self._own_write(record.partition, record.row, token)) is not None:
                    return mine
                raise ConcurrencyConflict(
                    f"{self.name}/{record.partition}/{record.row} changed since it was read") from exc
            except (ServiceRequestError, ServiceResponseError):
                current = self.get(record.partition, record.row)
                if current is not None and current.write_id == token:
                    return current
                if current is None or current.etag != record.etag:
                    raise ConcurrencyConflict(
                        f"{self.name}/{record.partition}/{record.row} changed since it was read") from None
                if attempt == _AMBIGUOUS_ATTEMPTS - 1:
                    raise
                continue  # unchanged: the replace never committed; send it again
            return Record(record.partition, record.row, dict(data), meta["etag"], token)
        raise AssertionError("unreachable")

    def _own_write(self, partition: str, row: str, token: str) -> Record | None:
        current = self.get(partition, row)
        return current if current is not None and current.write_id == token else None

    def save(self, partition: str, row: str, data: Mapping[str, Any], expected: Record | None) -> Record:
        """Insert when ``expected`` is None, else replace conditionally: one call for read-decide-write."""
        return self.insert(partition, row, data) if expected is None else self.replace(expected, data)

    def save_many(self, writes: Sequence[tuple[str, str, Mapping[str, Any], Record | None]]) -> int:
        """Best-effort :meth:`save` of many rows: ``(partition, row, data, expected)`` each, written in entity group
        transactions, one request per 100 rows of a partition (Learn, "Performing entity group transactions"), each
        row an insert when ``expected`` is None, else a replace conditional on its ETag. A transaction fails whole when
        any row changed, exists or is gone; its rows are then saved one by one and a row someone else changed is left
        to them. Returns the rows written. For bookkeeping that the next tick redoes when it is lost, not for claims."""
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        written = 0
        for chunk in _transaction_chunks(writes, lambda write: write[0]):
            operations: list[tuple[Any, ...]] = []
            for partition, row, data, expected in chunk:
                entity = {**_to_entity(partition, row, data), WRITE_ID: uuid.uuid4().hex}
                operations.append(("create", entity) if expected is None else
                                  ("update", entity, {"mode": UpdateMode.REPLACE, "etag": expected.etag,
                                                      "match_condition": MatchConditions.IfNotModified}))
            if len(chunk) > 1:
                try:
                    self._client.submit_transaction(operations)
                    written += len(chunk)
                    continue
                except Exception:  # one row in the way fails them all (or the table is new): one by one
                    pass
            for partition, row, data, expected in chunk:
                with contextlib.suppress(ConcurrencyConflict):
                    self.save(partition, row, data, expected)
                    written += 1
        return written

    def delete(self, record: Record) -> None:
        self._delete_one(record)

    def _delete_one(self, record: Record) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        try:
            self._client.delete_entity(record.partition, record.row, etag=record.etag,
                                       match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError as exc:
            raise ConcurrencyConflict(f"{self.name}/{record.partition}/{record.row} changed since it was read") from exc

    def delete_many(self, records: Sequence[Record]) -> None:
        """Delete rows, each only if unchanged since read, in entity group transactions: one request per 100 rows of a
        partition instead of one per row (Learn, "Performing entity group transactions": up to 100 operations, one
        partition key). A transaction fails whole when any row changed or is gone; its rows are then deleted one by
        one, and a changed row is left alone (its new writer owns it)."""
        from azure.core import MatchConditions

        for chunk in _transaction_chunks(records, lambda record: record.partition):
            if len(chunk) == 1:
                with contextlib.suppress(ConcurrencyConflict):
                    self._delete_one(chunk[0])
                continue
            operations = [("delete", {"PartitionKey": r.partition, "RowKey": r.row},
                           {"etag": r.etag, "match_condition": MatchConditions.IfNotModified}) for r in chunk]
            try:
                self._client.submit_transaction(operations)
            except Exception:
                for record in chunk:
                    with contextlib.suppress(ConcurrencyConflict):
                        self._delete_one(record)

    def claim(self, partition: str, row: str, data: Mapping[str, Any] | None = None) -> bool:
        """Insert-once: True for the single caller that created the row, False for everyone after."""
        try:
            self.insert(partition, row, data or {})
        except ConcurrencyConflict:
            return False
        return True

    def query(self, partition: str | None = None) -> Iterator[Record]:
        if partition is None:
            entities = self._client.list_entities()
        else:
            entities = self._client.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
        from azure.core.exceptions import ResourceNotFoundError

        try:
            for entity in entities:
                yield _from_entity(entity)
        except ResourceNotFoundError:
            return  # the table does not exist yet: nothing stored

    def query_filter(self, query: str, parameters: Mapping[str, Any]) -> Iterator[Record]:
        """Entities matching an OData filter, evaluated by the service: only those rows cross the wire."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            for entity in self._client.query_entities(query, parameters=dict(parameters)):
                yield _from_entity(entity)
        except ResourceNotFoundError:
            return  # the table does not exist yet: nothing stored


def _transaction_chunks(items: Sequence[T], partition_of: Callable[[T], str]) -> Iterator[list[T]]:
    """``items`` in groups that one entity group transaction can take: one partition key, at most 100 operations."""
    by_partition: dict[str, list[T]] = {}
    for item in items:
        by_partition.setdefault(partition_of(item), []).append(item)
    for rows in by_partition.values():
        for start in range(0, len(rows), _TRANSACTION_MAX):
            yield rows[start:start + _TRANSACTION_MAX]


class StateStore:
    """The app's tables, created on first use."""

    def __init__(self, service: TableServiceClient, prefix: str = "autopilot") -> None:
        self._service = service
        self._prefix = prefix
        self._tables: dict[str, StateTable] = {}
        self._lock = threading.Lock()

    def table(self, name: str) -> StateTable:
        with self._lock:
            if name not in self._tables:
                full = f"{self._prefix}{name}"
                self._tables[name] = StateTable(self._service.get_table_client(full),
                                                create=lambda: self._service.create_table_if_not_exists(full))
            return self._tables[name]
