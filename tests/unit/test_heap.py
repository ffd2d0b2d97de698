"""The one-off heap freeze after the first full scan (shared/core/heap.py)."""

from __future__ import annotations

import gc

from shared.core import heap


def test_the_heap_is_frozen_once_per_process_and_later_objects_are_still_collected() -> None:
    heap.freeze_once()  # True here, or an earlier tick in this process did it
    frozen = gc.get_freeze_count()
    assert frozen > 0
    # never again: objects made later stay collectable
    assert heap.freeze_once() is False and gc.get_freeze_count() == frozen

    class Cycle:
        pass

    a, b = Cycle(), Cycle()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b
    assert gc.collect() >= 2  # garbage made after the freeze is collected as before
