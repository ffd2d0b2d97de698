"""The snapshot tag contract: opt-in, case-insensitive names, typed errors that name the tag."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.pipeline.snapshot_tags import (
    TAG_DISK,
    TAG_DISK_COUNT,
    TAG_FAMILY,
    TAG_VERSION,
    SnapshotTagError,
    SnapshotTags,
    parse_tags,
    parse_version,
    version_problem,
)

GOOD = {TAG_FAMILY: "gpu", TAG_VERSION: "1.4.0", TAG_DISK: "os", TAG_DISK_COUNT: "3"}


def error(tags: dict[str, object]) -> SnapshotTagError:
    with pytest.raises(SnapshotTagError) as info:
        parse_tags(tags)  # type: ignore[arg-type]
    return info.value


def test_os_disk_tags_parse() -> None:
    assert parse_tags(GOOD) == SnapshotTags(family="gpu", version="1.4.0", lun=None, disk_count=3)


def test_data_disk_tags_parse_with_their_lun() -> None:
    tags = parse_tags({**GOOD, TAG_DISK: "2"})
    assert tags is not None
    assert (tags.lun, tags.role, tags.disk, tags.is_os_disk) == (2, "data", "2", False)


@pytest.mark.parametrize("tags",
                         [None, {}, {"department": "Development", "project": "Snapshots"}, {TAG_VERSION: "1.0.0"}])
def test_snapshots_without_the_family_tag_are_not_opted_in(tags: dict[str, str] | None) -> None:
    assert parse_tags(tags) is None


def test_tag_names_match_without_case_and_the_family_is_folded() -> None:
    tags = parse_tags({"Autopilot.Family": " GPU ", "AUTOPILOT.VERSION": "1.4.0", "autopilot.Disk": "OS",
                       "autopilot.disKcount": "1"})
    assert tags == SnapshotTags(family="gpu", version="1.4.0", lun=None, disk_count=1)


def test_round_trip_through_as_tags() -> None:
    tags = parse_tags({**GOOD, TAG_DISK: "7", TAG_DISK_COUNT: "9"})
    assert tags is not None and parse_tags(tags.as_tags()) == tags


def test_the_same_tag_twice_with_different_values_is_refused() -> None:
    e = error({**GOOD, "AUTOPILOT.VERSION": "2.0.0"})
    assert e.tag == TAG_VERSION and "more than once" in str(e)


def test_the_same_tag_twice_with_the_same_value_is_fine() -> None:
    assert parse_tags({**GOOD, "AUTOPILOT.VERSION": "1.4.0"}) is not None


@pytest.mark.parametrize(("tag", "value", "words"), [
    (TAG_FAMILY, "", "empty"),
    (TAG_FAMILY, "gpu render", "lower-case letters"),
    (TAG_FAMILY, "-gpu", "starting with a letter or digit"),
    (TAG_FAMILY, "g" * 31, "at most 30"),
    (TAG_VERSION, "1.4", "Major.Minor.Patch"),
    (TAG_VERSION, "v1.4.0", "Major.Minor.Patch"),
    (TAG_VERSION, "1.04.0", "leading zeros"),
    (TAG_VERSION, "1.4.0.1", "Major.Minor.Patch"),
    (TAG_VERSION, "2147483648.0.0", "32-bit"),
    (TAG_DISK, "data", "'os' for the OS disk"),
    (TAG_DISK, "64", "0 to 63"),
    (TAG_DISK, "-1", "0 to 63"),
    (TAG_DISK, "٣", "0 to 63"),
    (TAG_DISK_COUNT, "0", "1 to 64"),
    (TAG_DISK_COUNT, "65", "1 to 64"),
    (TAG_DISK_COUNT, "three", "1 to 64"),
])
def test_bad_values_name_the_tag_the_value_and_an_example(tag: str, value: str, words: str) -> None:
    e = error({**GOOD, tag: value})
    assert e.tag == tag
    assert words in str(e)
    assert f"for example {tag}=" in str(e)
    assert repr(value.strip()) in str(e) or repr(value) in str(e)


def test_the_biggest_gallery_version_is_accepted() -> None:
    assert parse_tags({**GOOD, TAG_VERSION: "2147483647.0.2147483647"}) is not None


@pytest.mark.parametrize("missing", [TAG_VERSION, TAG_DISK, TAG_DISK_COUNT])
def test_an_opted_in_snapshot_needs_every_tag(missing: str) -> None:
    tags = {k: v for k, v in GOOD.items() if k != missing}
    e = error(tags)
    assert e.tag == missing and "missing" in str(e)


def test_a_data_disk_cannot_be_the_only_disk_of_its_set() -> None:
    e = error({**GOOD, TAG_DISK: "0", TAG_DISK_COUNT: "1"})
    assert e.tag == TAG_DISK_COUNT and "at least 2 disks" in str(e)


def test_non_string_values_are_refused_with_the_typed_error() -> None:
    assert error({**GOOD, TAG_DISK_COUNT: 3}).tag == TAG_DISK_COUNT


def test_not_a_mapping_is_refused_with_the_typed_error() -> None:
    with pytest.raises(SnapshotTagError):
        parse_tags(["autopilot.family", "gpu"])  # type: ignore[arg-type]


def test_parse_version() -> None:
    assert parse_version("10.0.3") == (10, 0, 3)
    assert version_problem("0.0.0") is None
    with pytest.raises(ValueError, match="leading zeros"):
        parse_version("01.0.0")


TAG_NAMES = st.sampled_from([TAG_FAMILY, TAG_VERSION, TAG_DISK, TAG_DISK_COUNT, "Autopilot.Family", "AUTOPILOT.DISK",
                             "other", ""])
TAG_VALUES = st.one_of(st.text(max_size=40),
                       st.sampled_from(["os", "OS", "0", "63", "64", "1.0.0", "gpu", "2", " 3 ", "1.01.0"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(TAG_NAMES, st.text(max_size=20)), TAG_VALUES, max_size=8))
def test_parse_tags_only_ever_raises_its_typed_error(tags: dict[str, str]) -> None:
    try:
        result = parse_tags(tags)
    except SnapshotTagError as e:
        assert e.tag in (TAG_FAMILY, TAG_VERSION, TAG_DISK, TAG_DISK_COUNT)
        assert "for example" in str(e)
        return
    if result is not None:
        # Whatever parses is internally consistent and survives a round trip.
        assert result.lun is None or 0 <= result.lun <= 63
        assert 1 <= result.disk_count <= 64
        assert result.lun is None or result.disk_count >= 2
        assert parse_tags(result.as_tags()) == result
    else:
        assert not any(isinstance(k, str) and k.strip().lower() == TAG_FAMILY for k in tags)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([TAG_FAMILY, TAG_VERSION, TAG_DISK, TAG_DISK_COUNT]),
                       st.one_of(TAG_VALUES, st.none()), max_size=4),
       st.dictionaries(st.sampled_from(["Autopilot.Disk", "AUTOPILOT.DISKCOUNT", "autopilot.Version", "x"]), TAG_VALUES,
                       max_size=2))
def test_near_valid_tags_only_ever_raise_the_typed_error(
        overrides: dict[str, str | None], noise: dict[str, str]) -> None:
    # Start from valid tags and break some of them, so every check after the family tag is reached.
    tags = {k: v for k, v in {**GOOD, **overrides}.items() if v is not None}
    tags.update(noise)
    try:
        result = parse_tags(tags)
    except SnapshotTagError as e:
        assert "for example" in str(e)
    else:
        assert result is None or parse_tags(result.as_tags()) == result
