"""Every default is written once (shared/config/settings.py DEFAULTS): the settings reader, the watch policy and the
backoff all start from it."""

from __future__ import annotations

import dataclasses

import pytest

from shared.config.settings import DEFAULTS, SettingsError, load_settings
from shared.watch.backoff import ExponentialBackoff
from shared.watch.pool_policy import WatchPolicy

ENV = {"AUTOPILOT_SUBSCRIPTION_ID": "00000000-0000-4000-8000-000000000001",
       "AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_unset_settings_are_the_defaults() -> None:
    loaded = load_settings(ENV)
    kept = {"subscription_id", "batch_accounts", "storage_connection"}
    for f in dataclasses.fields(DEFAULTS):
        if f.name not in kept:
            assert getattr(loaded, f.name) == getattr(DEFAULTS, f.name), f.name


def test_the_policies_defaults_are_the_settings_defaults() -> None:
    assert WatchPolicy.from_settings(DEFAULTS) == WatchPolicy()
    assert ExponentialBackoff.from_settings(DEFAULTS) == ExponentialBackoff()


def test_a_bad_value_is_answered_with_the_default_as_example() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**ENV, "AUTOPILOT_GROWTH_STEP_NODES": "lots", "AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS": "99"})
    assert any(f"for example AUTOPILOT_GROWTH_STEP_NODES={DEFAULTS.growth_step_nodes}" in p
               for p in info.value.problems)
    assert any(f"AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS={DEFAULTS.retry.backoff_factor:g}" in p
               for p in info.value.problems)
