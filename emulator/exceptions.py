"""Azure-shaped errors: the two body shapes, and the codes Azure answers in front of every resource provider.

Two shapes exist:

* ARM's ``{"error": {"code", "message"}}`` (:class:`AzureError`; Azure REST API guidelines, and the observed
  ``ScopeLocked`` body in the contracts reference);
* the Batch data plane's ``BatchError`` model (:class:`BatchServiceError`).

A service's own codes live in its ``exceptions.py`` (``emulator/compute/``, ``emulator/batch/``,
``emulator/resources/``, ``emulator/locks/``, ``emulator/eventgrid/``), one class per Azure error code, built on
:class:`ArmError` or :class:`PlaneError` the way moto builds its per-service exceptions. This module holds the
ARM-wide codes and the ones the dispatcher (``emulator/azure.py``) answers: authentication, routing, api-versions,
role denials and injected faults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# --------------------------------------------------------------------------------------------
# The two shapes
# --------------------------------------------------------------------------------------------


class AzureError(Exception):
    """An error answered the way Azure Resource Manager answers it.

    ARM bodies are ``{"error": {"code", "message"}}`` (Azure REST API guidelines, and the
    observed ``ScopeLocked`` body in the contracts reference).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BatchServiceError(AzureError):
    """An error answered the way the Batch *data plane* answers it (``BatchError`` model).

    Shape: ``{"code", "message": {"lang", "value"}, "values": [{"key", "value"}]}`` (azure-batch 15
    ``BatchError``/``BatchErrorMessage``/``BatchErrorDetail``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        values: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, code, message, headers=headers)
        self.values = dict(values or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "odata.metadata": "https://emulator"
                              "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
            "code": self.code,
            "message": {"lang": "en-US", "value": self.message},
        }
        if self.values:
            body["values"] = [{"key": k, "value": v} for k, v in self.values.items()]
        return body


# --------------------------------------------------------------------------------------------
# One class per code: the bases
# --------------------------------------------------------------------------------------------


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


class PlaneError(BatchServiceError):
    """A code answered on either plane, in the shape of the plane that asked (``plane``).

    * ``"batch"`` (Batch data plane): the ``BatchError`` model, with ``values`` as its ``values``;
    * anything else (``"arm"``, management plane): ARM's ``{"error": {"code", "message"}}``, with the values folded
      into the message.

    Status and code are the class's, as for :class:`ArmError`.
    """

    status = 400
    code = ""
    default_message = ""

    def __init__(self, message: str | None = None, values: Mapping[str, str] | None = None, *, plane: str,
                 status: int | None = None, headers: Mapping[str, str] | None = None) -> None:
        cls = type(self)
        text = cls.default_message if message is None else message
        self.plane = plane
        if plane != "batch" and values:
            details = "; ".join(f"{k}: {v}" for k, v in values.items())
            text = f"{text} ({details})"
            values = None
        super().__init__(status or cls.status, cls.code, text, values=values, headers=headers)

    def body(self) -> dict[str, Any]:
        return super().body() if self.plane == "batch" else AzureError.body(self)


# --------------------------------------------------------------------------------------------
# ARM-wide codes
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The dispatcher's codes (emulator/azure.py, emulator/authorization.py)
# --------------------------------------------------------------------------------------------


class AuthenticationFailed(PlaneError):
    """No bearer token: 401 on either plane, with the ``WWW-Authenticate`` challenge the SDKs' auth policies read."""

    status = 401
    code = "AuthenticationFailed"
    default_message = "Authentication failed. The 'Authorization' header is missing or is not a Bearer token."
    challenge = 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'

    def __init__(self, *, plane: str) -> None:
        super().__init__(plane=plane, headers={"WWW-Authenticate": self.challenge})


class AuthorizationFailed(ArmError):
    """ARM's answer for a missing role assignment (Learn: "Troubleshoot Azure RBAC", AuthorizationFailed)."""

    status = 403
    code = "AuthorizationFailed"


class MethodNotAllowed(ArmError):
    status = 405
    code = "MethodNotAllowed"


class InvalidResourceType(ArmError):
    status = 404
    code = "InvalidResourceType"


class MissingApiVersionParameter(ArmError):
    code = "MissingApiVersionParameter"
    default_message = "The api-version query parameter (?api-version=) is required for all requests."


class InvalidApiVersionParameter(ArmError):
    code = "InvalidApiVersionParameter"


class TooManyRequests(PlaneError):
    """An injected ``throttle`` fault."""

    status = 429
    code = "TooManyRequests"


class ServiceUnavailable(PlaneError):
    status = 503
    code = "ServiceUnavailable"


class InternalServerError(PlaneError):
    """A 5xx other than 503 (its status is the caller's), or a bug in the emulator."""

    status = 500
    code = "InternalServerError"


def injected_fault(status: int, message: str, *, plane: str, headers: Mapping[str, str] | None = None) -> PlaneError:
    """The error an injected fault answers with ``status``: 429 TooManyRequests, 503 ServiceUnavailable, any other
    status InternalServerError."""
    cls = {429: TooManyRequests, 503: ServiceUnavailable}.get(status, InternalServerError)
    return cls(message, plane=plane, status=status, headers=headers)
