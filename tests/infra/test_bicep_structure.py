"""What a Bicep build would catch first, checked from the source (no Bicep CLI where this was built).

Every file tokenizes with balanced brackets; every module path exists; the params main.bicep passes
are declared by the module and every required one is passed; every ``<module>.outputs.<name>`` used
is declared; the parameters file names only declared params; azure.yaml names the service.
"""

from __future__ import annotations

import json
import re

from tests.infra import bicep

MODULE_DECL = re.compile(r"^module (\w+) '([^']+)'", re.MULTILINE)


def bicep_files() -> list[str]:
    return sorted(str(p.relative_to(bicep.INFRA)) for p in bicep.INFRA.rglob("*.bicep"))


def declared_params(text: str) -> dict[str, bool]:
    """param name -> has a default."""
    found = {}
    for m in re.finditer(r"^param (\w+) [^=\n]*(=)?", text, re.MULTILINE):
        found[m.group(1)] = m.group(2) is not None
    return found


def declared_outputs(text: str) -> set[str]:
    return set(re.findall(r"^output (\w+) ", text, re.MULTILINE))


def passed_params(text: str, module: str) -> list[str]:
    toks = bicep.declaration(text, "module", module)
    for k, t in enumerate(toks):
        if t.value == "params" and toks[k + 1].value == ":" and toks[k + 2].value == "{":
            inner = text[toks[k + 2].start : toks[bicep.closing(toks, k + 2)].end]
            return bicep.object_keys(f"var p = {inner}", "var", "p")
    return []


def test_every_file_tokenizes_with_balanced_brackets() -> None:
    assert "main.bicep" in bicep_files()
    for name in bicep_files():
        toks = bicep.tokens(bicep.read(name))
        depth = 0
        for t in toks:
            if t.kind == "punct" and t.value in "{[(":
                depth += 1
            elif t.kind == "punct" and t.value in "}])":
                depth -= 1
                assert depth >= 0, f"{name}: unbalanced {t.value!r} at line {t.line}"
        assert depth == 0, f"{name}: unclosed bracket"


def test_modules_exist_and_get_their_params() -> None:
    main = bicep.read("main.bicep")
    modules = MODULE_DECL.findall(main)
    assert modules
    for symbol, path in modules:
        module_file = bicep.INFRA / path
        assert module_file.is_file(), f"module {symbol}: {path} does not exist"
        text = bicep.read(path)
        declared = declared_params(text)
        passed = passed_params(main, symbol)
        unknown = sorted(set(passed) - set(declared))
        assert not unknown, f"module {symbol} ({path}) does not declare params {unknown}"
        missing = sorted(p for p, has_default in declared.items() if not has_default and p not in passed)
        assert not missing, f"module {symbol} ({path}) needs params {missing}"


def test_module_outputs_used_are_declared() -> None:
    main = bicep.read("main.bicep")
    outputs = {symbol: declared_outputs(bicep.read(path)) for symbol, path in MODULE_DECL.findall(main)}
    for symbol, name in re.findall(r"\b(\w+)\.outputs\.(\w+)", main):
        assert symbol in outputs, f"{symbol}.outputs.{name}: {symbol} is not a module"
        assert name in outputs[symbol], f"module {symbol} has no output {name}"


def test_parameters_file_names_declared_params() -> None:
    params = json.loads((bicep.INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    declared = declared_params(bicep.read("main.bicep"))
    unknown = sorted(set(params) - set(declared))
    assert not unknown, f"main.parameters.json sets {unknown}, which main.bicep does not declare"
    missing = sorted(p for p, has_default in declared.items() if not has_default and p not in params)
    assert not missing, f"main.parameters.json does not set the required params {missing}"


def test_azure_yaml_names_the_service() -> None:
    text = (bicep.ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^services:\n  autopilot:\n    project: \.\n    language: python\n    host: function$", text, re.MULTILINE)
    functionapp = bicep.read("modules/functionapp.bicep")
    assert "'azd-service-name': 'autopilot'" in functionapp, "azd finds the Function App by its azd-service-name tag"
    for hook in re.findall(r"run: \./(\S+)", text):
        assert (bicep.ROOT / hook).is_file(), f"azure.yaml hook {hook} does not exist"
