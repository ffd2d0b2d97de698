"""Just enough of Bicep's syntax to read the values the infra tests check, without the Bicep CLI.

Bicep could not be compiled where this project was built, so the tests read the source: the
``var`` literals that mirror Python tables (event subscriptions, alert types, state tables) are
parsed as values, and for objects whose values are expressions (app settings) only the keys are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

_PUNCT = "{}[]():,?.=!<>&|+-*/%"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(\.\d+)?")


@dataclass(frozen=True)
class Token:
    kind: str  # "string" | "word" | "punct"
    value: str
    line: int
    start: int
    end: int  # offsets into the source text


class BicepSyntaxError(ValueError):
    pass


def read(name: str) -> str:
    """The text of a Bicep file under infra/ (``main.bicep``, ``modules/storage.bicep``)."""
    return (INFRA / name).read_text(encoding="utf-8")


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise BicepSyntaxError(f"unterminated comment at line {line}")
            line += text.count("\n", i, j)
            i = j + 2
        elif text.startswith("'''", i):
            j = text.find("'''", i + 3)
            if j < 0:
                raise BicepSyntaxError(f"unterminated multi-line string at line {line}")
            out.append(Token("string", text[i + 3 : j], line, i, j + 3))
            line += text.count("\n", i, j)
            i = j + 3
        elif c == "'":
            j, chars = i + 1, []
            while j < n and text[j] != "'":
                if text[j] == "\\" and j + 1 < n:
                    chars.append({"n": "\n", "t": "\t", "r": "\r"}.get(text[j + 1], text[j + 1]))
                    j += 2
                    continue
                if text[j] == "\n":
                    raise BicepSyntaxError(f"unterminated string at line {line}")
                chars.append(text[j])
                j += 1
            if j >= n:
                raise BicepSyntaxError(f"unterminated string at line {line}")
            out.append(Token("string", "".join(chars), line, i, j + 1))
            i = j + 1
        elif m := _WORD.match(text, i):
            out.append(Token("word", m.group(0), line, i, m.end()))
            i = m.end()
        elif c in _PUNCT or c == "@":
            out.append(Token("punct", c, line, i, i + 1))
            i += 1
        else:
            raise BicepSyntaxError(f"unexpected character {c!r} at line {line}")
    return out


def closing(toks: list[Token], open_index: int) -> int:
    """Index of the bracket closing the one at ``open_index``."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack: list[str] = []
    for k in range(open_index, len(toks)):
        t = toks[k]
        if t.kind != "punct":
            continue
        if t.value in pairs:
            stack.append(pairs[t.value])
        elif t.value in pairs.values():
            if not stack or stack.pop() != t.value:
                raise BicepSyntaxError(f"unbalanced {t.value!r} at line {t.line}")
            if not stack:
                return k
    raise BicepSyntaxError(f"unclosed bracket from line {toks[open_index].line}")


def declaration(text: str, keyword: str, name: str) -> list[Token]:
    """The tokens of the bracketed value of ``var name = {...}`` / ``resource name '...' = {...}`` etc.

    The value is the first ``{`` or ``[`` after the ``=`` (for resources and modules that is the body,
    after any ``[for ...:`` or ``if (...)``: the innermost body is returned for loops).
    """
    toks = tokens(text)
    for k, t in enumerate(toks):
        if t.kind == "word" and t.value == keyword and k + 1 < len(toks) and toks[k + 1].value == name:
            eq = next(j for j in range(k + 2, len(toks)) if toks[j].value == "=")
            start = next(j for j in range(eq + 1, len(toks)) if toks[j].value in "{[")
            if toks[start].value == "[" and start + 1 < len(toks) and toks[start + 1].value == "for":
                colon = next(j for j in range(start + 2, len(toks)) if toks[j].value == ":")
                start = next(j for j in range(colon + 1, len(toks)) if toks[j].value == "{")
            return toks[start : closing(toks, start) + 1]
    raise KeyError(f"no {keyword} {name} in the Bicep text")


def literal(text: str, var_name: str) -> Any:
    """The value of ``var var_name = <literal>``: objects, arrays, strings, numbers, true/false/null."""
    toks = declaration(text, "var", var_name)
    value, end = _value(toks, 0)
    if end != len(toks):
        raise BicepSyntaxError(f"var {var_name}: unexpected {toks[end].value!r} at line {toks[end].line}")
    return value


def _value(toks: list[Token], i: int) -> tuple[Any, int]:
    t = toks[i]
    if t.kind == "string":
        if "${" in t.value:
            raise BicepSyntaxError(f"interpolated string at line {t.line} is not a literal")
        return t.value, i + 1
    if t.kind == "word":
        if t.value in {"true", "false"}:
            return t.value == "true", i + 1
        if t.value == "null":
            return None, i + 1
        if t.value[0].isdigit():
            return (float(t.value) if "." in t.value else int(t.value)), i + 1
        raise BicepSyntaxError(f"expression {t.value!r} at line {t.line} is not a literal")
    if t.value == "[":
        items: list[Any] = []
        i += 1
        while toks[i].value != "]":
            item, i = _value(toks, i)
            items.append(item)
            if toks[i].value == ",":
                i += 1
        return items, i + 1
    if t.value == "{":
        obj: dict[str, Any] = {}
        i += 1
        while toks[i].value != "}":
            key = toks[i]
            if key.kind not in {"word", "string"} or toks[i + 1].value != ":":
                raise BicepSyntaxError(f"expected a property name at line {key.line}")
            obj[key.value], i = _value(toks, i + 2)
            if toks[i].value == ",":
                i += 1
        return obj, i + 1
    raise BicepSyntaxError(f"unexpected {t.value!r} at line {t.line}")


def object_keys(text: str, keyword: str, name: str) -> list[str]:
    """Top-level property names of the object declared as ``keyword name`` (values may be expressions)."""
    toks = declaration(text, keyword, name)
    if toks[0].value != "{":
        raise BicepSyntaxError(f"{keyword} {name} is not an object")
    keys: list[str] = []
    depth, line_started = 0, -1
    for k, t in enumerate(toks):
        if t.kind == "punct" and t.value in "{[(":
            depth += 1
            continue
        if t.kind == "punct" and t.value in "}])":
            depth -= 1
            continue
        first_on_line = t.line != line_started
        line_started = t.line
        if depth == 1 and first_on_line and t.kind in {"word", "string"} and k + 1 < len(toks) and toks[k + 1].value == ":":
            keys.append(t.value)
    return keys


def param_default(text: str, name: str) -> Any:
    """The literal default of ``param name <type> = <literal>``."""
    toks = tokens(text)
    for k, t in enumerate(toks):
        if t.kind == "word" and t.value == "param" and k + 1 < len(toks) and toks[k + 1].value == name:
            if k + 3 < len(toks) and toks[k + 3].value == "=":
                return _value(toks, k + 4)[0]
            raise KeyError(f"param {name} has no default")
    raise KeyError(f"no param {name}")


def body(text: str, keyword: str, name: str) -> str:
    """The source text of a declaration's body (for plain-text checks)."""
    toks = declaration(text, keyword, name)
    return text[toks[0].start : toks[-1].end]
