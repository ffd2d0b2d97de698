"""Every setting the code reads is in local.settings.sample.json, the README and the Function App.

The names come from the code itself: the reader calls in shared/config/settings.py
(``r.required/optional/number/raw("NAME", ...)``) and the ``%NAME%`` schedule references of the
timer triggers. A setting missing from the Function App fails at the first invocation in Azure;
one missing from the sample or the README is a setting nobody knows about.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra import bicep

ROOT = bicep.ROOT
SAMPLE = ROOT / "local.settings.sample.json"
README = ROOT / "README.md"

# Settings the code reads that the Function App deliberately does not set: the one list, with why.
INFRA_EXCEPTIONS = {
    "AzureWebJobsStorage": "a connection string (needs shared keys, which are off); the app and the host use the "
                           "identity-based "
                           "AzureWebJobsStorage__accountName/__credential/__clientId/__tableServiceUri "
    "settings instead",
    "AUTOPILOT_CREDENTIAL": "emulator only: the default (DefaultAzureCredential -> the user-assigned identity) is what "
                            "Azure needs",
    "AUTOPILOT_CA_BUNDLE": "emulator only: trusts the local emulator's CA; Azure endpoints use the platform CA store",
    "AUTOPILOT_ARM_ENDPOINT": "emulator and sovereign clouds only: the default is Azure public cloud's "
                              "https://management.azure.com",
    "AUTOPILOT_EVENTS_TOPIC_KEY": "unused with Entra ID: the custom topic has local auth disabled and the app's "
                                  "identity is an EventGrid Data Sender",
}

# The Functions runtime's own settings, allowed in the sample although the app's code does not read them.
RUNTIME_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags", "AzureWebJobsStorage", "AZURE_CLIENT_ID"}
RUNTIME_PREFIXES = ("AzureWebJobsStorage__",)

# The app-settings objects of the Function App (modules/functionapp.bicep).
APP_SETTINGS_VARS = ("tuningDefaults", "deploymentSettings")

_READER_CALL = re.compile(r"\br\.(?:required|optional|number|raw)\(\s*\"([A-Za-z0-9_]+)\"")
_SETTING_REF = re.compile(r"%([A-Za-z0-9_]+)%")


def settings_read_by_code() -> list[str]:
    names = _READER_CALL.findall((ROOT / "shared" / "config" / "settings.py").read_text(encoding="utf-8"))
    for path in [*sorted((ROOT / "handlers").glob("*.py")), ROOT / "function_app.py"]:
        if path.is_file():
            names += _SETTING_REF.findall(path.read_text(encoding="utf-8"))
    return sorted(set(names))


def sample_values() -> dict[str, str]:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]


def infra_app_settings() -> dict[str, list[str]]:
    """Setting name -> the var(s) of modules/functionapp.bicep that set it."""
    text = bicep.read("modules/functionapp.bicep")
    found: dict[str, list[str]] = {}
    for var in APP_SETTINGS_VARS:
        for key in bicep.object_keys(text, "var", var):
            found.setdefault(key, []).append(var)
    return found


def test_the_code_reads_settings() -> None:
    names = settings_read_by_code()
    assert "AUTOPILOT_SUBSCRIPTION_ID" in names and "AUTOPILOT_WATCH_SCHEDULE" in names, names
    assert len(names) > 20


def test_every_setting_is_in_the_sample() -> None:
    missing = [n for n in settings_read_by_code() if n not in sample_values()]
    assert not missing, f"local.settings.sample.json has no value for {missing}"


def test_sample_has_no_setting_the_code_does_not_read() -> None:
    read = set(settings_read_by_code())
    extra = [k for k in sample_values() if k not in read and k not in RUNTIME_SETTINGS
             and not k.startswith(RUNTIME_PREFIXES)]
    assert not extra, f"local.settings.sample.json sets {extra}, which nothing reads"


def test_every_setting_is_in_the_readme_configuration_reference() -> None:
    if not README.is_file():
        pytest.fail("README.md does not exist yet: it must have a 'Configuration reference' section naming every "
                    "setting in backticks")
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"^(#+)\s+Configuration reference\b.*$", text, re.MULTILINE | re.IGNORECASE)
    assert heading, "README.md has no 'Configuration reference' section"
    level = len(heading.group(1))
    rest = text[heading.end() :]
    following = re.search(rf"^#{{1,{level}}}\s", rest, re.MULTILINE)
    section = rest[: following.start()] if following else rest
    missing = [n for n in settings_read_by_code() if f"`{n}`" not in section]
    assert not missing, f"README.md's Configuration reference does not name {missing} (in backticks)"


def test_every_setting_is_set_on_the_function_app() -> None:
    infra = infra_app_settings()
    missing = [n for n in settings_read_by_code() if n not in infra and n not in INFRA_EXCEPTIONS]
    assert not missing, (f"infra/modules/functionapp.bicep does not set {missing}: add them to deploymentSettings or "
                         "tuningDefaults")
    twice = {k: v for k, v in infra.items() if len(v) > 1}
    assert not twice, f"settings set in more than one app-settings object: {twice}"


def test_exceptions_are_real_and_not_set() -> None:
    read = set(settings_read_by_code())
    infra = infra_app_settings()
    for name, why in INFRA_EXCEPTIONS.items():
        assert name in read, f"INFRA_EXCEPTIONS lists {name}, which the code no longer reads"
        assert name not in infra, f"{name} is an exception ({why}) but infra sets it"
        assert why.strip()


def test_identity_based_storage_and_telemetry() -> None:
    infra = infra_app_settings()
    for name in ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
                 "AzureWebJobsStorage__tableServiceUri", "AZURE_CLIENT_ID", "APPLICATIONINSIGHTS_CONNECTION_STRING",
                 "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        assert name in infra, f"the Function App must set {name}"
    assert "FUNCTIONS_WORKER_RUNTIME" not in infra, ("Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME (the runtime "
                                                     "is in functionAppConfig)")
    text = re.sub(r"\s+", " ", bicep.read("modules/functionapp.bicep"))
    assert "AzureWebJobsStorage__credential: 'managedidentity'" in text
    assert "name: 'python' version: '3.11'" in text
    assert "name: 'FC1'" in text and "type: 'UserAssignedIdentity'" in text
    storage = re.sub(r"\s+", " ", bicep.read("modules/storage.bicep"))
    assert "allowSharedKeyAccess: false" in storage


def test_tuning_defaults_match_the_sample() -> None:
    # modules/functionapp.bicep tuningDefaults repeats the app's defaults; the sample shows the same ones.
    defaults = bicep.literal(bicep.read("modules/functionapp.bicep"), "tuningDefaults")
    sample = sample_values()
    differ = {k: (v, sample.get(k)) for k, v in defaults.items() if sample.get(k) != v}
    assert not differ, f"tuningDefaults and local.settings.sample.json disagree (infra, sample): {differ}"


def test_schedule_parameters_default_to_the_samples() -> None:
    main = bicep.read("main.bicep")
    sample = sample_values()
    for param, setting in (("watchSchedule", "AUTOPILOT_WATCH_SCHEDULE"), ("guardSchedule", "AUTOPILOT_GUARD_SCHEDULE"),
                           ("pipelineSchedule", "AUTOPILOT_PIPELINE_SCHEDULE"),
                           ("tablePrefix", "AUTOPILOT_TABLE_PREFIX")):
        assert bicep.param_default(main, param) == sample[setting], (f"main.bicep {param} default differs from the "
                                                                     f"sample's {setting}")


def test_state_tables_are_the_apps() -> None:
    source = (ROOT / "shared" / "core" / "state.py").read_text(encoding="utf-8")
    tables = re.findall(r'^[A-Z][A-Z_]* = "([A-Za-z][A-Za-z0-9]*)"  #', source, re.MULTILINE)
    assert tables, "no table names found in shared/core/state.py"
    assert sorted(bicep.literal(bicep.read("main.bicep"), "stateTables")) == sorted(tables)
