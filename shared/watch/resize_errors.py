"""Pool resize errors: a typed view of both planes, and what each one means for the pool watch.

Batch reports why the last resize fell short in ``resizeErrors`` (data plane) or
``resizeOperationStatus.errors`` (management plane), and only once the pool is steady again. The
two planes differ in shape: the data plane puts the detail in ``values: [{name, value}]`` (for
``AllocationFailed``: ``Reason``, ``Provider Error Json``, ``Provider Error Json Truncated``), the
management plane in ``details: [{code, message}]``. :class:`ResizeError` reads either into one
name → value map.

:func:`classify` turns the errors into a :class:`Diagnosis`: whether re-issuing the resize can help
(``retryable``), whether a person must change something first (``needs_person``), whether the
generic "please try resizing again" message hides a deleted image (``verify_image``: the caller
reads the image, then decides), or whether the error is noise (``ignore``). Codes are compared
case-insensitively because the same timeout is spelled ``AllocationTimedout`` on the wire and
``AllocationTimedOut`` in newer .NET sources. The reasons and fixes follow the Azure support article
"Azure Batch pool resizing failure" (SupportArticles-docs azure-batch-pool-resizing-failure.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.core import alerts

REASON = "Reason"
PROVIDER_ERROR_JSON = "Provider Error Json"
PROVIDER_ERROR_JSON_TRUNCATED = "Provider Error Json Truncated"

# The message Batch gives when a pool's image (or the resource under it) was deleted, per the
# custom-image article. Batch gives the same words for other one-off failures, so on its own it is
# only a suspicion: the caller reads the image to tell the two apart.
GENERIC_RESIZE_MESSAGE = ("There was an error encountered while performing the last resize on the pool. Please try "
                          "resizing the pool again.")

# Provider Error Json can be megabytes in theory; nothing useful lies past the first few kilobytes.
_MAX_PROVIDER_JSON = 64 * 1024
_MAX_TEXT = 2000


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"  # re-issue the resize, with backoff
    NEEDS_PERSON = "needs_person"  # stop re-issuing; alert with the diagnosis and the fix
    VERIFY_IMAGE = "verify_image"  # read the pool's image, then decide (gone → needs_person, present → retryable)
    IGNORE = "ignore"  # not an allocation failure (e.g. a resize that was stopped on purpose)


class AlertType(StrEnum):
    """The pool watch's alert types, as an enum for the decisions; the names are written once, in
    shared/core/alerts.py."""

    ALLOCATION_FAILED = alerts.ALLOCATION_FAILED
    QUOTA_REACHED = alerts.QUOTA_REACHED
    IMAGE_MISSING = alerts.IMAGE_MISSING
    RESIZE_GAVE_UP = alerts.RESIZE_GAVE_UP
    POOL_RECOVERED = alerts.POOL_RECOVERED
    NODE_LIMIT_REACHED = alerts.NODE_LIMIT_REACHED


class Cause(StrEnum):
    """The finer reason behind a diagnosis (stable strings: stored and shown in alerts)."""

    TIMEOUT = "timeout"
    CAPACITY = "capacity"
    INTERNAL_ERROR = "internal_error"
    OVERCONSTRAINED = "overconstrained"
    CORE_QUOTA = "core_quota"
    SPOT_QUOTA = "spot_quota"
    VM_SERIES_QUOTA = "vm_series_quota"
    SUBSCRIPTION_QUOTA = "subscription_quota"
    SUBNET_DELEGATION = "subnet_delegation"
    HYPERV_GENERATION = "hyperv_generation"
    VM_SIZE_UNAVAILABLE = "vm_size_unavailable"
    IMAGE_MISSING = "image_missing"
    IMAGE_SUSPECTED = "image_suspected"  # generic message: the image may be gone
    GENERIC_RETRY = "generic_retry"  # generic message and the image exists: Batch's own advice is to retry
    CONFIGURATION = "configuration"
    REMOVE_NODES_FAILED = "remove_nodes_failed"
    RESIZE_STOPPED = "resize_stopped"
    NO_PROGRESS = "no_progress"  # steady below target with no error at all
    NOT_APPLIED = "not_applied"  # our resize request never showed up on the pool
    # a code the autopilot does not know: at most MAX_UNKNOWN_RETRIES retries, then a person
    UNRECOGNISED = "unrecognised"
    ALLOCATION_OTHER = "allocation_other"  # AllocationFailed with a reason the autopilot does not recognise (transient)
    DEPENDENT_RESOURCE_MISSING = "dependent_resource_missing"  # DependentResourceNotFound, the image still there
    INCOMPATIBLE_VM_SIZE = "incompatible_vm_size"
    DISK_ENCRYPTION = "disk_encryption"
    IDENTITY = "identity"
    COMMUNICATION_MAX_VMS = "communication_max_vms"
    NODE_CAP = "node_cap"  # held back by the shared managed-image node cap (the app's own check, before asking)


@dataclass(frozen=True)
class ResizeError:
    """One resize error. ``values`` maps detail names to values (data-plane ``values`` or management ``details``)."""

    code: str
    message: str = ""
    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Any) -> ResizeError:
        """Read a data-plane ``{code, message, values}``, a management ``{code, message, details}``, or an SDK model."""
        get = data.get if isinstance(data, Mapping) else (lambda key, default=None: getattr(data, key, default))
        values: dict[str, str] = {}
        for item in get("values") or get("error_values") or []:
            name, value = _pair(item, "name", "value")
            if name:
                values[name] = value
        for detail in _flatten_details(get("details") or []):
            name, value = _pair(detail, "code", "message")
            if name and name not in values:
                values[name] = value
        return cls(code=_text(get("code")) or "Unknown", message=_text(get("message")), values=values)

    def value(self, name: str) -> str | None:
        """A detail value by name, ignoring case (``Reason`` / ``reason``)."""
        wanted = name.lower()
        for key, value in self.values.items():
            if key.lower() == wanted:
                return value
        return None

    @property
    def reason(self) -> str | None:
        return self.value(REASON)

    @property
    def provider_error(self) -> ProviderError | None:
        raw = self.value(PROVIDER_ERROR_JSON)
        if raw is None:
            return None
        truncated = (self.value(PROVIDER_ERROR_JSON_TRUNCATED) or "").strip().lower() == "true"
        return parse_provider_error(raw, truncated=truncated)


@dataclass(frozen=True)
class ProviderError:
    """What the compute provider said, from ``Provider Error Json``. Fields are None when unreadable."""

    code: str | None
    message: str | None
    detail_codes: tuple[str, ...] = ()
    detail_messages: tuple[str, ...] = ()
    truncated: bool = False  # Batch cut the JSON short, or it did not parse
    raw: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """What the errors mean, and what a person should do about them."""

    error_class: ErrorClass
    cause: Cause
    alert_type: AlertType | None  # the alert a failure of this kind raises (None: none on its own)
    code: str  # the deciding error's code, as Batch spelled it
    reason: str  # the most specific words Batch gave (Reason, provider message, or the message)
    diagnosis: str  # what happened, for a person
    fix: str  # what to do about it, concretely
    codes: tuple[str, ...] = ()  # every error code reported, in order

    @property
    def retryable(self) -> bool:
        return self.error_class is ErrorClass.RETRYABLE


def parse_errors(items: Iterable[Mapping[str, Any] | Any] | None) -> tuple[ResizeError, ...]:
    return tuple(item if isinstance(item, ResizeError) else ResizeError.from_dict(item) for item in items or [])


def parse_provider_error(raw: str, truncated: bool = False) -> ProviderError:
    """Read ``Provider Error Json`` without trusting it: it may be cut short or not JSON at all."""
    text = raw if isinstance(raw, str) else str(raw)
    text = text[:_MAX_PROVIDER_JSON]
    try:
        document = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        document = None
    if isinstance(document, Mapping):
        error = document.get("error", document)
        if isinstance(error, Mapping):
            details = [d for d in error.get("details")
                       or [] if isinstance(d, Mapping)] if isinstance(error.get("details"), list) else []
            return ProviderError(
                code=_text(error.get("code")) or None,
                message=_text(error.get("message")) or None,
                detail_codes=tuple(_text(d.get("code")) for d in details if d.get("code")),
                detail_messages=tuple(_text(d.get("message")) for d in details if d.get("message")),
                truncated=truncated,
                raw=text,
            )
    # Not JSON (typically truncated mid-string): pull out what the fields hold so far.
    codes = [_unescape(m) for m in re.findall(r'"code"\s*:\s*"((?:[^"\\]|\\.)*)', text)]
    messages = [_unescape(m) for m in re.findall(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)', text)]
    return ProviderError(
        code=codes[0] if codes else None,
        message=messages[0] if messages else None,
        detail_codes=tuple(codes[1:]),
        detail_messages=tuple(messages[1:]),
        truncated=True,
        raw=text,
    )


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

_SEVERITY = {ErrorClass.NEEDS_PERSON: 3, ErrorClass.VERIFY_IMAGE: 2, ErrorClass.RETRYABLE: 1, ErrorClass.IGNORE: 0}

_QUOTA_FIX = (
    "Request a core quota increase for the Batch account (Azure portal → Batch account → Quotas → Request quota "
    "increase); "
    "it takes from minutes to two business days. In UserSubscription pool-allocation mode the subscription's own "
    "vCPU quotas "
    "apply instead (Azure portal → Subscription → Usage + quotas). Or lower the pool's desired target."
)
_RETRY_NOTE = "The autopilot re-issues the resize with backoff; nothing to do unless it keeps failing."
_SPOT_QUOTA_FIX = ("Request a Spot/low-priority core quota increase for the Batch account (Azure portal → Batch "
                   "account → Quotas); "
                   "it takes from minutes to two business days. Or lower the pool's desired Spot target "
                   "(autopilot.desiredSpot).")
# A code the app does not know is retried this many times (it may be transient), then a person hears of it.
MAX_UNKNOWN_RETRIES = 2


def classify(errors: Iterable[ResizeError | Mapping[str, Any]] | None) -> Diagnosis:
    """The diagnosis for a pool's resize errors: the most severe one decides (needs_person > verify_image > retryable >
    ignore).

    With no errors at all the pool stopped short without saying why: that is retryable (``no_progress``).
    """
    parsed = parse_errors(errors)
    if not parsed:
        return Diagnosis(
            ErrorClass.RETRYABLE, Cause.NO_PROGRESS, AlertType.ALLOCATION_FAILED, "", "",
            "The pool is steady below its target but Batch reported no resize error.",
            _RETRY_NOTE + " If it persists, check the pool's nodes for errors (unusable or start-task-failed nodes).",
        )
    codes = tuple(e.code for e in parsed)
    best: Diagnosis | None = None
    for error in parsed:
        d = classify_one(error)
        if best is None or _SEVERITY[d.error_class] > _SEVERITY[best.error_class]:
            best = d
    assert best is not None
    return Diagnosis(best.error_class, best.cause, best.alert_type, best.code, best.reason, best.diagnosis, best.fix,
                     codes)


@dataclass(frozen=True)
class CodeRule:
    """What one documented resize error code means: its class, the cause shown, the alert it raises, and what to do."""

    error_class: ErrorClass
    cause: Cause
    alert: AlertType | None
    what: str
    fix: str


_CONFIG_FIX = ("Batch's message above names the setting; fix it on the pool (or in the family configuration for new "
               "pools), then "
               "resize the pool once (or change its desired target) to resume. The autopilot does not retry a "
               "configuration error.")

# Failures retried at the next tick rather than after a backoff: a transient internal error of the service says nothing
# about capacity. Capacity shortages and timeouts keep the backoff (shared.watch.backoff); episodes caps the run of
# these.
NEXT_TICK_CAUSES = frozenset({Cause.INTERNAL_ERROR})

# The resize error codes Batch documents (.NET Microsoft.Azure.Batch.Common.PoolResizeErrorCodes, the Java
# PoolResizeErrorCodes, the REST reference and the support article "Azure Batch pool resizing failure"), compared
# without case. AllocationFailed says why in its details and has its own classifier below. A code not listed here is
# unknown: never assumed transient.
CODE_TABLE: Mapping[str, CodeRule] = {
    "allocationtimedout": CodeRule(
        ErrorClass.RETRYABLE, Cause.TIMEOUT, AlertType.ALLOCATION_FAILED,
        "Batch could not allocate the requested nodes within the resize timeout.",
        _RETRY_NOTE + " If it keeps timing out: make sure the gallery image version has at least one replica per "
        "300 nodes "
        "in the pool's region, and allow at least 15 minutes of resize timeout per 1,000 nodes."),
    "accountcorequotareached": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.CORE_QUOTA, AlertType.QUOTA_REACHED,
        "The Batch account has reached its dedicated core quota, so the pool cannot grow.", _QUOTA_FIX),
    "accountlowprioritycorequotareached": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.SPOT_QUOTA, AlertType.QUOTA_REACHED,
        "The Batch account has reached its Spot (low-priority) core quota, so the pool cannot add Spot nodes.",
        _SPOT_QUOTA_FIX),
    "accountspotcorequotareached": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.SPOT_QUOTA, AlertType.QUOTA_REACHED,
        "The Batch account has reached its Spot (low-priority) core quota, so the pool cannot add Spot nodes.",
        _SPOT_QUOTA_FIX),
    "accountvmseriescorequotareached": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.VM_SERIES_QUOTA, AlertType.QUOTA_REACHED,
        "The Batch account has reached its dedicated core quota for this VM series (per-VM-family quota).",
        "Request a core quota increase for the pool's VM family (Azure portal → Batch account → Quotas → the "
        "VM series); "
        "it takes from minutes to two business days. Or use a VM size from a series with spare quota."),
    "resizestopped": CodeRule(
        ErrorClass.IGNORE, Cause.RESIZE_STOPPED, None, "The resize was stopped before it finished (stopResize).",
        "None if the stop was intended; resize the pool again or change its desired target to resume."),
    "removenodesfailed": CodeRule(
        ErrorClass.RETRYABLE, Cause.REMOVE_NODES_FAILED, None,
        "Batch could not remove some nodes while shrinking the pool.",
        _RETRY_NOTE + " If it persists, look for nodes stuck in the 'unusable' or 'leaving pool' states."),
    "overconstrainedallocationrequesterror": CodeRule(
        ErrorClass.RETRYABLE, Cause.OVERCONSTRAINED, AlertType.ALLOCATION_FAILED,
        "Azure could not satisfy every allocation constraint of the pool (VM size, zones, placement) at once.",
        _RETRY_NOTE + " If it persists, relax the constraints: allow more zones or use another VM size."),
    # A resource the pool depends on was not found: most often its image. The caller reads the image: gone ->
    # ImageMissing.
    "dependentresourcenotfound": CodeRule(
        ErrorClass.VERIFY_IMAGE, Cause.DEPENDENT_RESOURCE_MISSING, AlertType.IMAGE_MISSING,
        "Batch could not find a resource the pool depends on (its image, subnet, identity or key).",
        "The autopilot checks whether the pool's image still exists before deciding."),
    "incompatiblevmsize": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.INCOMPATIBLE_VM_SIZE, AlertType.ALLOCATION_FAILED,
        "The pool's VM size is not compatible with its configuration (image, disks, network or features).",
        "Choose a VM size the image and the pool's features support (az vm list-skus --location <region> "
        "--size <size>); " + _CONFIG_FIX),
    "diskencryptionfailure": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.DISK_ENCRYPTION, AlertType.ALLOCATION_FAILED,
        "Batch could not encrypt the nodes' disks as the pool's disk encryption configuration asks.",
        "Check the pool's diskEncryptionConfiguration and that the VM size supports it; " + _CONFIG_FIX),
    "failedidentityoperation": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.IDENTITY, AlertType.ALLOCATION_FAILED,
        "Batch could not assign the pool's managed identity to its nodes.",
        "Check that the user-assigned identity on the pool exists and that the Batch account may assign it; "
        + _CONFIG_FIX),
    "communicationenabledpoolreachedmaxvmcount": CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.COMMUNICATION_MAX_VMS, AlertType.ALLOCATION_FAILED,
        "The pool has inter-node communication enabled and reached the most nodes such a pool can hold.",
        "Lower the pool's target, or use pools without inter-node communication for the extra nodes; " + _CONFIG_FIX),
}


_IMAGE_FIX = (
    "Restore or recreate the gallery image version with a replica in the pool's region (or point a new pool at "
    "a current "
    "image version: the pipeline builds one from the next tagged snapshot), then resize the pool once to resume. "
    "Keep images in use under a CanNotDelete lock so they cannot be deleted while a pool needs them."
)


def classify_one(error: ResizeError) -> Diagnosis:
    code = error.code.strip()
    provider = error.provider_error
    reason = _reason_text(error, provider)
    said = f"Batch said: {code}: {reason}" if reason else f"Batch said: {code}"
    rule = _rule_for(code.lower(), error, provider) or _unrecognised(code)
    return Diagnosis(rule.error_class, rule.cause, rule.alert, code, reason, f"{rule.what} {said}", rule.fix, (code,))


def _rule_for(key: str, error: ResizeError, provider: ProviderError | None) -> CodeRule | None:
    """The documented code itself (CODE_TABLE); AllocationFailed by its evidence; else a code by its shape."""
    if (rule := CODE_TABLE.get(key)) is not None:
        return rule
    if key == "allocationfailed":
        evidence = _AllocationEvidence.of(error, provider)
        return next(rule for matches, rule in ALLOCATION_FAILED_RULES if matches(evidence))
    return next((rule for matches, rule in CODE_SHAPES if matches(key)), None)


# Codes recognised by their shape (a lower-cased code in, the first match wins), after the exact CODE_TABLE.
CODE_SHAPES: tuple[tuple[Callable[[str], bool], CodeRule], ...] = (
    (lambda key: key.startswith("overconstrainedallocationrequest"),
     CODE_TABLE["overconstrainedallocationrequesterror"]),
    (lambda key: "quota" in key,
     CodeRule(ErrorClass.NEEDS_PERSON, Cause.CORE_QUOTA, AlertType.QUOTA_REACHED,
              "A quota stops the pool from growing.", _QUOTA_FIX)),
)


def _unrecognised(code: str) -> CodeRule:
    # Unknown (including Batch's own "Unknown"): retried at most MAX_UNKNOWN_RETRIES times (shared/watch/episodes.py),
    # then an alert.
    return CodeRule(
        ErrorClass.RETRYABLE, Cause.UNRECOGNISED, AlertType.ALLOCATION_FAILED,
        f"The pool stopped short of its target with a resize error the autopilot does not recognise ({code}).",
        f"The autopilot retried it at most {MAX_UNKNOWN_RETRIES} times and stopped. Look the code up in the Batch "
        "error reference "
        "(https://learn.microsoft.com/rest/api/batchservice/batch-status-and-error-codes), fix its cause, then resize "
        "the pool once "
        "(or change its desired target) to resume.",
    )


@dataclass(frozen=True)
class _AllocationEvidence:
    """What an AllocationFailed error says about why: every text it carries, lower-cased, and the provider's codes."""

    words: str
    provider_codes: frozenset[str]
    bare: bool  # Batch's generic message, with no reason and no provider error

    @classmethod
    def of(cls, error: ResizeError, provider: ProviderError | None) -> _AllocationEvidence:
        words = " ".join(
            part for part in (error.reason, error.message, provider.code if provider else None,
                              provider.message if provider else None,
                              *(provider.detail_codes if provider else ()),
                              *(provider.detail_messages if provider else ()),
                              *(f"{k} {v}" for k, v in error.values.items()
                                if k.lower() not in {REASON.lower(), PROVIDER_ERROR_JSON.lower()}))
            if part
        ).lower()
        provider_codes = frozenset(c.lower() for c in ((provider.code,) if provider and provider.code else ())
                                   + (provider.detail_codes if provider else ()))
        return cls(words, provider_codes, _is_generic(error) and not error.reason and provider is None)

    def says(self, *phrases: str) -> bool:
        return any(p in self.words for p in phrases)


_IMAGE_CODES = frozenset({"imagenotfound", "galleryimagenotfound", "galleryimageversionnotfound",
                          "platformimagenotfound", "imageversiondeprovisioned"})
_GONE_WORDS = ("not found", "notfound", "does not exist", "doesn't exist", "no longer exists", "could not be found",
               "was deleted")
_PROVIDER_CONFIG_CODES = frozenset({"badrequest", "invalidparameter", "authorizationfailed",
                                    "linkedauthorizationfailed",
                                    "invalidtemplatedeployment", "forbidden", "conflict"})

# AllocationFailed says why in its Reason or the provider's error. The order matters (most specific first); the last
# rule matches everything.
ALLOCATION_FAILED_RULES: tuple[tuple[Callable[[_AllocationEvidence], bool], CodeRule], ...] = (
    (lambda e: "subnet" in e.words and "delegat" in e.words, CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.SUBNET_DELEGATION, AlertType.ALLOCATION_FAILED,
        "The pool's subnet is delegated to another service, and Batch cannot place nodes in a delegated subnet.",
        "Remove the delegation from the subnet (Virtual network → Subnets → the subnet → 'Delegate subnet to a "
        "service': None), "
        "or move the pool to a subnet without a delegation.")),
    (lambda e: e.says("hypervisor generation", "hyper-v generation", "cannot boot"), CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.HYPERV_GENERATION, AlertType.ALLOCATION_FAILED,
        "The pool's VM size cannot boot the image's Hyper-V generation (a Gen2 image on a Gen1-only size, or "
        "the reverse).",
        "Pick a VM size that supports Hyper-V Gen2 (most current sizes do, e.g. Standard_D4ds_v5), or build the "
        "image as V1 "
        "(hyperVGeneration V1 on the gallery image definition) if the size must stay.")),
    (lambda e: bool(e.provider_codes & _IMAGE_CODES) or (e.says("image", "gallery") and e.says(*_GONE_WORDS)),
     CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.IMAGE_MISSING, AlertType.IMAGE_MISSING,
        "The pool's image (or the resource under it) no longer exists, so Batch cannot create nodes for the pool.",
        _IMAGE_FIX)),
    (lambda e: e.says("quota") or bool(e.provider_codes & {"quotaexceeded", "operationnotallowed"}), CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.SUBSCRIPTION_QUOTA, AlertType.QUOTA_REACHED,
        "A vCPU quota stopped the allocation (UserSubscription mode uses the subscription's quotas).", _QUOTA_FIX)),
    (lambda e: "skunotavailable" in e.provider_codes
        or e.says("not available in location", "not available in the current region"), CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.VM_SIZE_UNAVAILABLE, AlertType.ALLOCATION_FAILED,
        "The pool's VM size is not offered to this subscription in the region (or the requested zones).",
        "Choose a VM size available in the region (az vm list-skus --location <region> --size <size>), or ask "
        "Azure support to "
        "enable the size for the subscription.")),
    (lambda e: e.says("internal error", "internal server error")
        or bool(e.provider_codes & {"internalservererror", "internalexecutionerror", "internalerror"}), CodeRule(
        ErrorClass.RETRYABLE, Cause.INTERNAL_ERROR, AlertType.ALLOCATION_FAILED,
        "Batch hit a transient internal error while allocating nodes.",
        _RETRY_NOTE + " If it persists for hours, open a support case with the pool id and the times of "
        "the failures.")),
    (lambda e: e.says("capacity") or bool(e.provider_codes & {"allocationfailed", "zonalallocationfailed"}), CodeRule(
        ErrorClass.RETRYABLE, Cause.CAPACITY, AlertType.ALLOCATION_FAILED,
        "Azure has too little capacity for the pool's VM size in the region right now.",
        _RETRY_NOTE + " If it persists, use another VM size (or series), another region, or more Spot nodes and "
        "fewer dedicated.")),
    (lambda e: e.says("overconstrained"), CodeRule(
        ErrorClass.RETRYABLE, Cause.OVERCONSTRAINED, AlertType.ALLOCATION_FAILED,
        "Azure could not satisfy every allocation constraint of the pool at once.",
        _RETRY_NOTE + " If it persists, relax the constraints: allow more zones or use another VM size.")),
    (lambda e: bool(e.provider_codes & _PROVIDER_CONFIG_CODES), CodeRule(
        ErrorClass.NEEDS_PERSON, Cause.CONFIGURATION, AlertType.ALLOCATION_FAILED,
        "The compute provider rejected the allocation as invalid for the pool's configuration.",
        "Read the provider's message, fix the pool's configuration (VM size, image, network, identity permissions) "
        "and resize the pool once to resume.")),
    (lambda e: e.bare, CodeRule(
        ErrorClass.VERIFY_IMAGE, Cause.IMAGE_SUSPECTED, AlertType.IMAGE_MISSING,
        "Batch gave its generic resize failure, which it also gives when the pool's image has been deleted.",
        "The autopilot checks whether the pool's image still exists before deciding.")),
    (lambda e: True, CodeRule(
        ErrorClass.RETRYABLE, Cause.ALLOCATION_OTHER, AlertType.ALLOCATION_FAILED,
        "Batch could not allocate nodes for a reason the autopilot does not recognise.",
        _RETRY_NOTE + " The retries are bounded; if it persists, read the reason and fix its cause.")),
)


def image_missing_diagnosis(suspected: Diagnosis, image_id: str | None) -> Diagnosis:
    """The verdict once the caller found the pool's image gone."""
    what = f"The pool's image {image_id} no longer exists" if image_id else "The pool's image no longer exists"
    return Diagnosis(
        ErrorClass.NEEDS_PERSON, Cause.IMAGE_MISSING, AlertType.IMAGE_MISSING, suspected.code, suspected.reason,
        f"{what}, so Batch cannot create nodes for the pool (Batch said: {suspected.code}: "
        f"{suspected.reason or GENERIC_RESIZE_MESSAGE}).",
        _IMAGE_FIX, suspected.codes,
    )


def dependent_resource_diagnosis(suspected: Diagnosis, image_id: str | None) -> Diagnosis:
    """DependentResourceNotFound with the pool's image still there: another resource it depends on is gone
    (configuration)."""
    where = f" (its image {image_id} exists)" if image_id else ""
    return Diagnosis(
        ErrorClass.NEEDS_PERSON, Cause.DEPENDENT_RESOURCE_MISSING, AlertType.ALLOCATION_FAILED, suspected.code,
        suspected.reason,
        f"Batch could not find a resource the pool depends on{where}: its subnet, managed identity, disk "
        "encryption key or "
        f"another referenced resource. Batch said: {suspected.code}: {suspected.reason or 'no detail'}",
        "Restore the resource Batch names (or point the pool at an existing one); " + _CONFIG_FIX, suspected.codes,
    )


def image_present_diagnosis(suspected: Diagnosis, image_id: str | None) -> Diagnosis:
    """The verdict once the caller found the pool's image present: the generic failure is a one-off, retry as Batch
    advises."""
    where = f" (image {image_id} exists)" if image_id else ""
    return Diagnosis(
        ErrorClass.RETRYABLE, Cause.GENERIC_RETRY, AlertType.ALLOCATION_FAILED, suspected.code, suspected.reason,
        f"Batch gave its generic resize failure and the pool's image is still there{where}; Batch's advice is to "
        "resize again.",
        _RETRY_NOTE, suspected.codes,
    )


def not_applied_diagnosis(requested_at_iso: str) -> Diagnosis:
    """Our resize request never showed on the pool (no transition to resizing): count it as a failed attempt."""
    return Diagnosis(
        ErrorClass.RETRYABLE, Cause.NOT_APPLIED, AlertType.ALLOCATION_FAILED, "", "",
        f"The resize requested at {requested_at_iso} never started: the pool did not leave the steady state.",
        _RETRY_NOTE + " If it persists, check that the app's identity may resize the pool and that nothing else keeps "
        "resizing it.",
    )


# --------------------------------------------------------------------------------------------


def _is_generic(error: ResizeError) -> bool:
    return _squash(GENERIC_RESIZE_MESSAGE)[:60] in _squash(error.message)


def _squash(text: str) -> str:
    return re.sub(r"[^a-z]+", " ", (text or "").lower()).strip()


def _reason_text(error: ResizeError, provider: ProviderError | None) -> str:
    parts: list[str] = []
    if error.reason:
        parts.append(error.reason.strip())
    if provider is not None and (provider.code or provider.message):
        said = ": ".join(p for p in (provider.code, provider.message) if p)
        parts.append(f"provider error {said}" + (" (truncated)" if provider.truncated else ""))
    if not parts and error.message:
        parts.append(error.message.strip())
    return " | ".join(parts)[:_MAX_TEXT]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _pair(item: Any, key: str, value_key: str) -> tuple[str, str]:
    if isinstance(item, Mapping):
        return _text(item.get(key)), _text(item.get(value_key))
    return _text(getattr(item, key, None)), _text(getattr(item, value_key, None))


def _flatten_details(details: Iterable[Any]) -> Iterable[Any]:
    for detail in details:
        yield detail
        nested = detail.get("details") if isinstance(detail, Mapping) else getattr(detail, "details", None)
        if nested:
            yield from _flatten_details(nested)


def _unescape(fragment: str) -> str:
    try:
        return json.loads(f'"{fragment}"')
    except ValueError:
        return fragment.replace('\\"', '"')
