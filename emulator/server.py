"""HTTPS on 127.0.0.1 in front of an :class:`~emulator.azure.Emulator`.

The certificate comes from a throw-away local CA (``trustme``); clients trust it through the CA
bundle path, exactly as they would trust a corporate proxy's CA. Nothing here disables verification.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from emulator.azure import Emulator
from emulator.core import Request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' requests sessions expect
    # Headers and body go out as separate writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK (~40 ms per response), which would dominate every benchmark.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request.from_raw(self.command, self.path, self.headers.items(), body, base_url=self.server.base_url)
        response = self.server.emulator.handle(request)
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = response.encoded()
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        return  # the emulator keeps its own structured request log


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator
    base_url: str


class TlsMaterial:
    """A local CA and a server certificate for 127.0.0.1 and localhost, written to ``directory``."""

    def __init__(self, directory: Path | None = None) -> None:
        import trustme  # dev-only dependency: the deployed app never serves TLS itself

        self.directory = Path(directory or tempfile.mkdtemp(prefix="azure-emulator-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Batch Image Autopilot local emulator")
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_cert = self.directory / "emulator-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_cert))
        self._server_cert = cert

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server_cert.configure_cert(context)
        return context


class EmulatorServer:
    """Serve an emulator over HTTPS from a background thread (tests) or the foreground (CLI)."""

    def __init__(self, emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0,
                 tls: TlsMaterial | None = None) -> None:
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("the emulator only listens on loopback")
        self.emulator = emulator
        self.tls = tls or TlsMaterial()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.socket = self.tls.server_context().wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.emulator = emulator
        self.port = self._httpd.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._httpd.base_url = self.base_url
        emulator.base_url = self.base_url
        self._thread: threading.Thread | None = None

    @property
    def ca_cert(self) -> Path:
        return self.tls.ca_cert

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="azure-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
