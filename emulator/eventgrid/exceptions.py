"""Event Grid's errors: one class per Azure error code the emulated Event Grid answers.

Publishing (the data plane) answers ``{"error": {"code", "message", "details": [{"code", "message"}]}}``: ARM's
shape, with one detail whose code names the precise reason (``InputJsonInvalid``) where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping

from emulator.exceptions import ArmError


class EventGridError(ArmError):
    """An Event Grid error; ``detail_code`` (the class's, unless given) adds the one-entry ``details`` list."""

    detail_code: str | None = None

    def __init__(self, message: str, *, detail_code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        detail = detail_code or type(self).detail_code
        super().__init__(message, headers=headers,
                         details=[{"code": detail, "message": message}] if detail else None)


class BadRequest(EventGridError):
    """A malformed batch of events: every such answer names ``InputJsonInvalid`` in its details."""

    code = "BadRequest"
    detail_code = "InputJsonInvalid"


class Unauthorized(EventGridError):
    status = 401
    code = "Unauthorized"


class RequestEntityTooLarge(EventGridError):
    status = 413
    code = "RequestEntityTooLarge"


class NotFound(EventGridError):
    status = 404
    code = "NotFound"
