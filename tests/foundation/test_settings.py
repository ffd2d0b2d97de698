"""Settings: validated once, with messages that name the setting, the problem and a good value."""

from __future__ import annotations

import pytest

from shared.config.settings import SettingsError, load_settings

SUB = "00000000-0000-4000-8000-000000000001"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct1"
GOOD = {"AUTOPILOT_SUBSCRIPTION_ID": SUB, "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AUTOPILOT_BATCH_ACCOUNTS": ACCOUNT}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return info.value.problems


def test_minimal_settings_get_documented_defaults() -> None:
    s = load_settings(GOOD)
    assert s.subscription_id == SUB
    assert s.batch_accounts == (ACCOUNT,)
    assert s.arm_endpoint == "https://management.azure.com"
    assert s.arm_scope == "https://management.azure.com/.default"
    assert s.credential == "default"
    assert (s.backoff_initial_minutes, s.backoff_max_minutes, s.backoff_reset_hours) == (5.0, 30.0, 3.0)
    assert s.growth_step_nodes == 300
    assert s.watch_schedule == "0 * * * * *" and s.watch_full_scan_minutes == 5.0


def test_missing_required_settings_are_all_reported_with_examples() -> None:
    found = problems({})
    assert any(p.startswith("AUTOPILOT_SUBSCRIPTION_ID is missing") and "for example AUTOPILOT_SUBSCRIPTION_ID=" in p
               for p in found)
    assert any(p.startswith("AzureWebJobsStorage is missing") for p in found)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AUTOPILOT_SUBSCRIPTION_ID", "not-a-guid", "it must be a GUID"),
        ("AUTOPILOT_ARM_ENDPOINT", "http://management.azure.com", "it must be an https:// URL"),
        ("AUTOPILOT_BATCH_ACCOUNTS", "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/images/i",
         "not a Batch account resource id"),
        ("AUTOPILOT_BACKOFF_INITIAL_MINUTES", "soon", "is not a number"),
        ("AUTOPILOT_GROWTH_STEP_NODES", "5", "out of range"),
        ("AUTOPILOT_WATCH_SCHEDULE", "*/5 * * * *", "six fields"),
        ("AUTOPILOT_CREDENTIAL", "password", "use 'default'"),
        ("AUTOPILOT_CA_BUNDLE", "/nonexistent/ca.pem", "no such file"),
        ("AUTOPILOT_TABLE_PREFIX", "1bad-prefix", "letters and digits"),
    ],
)
def test_each_invalid_setting_names_itself_and_the_problem(name: str, value: str, expected: str) -> None:
    found = problems({**GOOD, name: value})
    assert len(found) == 1, found
    assert found[0].startswith(name) or name in found[0]
    assert expected in found[0]


def test_batch_accounts_of_another_subscription_are_refused() -> None:
    other = ACCOUNT.replace(SUB, "11111111-1111-4111-8111-111111111111")
    found = problems({**GOOD, "AUTOPILOT_BATCH_ACCOUNTS": f"{ACCOUNT},{other}"})
    assert len(found) == 1 and "another subscription" in found[0]


def test_emulator_credential_is_refused_for_non_loopback_endpoints() -> None:
    found = problems({**GOOD, "AUTOPILOT_CREDENTIAL": "emulator",
                      "AUTOPILOT_ARM_ENDPOINT": "https://management.azure.com"})
    assert any("not on loopback" in p for p in found)
    ok = load_settings({**GOOD, "AUTOPILOT_CREDENTIAL": "emulator", "AUTOPILOT_ARM_ENDPOINT": "https://127.0.0.1:8443"})
    assert ok.is_emulator


def test_backoff_cap_below_first_delay_is_refused() -> None:
    found = problems({**GOOD, "AUTOPILOT_BACKOFF_INITIAL_MINUTES": "20", "AUTOPILOT_BACKOFF_MAX_MINUTES": "10"})
    assert any("AUTOPILOT_BACKOFF_MAX_MINUTES" in p for p in found)


def test_identity_based_storage_is_accepted_without_a_connection_string() -> None:
    env = {k: v for k, v in GOOD.items() if k != "AzureWebJobsStorage"}
    s = load_settings({**env, "AzureWebJobsStorage__tableServiceUri": "https://mystorage.table.core.windows.net"})
    assert s.storage_connection is None and s.storage_table_endpoint == "https://mystorage.table.core.windows.net"


def test_families_file_and_inline_document_are_exclusive(tmp_path) -> None:
    path = tmp_path / "families.json"
    path.write_text('{"families": {}}')
    assert load_settings({**GOOD, "AUTOPILOT_FAMILIES_FILE": str(path)}).families_json == '{"families": {}}'
    assert any("both set" in p
               for p in problems({**GOOD, "AUTOPILOT_FAMILIES_FILE": str(path), "AUTOPILOT_FAMILIES": "{}"}))
