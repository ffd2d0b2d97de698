"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from autopilot.local import LocalAzure
from emulator.server import TlsMaterial
from shared.core.resource_ids import batch_account_id
from tests.e2e.watch_support import ACCOUNT, START, SUB


@pytest.fixture
def make_local(azurite: str, tls_material: TlsMaterial) -> Iterator[Callable[..., LocalAzure]]:
    made: list[LocalAzure] = []

    def make(*, accounts: tuple[str, ...] = (ACCOUNT,), settings: dict[str, str] | None = None) -> LocalAzure:
        # These tests pin exact virtual times on a 5-minute tick, where every tick is a full scan
        # (the fast lane between full scans is tested in test_watch_fast_lane.py).
        settings = {"AUTOPILOT_WATCH_SCHEDULE": "0 */5 * * * *", **(settings or {})}
        la = LocalAzure(azurite_connection=azurite, tls=tls_material, start=START,
                        accounts=[batch_account_id(SUB, "batch-rg", a) for a in accounts], settings=settings)
        made.append(la)
        for name in accounts:
            la.add_batch_account(name)
        # Deterministic capacity: no random transient failures and no rate jitter (50 dedicated nodes a minute).
        la.emulator.batch.configure_capacity(dedicated_failure_rate=0, low_priority_failure_rate=0, rate_jitter=0)
        return la

    yield make
    for la in made:
        la.close()
