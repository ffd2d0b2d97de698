"""Benchmarks for Batch Image Autopilot (``make bench`` / ``python -m bench``; never part of the timed test suite).

Each benchmark is a module with ``run(...) -> dict`` (full size) and ``quick() -> dict`` (tiny, for
the smoke test); ``python -m bench`` runs them, writes ``bench/results/<name>.json`` and regenerates
``docs/benchmarks.md`` from every results file. See bench/README.md.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "cold_start": "bench.cold_start",
    "watch_scaling": "bench.watch_scaling",
    "time_to_target": "bench.time_to_target",
    "pipeline_latency": "bench.pipeline_latency",
}
ALIASES = {"watch": "watch_scaling", "cold": "cold_start", "ttt": "time_to_target", "pipeline": "pipeline_latency"}
