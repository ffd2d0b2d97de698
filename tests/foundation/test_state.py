"""Table state on Azurite: ETag-guarded writes, so two instances never both win one update."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.data.tables import TableServiceClient

from shared.core.state import ConcurrencyConflict, StateStore, safe_key


@pytest.fixture
def store(azurite: str) -> StateStore:
    return StateStore(TableServiceClient.from_connection_string(azurite), prefix=f"t{uuid.uuid4().hex[:10]}")


def test_two_writers_one_wins_the_other_sees_a_conflict(store: StateStore) -> None:
    table = store.table("Episodes")
    table.insert("pool", "p1", {"attempts": 0})
    first, second = table.get("pool", "p1"), table.get("pool", "p1")
    assert first is not None and second is not None
    table.replace(first, {"attempts": 1})
    with pytest.raises(ConcurrencyConflict):
        table.replace(second, {"attempts": 1})
    current = table.get("pool", "p1")
    assert current is not None and current.data["attempts"] == 1


def test_insert_of_an_existing_row_is_a_conflict_and_claim_is_insert_once(store: StateStore) -> None:
    table = store.table("Events")
    assert table.claim("evt", "id-1") is True
    assert table.claim("evt", "id-1") is False
    with pytest.raises(ConcurrencyConflict):
        table.insert("evt", "id-1", {})


def test_concurrent_claims_have_exactly_one_winner(store: StateStore) -> None:
    table = store.table("Alerts")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: table.claim("alert", "pool-a|QuotaReached|1"), range(16)))
    assert results.count(True) == 1


def test_concurrent_read_modify_write_loses_no_increment(store: StateStore) -> None:
    table = store.table("Counters")
    table.insert("c", "n", {"value": 0})

    def increment(_: int) -> int:
        conflicts = 0
        while True:
            record = table.get("c", "n")
            assert record is not None
            try:
                table.replace(record, {"value": record.data["value"] + 1})
                return conflicts
            except ConcurrencyConflict:
                conflicts += 1

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(increment, range(20)))
    final = table.get("c", "n")
    assert final is not None and final.data["value"] == 20


def test_values_round_trip_including_large_ints(store: StateStore) -> None:
    table = store.table("Episodes")
    data = {"nodes": 2500, "epoch": 2**40, "ratio": 0.5, "ok": True, "note": "x"}
    table.insert("p", "r", data)
    record = table.get("p", "r")
    assert record is not None
    assert {k: record.data[k] for k in data} == data


def test_delete_is_etag_guarded(store: StateStore) -> None:
    table = store.table("Episodes")
    stale = table.insert("p", "d", {"v": 1})
    table.replace(stale, {"v": 2})
    with pytest.raises(ConcurrencyConflict):
        table.delete(stale)
    fresh = table.get("p", "d")
    assert fresh is not None
    table.delete(fresh)
    assert table.get("p", "d") is None


def test_safe_key_escapes_forbidden_characters_reversibly() -> None:
    rid = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Batch/batchAccounts/A#1?x\\y"
    key = safe_key(rid)
    assert not any(c in key for c in "/\\#?")
    assert safe_key(rid.lower()) == key  # case-insensitive, like resource ids
    assert safe_key("a/b") != safe_key("a%2Fb")


def test_tables_are_created_by_the_first_write_and_reads_of_a_missing_table_write_nothing(azurite: str) -> None:
    service = TableServiceClient.from_connection_string(azurite)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    table = StateStore(service, prefix=prefix).table("Episodes")
    assert table.get("p", "r") is None
    assert list(table.query("p")) == []
    assert not [t for t in service.list_tables() if t.name.startswith(prefix)]  # reads created nothing
    table.insert("p", "r", {"v": 1})
    assert [t.name for t in service.list_tables() if t.name.startswith(prefix)] == [f"{prefix}Episodes"]
