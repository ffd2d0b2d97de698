"""Resize errors: both planes' shapes, defensive Provider Error Json parsing, and every error class with realistic
payloads.

The payloads follow the SupportArticles "Azure Batch pool resizing failure" scenarios (contracts §4.6) in the
data-plane wire shape: ``{"code", "message", "values": [{"name", "value"}]}``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.watch.resize_errors import (
    GENERIC_RESIZE_MESSAGE,
    AlertType,
    Cause,
    ErrorClass,
    ResizeError,
    classify,
    image_missing_diagnosis,
    image_present_diagnosis,
    parse_provider_error,
)

DEDICATED_SHORT = "Desired number of dedicated nodes could not be allocated"

GEN2_PROVIDER_JSON = json.dumps({"error": {
    "code": "BadRequest",
    "message": "The selected VM size 'STANDARD_A1_V2' cannot boot Hypervisor Generation '2'. If this was a Create "
               "operation please check "
               "that the Hypervisor Generation of the Image matches the Hypervisor Generation of the selected VM Size. "
               "If this was an "
               "Update operation please select a Hypervisor Generation '2' VM Size.",
}})

# SupportArticles scenario 1: subnet delegation.
SUBNET_DELEGATION = {"code": "AllocationFailed", "message": DEDICATED_SHORT,
                     "values": [{"name": "Reason",
                                 "value": "Allocation failed as subnet has delegation to external resources."}]}
# Scenario 2: Gen2 image on a VM size that cannot boot it.
GEN2_MISMATCH = {"code": "AllocationFailed", "message": DEDICATED_SHORT,
                 "values": [{"name": "Provider Error Json", "value": GEN2_PROVIDER_JSON},
                            {"name": "Provider Error Json Truncated", "value": "False"}]}
# Scenario 4: transient internal error.
INTERNAL = {"code": "AllocationFailed", "message": DEDICATED_SHORT,
            "values": [{"name": "Reason", "value": "The server encountered an internal error."}]}
# Scenario 5: insufficient capacity.
CAPACITY = {"code": "AllocationFailed", "message": DEDICATED_SHORT, "values": [
    {"name": "Reason",
     "value": "Deployment allocation failed due to insufficient capacity for the requested VM size in the region."}]}
# The resize timeout, as the wire spells it.
TIMEOUT = {"code": "AllocationTimedout",
           "message": "Desired number of dedicated nodes could not be allocated as the resize timeout was reached"}
# The custom-image article's message when the image is gone (also given for other one-offs).
GENERIC = {"code": "AllocationFailed", "message": GENERIC_RESIZE_MESSAGE}
RESIZE_STOPPED = {"code": "ResizeStopped",
                  "message": "Desired number of dedicated nodes could not be allocated as the resize was stopped"}
IMAGE_NOT_FOUND = {"code": "AllocationFailed", "message": DEDICATED_SHORT,
                   "values": [{"name": "Provider Error Json", "value": json.dumps({"error": {
    "code": "GalleryImageNotFound",
    "message": "The gallery image "
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0 is not "
    "available."}})}]}


def quota(code: str) -> dict:
    return {"code": code, "message": "The specified account has reached VM core quota"}


class TestShapes:
    def test_data_plane_values(self) -> None:
        e = ResizeError.from_dict(GEN2_MISMATCH)
        assert e.code == "AllocationFailed"
        assert e.message == DEDICATED_SHORT
        assert e.value("provider error json truncated") == "False"
        assert e.reason is None
        pe = e.provider_error
        assert pe is not None and pe.code == "BadRequest" and "Hypervisor Generation '2'" in (pe.message or "")
        assert not pe.truncated

    def test_management_plane_details(self) -> None:
        e = ResizeError.from_dict({"code": "AllocationFailed", "message": "m", "details": [
            {"code": "Reason", "message": "Allocation failed as subnet has delegation to external resources.",
             "details": [{"code": "Inner", "message": "deeper"}]}]})
        assert e.reason == "Allocation failed as subnet has delegation to external resources."
        assert e.value("Inner") == "deeper"
        assert classify([e]).cause is Cause.SUBNET_DELEGATION

    def test_sdk_model_attributes(self) -> None:
        model = SimpleNamespace(code="AllocationFailed", message=DEDICATED_SHORT,
                                error_values=[
                                    SimpleNamespace(name="Reason", value="The server encountered an internal error.")])
        assert ResizeError.from_dict(model).reason == "The server encountered an internal error."

    def test_missing_fields(self) -> None:
        e = ResizeError.from_dict({})
        assert (e.code, e.message, dict(e.values)) == ("Unknown", "", {})


class TestProviderErrorJson:
    def test_truncated_json_still_yields_code_and_message(self) -> None:
        cut = GEN2_PROVIDER_JSON[:120]
        pe = parse_provider_error(cut)
        assert pe.truncated
        assert pe.code == "BadRequest"
        assert pe.message is not None and pe.message.startswith("The selected VM size 'STANDARD_A1_V2' cannot")

    def test_truncated_payload_is_still_classified(self) -> None:
        payload = {"code": "AllocationFailed", "message": DEDICATED_SHORT, "values": [
            {"name": "Provider Error Json", "value": GEN2_PROVIDER_JSON[:140]},
            {"name": "Provider Error Json Truncated", "value": "True"}]}
        d = classify([payload])
        assert d.cause is Cause.HYPERV_GENERATION
        assert "(truncated)" in d.reason

    @pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", "{\"error\": 42}", "null", "{\"error\": {\"code\": 5}}",
                                     "\"" * 10, "{" * 5000])
    def test_garbage_never_raises(self, raw: str) -> None:
        parse_provider_error(raw)
        classify([{"code": "AllocationFailed", "message": DEDICATED_SHORT,
                   "values": [{"name": "Provider Error Json", "value": raw}]}])

    def test_escaped_quotes_survive(self) -> None:
        pe = parse_provider_error('{"error": {"code": "X", "message": "size \\"A1\\" cannot boot')
        assert pe.message == 'size "A1" cannot boot'

    def test_details(self) -> None:
        pe = parse_provider_error(
            json.dumps({"error": {"code": "BadRequest", "message": "m",
                                  "details": [{"code": "ImageNotFound", "message": "gone"}]}}))
        assert pe.detail_codes == ("ImageNotFound",)
        payload = {"code": "AllocationFailed", "message": "x",
                   "values": [{"name": "Provider Error Json", "value": pe.raw}]}
        assert classify([payload]).cause is Cause.IMAGE_MISSING


class TestClassify:
    @pytest.mark.parametrize(
        ("payload", "error_class", "cause", "alert"),
        [
            (TIMEOUT, ErrorClass.RETRYABLE, Cause.TIMEOUT, AlertType.ALLOCATION_FAILED),
            ({**TIMEOUT, "code": "AllocationTimedOut"}, ErrorClass.RETRYABLE, Cause.TIMEOUT,
             AlertType.ALLOCATION_FAILED),
            (CAPACITY, ErrorClass.RETRYABLE, Cause.CAPACITY, AlertType.ALLOCATION_FAILED),
            (INTERNAL, ErrorClass.RETRYABLE, Cause.INTERNAL_ERROR, AlertType.ALLOCATION_FAILED),
            (SUBNET_DELEGATION, ErrorClass.NEEDS_PERSON, Cause.SUBNET_DELEGATION, AlertType.ALLOCATION_FAILED),
            (GEN2_MISMATCH, ErrorClass.NEEDS_PERSON, Cause.HYPERV_GENERATION, AlertType.ALLOCATION_FAILED),
            (IMAGE_NOT_FOUND, ErrorClass.NEEDS_PERSON, Cause.IMAGE_MISSING, AlertType.IMAGE_MISSING),
            (GENERIC, ErrorClass.VERIFY_IMAGE, Cause.IMAGE_SUSPECTED, AlertType.IMAGE_MISSING),
            (quota("AccountCoreQuotaReached"), ErrorClass.NEEDS_PERSON, Cause.CORE_QUOTA, AlertType.QUOTA_REACHED),
            (quota("AccountLowPriorityCoreQuotaReached"), ErrorClass.NEEDS_PERSON, Cause.SPOT_QUOTA,
             AlertType.QUOTA_REACHED),
            (quota("AccountSpotCoreQuotaReached"), ErrorClass.NEEDS_PERSON, Cause.SPOT_QUOTA, AlertType.QUOTA_REACHED),
            (quota("AccountVMSeriesCoreQuotaReached"), ErrorClass.NEEDS_PERSON, Cause.VM_SERIES_QUOTA,
             AlertType.QUOTA_REACHED),
            (RESIZE_STOPPED, ErrorClass.IGNORE, Cause.RESIZE_STOPPED, None),
            ({"code": "RemoveNodesFailed", "message": "m"}, ErrorClass.RETRYABLE, Cause.REMOVE_NODES_FAILED, None),
            ({"code": "OverconstrainedAllocationRequestError", "message": "m"}, ErrorClass.RETRYABLE,
             Cause.OVERCONSTRAINED, AlertType.ALLOCATION_FAILED),
            ({"code": "Unknown", "message": "m"}, ErrorClass.RETRYABLE, Cause.UNRECOGNISED,
             AlertType.ALLOCATION_FAILED),
            ({"code": "AllocationFailed", "message": DEDICATED_SHORT,
              "values": [{"name": "Reason", "value": "Something new happened."}]},
             ErrorClass.RETRYABLE, Cause.ALLOCATION_OTHER, AlertType.ALLOCATION_FAILED),
            ({"code": "DependentResourceNotFound", "message": "m"}, ErrorClass.VERIFY_IMAGE,
             Cause.DEPENDENT_RESOURCE_MISSING, AlertType.IMAGE_MISSING),
            ({"code": "IncompatibleVMSize", "message": "m"}, ErrorClass.NEEDS_PERSON, Cause.INCOMPATIBLE_VM_SIZE,
             AlertType.ALLOCATION_FAILED),
            ({"code": "DiskEncryptionFailure", "message": "m"}, ErrorClass.NEEDS_PERSON, Cause.DISK_ENCRYPTION,
             AlertType.ALLOCATION_FAILED),
            ({"code": "FailedIdentityOperation", "message": "m"}, ErrorClass.NEEDS_PERSON, Cause.IDENTITY,
             AlertType.ALLOCATION_FAILED),
            ({"code": "CommunicationEnabledPoolReachedMaxVMCount", "message": "m"}, ErrorClass.NEEDS_PERSON,
             Cause.COMMUNICATION_MAX_VMS,
             AlertType.ALLOCATION_FAILED),
            ({"code": "SomethingBatchAddsNext", "message": "m"}, ErrorClass.RETRYABLE, Cause.UNRECOGNISED,
             AlertType.ALLOCATION_FAILED),
            ({"code": "AllocationFailed", "message": DEDICATED_SHORT, "values": [{"name": "Provider Error Json",
                                                                                  "value": json.dumps(
                {"error": {"code": "OperationNotAllowed", "message": "Operation could not be completed as it results "
                                                                     "in exceeding approved "
                                                                     "standardDDSv5Family Cores quota."}})}]},
             ErrorClass.NEEDS_PERSON, Cause.SUBSCRIPTION_QUOTA, AlertType.QUOTA_REACHED),
            ({"code": "AllocationFailed", "message": DEDICATED_SHORT, "values": [{"name": "Provider Error Json",
                                                                                  "value": json.dumps(
                {"error": {"code": "SkuNotAvailable", "message": "The requested size for resource is currently not "
                                                                 "available in location 'westeurope'."}})}]},
             ErrorClass.NEEDS_PERSON, Cause.VM_SIZE_UNAVAILABLE, AlertType.ALLOCATION_FAILED),
            ({"code": "AllocationFailed", "message": DEDICATED_SHORT, "values": [{"name": "Provider Error Json",
                                                                                  "value": json.dumps(
                {"error": {"code": "ZonalAllocationFailed",
                           "message": "Allocation failed. We do not have sufficient capacity."}})}]},
             ErrorClass.RETRYABLE, Cause.CAPACITY, AlertType.ALLOCATION_FAILED),
            ({"code": "AllocationFailed", "message": DEDICATED_SHORT, "values": [{"name": "Provider Error Json",
                                                                                  "value": json.dumps(
                {"error": {"code": "LinkedAuthorizationFailed",
                           "message": "The client has permission to perform action on scope, however ..."}})}]},
             ErrorClass.NEEDS_PERSON, Cause.CONFIGURATION, AlertType.ALLOCATION_FAILED),
        ],
    )
    def test_every_class(self, payload: dict, error_class: ErrorClass, cause: Cause, alert: AlertType | None) -> None:
        d = classify([payload])
        assert (d.error_class, d.cause, d.alert_type) == (error_class, cause, alert)
        assert d.code == payload["code"]
        assert d.diagnosis and d.fix
        assert payload["code"] in d.diagnosis  # the person sees what Batch said

    def test_quota_fix_says_where_and_how_long(self) -> None:
        fix = classify([quota("AccountCoreQuotaReached")]).fix
        assert "Batch account → Quotas" in fix
        assert "two business days" in fix

    def test_subnet_fix_removes_the_delegation_or_moves_subnet(self) -> None:
        fix = classify([SUBNET_DELEGATION]).fix
        assert "Remove the delegation" in fix and "subnet without a delegation" in fix

    def test_gen2_fix_offers_both_ways(self) -> None:
        fix = classify([GEN2_MISMATCH]).fix
        assert "supports Hyper-V Gen2" in fix and "V1" in fix

    def test_reason_carries_batch_words(self) -> None:
        assert classify([CAPACITY]).reason.startswith("Deployment allocation failed due to insufficient capacity")
        assert "provider error BadRequest: The selected VM size" in classify([GEN2_MISMATCH]).reason

    def test_most_severe_error_decides(self) -> None:
        d = classify([TIMEOUT, quota("AccountSpotCoreQuotaReached"), RESIZE_STOPPED])
        assert d.cause is Cause.SPOT_QUOTA
        assert d.codes == ("AllocationTimedout", "AccountSpotCoreQuotaReached", "ResizeStopped")
        assert classify([RESIZE_STOPPED, TIMEOUT]).cause is Cause.TIMEOUT
        assert classify([CAPACITY, GENERIC]).error_class is ErrorClass.VERIFY_IMAGE

    def test_no_errors_means_no_progress(self) -> None:
        d = classify([])
        assert (d.error_class, d.cause) == (ErrorClass.RETRYABLE, Cause.NO_PROGRESS)
        assert classify(None).cause is Cause.NO_PROGRESS

    def test_generic_with_a_reason_is_not_a_suspicion(self) -> None:
        d = classify(
            [{**GENERIC, "values": [{"name": "Reason", "value": "The server encountered an internal error."}]}])
        assert d.cause is Cause.INTERNAL_ERROR

    def test_image_verdicts(self) -> None:
        suspected = classify([GENERIC])
        image = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0"
        gone = image_missing_diagnosis(suspected, image)
        assert (gone.error_class, gone.alert_type) == (ErrorClass.NEEDS_PERSON, AlertType.IMAGE_MISSING)
        assert image in gone.diagnosis and "CanNotDelete" in gone.fix
        present = image_present_diagnosis(suspected, image)
        assert (present.error_class, present.cause) == (ErrorClass.RETRYABLE, Cause.GENERIC_RETRY)


KNOWN_CODES = ["AllocationTimedout", "AccountCoreQuotaReached", "AccountLowPriorityCoreQuotaReached",
               "AccountSpotCoreQuotaReached",
               "AccountVMSeriesCoreQuotaReached", "ResizeStopped", "RemoveNodesFailed"]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KNOWN_CODES), st.lists(st.booleans(), min_size=40, max_size=40))
def test_codes_compare_case_insensitively(code: str, upper: list[bool]) -> None:
    recased = "".join(c.upper() if u else c.lower() for c, u in zip(code, upper, strict=False))
    a, b = classify([{"code": code, "message": "m"}]), classify([{"code": recased, "message": "m"}])
    assert (a.error_class, a.cause, a.alert_type) == (b.error_class, b.cause, b.alert_type)


values = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["Reason", "Provider Error Json",
                                                                  "Provider Error Json Truncated", "Other"]),
                                          "value": st.text(max_size=300)}), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"code": st.one_of(st.sampled_from([*KNOWN_CODES, "AllocationFailed"]),
                                                         st.text(max_size=30)),
                                        "message": st.text(max_size=200), "values": values}), max_size=4))
def test_classify_never_raises_and_always_explains(errors: list[dict]) -> None:
    d = classify(errors)
    assert d.diagnosis and d.fix
    assert len(d.codes) == len(errors)
