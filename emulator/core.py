"""The emulator's plumbing: requests, responses, routes and the request log (errors: ``emulator/exceptions.py``).

Every emulated service is four modules, as in moto: ``models.py`` (state and behaviour),
``responses.py`` (HTTP <-> model calls), ``urls.py`` (a routing table of :class:`Route`) and ``exceptions.py``
(one class per Azure error code it answers). Nothing in here knows about any particular Azure service.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

# Errors: the two shapes and one class per code live in emulator/exceptions.py (and each service's exceptions.py).
from emulator.exceptions import InvalidRequestContent

# --------------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------------


class Headers(dict[str, str]):
    """Case-insensitive header mapping (keys stored lower-case)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for k, v in items:
            self[k] = v

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, repeated slashes collapsed, no query string
    query: dict[str, str]  # keys lower-cased: Azure query parameter names are case-insensitive
    headers: Headers
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # captures from the route template
    base_url: str = ""  # scheme://host:port the client called, for URLs we hand back

    @classmethod
    def from_raw(cls, method: str, raw_path: str, headers: Iterable[tuple[str, str]], body: bytes,
                 base_url: str = "") -> Request:
        path, _, query_string = raw_path.partition("?")
        path = re.sub(r"/{2,}", "/", unquote(path))
        if len(path) > 1:
            path = path.rstrip("/")
        query = {k.lower(): v for k, v in parse_qsl(query_string, keep_blank_values=True)}
        return cls(method.upper(), path, query, Headers(headers), body, base_url=base_url)

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 shaped as Azure's for malformed content."""
        if not self.body:
            raise InvalidRequestContent("The request content was invalid and could not be deserialized: empty body.")
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequestContent(
                f"The request content was invalid and could not be deserialized: {exc}.") from None
        if not isinstance(value, dict):
            raise InvalidRequestContent("The request content was invalid: expected a JSON object.")
        return value

    def json_any(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequestContent(
                f"The request content was invalid and could not be deserialized: {exc}.") from None

    @property
    def caller(self) -> dict[str, str]:
        """Claims of the bearer token (see :func:`make_token`), {} when absent or opaque."""
        auth = self.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return {}
        return decode_token_claims(auth[7:].strip())


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    # False when the model raises the Event Grid event itself later (long-running operations:
    # ARM raises ResourceWriteSuccess when the operation completes, not when it is accepted).
    emit_event: bool = True
    drop: bool = False  # close the connection without answering (fault injection)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return Response(status, body, h)


# --------------------------------------------------------------------------------------------
# Tokens: the emulator accepts any bearer token, and reads claims from unsigned JWTs so that
# Event Grid events can say who made a call (data.claims / data.authorization).
# --------------------------------------------------------------------------------------------


def make_token(claims: Mapping[str, str]) -> str:
    def b64(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(dict(claims))}."


def decode_token_claims(token: str) -> dict[str, str]:
    parts = token.split(".")
    if len(parts) < 2:
        return {}
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return {}
    return {str(k): str(v) for k, v in claims.items()} if isinstance(claims, dict) else {}


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------

Handler = Callable[[Request], Response]

_PARAM = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(frozen=True)
class Route:
    """One row of a service's routing table.

    ``template`` uses ``{name}`` for one path segment and ``{name:path}`` for several (a scope).
    Literal segments match case-insensitively, as ARM does (``resourcegroups`` == ``resourceGroups``).
    ``action`` is the ARM action the call represents (``Microsoft.Compute/images/write``); it may use
    ``{param}`` placeholders and is what the request log and the least-privilege test record.
    ``api_versions`` None means the route does not check the api-version (the admin surface).
    ``plane`` decides the error shape and whether Event Grid sees the call: ``arm`` (management
    plane, emits system events), ``batch`` (data plane, emits nothing), ``eventgrid``, ``admin``.
    """

    method: str
    template: str
    handler: Handler
    action: str | None = None
    api_versions: frozenset[str] | None = None
    plane: str = "arm"
    auth: bool = True

    def compile(self) -> re.Pattern[str]:
        pattern = ""
        pos = 0
        for m in _PARAM.finditer(self.template):
            pattern += re.escape(self.template[pos : m.start()])
            pattern += f"(?P<{m.group(1)}>.+?)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        pattern += re.escape(self.template[pos:])
        return re.compile(f"^{pattern}$", re.IGNORECASE)


@dataclass
class LoggedRequest:
    time: datetime
    method: str
    path: str
    api_version: str | None
    status: int
    action: str | None
    plane: str | None
    caller: str | None
    fault: str | None = None
    # For a fault that struck after the request took effect (acted_drop, acted_error): the status the service
    # had answered before the answer was lost. None otherwise.
    served_status: int | None = None


class RequestLog:
    """Every call the emulator answered, queryable by tests and by the simulation report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, *, action: str | None = None, method: str | None = None,
                path_contains: str | None = None, plane: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            out = list(self._entries)
        if action is not None:
            out = [e for e in out if e.action and e.action.lower() == action.lower()]
        if method is not None:
            out = [e for e in out if e.method == method.upper()]
        if path_contains is not None:
            out = [e for e in out if path_contains.lower() in e.path.lower()]
        if plane is not None:
            out = [e for e in out if e.plane == plane]
        return out

    def count_by_action(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.entries():
            key = e.action or f"{e.method} {e.path}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
