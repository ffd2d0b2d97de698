"""checkov scans infra/ with its Bicep checks, offline: no check fails, no file goes unparsed, and every skipped
check carries its reason in the Bicep (``// checkov:skip=CKV_...: why``, inside the resource it is about).

checkov runs from its own environment (.venv-checkov, requirements-checkov.txt; ``make setup`` creates it): it pins
pycep-parser 0.5.1 and an old ``packaging`` that the dev venv's pytest refuses. The network look-ups it would make
(policy downloads, Prisma Cloud mappings) are turned off (--skip-download, BC_SKIP_MAPPING).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

CHECKOV = bicep.ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_PYTHON = bicep.ROOT / ".venv-checkov" / "bin" / "python"
# What the scan must keep proving (the candidates): HTTPS only, TLS 1.2, FTPS off, managed identities,
# private blob containers, Entra-only publishing to the custom topic.
MUST_PASS = {
    "CKV_AZURE_70": "Microsoft.Web/sites.functionApp",  # Function app only over HTTPS
    "CKV_AZURE_145": "Microsoft.Web/sites.functionApp",  # Function app uses TLS 1.2
    "CKV_AZURE_78": "Microsoft.Web/sites.functionApp",  # FTP(S) deployments disabled
    "CKV_AZURE_71": "Microsoft.Web/sites.functionApp",  # managed identity
    "CKV_AZURE_3": "Microsoft.Storage/storageAccounts.storage",  # HTTPS traffic only
    "CKV_AZURE_44": "Microsoft.Storage/storageAccounts.storage",  # TLS 1.2
    # private container
    "CKV_AZURE_34": "Microsoft.Storage/storageAccounts/blobServices/containers.deadLetterContainer",
    "CKV_AZURE_192": "Microsoft.EventGrid/topics.topic",  # local auth disabled
    "CKV_AZURE_191": "Microsoft.EventGrid/topics.topic",  # managed identity
}


def run_checkov(directory: Path) -> dict[str, Any]:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} is missing: run `make setup` (it creates checkov's own environment from "
                    "requirements-checkov.txt)")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "LOG_LEVEL": "WARNING"}
    result = subprocess.run([str(CHECKOV), "-d", str(directory), "--framework", "bicep", "--skip-download", "--compact",
                             "-o", "json"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode in (0, 1), f"checkov could not run (exit {result.returncode}): {result.stderr[-2000:]}"
    document = json.loads(result.stdout)
    reports = document if isinstance(document, list) else [document]
    [report] = [r for r in reports if r.get("check_type") == "bicep"]
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_checkov(bicep.INFRA)


def test_checkov_pins_the_grammar_the_bicep_must_parse_under() -> None:
    pins = (bicep.ROOT / "requirements-checkov.txt").read_text(encoding="utf-8")
    assert (re.search(r"^checkov==3\.3\.30$", pins, re.MULTILINE)
            and re.search(r"^pycep-parser==0\.5\.1$", pins, re.MULTILINE))
    assert all(re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+$", line) for line in pins.splitlines() if line
               and not line.startswith("#")), \
        "every package in requirements-checkov.txt is pinned"
    dev = (bicep.ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^pycep-parser==\d+\.\d+\.\d+$", dev, re.MULTILINE)


def test_every_bicep_file_parses_under_checkovs_grammar_too() -> None:
    # The same files, read by the pycep-parser that checkov runs with (0.5.1): 0 parse errors.
    if not CHECKOV_PYTHON.is_file():
        pytest.fail(f"{CHECKOV_PYTHON} is missing: run `make setup`")
    script = ("import json, sys, pathlib\nfrom pycep import BicepParser\n"
              "import importlib.metadata as m\nerrors = {}\n"
              "for f in sys.argv[1:]:\n"
              "    try:\n        BicepParser().parse(file_path=pathlib.Path(f))\n"
              "    except Exception as exc:\n        errors[f] = ' '.join(str(exc).split())[:300]\n"
              "print(json.dumps({'version': m.version('pycep-parser'), 'errors': errors}))\n")
    files = [str(bicep.INFRA / name) for name in bicep.files()]
    out = subprocess.run([str(CHECKOV_PYTHON), "-c", script, *files], capture_output=True, text=True, timeout=300,
                         check=True)
    result = json.loads(out.stdout)
    assert result["version"] == "0.5.1"
    assert result["errors"] == {}, result["errors"]


def test_checkov_finds_no_failed_check_and_no_parse_error(report: dict[str, Any]) -> None:
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['check_name']} ({c['file_path']} {c['resource']})"
              for c in report["results"]["failed_checks"]]
    assert failed == [], ("checkov failed checks: fix them in the Bicep, or skip them there with a one-line reason:\n"
                          + "\n".join(failed))
    assert summary["parsing_errors"] == 0 and report["results"]["parsing_errors"] == []
    # every file was scanned: each one's resources show up in the results
    scanned = {c["file_path"].lstrip("/") for kind in ("passed_checks", "skipped_checks")
               for c in report["results"][kind]}
    assert {"main.bicep", "modules/functionapp.bicep", "modules/storage.bicep",
            "modules/custom-topic.bicep"} <= scanned, scanned
    assert summary["passed"] >= 25


def test_the_checks_that_matter_pass(report: dict[str, Any]) -> None:
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    missing = {check: resource for check, resource in MUST_PASS.items() if (check, resource) not in passed}
    assert missing == {}, f"no longer passing: {missing}"


def test_every_skip_has_a_reason_in_the_bicep(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the Bicep documents its accepted findings as checkov skips"
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
        assert reason and reason != "No comment provided" and len(reason) > 30, (
            f"{check['check_id']} on {check['resource']} is skipped without a reason")
    for name in bicep.files():
        for line in bicep.read(name).splitlines():
            if "checkov:skip=" in line:
                assert re.match(r"^\s*// checkov:skip=CKV2?_[A-Z]+_\d+: \S.{30,}$", line), (
                    f"{name}: a skip needs one check id and its reason: {line.strip()}")


def test_checkov_would_catch_a_regression(tmp_path: Path) -> None:
    # The scan is real: the storage account with HTTPS-only and TLS 1.2 taken out fails those checks.
    text = bicep.read("modules/storage.bicep").replace("supportsHttpsTrafficOnly: true",
                                                       "supportsHttpsTrafficOnly: false")
    text = text.replace("minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'")
    (tmp_path / "storage.bicep").write_text(text, encoding="utf-8")
    failed = {c["check_id"] for c in run_checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_AZURE_3", "CKV_AZURE_44"} <= failed
