"""Compute resources the pipeline and the guard touch: snapshots, disks, managed images, gallery versions.

Reads return the resource as Azure's JSON (``as_dict()`` of the SDK model) or None when it does not
exist. Creates are long-running operations that are *started* here (``polling=False``) and never
awaited: their completion arrives as the resource's own ResourceWriteSuccess event, or the timer
sees it. A Function invocation must not sit for the minutes an image or a replica takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.core.resource_ids import ResourceId
from shared.resources.clients import AzureClients

if TYPE_CHECKING:
    from azure.mgmt.compute import ComputeManagementClient


class ForeignSubscription(ValueError):
    """The id names a resource in another subscription; the app manages only its own."""


def _parse(clients: AzureClients, resource_id: str) -> ResourceId:
    # The SDK clients are bound to the app's subscription: reading another subscription's id with
    # them would silently read a same-named resource here. Refuse instead.
    rid = ResourceId.parse(resource_id)
    if rid.subscription_id.lower() != clients.settings.subscription_id.lower():
        raise ForeignSubscription(f"{resource_id} is in subscription {rid.subscription_id}; the app manages only "
                                  f"{clients.settings.subscription_id}")
    return rid


def _gallery(clients: AzureClients, resource_id: str) -> tuple[ResourceId, ComputeManagementClient]:
    """A gallery resource and the Compute client of its subscription. Another subscription than the app's is allowed
    only with AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY (a family's gallery there), and then through a client bound
    to that subscription, never the app's."""
    rid = ResourceId.parse(resource_id)
    if clients.settings.allow_cross_subscription_gallery and (rid.namespace or "").lower() == "microsoft.compute" \
            and rid.types and rid.types[0].lower() == "galleries":
        return rid, clients.compute_in(rid.subscription_id)
    return _parse(clients, resource_id), clients.compute


def compute_client_for(clients: AzureClients, subscription: str | None) -> ComputeManagementClient:
    """The Compute client for a family gallery's subscription (None: the app's)."""
    if subscription is None or subscription.lower() == clients.settings.subscription_id.lower():
        return clients.compute
    if not clients.settings.allow_cross_subscription_gallery:
        raise ForeignSubscription(f"a gallery in subscription {subscription} needs "
                                  "AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY=true; "
                                  f"the app manages {clients.settings.subscription_id}")
    return clients.compute_in(subscription)


def _get(call: Any) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return call().as_dict()
    except ResourceNotFoundError:
        return None


def get_snapshot(clients: AzureClients, snapshot_id: str) -> dict[str, Any] | None:
    rid = _parse(clients, snapshot_id)
    return _get(lambda: clients.compute.snapshots.get(rid.resource_group, rid.name))


def get_disk(clients: AzureClients, disk_id: str) -> dict[str, Any] | None:
    rid = _parse(clients, disk_id)
    return _get(lambda: clients.compute.disks.get(rid.resource_group, rid.name))


def get_image(clients: AzureClients, image_id: str) -> dict[str, Any] | None:
    rid = _parse(clients, image_id)
    return _get(lambda: clients.compute.images.get(rid.resource_group, rid.name))


def get_gallery_image(clients: AzureClients, resource_group: str, gallery: str, definition: str,
                      subscription: str | None = None) -> dict[str, Any] | None:
    client = compute_client_for(clients, subscription)
    return _get(lambda: client.gallery_images.get(resource_group, gallery, definition))


def get_gallery_image_version(clients: AzureClients, version_id: str) -> dict[str, Any] | None:
    rid, client = _gallery(clients, version_id)
    gallery, definition, version = rid.names[-3:]
    return _get(lambda: client.gallery_image_versions.get(rid.resource_group, gallery, definition, version))


def list_gallery_image_versions(clients: AzureClients, resource_group: str, gallery: str, definition: str,
                                subscription: str | None = None) -> list[dict[str, Any]]:
    """The versions under a gallery image definition, as Azure's JSON (one paged list); empty when it does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    listing = compute_client_for(clients, subscription).gallery_image_versions.list_by_gallery_image
    try:
        return [v.as_dict() for v in listing(resource_group, gallery, definition)]
    except ResourceNotFoundError:
        return []


def get_any_image(clients: AzureClients, image_id: str) -> dict[str, Any] | None:
    """A managed image or a gallery image version, whichever the id names."""
    rid, _ = _gallery(clients, image_id)
    if rid.is_type("Microsoft.Compute/galleries/images/versions"):
        return get_gallery_image_version(clients, image_id)
    if rid.is_type("Microsoft.Compute/images"):
        return get_image(clients, image_id)
    if rid.is_type("Microsoft.Compute/galleries/images"):
        return get_gallery_image(clients, rid.resource_group or "", rid.names[0], rid.names[1], rid.subscription_id)
    raise ValueError(f"{image_id} is neither a managed image nor a gallery image (version)")


def start_image_create(clients: AzureClients, image_id: str, body: dict[str, Any]) -> None:
    rid = _parse(clients, image_id)
    clients.compute.images.begin_create_or_update(rid.resource_group, rid.name, body, polling=False)


def start_gallery_image_version_create(clients: AzureClients, version_id: str, body: dict[str, Any]) -> None:
    rid, client = _gallery(clients, version_id)
    gallery, definition, version = rid.names[-3:]
    client.gallery_image_versions.begin_create_or_update(rid.resource_group, gallery, definition, version, body,
                                                         polling=False)


def start_gallery_image_version_update(clients: AzureClients, version_id: str, body: dict[str, Any]) -> None:
    """Start a PATCH of a gallery image version (GalleryImageVersionUpdate: e.g. more replicas); not awaited."""
    rid, client = _gallery(clients, version_id)
    gallery, definition, version = rid.names[-3:]
    client.gallery_image_versions.begin_update(rid.resource_group, gallery, definition, version, body,
                                                        polling=False)


def start_image_delete(clients: AzureClients, image_id: str) -> None:
    """Start deleting a managed image (the pipeline's own intermediate only); not awaited."""
    rid = _parse(clients, image_id)
    clients.compute.images.begin_delete(rid.resource_group, rid.name, polling=False)


def start_gallery_image_create(clients: AzureClients, resource_group: str, gallery: str, definition: str,
                               body: dict[str, Any], subscription: str | None = None) -> None:
    """Start creating a gallery image definition; not awaited (the sweep comes back for it)."""
    client = compute_client_for(clients, subscription)
    client.gallery_images.begin_create_or_update(resource_group, gallery, definition, body, polling=False)
