"""Azure Batch's errors: one class per Azure error code the emulated Batch answers, on either plane.

The same code is answered in the shape of the plane that asked (``plane``):

* ``"batch"`` (data plane): the ``BatchError`` model, ``{"odata.metadata", "code", "message": {"lang", "value"},
  "values": [{"key", "value"}]}`` (azure-batch 15 ``BatchError``/``BatchErrorDetail``);
* ``"arm"`` (management plane): ARM's ``{"error": {"code", "message"}}``, with the values folded into the message.

ARM-wide codes (``ResourceNotFound``, ``LocationRequired``, ``InvalidRequestContent``) and the codes the dispatcher
answers on both planes (``AuthenticationFailed``, the injected faults) come from ``emulator/exceptions.py``.
"""

from __future__ import annotations

from typing import Any

from emulator.exceptions import PlaneError


class BatchError(PlaneError):
    """A Batch error whose status and code are its class's; its shape is the plane's (see the module docstring)."""


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


class MissingRequiredQueryParameter(BatchError):
    code = "MissingRequiredQueryParameter"


# --- the data plane's front door (emulator/azure.py, emulator/authorization.py) ---------------


class InvalidUri(BatchError):
    status = 404
    code = "InvalidUri"


class AuthorizationFailure(BatchError):
    """403 for a missing role on the data plane (BatchErrorCodeStrings in the Batch .NET SDK docs)."""

    status = 403
    code = "AuthorizationFailure"
    default_message = "Server failed to authorize the request."


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
