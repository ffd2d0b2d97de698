"""Routing table for Microsoft.Compute: disks, snapshots, images, galleries and their operations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.compute.responses import ComputeResponses
from emulator.core import Route

if TYPE_CHECKING:
    from emulator.azure import Emulator

# What azure-mgmt-compute 39 sends, plus the versions of the spec examples the contracts cite.
DISK_API_VERSIONS = frozenset({"2026-03-02", "2025-01-02"})  # DiskRP: disks, snapshots
IMAGE_API_VERSIONS = frozenset({"2026-04-01", "2025-04-01"})  # ComputeRP: images
GALLERY_API_VERSIONS = frozenset({"2026-03-03", "2025-03-03"})  # GalleryRP
OPERATION_API_VERSIONS = DISK_API_VERSIONS | IMAGE_API_VERSIONS | GALLERY_API_VERSIONS

SUB = "/subscriptions/{subscriptionId}/providers/Microsoft.Compute"
RG = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute"
DISK = RG + "/disks/{diskName}"
SNAPSHOT = RG + "/snapshots/{snapshotName}"
IMAGE = RG + "/images/{imageName}"
GALLERY = RG + "/galleries/{galleryName}"
GALLERY_IMAGE = GALLERY + "/images/{galleryImageName}"
VERSION = GALLERY_IMAGE + "/versions/{galleryImageVersionName}"


def routes(emulator: Emulator) -> list[Route]:
    r = ComputeResponses(emulator)
    d, i, g = DISK_API_VERSIONS, IMAGE_API_VERSIONS, GALLERY_API_VERSIONS
    return [
        Route("GET", SUB + "/locations/{location}/operations/{operationId}", r.get_operation,
              "Microsoft.Compute/locations/operations/read", OPERATION_API_VERSIONS),
        # disks
        Route("PUT", DISK, r.put_disk, "Microsoft.Compute/disks/write", d),
        Route("GET", DISK, r.get_disk, "Microsoft.Compute/disks/read", d),
        Route("DELETE", DISK, r.delete_disk, "Microsoft.Compute/disks/delete", d),
        Route("GET", RG + "/disks", r.list_disks, "Microsoft.Compute/disks/read", d),
        Route("GET", SUB + "/disks", r.list_disks, "Microsoft.Compute/disks/read", d),
        # snapshots
        Route("PUT", SNAPSHOT, r.put_snapshot, "Microsoft.Compute/snapshots/write", d),
        Route("PATCH", SNAPSHOT, r.patch_snapshot, "Microsoft.Compute/snapshots/write", d),
        Route("GET", SNAPSHOT, r.get_snapshot, "Microsoft.Compute/snapshots/read", d),
        Route("DELETE", SNAPSHOT, r.delete_snapshot, "Microsoft.Compute/snapshots/delete", d),
        Route("GET", RG + "/snapshots", r.list_snapshots, "Microsoft.Compute/snapshots/read", d),
        Route("GET", SUB + "/snapshots", r.list_snapshots, "Microsoft.Compute/snapshots/read", d),
        # managed images
        Route("PUT", IMAGE, r.put_image, "Microsoft.Compute/images/write", i),
        Route("PATCH", IMAGE, r.patch_image, "Microsoft.Compute/images/write", i),
        Route("GET", IMAGE, r.get_image, "Microsoft.Compute/images/read", i),
        Route("DELETE", IMAGE, r.delete_image, "Microsoft.Compute/images/delete", i),
        Route("GET", RG + "/images", r.list_images, "Microsoft.Compute/images/read", i),
        Route("GET", SUB + "/images", r.list_images, "Microsoft.Compute/images/read", i),
        # Azure Compute Gallery
        Route("PUT", GALLERY, r.put_gallery, "Microsoft.Compute/galleries/write", g),
        Route("GET", GALLERY, r.get_gallery, "Microsoft.Compute/galleries/read", g),
        Route("DELETE", GALLERY, r.delete_gallery, "Microsoft.Compute/galleries/delete", g),
        Route("GET", RG + "/galleries", r.list_galleries, "Microsoft.Compute/galleries/read", g),
        Route("GET", SUB + "/galleries", r.list_galleries, "Microsoft.Compute/galleries/read", g),
        Route("PUT", GALLERY_IMAGE, r.put_gallery_image, "Microsoft.Compute/galleries/images/write", g),
        Route("GET", GALLERY_IMAGE, r.get_gallery_image, "Microsoft.Compute/galleries/images/read", g),
        Route("DELETE", GALLERY_IMAGE, r.delete_gallery_image, "Microsoft.Compute/galleries/images/delete", g),
        Route("GET", GALLERY + "/images", r.list_gallery_images, "Microsoft.Compute/galleries/images/read", g),
        Route("PUT", VERSION, r.put_gallery_image_version, "Microsoft.Compute/galleries/images/versions/write", g),
        Route("PATCH", VERSION, r.patch_gallery_image_version, "Microsoft.Compute/galleries/images/versions/write", g),
        Route("GET", VERSION, r.get_gallery_image_version, "Microsoft.Compute/galleries/images/versions/read", g),
        Route("DELETE", VERSION, r.delete_gallery_image_version, "Microsoft.Compute/galleries/images/versions/delete",
              g),
        Route("GET", GALLERY_IMAGE + "/versions", r.list_gallery_image_versions,
              "Microsoft.Compute/galleries/images/versions/read", g),
    ]
