"""The watch reads pool list pages as JSON, not as SDK models: the same pools, the same fields, the same requests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from autopilot.local import SUBSCRIPTION_ID as SUB
from autopilot.local import LocalAzure
from emulator.faults import FaultRule
from shared.core.resource_ids import batch_account_id
from shared.resources import batch_accounts, batch_pools
from shared.watch import tick as watch
from shared.watch.pool_policy import PoolView
from tests.e2e.watch_support import ACCOUNT, ACCOUNT_ID, add_pool


@pytest.mark.parametrize("page_size", [3, 1000])
def test_raw_pages_give_what_the_sdk_models_give(make_local: Callable[..., LocalAzure], monkeypatch: pytest.MonkeyPatch,
                                                 page_size: int) -> None:
    la = make_local()
    add_pool(la, "plain", desired=4)
    add_pool(la, "spot", desired=2, spot=3, target=1)
    add_pool(la, "team", managed=None)
    for i in range(5):
        add_pool(la, f"p{i}", desired=i + 1)
    la.emulator.batch.inject_failure(ACCOUNT, "plain", "internal_error", count=1)
    la.run(timedelta(minutes=6))  # resizes happen, one fails: resizeErrors in the list
    monkeypatch.setattr(batch_pools, "LIST_PAGE_SIZE", page_size)
    account = batch_accounts.get_account(la.context.clients, ACCOUNT_ID)

    before = len(la.emulator.log)
    pages = list(batch_pools.iter_pool_pages(la.context.clients, account))
    raw_requests = [e for e in la.emulator.log.entries()[before:] if e.caller == "batch-image-autopilot"]
    before = len(la.emulator.log)
    models = batch_pools.list_pools(la.context.clients, account)
    sdk_requests = [e for e in la.emulator.log.entries()[before:] if e.caller == "batch-image-autopilot"]

    raw = [pool for page in pages for pool in page]
    assert len(pages) == -(-len(models) // page_size) and all(len(page) <= page_size for page in pages)
    assert [p["id"] for p in raw] == [p["id"] for p in models]
    # The watch's fast path over the raw JSON gives, field for field, the view the generic reader gives over the SDK's
    # models.
    assert [PoolView.from_list_item(p, ACCOUNT_ID) for p in raw] == [PoolView.from_dict(p, ACCOUNT_ID) for p in models]
    assert [PoolView.from_dict(p, ACCOUNT_ID) for p in raw] == [PoolView.from_dict(p, ACCOUNT_ID) for p in models]
    assert any(PoolView.from_dict(p, ACCOUNT_ID).resize_errors for p in raw)  # the case that matters most is in there
    assert ([(e.method, e.path, e.api_version) for e in raw_requests]
            == [(e.method, e.path, e.api_version) for e in sdk_requests])


def test_an_account_whose_list_fails_is_reported_and_the_others_are_watched(
        make_local: Callable[..., LocalAzure]) -> None:
    la = make_local(accounts=(ACCOUNT, "otheracct"))
    add_pool(la, "here", desired=3)
    add_pool(la, "there", desired=3, account="otheracct")
    la.emulator.faults.add(FaultRule("error", plane="batch", path_pattern=r"/otheracct/pools$", status=500,
                                     retry_after_s=0))
    report = watch.tick(la.context, full=True)
    other = batch_account_id(SUB, "batch-rg", "otheracct")
    assert [a.lower() for a in report.unreadable_accounts] == [other.lower()]
    assert ("(InternalServerError) Injected fault: please retry. (HTTP 500)"
            in next(iter(report.unreadable_accounts.values())))
    assert report.pools == 1 and [s.rsplit("/", 1)[-1] for s in report.stalled] == ["here"]
