"""Settings introduced for issue 13: the Teams URL as a Key Vault reference, and the Retry-After cap."""

from __future__ import annotations

import pytest

from shared.config.settings import SettingsError, load_settings

BASE = {"AUTOPILOT_SUBSCRIPTION_ID": "00000000-0000-4000-8000-000000000001",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_an_unresolved_key_vault_reference_says_what_to_grant() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(
            {**BASE,
             "AUTOPILOT_TEAMS_WEBHOOK_URL": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/teams-webhook-url)"})
    assert "Key Vault Secrets User" in str(raised.value)


def test_retry_after_cap_defaults_to_a_minute_and_is_bounded() -> None:
    assert load_settings(BASE).retry.retry_after_max == 60
    assert load_settings({**BASE, "AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS": "5"}).retry.retry_after_max == 5
    with pytest.raises(SettingsError):
        load_settings({**BASE, "AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS": "3600"})
