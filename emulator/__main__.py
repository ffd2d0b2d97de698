"""Run the emulator standalone: ``python -m emulator --port 8443``.

The first line on stdout is one JSON object with the endpoints and the CA to trust, so a script can
start the emulator and read how to reach it; then it serves until interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from datetime import datetime
from pathlib import Path

from emulator.azure import Emulator
from emulator.server import EmulatorServer, TlsMaterial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator",
                                     description="A local emulator of the Azure REST surface Batch Image "
                                                 "Autopilot uses.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the capacity model and fault injection (default 0)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="virtual seconds per wall-clock second (default 1; e.g. 60 makes a minute pass "
                             "every second)")
    parser.add_argument("--start",
                        help="virtual start time, ISO-8601 with timezone (default 2026-11-02T06:00:00+00:00)")
    parser.add_argument("--tls-dir", type=Path,
                        help="where to write the CA certificate (default: a new temporary directory)")
    args = parser.parse_args(argv)
    start = datetime.fromisoformat(args.start) if args.start else None
    if start is not None and start.tzinfo is None:
        parser.error("--start needs a timezone, e.g. 2026-11-02T06:00:00+00:00")
    emulator = Emulator(seed=args.seed, start=start, follow_wall=True, speed=args.speed)
    server = EmulatorServer(emulator, port=args.port, tls=TlsMaterial(args.tls_dir))
    info = {
        "arm": server.base_url,
        "ca_cert": str(server.ca_cert),
        "events_topic": f"{server.base_url}/eventgrid/autopilot/api/events",
        "batch_endpoint_template": f"{server.base_url.removeprefix('https://')}/batch/{{accountName}}",
        "admin": f"{server.base_url}/_emulator",
        "port": server.port,
    }
    print(json.dumps(info), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
