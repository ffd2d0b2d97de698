"""Deterministic Azure names from (family, version).

Every name the image pipeline creates is a pure function of the family and the version, never of
the event that triggered the work. That is what makes the pipeline idempotent without a lock: any
event, delivered any number of times, in any order, computes the same managed image name, the same
gallery image version and the same pool ids, and Azure's own "create or update" (or Batch's
``PoolExists``) turns the second attempt into a no-op.

Name rules, from the Azure naming-rules reference ("Naming rules and restrictions for Azure
resources") and the Batch pool API:

* managed image (Microsoft.Compute/images): 1-80 characters, letters, digits, ``_ . -``;
  starts with a letter or digit, ends with a letter, digit or ``_``;
* gallery (Microsoft.Compute/galleries): 1-80, letters, digits, ``_`` and ``.``; no hyphens;
  starts and ends with a letter or digit;
* gallery image definition: 1-80, letters, digits, ``_ . -``; starts and ends with a letter or digit;
* gallery image version: ``Major.Minor.Patch``, each part a 32-bit integer;
* resource group: 1-90, letters, digits, ``_ ( ) - .``; does not end with ``.``;
* Batch pool id: 1-64, letters, digits, ``-`` and ``_``; unique per account *case-insensitively*.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from shared.pipeline.snapshot_tags import canonical_family, family_problem, version_problem

if TYPE_CHECKING:  # the family config imports this module for its name checks
    from shared.config.families import FamilyConfig

MANAGED_IMAGE_MAX = 80
GALLERY_NAME_MAX = 80
IMAGE_DEFINITION_MAX = 80
RESOURCE_GROUP_MAX = 90
POOL_ID_MAX = 64

DEFAULT_POOL_ID_TEMPLATE = "{family}-{version}"
POOL_ID_PLACEHOLDERS = ("family", "version", "versionDashed")

_MANAGED_IMAGE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_GALLERY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]*[A-Za-z0-9])?$")
_IMAGE_DEFINITION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_RESOURCE_GROUP = re.compile(r"^[\w().-]*[\w()-]$")
_POOL_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_STABLE_KIND = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class NamingError(ValueError):
    """A name cannot be built from the inputs. ``what`` names the thing, ``fix`` says what to change."""

    def __init__(self, what: str, value: str, problem: str, fix: str) -> None:
        self.what = what
        self.value = value
        self.problem = problem
        self.fix = fix
        super().__init__(f"{what} {value[:120]!r}: {problem}; {fix}")


# --- checks (return a problem sentence, or None) ------------------------------------------------


def managed_image_name_problem(name: str) -> str | None:
    if not 1 <= len(name) <= MANAGED_IMAGE_MAX:
        return f"a managed image name has 1-{MANAGED_IMAGE_MAX} characters, this one has {len(name)}"
    if not name.isascii() or not _MANAGED_IMAGE.match(name):
        return ("a managed image name uses letters, digits, '_', '.', '-', starts with a letter or digit and ends with "
                "a letter, digit or '_'")
    return None


def gallery_name_problem(name: str) -> str | None:
    if not 1 <= len(name) <= GALLERY_NAME_MAX:
        return f"a gallery name has 1-{GALLERY_NAME_MAX} characters, this one has {len(name)}"
    if not name.isascii() or not _GALLERY.match(name):
        return "a gallery name uses letters, digits, '_' and '.' (no '-'), and starts and ends with a letter or digit"
    return None


def image_definition_problem(name: str) -> str | None:
    if not 1 <= len(name) <= IMAGE_DEFINITION_MAX:
        return f"a gallery image definition name has 1-{IMAGE_DEFINITION_MAX} characters, this one has {len(name)}"
    if not name.isascii() or not _IMAGE_DEFINITION.match(name):
        return ("a gallery image definition name uses letters, digits, '_', '.', '-', and starts and ends with a "
                "letter or digit")
    return None


def resource_group_problem(name: str) -> str | None:
    if not 1 <= len(name) <= RESOURCE_GROUP_MAX:
        return f"a resource group name has 1-{RESOURCE_GROUP_MAX} characters, this one has {len(name)}"
    if not name.isascii() or not _RESOURCE_GROUP.match(name):
        return "a resource group name uses letters, digits, '_', '(', ')', '-', '.', and does not end with '.'"
    return None


def pool_id_problem(pool_id: str) -> str | None:
    if not 1 <= len(pool_id) <= POOL_ID_MAX:
        return f"a Batch pool id has 1-{POOL_ID_MAX} characters, this one has {len(pool_id)}"
    if not pool_id.isascii() or not _POOL_ID.fullmatch(pool_id):  # fullmatch: "$" would let a final line break in
        return "a Batch pool id uses only letters, digits, '-' and '_'"
    return None


def pool_id_template_problem(template: str, *, in_place: bool = False) -> str | None:
    """Why a pool id template cannot work whatever the version (None when it can).

    ``in_place``: the family rolls new versions into the same pools (``rollout.mode: inPlace``), so the
    template must be the same for every version: it must *not* contain a version placeholder.
    """
    if not isinstance(template, str) or not template.strip():
        return "the template is empty"
    names = _PLACEHOLDER.findall(template)
    unknown = sorted({n for n in names if n not in POOL_ID_PLACEHOLDERS})
    if unknown:
        return (f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; use "
                f"{', '.join('{' + n + '}' for n in POOL_ID_PLACEHOLDERS)}")
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        return "unbalanced '{' or '}'"
    if in_place:
        if "version" in names or "versionDashed" in names:
            return ("with rollout mode \"inPlace\" the pool keeps its id from version to version, so the template must "
                    "not contain "
                    "{version} or {versionDashed}; use e.g. \"{family}\" or \"{family}-pool\"")
        return None
    if "version" not in names and "versionDashed" not in names:
        # Without the version every new image version would target the same pool id, which Batch
        # refuses (PoolExists) - and the old pool must keep its image until it is drained.
        return "the template must contain {version} or {versionDashed}, so each image version gets its own pool"
    return None


# --- names --------------------------------------------------------------------------------------


def _checked_family(family: str) -> str:
    folded = canonical_family(family) if isinstance(family, str) else family
    if problem := family_problem(folded):
        raise NamingError("image family", str(family), problem,
                          "rename the family in the families configuration and in the snapshot tags")
    return folded


def _checked_version(version: str) -> str:
    if problem := version_problem(version):
        raise NamingError("image version", str(version), problem, "tag the snapshots with a version such as 1.4.0")
    return version


def gallery_version_name(version: str) -> str:
    """The gallery image version name: the tagged version itself."""
    return _checked_version(version)


def managed_image_name(family: str, version: str) -> str:
    """``{family}-{version}``, e.g. ``gpu-1.4.0``: at most 30 + 1 + 32 characters, always valid."""
    name = f"{_checked_family(family)}-{_checked_version(version)}"
    if problem := managed_image_name_problem(name):  # unreachable with the family/version rules; kept as a guard
        raise NamingError("managed image name", name, problem, "use a shorter family name")
    return name


def render_pool_id(template: str, family: str, version: str, *, in_place: bool = False) -> str:
    """Fill a pool id template. Dots become dashes: Batch pool ids cannot contain '.'."""
    family = _checked_family(family)
    version = _checked_version(version)
    if problem := pool_id_template_problem(template, in_place=in_place):
        raise NamingError("pool id template", str(template), problem, f"fix poolId in families.{family}.pools")
    values = {"family": family, "version": version, "versionDashed": version.replace(".", "-")}
    rendered = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template.strip()).replace(".", "-")
    if problem := pool_id_problem(rendered):
        raise NamingError("pool id", rendered, problem,
                          f"shorten or change poolId {template!r} in families.{family}.pools (or the family name)")
    return rendered


def pool_id_key(pool_id: str) -> str:
    """Batch pool ids are unique per account regardless of case: compare them by this key."""
    return pool_id.lower()


def stable_id(kind: str, *parts: str) -> str:
    """A short deterministic id for one thing of ``kind`` named by ``parts``: ``{kind}-{32 hex}``.

    Parts are compared case-insensitively (resource ids and pool ids are), so ``stable_id("set",
    "GPU", "1.0.0")`` == ``stable_id("set", "gpu", "1.0.0")``. Used where the app needs a name that
    every concurrent invocation computes alike - Table row keys, lock names, event ids for the
    app's own events - instead of coordinating through a lock. Safe as a Table key and a lock name.
    """
    if not _STABLE_KIND.match(kind):
        raise NamingError("id kind", kind, "use 1-31 lower-case letters, digits and '-', starting with a letter",
                          "for example 'image-set'")
    digest = hashlib.sha256("\x1f".join(p.strip().lower() for p in parts).encode("utf-8")).hexdigest()
    return f"{kind}-{digest[:32]}"


# --- resource ids -------------------------------------------------------------------------------


def gallery_image_definition_id(subscription_id: str, resource_group: str, gallery: str, definition: str) -> str:
    return (f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Compute"
            f"/galleries/{gallery}/images/{definition}")


def gallery_image_version_id(subscription_id: str, resource_group: str, gallery: str, definition: str,
                             version: str) -> str:
    return (f"{gallery_image_definition_id(subscription_id, resource_group, gallery, definition)}/versions"
            f"/{_checked_version(version)}")


def managed_image_id(subscription_id: str, resource_group: str, family: str, version: str) -> str:
    return (f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Compute/images"
            f"/{managed_image_name(family, version)}")


def family_gallery_version_id(family: FamilyConfig, version: str, default_subscription: str) -> str:
    """The gallery image version a family's version is published as."""
    g = family.gallery
    return gallery_image_version_id(g.subscription or default_subscription, g.resource_group, g.name,
                                    g.image_definition, version)


def family_managed_image_id(family: FamilyConfig, version: str, default_subscription: str) -> str:
    """The intermediate (or, with the legacy switch, the pool's) managed image.

    Managed images live in the app's subscription: Batch requires the image in the same
    subscription as the account, and the snapshots it is built from are read from there too.
    """
    if not family.image_resource_group:
        raise NamingError("family", family.name, "has no imageResourceGroup for managed images",
                          f"set families.{family.name}.imageResourceGroup, or use source 'snapshots'")
    return managed_image_id(default_subscription, family.image_resource_group, family.name, version)


def family_pool_image_id(family: FamilyConfig, version: str, default_subscription: str) -> str:
    """What the family's pools put in ``imageReference.id``.

    A Compute Gallery image version. ``legacyManagedImagePools`` is refused when the families are
    validated (Batch accepts a managed image as a pool's image only at API versions up to
    2019-08-01; the app speaks shared.resources.clients.BATCH_API_VERSION), so the managed-image branch below is never
    taken by a validated configuration.
    """
    if family.legacy_managed_image_pools:
        return family_managed_image_id(family, version, default_subscription)
    return family_gallery_version_id(family, version, default_subscription)
