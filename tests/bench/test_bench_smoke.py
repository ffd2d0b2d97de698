"""Smoke test for bench/: every benchmark runs at tiny sizes and returns well-formed results.

Not a performance test: nothing here asserts a duration or a ratio. The real figures come from
``make bench`` (docs/benchmarks.md). The results are rendered into the page's text in memory; no
file under bench/results or docs/ is written.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import bench.common
from bench import BENCHMARKS, cold_start, pipeline_latency, report, time_to_target, watch_scaling


@pytest.fixture(scope="module")
def results(azurite: str) -> dict[str, dict[str, Any]]:
    bench.common.use_azurite(azurite)
    bench.common.quiet_logs()
    out = {}
    for name, module in (("cold_start", cold_start), ("watch_scaling", watch_scaling),
                         ("time_to_target", time_to_target),
                         ("pipeline_latency", pipeline_latency)):
        out[name] = {"benchmark": name, "command": "pytest", "started": bench.common.now_iso(), "elapsed_s": 0.0,
                     "quick": True,
                     "machine": bench.common.machine_info(), "results": module.quick()}
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def test_every_registered_benchmark_is_covered() -> None:
    assert set(BENCHMARKS) == {"cold_start", "watch_scaling", "time_to_target", "pipeline_latency"}


def test_cold_start(results: dict[str, dict[str, Any]]) -> None:
    r = results["cold_start"]["results"]
    assert [row["module"] for row in r["rows"]] == ["azure.functions", "function_app"]
    for row in r["rows"]:
        assert row["import_ms"]["n"] == 1 and _finite(row["import_ms"]["median"]) and _finite(row["process_ms"]["p90"])
    assert _finite(r["ratio_of_median_import"]) and isinstance(r["target_met"], bool)
    assert r["rows"][1]["heavy_sdk_packages_loaded"] == [], "indexing function_app must not import an Azure SDK package"


def test_watch_scaling(results: dict[str, dict[str, Any]]) -> None:
    r = results["watch_scaling"]["results"]
    assert [(row["pools"], row["accounts"]) for row in r["rows"]] == [(12, 2)]
    for row in r["rows"]:
        accounts = row["accounts"]
        assert row["cold_tick"]["requests"]["ARM GET batch account"] == accounts
        # Warm (a full scan): one list page and one account GET (its core quotas) per account, and one publish for the
        # stalled pool - nothing per healthy pool.
        assert row["warm_tick_requests"] == {"ARM GET batch account": accounts, "Batch list pools (page)": accounts,
                                             "Event Grid publish": 1}
        assert row["all_stalls_found"] and row["all_stalls_resized"]
        assert _finite(row["warm_tick_wall_s"]["median"]) and _finite(row["traced_tick"]["peak_bytes"])
        base = row["baseline"]
        assert base["same_stalls_as_app"] and base["requests"]["Batch GET pool"] == 12
        assert base["requests"]["Batch list pools (page)"] == accounts


def test_time_to_target(results: dict[str, dict[str, Any]]) -> None:
    r = results["time_to_target"]["results"]
    assert r["ideal"]["minutes"] == 50
    assert abs(r["model"]["failure_per_full_resize"] - 0.2) < 1e-9
    strategies = {row["strategy"] for row in r["rows"]}
    assert {"batch_alone", "naive_fixed_interval", "app", "oracle"} <= strategies
    for runs in r["runs"].values():
        for run in runs:
            assert len(run["nodes_by_minute"]) == run["stopped_at_minute"] <= 8
            assert run["nodes_by_minute"] == sorted(run["nodes_by_minute"])  # a growing pool never shrinks here
            assert not run["failed_invocations"]
    by_strategy = {row["strategy"]: row for row in r["rows"]}
    assert by_strategy["batch_alone"]["final_nodes"]["max"] <= 300  # one resize never passes the per-resize cap
    assert by_strategy["app"]["requests"]["median"] > 0
    assert set(by_strategy["app"]["by_class"]) == {"internal", "capacity", "timeout", "other"}
    assert r["oracle_targets"] == {"median": 1.03, "worst": 1.10}


def test_pipeline_latency(results: dict[str, dict[str, Any]]) -> None:
    r = results["pipeline_latency"]["results"]
    run = r["runs"][0]
    assert run["dead_letters"] == 0 and not run["failed_invocations"]
    for family, milestones in run["families"].items():
        minutes = milestones["minutes"]
        assert minutes["set_complete"] == 0
        assert (minutes["version_ready"] is not None and minutes["pool_created"] is not None
                and minutes["pool_at_target"] is not None)
        assert minutes[
            "version_requested"] <= minutes["version_ready"] <= minutes["pool_created"] <= minutes["pool_at_target"]
        if family == "viaimage":
            assert minutes["image_requested"] <= minutes["image_ready"] <= minutes["version_requested"]
    assert r["cpu"]["image_pipeline"]["invocations_per_run"]["median"] >= 1
    assert _finite(r["cpu"]["image_pipeline"]["cpu_ms_median"]["median"])


def test_the_report_renders_every_section(results: dict[str, dict[str, Any]]) -> None:
    page = report.render(results)
    for heading in ("## Machine", "## Targets", "## 1. Cold start", "## 2. Watch economy and scaling",
                    "## 3. Time to target",
                    "## 4. Pipeline latency"):
        assert heading in page
    assert "make bench" in page and "not run yet" not in page
    assert "Against the ideal controller on the same seed" in page and "internal: failures / resizes after" in page
