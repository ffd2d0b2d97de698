"""Table storage writes whose answer was lost: the app recognises its own committed write, and only its own.

Azurite sits behind ``emulator.table_faults.TableFaultProxy``; each test arms one fault for one call and checks
what :class:`shared.core.state.StateTable` makes of it. azure-core does not retry a POST after a dropped connection
and retries it into a 409 after a 5xx; a conditional PUT is retried into a 412 after either.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient

from emulator.faults import FaultRule
from emulator.table_faults import TableFaultProxy
from shared.core.state import ConcurrencyConflict, StateTable

WRITES = frozenset({"POST", "PUT", "DELETE"})


@pytest.fixture
def proxied(azurite: str) -> Iterator[tuple[TableFaultProxy, StateTable]]:
    with TableFaultProxy(azurite, seed=1) as proxy:
        service = TableServiceClient.from_connection_string(proxy.connection_string, retry_total=3,
                                                            retry_backoff_factor=0.01,
                                                            read_timeout=1.0)
        name = f"t{uuid.uuid4().hex[:10]}Episodes"
        service.create_table(name)
        yield proxy, StateTable(service.get_table_client(name))
        service.close()


@pytest.mark.parametrize("kind", ["acted_drop", "acted_error", "timeout"])
def test_an_insert_whose_answer_was_lost_is_the_apps_own(
        proxied: tuple[TableFaultProxy, StateTable], kind: str) -> None:
    proxy, table = proxied
    rule = proxy.add(FaultRule(kind=kind, status=503, retry_after_s=0, latency_s=1.2, methods=frozenset({"POST"}),
                               max_count=1))
    record = table.insert("p", "r", {"n": 1})
    assert rule.injected == 1
    assert record.data == {"n": 1}
    stored = table.get("p", "r")
    assert stored is not None and stored.data == {"n": 1} and stored.write_id == record.write_id
    # ... and it is still a conflict for anyone else's insert.
    with pytest.raises(ConcurrencyConflict):
        table.insert("p", "r", {"n": 2})


def test_an_insert_dropped_before_it_committed_is_sent_again(proxied: tuple[TableFaultProxy, StateTable]) -> None:
    proxy, table = proxied
    rule = proxy.add(FaultRule(kind="drop", methods=frozenset({"POST"}), max_count=1))
    record = table.insert("p", "r", {"n": 1})
    assert rule.injected == 1 and table.get("p", "r") is not None and record.data == {"n": 1}


@pytest.mark.parametrize("kind", ["acted_drop", "acted_error"])
def test_a_replace_whose_answer_was_lost_is_the_apps_own(
        proxied: tuple[TableFaultProxy, StateTable], kind: str) -> None:
    proxy, table = proxied
    first = table.insert("p", "r", {"n": 1})
    rule = proxy.add(FaultRule(kind=kind, status=503, retry_after_s=0, methods=frozenset({"PUT"}), max_count=1))
    second = table.replace(first, {"n": 2})
    assert rule.injected == 1
    stored = table.get("p", "r")
    assert stored is not None and stored.data == {"n": 2} and stored.etag == second.etag
    # the first version is gone: a replace based on it is someone else's stale write
    with pytest.raises(ConcurrencyConflict):
        table.replace(first, {"n": 3})


def test_a_delete_whose_answer_was_lost_is_done(proxied: tuple[TableFaultProxy, StateTable]) -> None:
    proxy, table = proxied
    record = table.insert("p", "r", {"n": 1})
    rule = proxy.add(FaultRule(kind="acted_error", status=503, retry_after_s=0, methods=frozenset({"DELETE"}),
                               max_count=1))
    table.delete(record)  # the retry meets 404, which is what a delete wants
    assert rule.injected == 1 and table.get("p", "r") is None


@pytest.mark.parametrize(("kind", "status"), [("error", 503), ("error", 500), ("drop", 0), ("timeout", 0)])
def test_reads_are_retried_through_every_fault(proxied: tuple[TableFaultProxy, StateTable], kind: str,
                                               status: int) -> None:
    proxy, table = proxied
    table.insert("p", "r", {"n": 1})
    rule = proxy.add(FaultRule(kind=kind, status=status or 503, retry_after_s=0, latency_s=1.2,
                               methods=frozenset({"GET"}), max_count=2))
    assert table.get("p", "r").data == {"n": 1}
    assert rule.injected == 2
    assert proxy.calls[f"fault:{kind}:{status}" if status else f"fault:{kind}"] == 2


def test_rows_are_deleted_in_transactions_and_a_changed_row_is_left_alone(
        proxied: tuple[TableFaultProxy, StateTable]) -> None:
    proxy, table = proxied
    records = [table.insert("p", f"r{i:03d}", {"n": i}) for i in range(150)] + [table.insert("q", "only", {"n": 0})]
    changed = table.replace(records[7], {"n": -1})  # someone else's write since records[7] was read
    before = proxy.calls["POST"]
    table.delete_many(records)
    remaining = sorted((r.partition, r.row) for r in table.query())
    assert remaining == [("p", "r007")] and table.get("p", "r007").etag == changed.etag
    # 100 + 50 rows of "p" in two transactions (the first fails on r007 and is settled row by row), "q" alone.
    assert proxy.calls["POST"] - before == 2


def test_rows_are_saved_in_transactions_and_a_row_in_the_way_is_left_to_its_writer(
        proxied: tuple[TableFaultProxy, StateTable]) -> None:
    proxy, table = proxied
    existing = [table.insert("p", f"r{i:03d}", {"n": i}) for i in range(120)]
    theirs = table.replace(existing[3], {"n": -1})  # changed since existing[3] was read
    table.insert("p", "new-007", {"n": "someone else's"})  # created meanwhile by someone else
    writes = [("p", r.row, {"n": 1000 + i}, r) for i, r in enumerate(existing)]
    writes += [("p", f"new-{i:03d}", {"n": i}, None) for i in range(30)]
    writes += [("q", "alone", {"n": 0}, None)]
    before = proxy.calls["POST"]
    written = table.save_many(writes)
    # the 1st transaction of "p" holds existing[3] (changed): settled row by row; the 2nd holds new-007 (exists): the
    # same; "q" alone is a plain insert. Every other row is written, and the two in the way keep their writers' data.
    assert written == len(writes) - 2
    assert table.get("p", "r003").etag == theirs.etag and table.get("p", "new-007").data == {"n": "someone else's"}
    assert table.get("p", "r119").data == {"n": 1119} and table.get("p", "new-029").data == {"n": 29}
    assert table.get("q", "alone") is not None
    # 2 transactions + their 150 rows one by one (120 replaces are PUTs; 30 inserts and "q" are POSTs)
    assert proxy.calls["POST"] - before == 2 + 30 + 1


def test_a_transaction_of_saves_commits_in_one_request(proxied: tuple[TableFaultProxy, StateTable]) -> None:
    proxy, table = proxied
    old = table.insert("p", "old", {"n": 0})
    before = dict(proxy.calls)
    assert table.save_many([("p", "old", {"n": 1}, old)] + [("p", f"r{i}", {"n": i}, None) for i in range(99)]) == 100
    assert proxy.calls["POST"] - before.get("POST", 0) == 1 and proxy.calls.get("PUT", 0) == before.get("PUT", 0)
    assert table.get("p", "old").data == {"n": 1} and len(list(table.query("p"))) == 100
