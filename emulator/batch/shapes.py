"""Plane-specific spellings of the same pool facts.

The management plane (ARM, ``Microsoft.Batch``) uses PascalCase enums, ``nodeAgentSkuId`` and
``inboundNatPools``; the data plane (``{account}.{region}.batch.azure.com``) uses lower-case enums,
``nodeAgentSKUId``, ``inboundNATPools`` and ``virtualMachineImageId``. Pools store a neutral form
(lower-case enum values) and these helpers translate both ways.
"""

from __future__ import annotations

from typing import Any

from emulator.batch.exceptions import InvalidPropertyValue

DEALLOCATION_TO_MGMT = {"requeue": "Requeue", "terminate": "Terminate", "taskcompletion": "TaskCompletion",
                        "retaineddata": "RetainedData"}
ALLOCATION_TO_MGMT = {"steady": "Steady", "resizing": "Resizing", "stopping": "Stopping"}
_PROTOCOL_TO_MGMT = {"tcp": "TCP", "udp": "UDP"}
_ACCESS_TO_MGMT = {"allow": "Allow", "deny": "Deny"}
_SCOPE_TO_MGMT = {"none": "None", "job": "Job"}
_PROVISION_TO_MGMT = {"batchmanaged": "BatchManaged", "usermanaged": "UserManaged",
                      "nopublicipaddresses": "NoPublicIPAddresses"}
_FILL_TO_MGMT = {"spread": "Spread", "pack": "Pack"}


def lower_enum(value: Any, allowed: dict[str, str], name: str, plane: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in allowed:
        raise InvalidPropertyValue(f"The value '{value}' is not valid for {name}: use one of "
                                   f"{', '.join(allowed.values())}.", plane=plane)
    return value.lower()


def deallocation_from_wire(value: Any, plane: str) -> str | None:
    return lower_enum(value, DEALLOCATION_TO_MGMT, "nodeDeallocationOption", plane)


def deallocation_to_wire(value: str | None, plane: str) -> str | None:
    if value is None:
        return None
    return DEALLOCATION_TO_MGMT[value] if plane == "arm" else value


def fill_type_from_wire(policy: Any, plane: str) -> str:
    if not isinstance(policy, dict):
        return "spread"
    return lower_enum(policy.get("nodeFillType"), _FILL_TO_MGMT, "nodeFillType", plane) or "spread"


def fill_type_to_wire(value: str, plane: str) -> dict[str, str]:
    return {"nodeFillType": _FILL_TO_MGMT.get(value, "Spread") if plane == "arm" else value}


# ---------------------------------------------------------------------------------------------
# network configuration
# ---------------------------------------------------------------------------------------------


def network_from_wire(body: Any, plane: str) -> dict[str, Any] | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise InvalidPropertyValue("networkConfiguration must be an object.", plane=plane)
    scope_key = "dynamicVnetAssignmentScope" if plane == "arm" else "dynamicVNetAssignmentScope"
    endpoint = body.get("endpointConfiguration") or {}
    nat_key = "inboundNatPools" if plane == "arm" else "inboundNATPools"
    nat_pools = []
    for nat in (endpoint.get(nat_key) or endpoint.get("inboundNatPools") or endpoint.get("inboundNATPools") or []):
        if not isinstance(nat, dict):
            raise InvalidPropertyValue("Each inbound NAT pool must be an object.", plane=plane)
        rules = []
        for rule in nat.get("networkSecurityGroupRules") or []:
            rules.append({**rule, "access": lower_enum(rule.get("access"), _ACCESS_TO_MGMT, "access", plane)})
        nat_pools.append({**nat, "protocol": lower_enum(nat.get("protocol"), _PROTOCOL_TO_MGMT, "protocol", plane),
                          "networkSecurityGroupRules": rules})
    public_ip = body.get("publicIPAddressConfiguration")
    if isinstance(public_ip, dict) and public_ip.get("provision") is not None:
        public_ip = {**public_ip,
                     "provision": lower_enum(public_ip.get("provision"), _PROVISION_TO_MGMT, "provision", plane)}
    return {
        "subnetId": body.get("subnetId"),
        "dynamicVNetAssignmentScope": lower_enum(body.get(scope_key), _SCOPE_TO_MGMT, scope_key, plane),
        "natPools": nat_pools,
        "publicIPAddressConfiguration": public_ip,
        "enableAcceleratedNetworking": body.get("enableAcceleratedNetworking"),
    }


def network_to_wire(network: dict[str, Any] | None, plane: str) -> dict[str, Any] | None:
    if not network:
        return None
    arm = plane == "arm"
    out: dict[str, Any] = {}
    if network.get("subnetId"):
        out["subnetId"] = network["subnetId"]
    if network.get("dynamicVNetAssignmentScope"):
        scope = network["dynamicVNetAssignmentScope"]
        out["dynamicVnetAssignmentScope" if arm
            else "dynamicVNetAssignmentScope"] = (_SCOPE_TO_MGMT[scope] if arm else scope)
    if network.get("natPools"):
        pools = []
        for nat in network["natPools"]:
            row = {**nat, "protocol": _PROTOCOL_TO_MGMT.get(nat.get("protocol") or "", nat.get("protocol")) if arm
                   else nat.get("protocol")}
            rules = [{**r,
                      "access": _ACCESS_TO_MGMT.get(r.get("access") or "", r.get("access")) if arm else r.get("access")}
                     for r in nat.get("networkSecurityGroupRules") or []]
            if rules:
                row["networkSecurityGroupRules"] = rules
            else:
                row.pop("networkSecurityGroupRules", None)
            pools.append(row)
        out["endpointConfiguration"] = {"inboundNatPools" if arm else "inboundNATPools": pools}
    public_ip = network.get("publicIPAddressConfiguration")
    if isinstance(public_ip, dict):
        provision = public_ip.get("provision")
        out["publicIPAddressConfiguration"] = {**public_ip, **({
            "provision": _PROVISION_TO_MGMT.get(provision, provision) if arm else provision}
                                                               if provision else {})}
    if network.get("enableAcceleratedNetworking") is not None:
        out["enableAcceleratedNetworking"] = network["enableAcceleratedNetworking"]
    return out


# ---------------------------------------------------------------------------------------------
# image references
# ---------------------------------------------------------------------------------------------

_MARKETPLACE = ("publisher", "offer", "sku", "version")


def image_from_wire(body: Any, plane: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidPropertyValue("imageReference must be an object.", plane=plane)
    out: dict[str, Any] = {}
    image_id = body.get("id") if plane == "arm" else body.get("virtualMachineImageId")
    if image_id:
        out["id"] = image_id
    for k in _MARKETPLACE:
        if body.get(k):
            out[k] = body[k]
    for k in ("sharedGalleryImageId", "communityGalleryImageId"):
        if body.get(k):
            out[k] = body[k]
    if "publisher" in out and "version" not in out:
        out["version"] = "latest"
    return out


def image_to_wire(image: dict[str, Any], plane: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if image.get("id"):
        out["id" if plane == "arm" else "virtualMachineImageId"] = image["id"]
    for k in (*_MARKETPLACE, "sharedGalleryImageId", "communityGalleryImageId"):
        if image.get(k):
            out[k] = image[k]
    return out
