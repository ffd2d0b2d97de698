"""What a Bicep build would catch first, checked on the files as a real Bicep grammar reads them (pycep-parser;
tests/infra/bicep.py). No Bicep CLI is needed.

Every file parses; every module path exists; the params main.bicep passes are declared by the module and every
required one is passed; every ``<module>.outputs.<name>`` used is declared; the parameters file names only declared
params; azure.yaml names the service.
"""

from __future__ import annotations

import json
import re

from tests.infra import bicep


def bicep_files() -> list[str]:
    return bicep.files()


def declared_params(name: str) -> dict[str, bool]:
    """param name -> has a default."""
    return {p: decl.get("default") is not None for p, decl in (bicep.parse(name).get("parameters") or {}).items()}


def declared_outputs(name: str) -> set[str]:
    return set(bicep.parse(name).get("outputs") or {})


def modules(name: str = "main.bicep") -> dict[str, str]:
    """module symbol -> the path it names (relative to infra/)."""
    return {symbol: decl["detail"]["path"] for symbol, decl in (bicep.parse(name).get("modules") or {}).items()}


def passed_params(name: str, module: str) -> list[str]:
    config = bicep.value(bicep.parse(name), "module", module)
    return list(config.get("params") or {})


def test_every_file_parses_with_a_real_bicep_grammar() -> None:
    assert "main.bicep" in bicep_files() and len(bicep_files()) > 5
    errors = {}
    for name in bicep_files():
        try:
            document = bicep.parse(name)
        except bicep.BicepSyntaxError as exc:
            errors[name] = str(exc)
            continue
        assert document.get("resources") or document.get("modules"), f"{name}: parsed, but declares nothing"
    assert errors == {}, f"files the Bicep grammar cannot parse: {errors}"


def test_the_parser_refuses_broken_bicep() -> None:
    # The grammar is real: an unclosed object, or a loop without its collection, does not parse.
    for broken in ("resource r 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n",
                   "var v = [for : 1]\n"):
        try:
            bicep.parse_text(broken)
        except bicep.BicepSyntaxError:
            continue
        raise AssertionError(f"parsed broken Bicep: {broken!r}")


def test_modules_exist_and_get_their_params() -> None:
    found = modules()
    assert found
    for symbol, path in found.items():
        module_file = bicep.INFRA / path
        assert module_file.is_file(), f"module {symbol}: {path} does not exist"
        declared = declared_params(path)
        passed = passed_params("main.bicep", symbol)
        unknown = sorted(set(passed) - set(declared))
        assert not unknown, f"module {symbol} ({path}) does not declare params {unknown}"
        missing = sorted(p for p, has_default in declared.items() if not has_default and p not in passed)
        assert not missing, f"module {symbol} ({path}) needs params {missing}"


def test_module_outputs_used_are_declared() -> None:
    main = bicep.read("main.bicep")
    outputs = {symbol: declared_outputs(path) for symbol, path in modules().items()}
    for symbol, name in re.findall(r"\b(\w+)\.outputs\.(\w+)", main):
        assert symbol in outputs, f"{symbol}.outputs.{name}: {symbol} is not a module"
        assert name in outputs[symbol], f"module {symbol} has no output {name}"


def test_parameters_file_names_declared_params() -> None:
    params = json.loads((bicep.INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    declared = declared_params("main.bicep")
    unknown = sorted(set(params) - set(declared))
    assert not unknown, f"main.parameters.json sets {unknown}, which main.bicep does not declare"
    missing = sorted(p for p, has_default in declared.items() if not has_default and p not in params)
    assert not missing, f"main.parameters.json does not set the required params {missing}"


def test_azure_yaml_names_the_service() -> None:
    text = (bicep.ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^services:\n  autopilot:\n    project: \.\n    language: python\n    host: function$", text,
                     re.MULTILINE)
    functionapp = bicep.read("modules/functionapp.bicep")
    assert "'azd-service-name': 'autopilot'" in functionapp, "azd finds the Function App by its azd-service-name tag"
    for hook in re.findall(r"run: \./(\S+)", text):
        assert (bicep.ROOT / hook).is_file(), f"azure.yaml hook {hook} does not exist"
