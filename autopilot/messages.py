"""What the operator reads: error texts without Python exception class names.

The app and the local Functions host write failures as ``ClassName: message`` (as a host's log would). The CLI, the
report and the HTML page show people the message, never the class: ``HttpResponseError: (ScopeLocked) The scope ...``
reads ``(ScopeLocked) The scope ...``.
"""

from __future__ import annotations

import builtins
import re

# The exception classes that can reach a message: Python's own, azure-core's, and the app's and emulator's.
_APP_CLASSES = {"AzureError", "BatchServiceError", "SettingsError", "FamilyConfigError", "ScenarioError",
                "ConcurrencyConflict",
                "PoolIntentError", "InvalidResourceId", "ReplayInputError", "UsageError", "ScheduleError",
                "AzuriteError", "BatchErrorException",
                "HttpResponseError", "ResourceNotFoundError", "ResourceExistsError", "ResourceModifiedError",
                "ResourceNotModifiedError",
                "ClientAuthenticationError", "ServiceRequestError", "ServiceResponseError",
                "ServiceRequestTimeoutError",
                "ServiceResponseTimeoutError", "DecodeError", "IncompleteReadError", "TooManyRedirectsError",
                "ODataV4Error",
                "StreamConsumedError", "StreamClosedError", "ResponseNotReadError", "SerializationError",
                "DeserializationError",
                "TableTransactionError", "RequestEntityTooLargeError", "CredentialUnavailableError",
                "AuthenticationRequiredError"}
_CLASSES = _APP_CLASSES | {name for name, value in vars(builtins).items() if isinstance(value, type)
                           and issubclass(value, BaseException)}
_CLASS_PREFIX = re.compile(r"(?<![\w.])(?:[a-z_][\w]*\.)*(?P<name>[A-Z]\w*): ")


def without_class_names(text: str) -> str:
    """``text`` with every ``ClassName: `` (an exception class, possibly module-qualified) taken out."""
    return _CLASS_PREFIX.sub(lambda m: "" if m.group("name") in _CLASSES else m.group(0), text)


__all__ = ["without_class_names"]
