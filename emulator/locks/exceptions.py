"""Microsoft.Authorization/locks's errors: one class per Azure error code the emulated locks answer.

``ScopeLocked`` is answered by the dispatcher (``emulator/azure.py``) in front of every resource provider; the rest
by the locks API itself. ARM-wide codes (``InvalidRequestContent``, ``ResourceGroupNotFound`` from a missing group)
come from ``emulator/exceptions.py`` and ``emulator/resources/exceptions.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from emulator.exceptions import ArmError, InvalidRequestContent

__all__ = ["InvalidFilter", "InvalidLockName", "InvalidRequestContent", "InvalidScope", "LockNotFound",
           "ScopeLocked"]


class ScopeLocked(ArmError):
    """A write or delete a lock forbids. Message and status as observed from Azure (contracts reference,
    ``arm_ScopeLocked_error_body_observed_Azure-apiops-issue606.json``: 409 with this wording)."""

    status = 409
    code = "ScopeLocked"

    def __init__(self, target: str, operation: str, lock_scopes: Iterable[str]) -> None:
        scopes = "', '".join(lock_scopes)
        super().__init__(f"The scope '{target}' cannot perform {operation} operation because following scope(s) "
                         f"are locked: '{scopes}'. Please remove the lock and try again.")


class InvalidScope(ArmError):
    code = "InvalidScope"


class LockNotFound(ArmError):
    status = 404
    code = "LockNotFound"


class InvalidLockName(ArmError):
    code = "InvalidLockName"


class InvalidFilter(ArmError):
    code = "InvalidFilter"
