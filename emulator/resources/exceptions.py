"""Microsoft.Resources's errors (resource groups, the Tags API): one class per Azure error code they answer.

ARM-wide codes (``ResourceNotFound``, ``LocationRequired``, ``InvalidTag``, ``InvalidRequestContent``) come from
``emulator/exceptions.py``.
"""

from __future__ import annotations

from emulator.exceptions import ArmError, InvalidRequestContent, InvalidTag, LocationRequired, ResourceNotFound

__all__ = ["InvalidRequestContent", "InvalidTag", "LocationRequired", "ResourceGroupNotFound", "ResourceNotFound"]


class ResourceGroupNotFound(ArmError):
    """What ARM answers for a missing group, and for anything asked inside one."""

    status = 404
    code = "ResourceGroupNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(f"Resource group '{name}' could not be found.")
