"""The Batch data-plane api-version is written once on the app side (shared/resources/clients.BATCH_API_VERSION) and
is the one the azure-batch SDK sends, so the requests the app builds itself match the SDK's."""

from __future__ import annotations

import re
from pathlib import Path

from azure.batch._configuration import BatchClientConfiguration
from azure.core.credentials import AccessToken

from shared.resources.clients import BATCH_API_VERSION

ROOT = Path(__file__).resolve().parents[2]


class _NoToken:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise AssertionError("not called")


def test_the_sdk_sends_the_same_version() -> None:
    assert BatchClientConfiguration(
        "https://acct.westeurope.batch.azure.com", _NoToken()).api_version == BATCH_API_VERSION


def test_the_version_is_written_once_in_the_app() -> None:
    spelled = re.compile(re.escape(BATCH_API_VERSION))
    files = [path for folder in ("shared", "handlers", "autopilot") for path in (ROOT / folder).rglob("*.py")]
    found = [str(p.relative_to(ROOT)) for p in [*files, ROOT / "function_app.py"]
             if spelled.search(p.read_text(encoding="utf-8"))]
    assert found == ["shared/resources/clients.py"]
