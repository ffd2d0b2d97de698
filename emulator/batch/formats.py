"""Wire formats shared by both Batch planes: times, durations, ETags and a small OData $filter."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import isodate

# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def iso(dt: datetime) -> str:
    """``2024-08-28T10:22:55.9407275Z``: seven fractional digits, as Batch writes times."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def rfc1123(dt: datetime) -> str:
    return format_datetime(dt.astimezone(UTC), usegmt=True)


def parse_rfc1123(text: str) -> datetime | None:
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def make_etag(now: datetime, serial: int) -> str:
    """A Batch-style ETag (``0x8D4EDFEBFADF4AB``): FILETIME ticks of ``now``, made unique by ``serial``."""
    ticks = int((now - _FILETIME_EPOCH).total_seconds() * 10_000_000) + serial
    return f"0x{ticks:X}"


def bare_etag(value: str | None) -> str | None:
    """``W/"0x1"`` / ``"0x1"`` / ``0x1`` -> ``0x1`` (clients quote Batch's bare ETags; ARM's are weak)."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith(("W/", "w/")):
        value = value[2:]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


# ---------------------------------------------------------------------------------------------
# ISO-8601 durations (resizeTimeout, evaluationInterval)
# ---------------------------------------------------------------------------------------------

# A fraction on any unit but seconds, or a comma as the decimal sign: isodate takes them, the emulator refuses them
# (Batch's own rules for such durations are unpublished: the less convenient reading).
_FRACTION_NOT_SECONDS = re.compile(r"[.,]\d*[^\dS]|,")


def parse_duration(text: Any) -> timedelta:
    """``PT15M``, ``PT15M00S`` (azure-mgmt-batch), ``P1DT2H``, ``PT900S`` -> timedelta (isodate). Raises ValueError.

    Refused besides what isodate refuses: negative durations, years and months (no fixed length), fractions of any
    unit but seconds and an empty date or time part (``P``, ``PT``, ``P1DT``)."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO-8601 duration string, got {text!r}")
    refused = ValueError(f"{text!r} is not an ISO-8601 duration such as 'PT15M'")
    value = text.strip().upper()
    if not value.startswith("P") or value.endswith(("P", "T")) or _FRACTION_NOT_SECONDS.search(value):
        raise refused
    try:
        parsed = isodate.parse_duration(value)
    except isodate.ISO8601Error:
        raise refused from None
    if not isinstance(parsed, timedelta):  # an isodate.Duration: years or months
        raise refused
    return parsed


def format_duration(td: timedelta) -> str:
    """timedelta -> ``PT15M`` / ``PT1H30M`` / ``P1DT2H`` / ``PT0S`` (the shortest form, as Batch answers)."""
    return isodate.duration_isoformat(td) if td else "PT0S"


# ---------------------------------------------------------------------------------------------
# OData $filter: comparisons (eq ne gt ge lt le), startswith/endswith/contains, and/or/not, ().
# String comparisons are case-insensitive (Batch ids and enum values are).
# ---------------------------------------------------------------------------------------------

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),])|(?P<word>[A-Za-z_$][\w$./]*))")


class FilterError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected text at position {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            tokens.append(("value", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            num = m.group("num")
            tokens.append(("value", float(num) if "." in num else int(num)))
        elif m.group("punct") is not None:
            tokens.append((m.group("punct"), m.group("punct")))
        else:
            word = m.group("word")
            low = word.lower()
            if low in {"true", "false"}:
                tokens.append(("value", low == "true"))
            elif low == "null":
                tokens.append(("value", None))
            elif low in {"eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not"}:
                tokens.append((low, low))
            else:
                tokens.append(("field", word))
    return tokens


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    left, right = _norm(left), _norm(right)
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        return {"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op]
    except TypeError:
        return False


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]], resolve: Callable[[Mapping[str, Any], str], Any]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.resolve = resolve

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, Any]:
        if self.pos >= len(self.tokens):
            raise FilterError("unexpected end of the filter")
        token = self.tokens[self.pos]
        if kind is not None and token[0] != kind:
            raise FilterError(f"expected {kind!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.pos != len(self.tokens):
            raise FilterError(f"unexpected {self.tokens[self.pos][1]!r}")
        return pred

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while self.peek() == "or":
            self.take()
            right = self.and_expr()
            left = (lambda a, b: lambda item: a(item) or b(item))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.unary()
        while self.peek() == "and":
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda item: a(item) and b(item))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.unary()
            return lambda item: not inner(item)
        if self.peek() == "(":
            self.take()
            inner = self.or_expr()
            self.take(")")
            return inner
        return self.comparison()

    def operand(self) -> Callable[[Mapping[str, Any]], Any]:
        kind, value = self.take()
        if kind == "value":
            return lambda item: value
        if kind == "field":
            resolve = self.resolve
            return lambda item: resolve(item, value)
        raise FilterError(f"expected a property or a value, found {value!r}")

    def comparison(self) -> Predicate:
        if self.peek() == "field" and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1][0] == "(":
            name = str(self.take()[1]).lower()
            if name not in {"startswith", "endswith", "contains", "substringof"}:
                raise FilterError(f"unsupported function {name!r}")
            self.take("(")
            a = self.operand()
            self.take(",")
            b = self.operand()
            self.take(")")

            def call(item: Mapping[str, Any]) -> bool:
                x, y = a(item), b(item)
                if name == "substringof":
                    x, y = y, x
                if not isinstance(x, str) or not isinstance(y, str):
                    return False
                x, y = x.lower(), y.lower()
                return x.startswith(y) if name == "startswith" else x.endswith(y) if name == "endswith" else y in x

            if self.peek() in {"eq", "ne"}:  # startswith(id,'a') eq true
                op = self.take()[0]
                rhs = self.operand()
                return lambda item: _compare(op, call(item), rhs(item))
            return call
        left = self.operand()
        op = self.peek()
        if op not in {"eq", "ne", "gt", "ge", "lt", "le"}:
            raise FilterError(f"expected a comparison operator, found {op!r}")
        self.take()
        right = self.operand()
        return lambda item: _compare(op, left(item), right(item))


def default_resolve(item: Mapping[str, Any], path: str) -> Any:
    """``properties/allocationState`` or ``metadata.x``-free plain paths, case-insensitive segments."""
    value: Any = item
    for segment in re.split(r"[/.]", path):
        if not isinstance(value, Mapping):
            return None
        if segment in value:
            value = value[segment]
            continue
        lowered = segment.lower()
        value = next((v for k, v in value.items() if k.lower() == lowered), None)
    return value


def compile_filter(text: str, resolve: Callable[[Mapping[str, Any], str], Any] = default_resolve) -> Predicate:
    if not text or not text.strip():
        return lambda item: True
    return _Parser(_tokenize(text), resolve).parse()


_ID_EQ = re.compile(r"^\s*(?P<field>[\w/]+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*$", re.IGNORECASE)
_ID_PREFIX = re.compile(r"^\s*startswith\(\s*(?P<field>[\w/]+)\s*,\s*'(?P<value>(?:[^']|'')*)'\s*\)\s*$", re.IGNORECASE)


def simple_key_filter(text: str | None, fields: set[str]) -> tuple[str, str] | None:
    """Recognise ``<field> eq 'x'`` and ``startswith(<field>,'x')`` on an id field, for indexed lookups.

    Returns ``("eq" | "prefix", value)`` or None when the filter is something else.
    """
    if not text:
        return None
    for kind, pattern in (("eq", _ID_EQ), ("prefix", _ID_PREFIX)):
        m = pattern.match(text)
        if m and m.group("field").lower() in fields:
            return kind, m.group("value").replace("''", "'")
    return None
