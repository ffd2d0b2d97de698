"""Run benchmarks, write bench/results/*.json and regenerate docs/benchmarks.md.

``python -m bench [name ...] [--quick] [--no-doc]``. Without names every benchmark runs (that is what ``make bench``
does). ``--quick`` runs the tiny versions (seconds; results go to bench/results/quick/ and the doc is left alone).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

from bench import ALIASES, BENCHMARKS
from bench.common import RESULTS_DIR, machine_info, now_iso, quiet_logs, write_result


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _load() -> float | None:
    """The 1-minute load average: whether something else was using the machine's cores during a benchmark."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (smoke run); results go to bench/results/quick/")
    parser.add_argument("--no-doc", action="store_true", help="do not regenerate docs/benchmarks.md")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
            print(f"{name:18} {doc}")
        return 0
    names = [ALIASES.get(n, n) for n in args.names] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    quiet_logs()
    machine = machine_info()
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join([".venv/bin/python -m bench", *given])  # `make bench` runs exactly `.venv/bin/python -m bench`
    _progress(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, Python "
              f"{machine['python']}")
    total0 = time.perf_counter()
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        started, t0, load_before = now_iso(), time.perf_counter(), _load()
        _progress(f"{name}: start")
        results: dict[str, Any] = module.quick() if args.quick else module.run(progress=_progress)
        elapsed = time.perf_counter() - t0
        envelope = {"benchmark": name, "command": command, "started": started, "elapsed_s": elapsed,
                    "quick": args.quick,
                    "machine": machine, "load_average_1min": {"start": load_before, "end": _load()}, "results": results}
        path = write_result(f"quick/{name}" if args.quick else name, envelope)
        _progress(f"{name}: done in {elapsed:.1f} s -> {path.relative_to(RESULTS_DIR.parent.parent)}")
    _progress(f"all done in {time.perf_counter() - total0:.1f} s")
    if not args.quick and not args.no_doc:
        from bench.report import write_doc

        path = write_doc()
        _progress(f"regenerated {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
