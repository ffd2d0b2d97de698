"""One rule for a Batch account id (shared/core/resource_ids.is_batch_account_id): settings, families, their schema and
the stall event all accept and refuse the same ids."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.config.families import FamilyConfigError, families_from_dict
from shared.config.settings import SettingsError, load_settings
from shared.core.event_routing import POOL_RESIZE_STALLED, read_stall_event
from shared.core.resource_ids import is_batch_account_id

SUB = "00000000-0000-4000-8000-000000000001"
GROUP = f"/subscriptions/{SUB}/resourceGroups/batch-rg"
GOOD = f"{GROUP}/providers/Microsoft.Batch/batchAccounts/renderweu"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "families.schema.json").read_text())

CASES = [
    (GOOD, True),
    (GOOD.lower().replace("renderweu", "RenderWEU"), True),
    (f"{GROUP}/providers/Microsoft.Batch/batchAccounts/a1", False),  # Azure: 3-24 characters
    (f"{GROUP}/providers/Microsoft.Batch/batchAccounts/render-weu", False),  # letters and digits only
    (f"{GROUP}/providers/Microsoft.Batch/batchAccounts/{'a' * 25}", False),
    (f"{GROUP}/providers/Microsoft.Batch/batchAccounts/renderweu/pools/p", False),
    (f"{GROUP}/providers/Microsoft.Storage/storageAccounts/renderweu", False),
    (f"/subscriptions/{SUB}/providers/Microsoft.Batch/batchAccounts/renderweu", False),  # no resource group
    (f"{GOOD}/providers/Microsoft.Batch/batchAccounts/other", False),  # an extension id, not an account
    (f"/subscriptions/{SUB}/resourceGroups/batch rg/providers/Microsoft.Batch/batchAccounts/renderweu", False),
]


def _family_doc(account: str) -> dict[str, Any]:
    return {"families": {"gpu": {
        "gallery": {"resourceGroup": "images-rg", "name": "gal", "imageDefinition": "gpu", "osType": "Linux",
                    "hyperVGeneration": "V2", "location": "westeurope"},
        "imageResourceGroup": "images-rg",
        "pools": [{"account": account, "vmSize": "Standard_D4ds_v5", "dedicated": 2}],
    }}}


def _settings_accept(account: str) -> bool:
    try:
        load_settings({"AUTOPILOT_SUBSCRIPTION_ID": SUB, "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                       "AUTOPILOT_BATCH_ACCOUNTS": account})
    except SettingsError as err:
        return not any("not a Batch account resource id" in p for p in err.problems)
    return True


def _families_accept(account: str) -> bool:
    try:
        families_from_dict(copy.deepcopy(_family_doc(account)))
    except FamilyConfigError as err:
        assert all("account" in p for p in err.problems), err.problems
        return False
    return True


def _stall_accepts(account: str) -> bool:
    envelope = {"eventType": POOL_RESIZE_STALLED, "subject": f"{account}/pools/gpu-1-0-0",
                "data": {"accountId": account, "poolId": "gpu-1-0-0"}}
    return not isinstance(read_stall_event(envelope), str)


@pytest.mark.parametrize(("account", "valid"), CASES)
def test_every_reader_applies_the_same_rule(account: str, valid: bool) -> None:
    assert is_batch_account_id(account) is valid
    assert _settings_accept(account) is valid
    assert _families_accept(account) is valid
    assert _stall_accepts(account) is valid
    schema_ok = not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(_family_doc(account)))
    assert schema_ok is valid


@pytest.mark.parametrize(("change", "reason"), [
    ({"poolId": ".."}, "accountId/poolId"),
    ({"poolId": "gpu\nERROR forged"}, "accountId/poolId"),
    ({"poolId": "gpu-1-0-0\n"}, "accountId/poolId"),
    ({"accountId": GOOD + "\n"}, "accountId/poolId"),
    ({"subject": f"{GOOD}/pools/other"}, "does not name the pool"),
    ({"eventType": "Other.Event"}, "of type"),
])
def test_a_stall_event_names_one_pool_or_is_ignored_with_the_reason(change: dict[str, str], reason: str) -> None:
    data = {"accountId": change.get("accountId", GOOD), "poolId": change.get("poolId", "gpu-1-0-0")}
    envelope = {"eventType": change.get("eventType", POOL_RESIZE_STALLED),
                "subject": change.get("subject", f"{GOOD}/pools/{data['poolId']}"), "data": data}
    outcome = read_stall_event(envelope)
    assert isinstance(outcome, str) and reason in outcome
    assert read_stall_event({**envelope, "eventType": POOL_RESIZE_STALLED, "subject": f"{GOOD}/pools/gpu-1-0-0",
                             "data": {"accountId": GOOD, "poolId": "gpu-1-0-0"}}) == (GOOD, "gpu-1-0-0")
