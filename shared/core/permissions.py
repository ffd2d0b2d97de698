"""Permission failures reach a person: a 401/403 on a write the app makes becomes a ``PermissionDenied`` alert.

Azure answers a missing role assignment with 403 ``AuthorizationFailed`` (ARM) or 403 from the Batch data
plane, and an expired or wrong credential with 401. Neither heals by retrying, so the alert names the
action, the scope it was refused on and the role (from ``infra/roles.json``) that grants it. The caller
still sees the error: a pipeline step that could not be taken is not reported as done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from shared.core.resource_ids import InvalidResourceId, ResourceId, normalize

if TYPE_CHECKING:
    from shared.core.alerts import Alert
    from shared.core.context import AppContext

log = logging.getLogger("autopilot.permissions")

ROLE_IMAGES = "Batch Image Autopilot images"  # infra/roles.json, on each image (and snapshot) resource group
ROLE_POOLS = "Batch Image Autopilot pools"  # on each Batch account's resource group
ROLE_READER = "Batch Image Autopilot reader"  # on the subscription (lock listing)
# Destructive grants are opt-in (infra/roles.json optInRoles): the deployment creates them only when asked to.
ROLE_RETENTION = "Batch Image Autopilot retention"  # enableRetention: delete gallery image versions and snapshots
ROLE_RETIREMENT = "Batch Image Autopilot pool retirement"  # enableRetiredPoolDeletion: delete retired pools, list jobs
OPT_IN = {  # role -> (Bicep parameter, azd environment value)
    ROLE_RETENTION: ("enableRetention", "AUTOPILOT_ENABLE_RETENTION"),
    ROLE_RETIREMENT: ("enableRetiredPoolDeletion", "AUTOPILOT_ENABLE_RETIRED_POOL_DELETION"),
}


def is_denied(exc: BaseException) -> bool:
    """A 401 or 403 answer (any SDK's HttpResponseError carries ``status_code``)."""
    return getattr(exc, "status_code", None) in (401, 403)


def role_for(action: str) -> str:
    lowered = action.lower()
    if lowered in ("microsoft.compute/galleries/images/versions/delete", "microsoft.compute/snapshots/delete"):
        return ROLE_RETENTION
    if lowered in ("microsoft.batch/batchaccounts/pools/delete", "microsoft.batch/batchaccounts/jobs/read"):
        return ROLE_RETIREMENT
    if lowered.startswith("microsoft.batch/"):
        return ROLE_POOLS
    if lowered == "microsoft.authorization/locks/read":
        return ROLE_READER
    return ROLE_IMAGES


def write_action(resource_id: str) -> str:
    """The ARM write action for a resource the app creates (images, gallery versions and definitions, pools)."""
    try:
        rid = ResourceId.parse(resource_id)
    except InvalidResourceId:
        return "write"
    return f"{rid.resource_type}/write"


def _group_scope(scope: str) -> str:
    try:
        rid = ResourceId.parse(scope)
    except InvalidResourceId:
        return scope
    if rid.resource_group is None:
        return f"/subscriptions/{rid.subscription_id}"
    return f"/subscriptions/{rid.subscription_id}/resourceGroups/{rid.resource_group}"


def denied_alert(context: AppContext, action: str, scope: str, exc: BaseException) -> Alert:
    from shared.core import alerts
    from shared.core.alerts import Alert

    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ("AuthenticationFailed" if status == 401 else "AuthorizationFailed")
    role = role_for(action)
    where = _group_scope(scope)
    if status == 401:
        fix = ("check the Function App's managed identity (AZURE_CLIENT_ID names a user-assigned identity that "
               "exists and is "
               f"attached to the app); once it can sign in, grant it the role '{role}' on {where} if it does "
               "not hold it")
    elif role in OPT_IN:
        parameter, env = OPT_IN[role]
        fix = (f"the role '{role}' is granted only on request: `azd env set {env} true` and `azd provision` "
               f"(Bicep parameter {parameter}) create it and assign it to the app's managed identity on {where}, "
               f"or assign any role that allows {action} there; the app retries on its next pass")
    else:
        fix = (f"grant the app's managed identity the role '{role}' (infra/roles.json) on {where} - re-run the "
               "deployment with "
               "that resource group in its parameters, or assign the role there - or any role that allows "
               f"{action}; the app "
               "retries on its next pass")
    now = context.clock.now()
    # The subject is the resource group: a missing role there refuses many resources at once, one alert says it.
    return Alert(alerts.PERMISSION_DENIED, alerts.SEVERITY_CRITICAL, where, f"Permission denied: {action} on {where}",
                 f"Azure answered {status} {code} when the app tried {action} on {scope}: the app's identity lacks a "
                 "role there, "
                 "so this step cannot happen until someone grants it.", fix,
                 # One alert per action and resource group a day, until someone grants the role.
                 f"{action.lower()}|{normalize(where)}|{now:%Y-%m-%d}", now,
                 {"action": action, "scope": scope, "role": role, "roleScope": where, "status": status, "code": code})


def report_denied(context: AppContext, action: str, scope: str, exc: BaseException) -> None:
    """Publish the PermissionDenied alert (de-duplicated); a failure to publish is logged, never hides ``exc``."""
    from shared.core.alerts import AlertPublisher

    alert = denied_alert(context, action, scope, exc)
    try:
        AlertPublisher(context).publish(alert)
    except Exception as publish_error:  # the original 403 is what the caller must see
        log.warning("could not publish PermissionDenied for %s on %s: %s", action, scope, publish_error)
    log.error("permission denied: %s on %s (%s)", action, scope, exc)


@contextlib.contextmanager
def writing(context: AppContext, action: str, scope: str) -> Iterator[None]:
    """Wrap one write: a 401/403 raises the PermissionDenied alert, then propagates."""
    try:
        yield
    except Exception as exc:
        if is_denied(exc):
            report_denied(context, action, scope, exc)
        raise
