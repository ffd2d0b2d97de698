"""The size limits of issue 14: no function over 80 lines outside tests and benchmarks, no module over 700 lines
outside tests. Ruff checks the 120-character lines; it has no rule for function or module length, so this does."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 700
# Not the project's code: virtual environments, npm packages, generated output.
NOT_OURS = {".venv", ".venv-checkov", "node_modules", ".git", "out"}


def python_files(root: Path, exempt: set[str]) -> list[Path]:
    """Every .py file under root, except under the top-level folders NOT_OURS and ``exempt``."""
    return sorted(path for path in root.rglob("*.py") if path.relative_to(root).parts[0] not in NOT_OURS | exempt)


def long_functions(path: Path, root: Path) -> list[str]:
    """Functions (methods and nested functions included) longer than the limit, from ``def`` to their last line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(root)}:{node.lineno} {node.name}: {length} lines"
            for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES]


def long_modules(root: Path, exempt: set[str]) -> list[str]:
    return [f"{path.relative_to(root)}: {n} lines" for path in python_files(root, exempt)
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]


def test_no_function_is_over_80_lines_outside_tests_and_benchmarks() -> None:
    too_long = [f for path in python_files(ROOT, {"tests", "bench"}) for f in long_functions(path, ROOT)]
    assert not too_long, (f"split these functions by meaning (at most {MAX_FUNCTION_LINES} lines each):\n"
                          + "\n".join(too_long))


def test_no_module_is_over_700_lines_outside_tests() -> None:
    too_long = long_modules(ROOT, {"tests"})
    assert not too_long, (f"split these modules into modules that explain themselves (at most {MAX_MODULE_LINES} "
                          "lines each):\n" + "\n".join(too_long))


def test_the_checks_see_what_is_too_long(tmp_path: Path) -> None:
    # The two tests above pass by finding nothing: show that they would find something.
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "app").mkdir()
    (tmp_path / "tests").mkdir()
    sample = tmp_path / "app" / "sample.py"
    sample.write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}\n", encoding="utf-8")
    (tmp_path / "tests" / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1), encoding="utf-8")
    (tmp_path / "app" / "just_fits.py").write_text("x = 1\n" * MAX_MODULE_LINES, encoding="utf-8")
    assert long_functions(sample, tmp_path) == [f"app/sample.py:6 long: {MAX_FUNCTION_LINES + 1} lines"]
    assert python_files(tmp_path, {"tests"}) == [tmp_path / "app" / "just_fits.py", sample]
    assert long_modules(tmp_path, set()) == [f"tests/big.py: {MAX_MODULE_LINES + 1} lines"]
    assert long_modules(tmp_path, {"tests"}) == []
