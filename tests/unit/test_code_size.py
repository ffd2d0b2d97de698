"""The app's own code stays readable in size (issue 14): no function over 80 lines and no module over 700 lines in
shared/ and handlers/. There is no ruff rule for function length, so it is checked here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ("shared", "handlers")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 700


def _modules() -> list[Path]:
    return sorted(p for folder in APP for p in (ROOT / folder).rglob("*.py"))


def test_the_check_sees_the_app() -> None:
    assert len(_modules()) > 50  # shared/ and handlers/ were found: the checks below are not vacuous


def test_no_function_over_80_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these into functions that each say one thing:\n" + "\n".join(long)


def test_no_module_over_700_lines() -> None:
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, "split these into modules named for what they hold:\n" + "\n".join(long)
