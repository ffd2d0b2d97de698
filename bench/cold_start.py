"""Cold start: importing ``function_app`` versus a bare ``import azure.functions``.

The Functions Python worker imports ``function_app`` to index the functions before the first
invocation, so whatever that import pulls in is paid on every cold start. Each sample is a fresh
interpreter (the venv's python, from the repository root, no app settings in the environment) that
times the import with ``time.perf_counter`` and reports which heavy SDK packages ended up loaded.
The two imports alternate (A B, B A, ...) so drift in the machine's state hits both alike; one
warm-up run of each is discarded (it writes the ``.pyc`` files, as a deployed app would already have).
One extra ``-X importtime`` run of each names the modules ``function_app`` adds and what they cost.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bench.common import ROOT, run_python, summary

TARGET_RATIO = 1.3
# What the first invocations import lazily (shared/resources/clients.py builders): paid once per instance, after
# indexing.
DEFERRED = ("azure.functions, azure.batch, azure.mgmt.batch, azure.mgmt.compute, azure.mgmt.resource.locks, "
            "azure.data.tables, azure.eventgrid._legacy")
HEAVY_PREFIXES = ("azure.mgmt", "azure.batch", "azure.data.tables", "azure.eventgrid", "azure.identity", "azure.core")

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
heavy = sorted({{m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules
                if m.startswith({prefixes!r}) and m.count('.') >= 1}})
print(json.dumps({{"import_s": t1 - t0, "modules": len(sys.modules), "heavy": heavy}}))
"""


def _clean_env() -> dict[str, str]:
    """The parent's environment minus app settings: importing function_app must not need any."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_") and k != "AzureWebJobsStorage"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _sample(module: str, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = run_python(_PROBE.format(module=module, prefixes=HEAVY_PREFIXES), env=env)
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = process_s
    return out


def _importtime(module: str, env: dict[str, str]) -> dict[str, int]:
    """Self time (µs) per module from ``python -X importtime -c 'import module'``."""
    done = run_python(f"import {module}", env=env, args=("-X", "importtime"))
    times: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            _, rest = line.split(":", 1)
            self_us, _cumulative, name = (p.strip() for p in rest.split("|", 2))
            times[name] = times.get(name, 0) + int(self_us)
        except ValueError:
            continue
    return times


def run(*, runs: int = 15, warmup: int = 1, progress: Any = None) -> dict[str, Any]:
    env = _clean_env()
    if progress:
        progress(f"cold start: {runs} fresh interpreters per import (+{warmup} warm-up)")
    modules = {"azure.functions": "bare `import azure.functions`",
               "function_app": "`import function_app` (all six functions)"}
    for _ in range(warmup):
        for module in (*modules, DEFERRED):
            _sample(module, env)
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modules}
    for i in range(runs):
        order = list(modules) if i % 2 == 0 else list(reversed(modules))
        for module in order:
            samples[module].append(_sample(module, env))
    deferred = [_sample(DEFERRED, env) for _ in range(max(1, runs // 3))]

    rows = []
    for module, label in modules.items():
        s = samples[module]
        rows.append({
            "module": module,
            "label": label,
            "import_ms": {k: (v * 1000 if k not in ("n",) else v)
                          for k, v in summary(x["import_s"] for x in s).items()},
            "process_ms": {k: (v * 1000 if k not in ("n",) else v)
                           for k, v in summary(x["process_s"] for x in s).items()},
            "modules_loaded": s[-1]["modules"],
            "heavy_sdk_packages_loaded": s[-1]["heavy"],
        })
    base, app = rows[0], rows[1]
    ratio = app["import_ms"]["median"] / base["import_ms"]["median"]
    process_ratio = app["process_ms"]["median"] / base["process_ms"]["median"]

    base_times, app_times = _importtime("azure.functions", env), _importtime("function_app", env)
    extra = {name: us for name, us in app_times.items() if name not in base_times}
    top_extra = sorted(extra.items(), key=lambda kv: kv[1], reverse=True)[:8]

    return {
        "runs": runs,
        "warmup": warmup,
        "python": str(ROOT / ".venv" / "bin" / "python"),
        "rows": rows,
        "ratio_of_median_import": ratio,
        "ratio_of_median_process": process_ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
        "deferred_sdk_import_ms": {k: (v * 1000 if k != "n" else v)
                                   for k, v in summary(x["import_s"] for x in deferred).items()},
        "deferred_sdk_modules": DEFERRED,
        "extra_modules": len(extra),
        "extra_self_ms": sum(extra.values()) / 1000,
        "top_extra_modules": [{"module": m, "self_ms": us / 1000} for m, us in top_extra],
    }


def quick() -> dict[str, Any]:
    return run(runs=1, warmup=0)
