"""Errors Azure Resource Manager itself answers, whatever the resource provider: one class per error code.

A service's own codes live in its ``exceptions.py`` (``emulator/compute/exceptions.py``,
``emulator/batch/exceptions.py``), built on :class:`ArmError` the way moto builds its per-service exceptions.
The body stays ARM's ``{"error": {"code", "message"}}`` (:class:`~emulator.core.AzureError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.core import AzureError


class ArmError(AzureError):
    """An ARM-shaped error whose HTTP status and code are its class's; the message is the caller's
    (or the class's ``default_message``). ``status`` overrides the class's status where Azure answers
    the same code with another status."""

    status = 400
    code = ""
    default_message = ""

    def __init__(self, message: str | None = None, *, status: int | None = None,
                 headers: Mapping[str, str] | None = None, details: list[dict[str, Any]] | None = None) -> None:
        cls = type(self)
        super().__init__(status or cls.status, cls.code, cls.default_message if message is None else message,
                         headers=headers, details=details)


class ResourceNotFound(ArmError):
    """ARM's answer for a missing tracked resource."""

    status = 404
    code = "ResourceNotFound"


class LocationRequired(ArmError):
    code = "LocationRequired"


class InvalidTag(ArmError):
    code = "InvalidTag"


class InvalidRequestContent(ArmError):
    code = "InvalidRequestContent"
