"""Start Azurite's Table service (npm package ``azurite``) in memory on loopback.

Used by the test suite and by ``autopilot simulate``: the app's state always lives in real Table
storage semantics (ETags, 412s, 409s), never in a fake.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's published, well-known development key (not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"TableEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};")

    def start(self, timeout_s: float = 30) -> Azurite:
        binary = ROOT / "node_modules" / ".bin" / "azurite-table"
        if not binary.exists():
            found = shutil.which("azurite-table")
            if found is None:
                raise AzuriteError(
                    "Azurite is not installed: run `make setup` (it runs `npm ci`) in the repository root.")
            binary = Path(found)
        self.port = _free_port()
        self._proc = subprocess.Popen(
            [str(binary), "--inMemoryPersistence", "--tableHost", "127.0.0.1", "--tablePort", str(self.port),
             "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                raise AzuriteError(f"Azurite exited early (code {self._proc.returncode}): {out.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AzuriteError(f"Azurite did not start listening on 127.0.0.1:{self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
