"""Azure Batch's errors: one class per Azure error code the emulated Batch answers, on either plane.

The same code is answered in the shape of the plane that asked (``plane``):

* ``"batch"`` (data plane): the ``BatchError`` model, ``{"odata.metadata", "code", "message": {"lang", "value"},
  "values": [{"key", "value"}]}`` (azure-batch 15 ``BatchError``/``BatchErrorDetail``);
* ``"arm"`` (management plane): ARM's ``{"error": {"code", "message"}}``, with the values folded into the message.

ARM-wide codes (``ResourceNotFound``, ``LocationRequired``, ``InvalidRequestContent``) come from
``emulator/exceptions.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.core import AzureError, BatchServiceError


class BatchError(BatchServiceError):
    """A Batch error whose status and code are its class's; its shape is the plane's (see the module docstring)."""

    status = 400
    code = ""
    default_message = ""

    def __init__(self, message: str | None = None, values: Mapping[str, str] | None = None, *, plane: str,
                 status: int | None = None) -> None:
        cls = type(self)
        text = cls.default_message if message is None else message
        self.plane = plane
        if plane != "batch" and values:
            details = "; ".join(f"{k}: {v}" for k, v in values.items())
            text = f"{text} ({details})"
            values = None
        super().__init__(status or cls.status, cls.code, text, values=values)

    def body(self) -> dict[str, Any]:
        return super().body() if self.plane == "batch" else AzureError.body(self)


# --- request bodies and query strings ---------------------------------------------------------


class InvalidPropertyValue(BatchError):
    code = "InvalidPropertyValue"

    @classmethod
    def of(cls, prop: str, value: Any, reason: str, *, plane: str) -> InvalidPropertyValue:
        """The service's generic answer naming the property, the value and why it is refused."""
        return cls(f"The value provided for one of the properties in the request body is invalid. {reason}",
                   {"PropertyName": prop, "PropertyValue": str(value), "Reason": reason}, plane=plane)


class MissingRequiredProperty(BatchError):
    code = "MissingRequiredProperty"

    @classmethod
    def of(cls, prop: str, *, plane: str) -> MissingRequiredProperty:
        return cls(f"A required property was not specified in the request body: {prop}.", {"PropertyName": prop},
                   plane=plane)


class InvalidMetadata(BatchError):
    code = "InvalidMetadata"


class EmptyMetadataKey(BatchError):
    code = "EmptyMetadataKey"
    default_message = "The key for one of the metadata key-value pairs is empty."


class InvalidAutoScalingSettings(BatchError):
    code = "InvalidAutoScalingSettings"


class InvalidQueryParameterValue(BatchError):
    code = "InvalidQueryParameterValue"


class OutOfRangeQueryParameterValue(BatchError):
    code = "OutOfRangeQueryParameterValue"


# --- accounts -----------------------------------------------------------------------------------


class AccountNameInvalid(BatchError):
    code = "AccountNameInvalid"


class AccountNameNotAvailable(BatchError):
    status = 409
    code = "AccountNameNotAvailable"


class InvalidResourceLocation(BatchError):
    code = "InvalidResourceLocation"


class AccountNotFound(BatchError):
    status = 404
    code = "AccountNotFound"


class PropertyCannotBeUpdated(BatchError):
    code = "PropertyCannotBeUpdated"


class OperationNotFound(BatchError):
    status = 404
    code = "OperationNotFound"


# --- pools --------------------------------------------------------------------------------------


class PoolNotFound(BatchError):
    status = 404
    code = "PoolNotFound"
    default_message = "The specified pool does not exist."


class PoolExists(BatchError):
    status = 409
    code = "PoolExists"
    default_message = "The specified pool already exists."


class PoolQuotaReached(BatchError):
    status = 409
    code = "PoolQuotaReached"


class PoolBeingDeleted(BatchError):
    status = 409
    code = "PoolBeingDeleted"
    default_message = "The specified pool has been marked for deletion and is being reclaimed."


class PoolBeingResized(BatchError):
    status = 409
    code = "PoolBeingResized"
    default_message = "The specified pool is being resized."


class OperationInvalidForCurrentState(BatchError):
    status = 409
    code = "OperationInvalidForCurrentState"


class AutoScalingEnabled(BatchError):
    status = 409
    code = "AutoScalingEnabled"
    default_message = "The specified pool has automatic scaling enabled."


class ConditionNotMet(BatchError):
    """The data plane's answer to a failed If-Match / If-None-Match / If-(Un)Modified-Since."""

    status = 412
    code = "ConditionNotMet"
    default_message = "The condition specified in the conditional header(s) was not met for a write operation."


class PreconditionFailed(BatchError):
    """The management plane's answer to a failed conditional header."""

    status = 412
    code = "PreconditionFailed"
    default_message = "The condition specified using HTTP conditional header(s) is not met."


# --- nodes and jobs -----------------------------------------------------------------------------


class NodeNotFound(BatchError):
    status = 404
    code = "NodeNotFound"
    default_message = "The specified node does not exist."


class JobExists(BatchError):
    status = 409
    code = "JobExists"
    default_message = "The specified job already exists."


class JobNotFound(BatchError):
    status = 404
    code = "JobNotFound"
    default_message = "The specified job does not exist."
