"""The instance's long-lived heap, moved out of the garbage collector's way once.

A full scan allocates a view per pool and holds an account's views until the account is decided; at 10,000 pools that
triggers full collections, and each one walks every object the process holds: the Azure SDK's modules, the clients,
the caches, all alive for the instance's life. ``gc.freeze()`` (Python docs, "gc - Garbage Collector interface") puts
the objects alive at that moment in a permanent generation that collections skip. Done once per process, after the
first tick (when the SDK modules the watch needs are imported and its clients built), it took the watch's CPU per pool
at 10,000 pools from 63 to 47 µs on the benchmark's machine (``make bench``, docs/benchmarks.md). Objects created later
are collected as before; what was frozen is freed by reference counting when it dies, and only a frozen cycle outlives
its use, which a one-off freeze bounds to what the process held at that moment.
"""

from __future__ import annotations

import gc
import threading

_frozen = False
_lock = threading.Lock()


def freeze_once() -> bool:
    """Freeze the heap the first time this is called in the process; True when this call did it."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        _frozen = True
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    return True
