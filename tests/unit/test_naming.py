"""Names derive from (family, version) only, are always valid Azure names, or fail with a typed error."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.families import FamilyConfig, GalleryConfig
from shared.core.resource_ids import ResourceId
from shared.pipeline import naming
from shared.pipeline.naming import NamingError

SUB = "00000000-0000-4000-8000-000000000001"
GALLERY_SUB = "00000000-0000-4000-8000-000000000002"

# The Azure rules, written out independently of the module under test.
MANAGED_IMAGE_RULE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
POOL_ID_RULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def family(**overrides: object) -> FamilyConfig:
    gallery = GalleryConfig(resource_group="images-rg", name="autopilotGallery", image_definition="gpu-render",
                            os_type="Linux",
                            hyper_v_generation="V2", location="westeurope")
    values: dict[str, object] = {"name": "gpu", "gallery": gallery, "image_resource_group": "images-rg"}
    values.update(overrides)
    return FamilyConfig(**values)  # type: ignore[arg-type]


def test_managed_image_name() -> None:
    assert naming.managed_image_name("gpu", "1.4.0") == "gpu-1.4.0"
    assert naming.managed_image_name("GPU", "1.4.0") == "gpu-1.4.0"


def test_gallery_version_name_is_the_version() -> None:
    assert naming.gallery_version_name("1.4.0") == "1.4.0"
    with pytest.raises(NamingError, match="tag the snapshots"):
        naming.gallery_version_name("1.4")


@pytest.mark.parametrize(("template", "expected"), [
    ("{family}-{version}", "gpu-1-4-0"),
    ("{family}-{versionDashed}", "gpu-1-4-0"),
    ("render_{family}_v{versionDashed}", "render_gpu_v1-4-0"),
    ("  {family}-{version}-spot ", "gpu-1-4-0-spot"),
])
def test_pool_ids_from_templates(template: str, expected: str) -> None:
    assert naming.render_pool_id(template, "gpu", "1.4.0") == expected


@pytest.mark.parametrize(("template", "words"), [
    ("{family}-{colour}", "unknown placeholder"),
    ("{family}", "must contain {version}"),
    ("{family}-{version", "unbalanced"),
    ("", "empty"),
    ("{family} {version}", "letters, digits"),
    ("{family}-{version}-" + "x" * 60, "1-64 characters"),
])
def test_bad_templates_raise_a_naming_error_saying_what_to_change(template: str, words: str) -> None:
    with pytest.raises(NamingError) as info:
        naming.render_pool_id(template, "gpu", "1.4.0")
    assert words in str(info.value)
    assert "families.gpu.pools" in str(info.value)


def test_the_default_template_fits_the_longest_family_and_version() -> None:
    pool_id = naming.render_pool_id(naming.DEFAULT_POOL_ID_TEMPLATE, "f" * 30, "2147483647.2147483647.2147483647")
    assert len(pool_id) <= 64 and POOL_ID_RULE.match(pool_id)


def test_pool_ids_compare_without_case() -> None:
    assert naming.pool_id_key("GPU-1-0-0") == naming.pool_id_key("gpu-1-0-0")


@pytest.mark.parametrize(("check", "good", "bad"), [
    (naming.gallery_name_problem, "autopilot.Gallery_1", "autopilot-gallery"),
    (naming.image_definition_problem, "gpu-render.v2", "gpu-render-"),
    (naming.resource_group_problem, "images-rg(1)", "images-rg."),
    (naming.managed_image_name_problem, "gpu-1.0.0_", "gpu-1.0.0-"),
    (naming.pool_id_problem, "gpu-1-0-0", "gpu-1.0.0"),
])
def test_name_checks(check, good: str, bad: str) -> None:  # type: ignore[no-untyped-def]
    assert check(good) is None
    assert check(bad)


def test_stable_ids_are_deterministic_case_insensitive_and_distinct() -> None:
    a = naming.stable_id("image-set", "GPU", "1.0.0")
    assert a == naming.stable_id("image-set", "gpu", "1.0.0")
    assert a != naming.stable_id("image-set", "gpu", "1.0.1")
    assert a != naming.stable_id("image-set", "gpu1", ".0.0")  # parts are separated, not concatenated
    assert re.fullmatch(r"image-set-[0-9a-f]{32}", a)
    with pytest.raises(NamingError):
        naming.stable_id("Bad Kind", "x")


def test_gallery_version_id_uses_the_app_subscription_by_default() -> None:
    rid = ResourceId.parse(naming.family_gallery_version_id(family(), "1.4.0", SUB))
    assert rid.is_type("Microsoft.Compute/galleries/images/versions")
    assert (rid.subscription_id, rid.resource_group, rid.names) == (SUB, "images-rg",
                                                                    ("autopilotGallery", "gpu-render", "1.4.0"))


def test_gallery_version_id_uses_the_gallery_subscription_when_set() -> None:
    f = family(gallery=GalleryConfig(resource_group="g", name="gal", image_definition="d", os_type="Linux",
                                     hyper_v_generation="V1",
                                     location="westeurope", subscription=GALLERY_SUB))
    assert ResourceId.parse(naming.family_gallery_version_id(f, "1.0.0", SUB)).subscription_id == GALLERY_SUB


def test_managed_image_id_and_the_pool_image_id() -> None:
    image = naming.family_managed_image_id(family(), "1.4.0", SUB)
    assert image == f"/subscriptions/{SUB}/resourceGroups/images-rg/providers/Microsoft.Compute/images/gpu-1.4.0"
    assert naming.family_pool_image_id(
        family(), "1.4.0", SUB) == naming.family_gallery_version_id(family(), "1.4.0", SUB)
    assert naming.family_pool_image_id(family(legacy_managed_image_pools=True), "1.4.0", SUB) == image


def test_a_family_without_an_image_resource_group_has_no_managed_image() -> None:
    with pytest.raises(NamingError, match="imageResourceGroup"):
        naming.family_managed_image_id(family(image_resource_group=None, source="snapshots"), "1.0.0", SUB)


VERSION_PART = st.one_of(st.integers(0, 20), st.integers(0, 2**31 + 5))
TEMPLATE_PIECES = st.lists(st.sampled_from(["{family}", "{version}", "{versionDashed}", "-", "_", ".", "pool", "X", " ",
                                            "{", "}",
                                            "{other}", "é", "/"]), max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40), VERSION_PART, VERSION_PART, VERSION_PART, TEMPLATE_PIECES)
def test_names_are_valid_or_a_typed_error(family_name: str, major: int, minor: int, patch: int,
                                          pieces: list[str]) -> None:
    version = f"{major}.{minor}.{patch}"
    template = "".join(pieces)
    try:
        image = naming.managed_image_name(family_name, version)
    except NamingError as e:
        assert e.fix
    else:
        assert MANAGED_IMAGE_RULE.match(image), image
        assert naming.gallery_version_name(version) == version
    try:
        pool_id = naming.render_pool_id(template, family_name, version)
    except NamingError as e:
        assert e.fix and e.problem
    else:
        assert POOL_ID_RULE.match(pool_id), pool_id
        assert naming.render_pool_id(template, family_name, version) == pool_id  # deterministic


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,29}", fullmatch=True), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1),
       st.integers(0, 2**31 - 1))
def test_every_valid_family_and_version_gets_names(family_name: str, major: int, minor: int, patch: int) -> None:
    version = f"{major}.{minor}.{patch}"
    assert MANAGED_IMAGE_RULE.match(naming.managed_image_name(family_name, version))
    assert POOL_ID_RULE.match(naming.render_pool_id(naming.DEFAULT_POOL_ID_TEMPLATE, family_name, version))
