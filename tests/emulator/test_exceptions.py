"""The emulator's errors are named: one class per Azure error code, and no error built by hand outside them."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from emulator.exceptions import ArmError, AzureError, PlaneError

EMULATOR = Path(__file__).resolve().parents[2] / "emulator"
SHAPES = {"AzureError", "BatchServiceError", "ArmError", "PlaneError", "BatchError", "EventGridError"}
SERVICES = ["emulator.exceptions", "emulator.compute.exceptions", "emulator.batch.exceptions",
            "emulator.resources.exceptions", "emulator.locks.exceptions", "emulator.eventgrid.exceptions"]


def test_no_module_builds_an_error_by_hand() -> None:
    """Only exceptions.py modules call a shape's constructor; everything else raises a named class."""
    offenders = []
    for path in sorted(EMULATOR.rglob("*.py")):
        if path.name == "exceptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in SHAPES:
                    offenders.append(f"{path.relative_to(EMULATOR.parent)}:{node.lineno} {name}(...)")
    assert offenders == []


@pytest.mark.parametrize("module_name", SERVICES)
def test_one_class_per_code_with_its_status(module_name: str) -> None:
    module = importlib.import_module(module_name)
    own = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
           if cls.__module__ == module_name and issubclass(cls, AzureError) and cls.__name__ not in SHAPES]
    assert own, f"{module_name} defines no error class"
    by_code: dict[str, list[str]] = {}
    for cls in own:
        assert issubclass(cls, ArmError | PlaneError), f"{cls.__name__} is not built on ArmError or PlaneError"
        if cls.code:  # ForcedOperationFailure takes the scenario's code
            by_code.setdefault(cls.code, []).append(cls.__name__)
            assert 400 <= cls.status < 600, f"{cls.__name__} has status {cls.status}"
    assert {code: names for code, names in by_code.items() if len(names) > 1} == {}
