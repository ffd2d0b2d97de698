"""A fault-injecting HTTP proxy in front of Azurite's Table service, on loopback.

Azurite has no fault injection of its own, so the reliability tests put this proxy between the app and
Azurite: the app's connection string names the proxy's port, the proxy forwards every request unchanged
(Shared Key signatures cover the path and headers, not the port, so they still verify) and, for a share
of the calls, fails them the way Table storage fails in production (Learn, "Table service error codes"
and "Retry guidance for Azure Storage"): 503 ServerBusy and 500 InternalError before the service acts;
a connection closed with no answer; an answer that never comes (the client's read timeout); latency; and
the ambiguous ones, where the service committed the write and the answer was lost (``acted_drop``,
``acted_error``): an SDK retry of an insert then meets 409 EntityAlreadyExists, of a conditional update
412 UpdateConditionNotSatisfied, of a delete 404 ResourceNotFound.

Rules are :class:`emulator.faults.FaultRule` objects; ``plane`` is ignored here (everything is Table storage).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from emulator.faults import Fault, FaultInjector, FaultRule

# Table storage's error bodies (JSON, odata=minimalmetadata), as in the "Table service error codes" page.
_CODES = {500: "InternalError", 503: "ServerBusy"}


def _error_body(status: int) -> bytes:
    code = _CODES.get(status, "InternalError")
    return json.dumps(
        {"odata.error": {"code": code, "message": {"lang": "en-US", "value": f"Injected fault: {code}."}}}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ProxyServer

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.reason, answer.getheaders(), answer.read()
        finally:
            conn.close()

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status, reason)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault: Fault | None = self.server.faults.decide(self.command, self.path, "table")
        self.server.record(self.command, fault)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.latency_s)
            fault = None
        if fault is not None and fault.kind == "drop":
            return self._drop()
        if fault is not None and fault.kind in ("throttle", "error"):
            status = fault.status or 503
            headers = [("Content-Type", "application/json;odata=minimalmetadata"),
                       ("x-ms-error-code", _CODES.get(status, "InternalError"))]
            if fault.retry_after_s:
                headers.append(("Retry-After", str(fault.retry_after_s)))
            return self._answer(status, "Injected", headers, _error_body(status))
        try:
            status, reason, headers, payload = self._forward(body)
        except OSError:
            return self._drop()
        if fault is None:
            return self._answer(status, reason, headers, payload)
        # The request took effect in Azurite; its answer is lost.
        if fault.kind == "timeout":
            time.sleep(fault.latency_s)
            return self._drop()
        if fault.kind == "acted_drop":
            return self._drop()
        status = fault.status or 503
        return self._answer(status, "Injected", [("Content-Type", "application/json;odata=minimalmetadata"),
                                                 ("x-ms-error-code", _CODES.get(status, "InternalError"))],
                            _error_body(status))

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = do_MERGE = _serve

    def log_message(self, format: str, *args: object) -> None:
        return


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream_port: int
    faults: FaultInjector
    calls: Counter[str]
    _calls_lock: threading.Lock

    def record(self, method: str, fault: Fault | None) -> None:
        with self._calls_lock:
            self.calls[method] += 1
            if fault is not None:
                self.calls[f"fault:{fault.label}"] += 1


class TableFaultProxy:
    """Serve on 127.0.0.1 (a free port) and forward to the Azurite Table endpoint in ``connection_string``."""

    def __init__(self, connection_string: str, *, seed: int = 0) -> None:
        parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
        endpoint = urlsplit(parts["TableEndpoint"])
        if endpoint.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the Table fault proxy only fronts a loopback Azurite")
        self._parts = parts
        self._endpoint = endpoint
        self.faults = FaultInjector(seed)
        self._httpd = _ProxyServer(("127.0.0.1", 0), _Handler)
        self._httpd.upstream_port = endpoint.port or 80
        self._httpd.faults = self.faults
        self._httpd.calls = Counter()
        self._httpd._calls_lock = threading.Lock()
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        """The same account and key, with the Table endpoint on the proxy."""
        parts = {**self._parts,
                 "TableEndpoint": f"{self._endpoint.scheme}://127.0.0.1:{self.port}{self._endpoint.path}"}
        return ";".join(f"{k}={v}" for k, v in parts.items()) + ";"

    @property
    def calls(self) -> Counter[str]:
        """Requests seen (by method) and faults injected (``fault:<label>``)."""
        with self._httpd._calls_lock:
            return Counter(self._httpd.calls)

    def add(self, rule: FaultRule) -> FaultRule:
        return self.faults.add(rule)

    def start(self) -> TableFaultProxy:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="table-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TableFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
