"""What every benchmark shares: paths, the machine description, statistics, results files, and local Azure.

Local Azure here is exactly what the tests and ``autopilot simulate`` use: the emulator over HTTPS
(:class:`autopilot.local.LocalAzure`), Azurite for Table storage and the local Functions host on the
emulator's virtual clock. One Azurite process serves a whole ``python -m bench`` run; every
:class:`LocalAzure` gets its own table prefix, so runs never see each other's state.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
COMMAND = "make bench"  # what regenerates docs/benchmarks.md (it runs `.venv/bin/python -m bench`)

if str(ROOT) not in sys.path:  # `python bench/...` from elsewhere: the app's packages live at the root
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS and Python, read from the system (Linux /proc when available)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100), as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Iterable[float]) -> dict[str, float | int]:
    data = [float(v) for v in values]
    if not data:
        return {"n": 0}
    return {"n": len(data), "median": statistics.median(data), "p90": percentile(data, 90), "min": min(data),
            "max": max(data),
            "mean": statistics.fmean(data)}


# ---------------------------------------------------------------------------------------------
# Results files
# ---------------------------------------------------------------------------------------------


def result_path(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def write_result(name: str, data: dict[str, Any]) -> Path:
    path = result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_results() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if RESULTS_DIR.is_dir():
        for path in sorted(RESULTS_DIR.glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
    return out


# ---------------------------------------------------------------------------------------------
# Local Azure
# ---------------------------------------------------------------------------------------------

_azurite: Any = None


def azurite_connection() -> str:
    """A connection string for the run's Azurite (started on first use, stopped at exit)."""
    global _azurite
    if _azurite is None:
        from emulator.azurite import Azurite

        _azurite = Azurite().start()
        atexit.register(_stop_azurite)
    return _azurite.connection_string


def use_azurite(connection_string: str) -> None:
    """Use an Azurite someone else started (the test suite's session Azurite) instead of starting one."""
    global _azurite

    class _External:
        def __init__(self, conn: str) -> None:
            self.connection_string = conn

        def stop(self) -> None:
            return None

    _azurite = _External(connection_string)


def _stop_azurite() -> None:
    global _azurite
    if _azurite is not None:
        _azurite.stop()
        _azurite = None


_tls: Any = None


def tls_material() -> Any:
    """One local CA for the run (generating a CA per environment costs ~0.1 s for nothing)."""
    global _tls
    if _tls is None:
        from emulator.server import TlsMaterial

        _tls = TlsMaterial()
    return _tls


@contextmanager
def local_azure(**kwargs: Any) -> Iterator[Any]:
    """A fresh :class:`autopilot.local.LocalAzure` (emulator over HTTPS + Azurite + local Functions host).

    The app caches Batch accounts per process (their endpoints do not change in Azure); every local
    Azure listens on a new port, so the cache is cleared on the way in and out.
    """
    from autopilot.local import LocalAzure
    from shared.resources import batch_accounts

    batch_accounts.forget_accounts()
    kwargs.setdefault("tls", tls_material())
    la = LocalAzure(azurite_connection=azurite_connection(), **kwargs)
    try:
        yield la
    finally:
        la.close()
        batch_accounts.forget_accounts()


def quiet_logs() -> None:
    """The app logs every invocation at INFO; benchmarks print their own progress."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("autopilot", "emulator", "azure"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The app warns (rightly) about a few deliberate situations the benchmarks create; keep the console readable.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.ERROR)


def classify_request(entry: Any) -> str:
    """One request-log entry as a short, stable kind: 'ARM GET batch account', 'Batch list pools (page)', ..."""
    method, path, plane = entry.method, entry.path.split("?", 1)[0].rstrip("/"), entry.plane
    parts = [p for p in path.split("/") if p]
    lower = [p.lower() for p in parts]
    if plane == "batch":
        # /batch/{account}/pools[/{id}[/verb]]
        rest = lower[2:]
        if rest == ["pools"]:
            return "Batch list pools (page)" if method == "GET" else f"Batch {method} pools"
        if len(rest) == 2 and rest[0] == "pools":
            return {"GET": "Batch GET pool", "HEAD": "Batch HEAD pool", "PATCH": "Batch PATCH pool",
                    "DELETE": "Batch DELETE pool"}.get(method, f"Batch {method} pool")
        if len(rest) == 3 and rest[0] == "pools":
            return f"Batch {method} pool {rest[2]}"
        return f"Batch {method} {'/'.join(rest)}"
    if plane == "eventgrid":
        return "Event Grid publish"
    if plane == "arm":
        action = entry.action or f"{method} {path}"
        if lower[-2:-1] == ["batchaccounts"] and method == "GET":
            return "ARM GET batch account"
        return f"ARM {method} {action.split('/', 1)[-1] if '/' in action else action}"
    return f"{plane or 'other'} {method} {path}"


def count_kinds(entries: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        kind = classify_request(entry)
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


class Stopwatch:
    """Wall and CPU (this thread) time of a block."""

    def __enter__(self) -> Stopwatch:
        self.wall0, self.cpu0 = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.thread_time() - self.cpu0


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120,
               args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this venv's), from the repository root."""
    return subprocess.run([sys.executable, *args, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
