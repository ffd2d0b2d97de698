"""infra/*.bicep read with a real Bicep grammar: pycep-parser (pinned in requirements-dev.txt).

The parser turns a file into a JSON document: ``parameters``, ``variables``, ``resources``, ``modules`` and
``outputs`` by symbolic name, each with its value or config, and (``add_line_numbers``) the lines it spans. The
helpers below keep the names the infra tests use: ``literal`` (a ``var``'s value), ``object_keys`` (the keys of an
object a declaration holds), ``param_default``, and ``body`` (a declaration's source, located by the parser, for
the few plain-text checks). In the parser's output an expression is a ``{"function": ...}`` / ``{"operator": ...}``
object and an identifier is a plain string; ``literal`` refuses the former.

The Bicep here must also parse under pycep-parser 0.5.1, the version checkov pins (tests/infra/test_checkov.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
LINE_KEYS = ("__start_line__", "__end_line__")
SECTIONS = {"param": "parameters", "var": "variables", "resource": "resources", "module": "modules",
            "output": "outputs"}


class BicepSyntaxError(ValueError):
    pass


def read(name: str) -> str:
    """The text of a Bicep file under infra/ (``main.bicep``, ``modules/storage.bicep``)."""
    return (INFRA / name).read_text(encoding="utf-8")


def files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


@functools.lru_cache(maxsize=64)
def parse_text(text: str) -> dict[str, Any]:
    """The parser's document for Bicep source (line numbers included); BicepSyntaxError when it does not parse."""
    from pycep import BicepParser

    try:
        return BicepParser(add_line_numbers=True).parse(text=text)
    except Exception as exc:  # lark's UnexpectedInput and pycep's ValueError: one message a reader can act on
        raise BicepSyntaxError(" ".join(str(exc).split())[:400]) from None


def parse(name: str) -> dict[str, Any]:
    """The parser's document for a file under infra/."""
    return parse_text(read(name))


def _document(text_or_doc: str | dict[str, Any]) -> dict[str, Any]:
    return parse_text(text_or_doc) if isinstance(text_or_doc, str) else text_or_doc


def declaration(text: str | dict[str, Any], keyword: str, name: str) -> dict[str, Any]:
    """The parsed declaration ``keyword name`` (keyword: param, var, resource, module, output)."""
    section = _document(text).get(SECTIONS[keyword]) or {}
    if name not in section:
        raise KeyError(f"no {keyword} {name} in the Bicep text")
    return section[name]


def strip_lines(value: Any) -> Any:
    """A parsed value without the parser's line-number keys."""
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k not in LINE_KEYS}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


def is_expression(value: Any) -> bool:
    """The parser's expression nodes: ``{"function": {"type": ..., ...}}`` or ``{"operator": {"type": ..., ...}}`` (a
    literal object may well have a ``function`` key, holding a string)."""
    if not isinstance(value, dict):
        return False
    keys = set(value) - set(LINE_KEYS)
    return len(keys) == 1 and keys <= {"function", "operator"} and isinstance(value[keys.pop()], dict)


def _literal(value: Any, where: str) -> Any:
    if is_expression(value):
        raise BicepSyntaxError(f"{where} is an expression, not a literal")
    if isinstance(value, dict):
        return {k: _literal(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        raise BicepSyntaxError(f"{where} is an interpolated string, not a literal")
    return value


def literal(text: str | dict[str, Any], var_name: str) -> Any:
    """The value of ``var var_name = <literal>``: objects, arrays, strings, numbers, true/false/null."""
    return _literal(strip_lines(declaration(text, "var", var_name)["value"]), f"var {var_name}")


def value(text: str | dict[str, Any], keyword: str, name: str) -> Any:
    """What a declaration holds, expressions included: a var's value, a resource's or module's config (for a loop,
    the loop body's config), an output's value, a param's default."""
    decl = strip_lines(declaration(text, keyword, name))
    if keyword == "var" or keyword == "output":
        return decl["value"]
    if keyword == "param":
        return decl.get("default")
    config = decl.get("config")
    # [for x in y: {...}] and `= if (cond) {...}`: the parser wraps the body's config in the loop's / condition's
    while isinstance(config, dict) and set(config) <= {"loop_type", "condition", "config"} and "config" in config:
        config = config["config"]
    return config


def loop(text: str | dict[str, Any], keyword: str, name: str) -> dict[str, Any] | None:
    """A resource or module loop's header (``loop_type``: its item and the collection expression), or None."""
    config = strip_lines(declaration(text, keyword, name)).get("config")
    return config if isinstance(config, dict) and "loop_type" in config else None


def object_keys(text: str | dict[str, Any], keyword: str, name: str) -> list[str]:
    """Top-level property names of the object declared as ``keyword name`` (values may be expressions)."""
    held = value(text, keyword, name)
    if not isinstance(held, dict) or is_expression(held):
        raise BicepSyntaxError(f"{keyword} {name} is not an object")
    return list(held)


def param_default(text: str | dict[str, Any], name: str) -> Any:
    """The default of ``param name <type> = <default>``; KeyError when it has none."""
    decl = declaration(text, "param", name)
    if decl.get("default") is None:
        raise KeyError(f"param {name} has no default")
    return strip_lines(decl["default"])


def body(text: str, keyword: str, name: str) -> str:
    """The source text of a declaration (its lines, as the parser located them), for plain-text checks."""
    decl = declaration(text, keyword, name)
    start, end = decl["__start_line__"], decl["__end_line__"]
    return "\n".join(text.splitlines()[start - 1 : end])
