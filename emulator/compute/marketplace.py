"""Microsoft.Compute: the platform-image catalogue a disk can be created from (creationData FromImage)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from emulator.compute.base import ComputeCore
from emulator.compute.exceptions import InvalidParameter, PlatformImageNotFound
from emulator.compute.params import HYPERV_GENERATIONS, OS_TYPES, _enum, normalize_region

_MARKETPLACE_ID = re.compile(
    r"^/?subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/locations/(?P<location>[^/]+)/publishers"
    r"/(?P<publisher>[^/]+)"
    r"/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions/(?P<version>[^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MarketplaceImage:
    publisher: str
    offer: str
    sku: str
    os_type: str
    hyper_v_generation: str
    versions: tuple[str, ...]
    disk_size_gb: int = 30
    # Third-party images carry a purchase plan that every disk made from them inherits.
    plan: dict[str, str] | None = None

    @property
    def urn(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}"

    def catalogue_key(self) -> tuple[str, str, str]:
        return self.publisher.lower(), self.offer.lower(), self.sku.lower()


DEFAULT_MARKETPLACE: tuple[MarketplaceImage, ...] = (
    MarketplaceImage("Canonical", "ubuntu-24_04-lts", "server", "Linux", "V2", ("24.04.202509090", "24.04.202510010")),
    MarketplaceImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts", "Linux", "V1",
                     ("22.04.202509090", "22.04.202510010")),
    MarketplaceImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "Linux", "V2",
                     ("22.04.202509090", "22.04.202510010")),
    MarketplaceImage("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter", "Windows", "V1",
                     ("20348.4171.250910",), 127),
    MarketplaceImage("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-g2", "Windows", "V2",
                     ("20348.4171.250910",), 127),
    MarketplaceImage("microsoft-dsvm", "ubuntu-hpc", "2204", "Linux", "V2", ("22.04.2025091001",), 64),
    MarketplaceImage("almalinux", "almalinux-x86_64", "9-gen2", "Linux", "V2", ("9.6.202505220",)),
    MarketplaceImage("ni", "ni-ubuntu", "ni-ubuntu-2204", "Linux", "V1", ("1.0.0",),
                     plan={"name": "ni-ubuntu-2204", "publisher": "ni", "product": "ni-ubuntu"}),
)


def marketplace_image_id(subscription_id: str, location: str, publisher: str, offer: str, sku: str,
                         version: str) -> str:
    """The id Azure uses for a platform image version in ``creationData.imageReference.id``."""
    return (f"/Subscriptions/{subscription_id}/Providers/Microsoft.Compute/Locations/{normalize_region(location)}"
            f"/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{version}")


class MarketplaceMixin(ComputeCore):
    """The catalogue of platform images (scenarios add third-party images with a purchase plan)."""

    # ---------------------------------------------------------------------------------------
    # Marketplace catalogue
    def add_marketplace_image(self, publisher: str, offer: str, sku: str, *, os_type: str = "Linux",
                              hyper_v_generation: str = "V1",
                              versions: Iterable[str] = ("1.0.0",), disk_size_gb: int = 30,
                              plan: dict[str, str] | None = None) -> MarketplaceImage:
        """Add (or replace) a platform image, e.g. a third-party image with a purchase ``plan`` {name, publisher,
        product}."""
        entry = MarketplaceImage(publisher, offer, sku, _enum(os_type, OS_TYPES, "osType", required=True) or "Linux",
                                 _enum(hyper_v_generation, HYPERV_GENERATIONS, "hyperVGeneration", required=True)
                                 or "V1",
                                 tuple(versions), disk_size_gb, dict(plan) if plan else None)
        with self._lock:
            self.marketplace[entry.catalogue_key()] = entry
        return entry

    def marketplace_image(self, image_reference_id: str) -> tuple[MarketplaceImage, str]:
        """The catalogue entry and version for a platform image id, or 404 ``PlatformImageNotFound``."""
        m = _MARKETPLACE_ID.match(image_reference_id.strip())
        if m is None:
            raise InvalidParameter(f"The value '{image_reference_id}' of parameter 'creationData.imageReference.id' "
                                   "is not a valid platform image id. Expected "
                                   "/Subscriptions/{sub}/Providers/Microsoft.Compute/Locations/{loc}/Publishers/{pub}"
                                   "/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{version}.")
        entry = self.marketplace.get((m["publisher"].lower(), m["offer"].lower(), m["sku"].lower()))
        version = m["version"]
        if entry is None or version.lower() not in {v.lower() for v in entry.versions}:
            raise PlatformImageNotFound(
                f"The platform image '{m['publisher']}:{m['offer']}:{m['sku']}:{version}' is not available. "
                "Verify that all fields in the storage profile are correct.")
        return entry, version
