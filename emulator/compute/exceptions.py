"""Microsoft.Compute's errors: one class per Azure error code the emulated Compute answers.

ARM-wide codes (``ResourceNotFound``, ``LocationRequired``, ``InvalidTag``) come from ``emulator/exceptions.py``.
"""

from __future__ import annotations

from emulator.exceptions import ArmError, InvalidTag, LocationRequired, ResourceNotFound

__all__ = [
    "BadRequest", "CannotDeleteResource", "Conflict", "ForcedOperationFailure", "InvalidParameter",
    "InvalidResourceName", "InvalidTag", "LocationRequired", "NotFound", "OperationNotAllowed",
    "ParentResourceNotFound", "PlatformImageNotFound", "PropertyChangeNotAllowed", "ResourceNotFound",
]


class InvalidParameter(ArmError):
    code = "InvalidParameter"

    @classmethod
    def missing(cls, path: str) -> InvalidParameter:
        """A required property that the body does not carry (or carries as null)."""
        return cls(f"Required parameter '{path}' is missing (null).")


class InvalidResourceName(ArmError):
    code = "InvalidResourceName"


class BadRequest(ArmError):
    code = "BadRequest"


class PropertyChangeNotAllowed(ArmError):
    """409 for an immutable property of a gallery image or version; a gallery's location change answers 400."""

    status = 409
    code = "PropertyChangeNotAllowed"


class NotFound(ArmError):
    status = 404
    code = "NotFound"


class PlatformImageNotFound(ArmError):
    status = 404
    code = "PlatformImageNotFound"


class ParentResourceNotFound(ArmError):
    status = 404
    code = "ParentResourceNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(f"Can not perform requested operation on nested resource. Parent resource '{name}' not found.")


class Conflict(ArmError):
    status = 409
    code = "Conflict"

    @classmethod
    def operation_in_progress(cls, what: str) -> Conflict:
        """A write while the resource's previous long-running operation is still running."""
        return cls("The request failed due to conflict with a concurrent request: "
                   f"an operation on {what} is still in progress.")


class OperationNotAllowed(ArmError):
    status = 409
    code = "OperationNotAllowed"


class CannotDeleteResource(ArmError):
    status = 409
    code = "CannotDeleteResource"
    default_message = "Can not delete resource before nested resources are deleted."


class ForcedOperationFailure(ArmError):
    """The error a scenario forced on a long-running operation (``fail_next_operation``): its code is the scenario's."""

    status = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
