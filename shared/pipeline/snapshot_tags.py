"""The snapshot tag contract: how a team opts a snapshot into the image pipeline.

A snapshot takes part only when it carries ``autopilot.family``. The four tags together say which
image family and version the snapshot belongs to, which disk of the VM it is, and how many disks
the whole set has, so the pipeline can tell when a set is complete without any other input::

    autopilot.family     = gpu            image family (a key of the families configuration)
    autopilot.version    = 1.4.0          gallery image version name: Major.Minor.Patch
    autopilot.disk       = os | 0..63     the OS disk, or the LUN of a data disk
    autopilot.diskCount  = 3              disks in the set, OS disk included (1..64)

Azure treats tag *names* case-insensitively (``Autopilot.Family`` is the same tag), so they are
matched that way here. Tag *values* are case-sensitive in Azure; the family name is nevertheless
folded to lower case because everything derived from it (image names, pool ids) is compared
case-insensitively by Azure and Batch, and ``GPU`` and ``gpu`` must never become two sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

TAG_FAMILY = "autopilot.family"
TAG_VERSION = "autopilot.version"
TAG_DISK = "autopilot.disk"
TAG_DISK_COUNT = "autopilot.diskCount"
ALL_TAGS = (TAG_FAMILY, TAG_VERSION, TAG_DISK, TAG_DISK_COUNT)

OS_DISK = "os"
MAX_LUN = 63  # Azure VMs attach data disks on LUNs 0-63
MAX_DISK_COUNT = 64  # the tag contract: 1-64 disks per set, OS disk included (so at most 63 data disks)
MAX_VERSION_PART = 2**31 - 1  # gallery versions: "digits must be within the range of a 32-bit integer"

# Family names end up inside managed image names (80 chars), gallery version tags and Batch pool
# ids (64 chars, letters, digits, '-' and '_'). 30 characters keeps the default pool id
# "{family}-{versionDashed}" within 64 even for the longest possible version (3 x 10 digits + 2).
FAMILY_MAX_LENGTH = 30
_FAMILY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VERSION_PART = r"(0|[1-9][0-9]{0,9})"
_VERSION = re.compile(rf"^{_VERSION_PART}\.{_VERSION_PART}\.{_VERSION_PART}$")

EXAMPLE_TAGS = {TAG_FAMILY: "gpu", TAG_VERSION: "1.4.0", TAG_DISK: "os", TAG_DISK_COUNT: "3"}


class SnapshotTagError(ValueError):
    """A snapshot opted in (it has ``autopilot.family``) but one of its tags is unusable."""

    def __init__(self, tag: str, value: object, problem: str, example: str) -> None:
        self.tag = tag
        self.value = value
        self.problem = problem
        self.example = example
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "…"
        super().__init__(f"tag {tag}={shown}: {problem}; for example {tag}={example}")


def family_problem(name: object) -> str | None:
    """Why ``name`` is not a usable image family name (None when it is). Expects the folded form."""
    if not isinstance(name, str) or not name:
        return "the family name is empty"
    if len(name) > FAMILY_MAX_LENGTH:
        return f"the family name has {len(name)} characters; use at most {FAMILY_MAX_LENGTH}"
    if not _FAMILY.match(name):
        return "use lower-case letters, digits, '-' and '_', starting with a letter or digit"
    return None


def canonical_family(name: str) -> str:
    """The form every module keys families by: stripped and lower-cased."""
    return name.strip().lower()


def version_problem(version: object) -> str | None:
    """Why ``version`` is not a gallery image version name (None when it is).

    Leading zeros are refused rather than normalised: "1.01.0" and "1.1.0" would otherwise be two
    snapshot sets that build one gallery version, or two gallery versions that sort the same.
    """
    if not isinstance(version, str) or not version:
        return "the version is empty"
    m = _VERSION.match(version)
    if m is None:
        return "a gallery image version is three whole numbers Major.Minor.Patch without leading zeros"
    if any(int(part) > MAX_VERSION_PART for part in m.groups()):
        return f"each part of a gallery image version must be at most {MAX_VERSION_PART} (a 32-bit integer)"
    return None


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.4.0"`` -> ``(1, 4, 0)``; raises ValueError for anything :func:`version_problem` refuses."""
    problem = version_problem(version)
    if problem:
        raise ValueError(f"{version!r}: {problem}")
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


@dataclass(frozen=True)
class SnapshotTags:
    """The tags of one opted-in snapshot, validated. ``lun`` is None for the OS disk."""

    family: str
    version: str
    lun: int | None
    disk_count: int

    @property
    def is_os_disk(self) -> bool:
        return self.lun is None

    @property
    def role(self) -> str:
        return "os" if self.lun is None else "data"

    @property
    def disk(self) -> str:
        """The ``autopilot.disk`` value: ``os`` or the LUN."""
        return OS_DISK if self.lun is None else str(self.lun)

    def as_tags(self) -> dict[str, str]:
        return {TAG_FAMILY: self.family, TAG_VERSION: self.version, TAG_DISK: self.disk,
                TAG_DISK_COUNT: str(self.disk_count)}


def _lookup(tags: Mapping[object, object], name: str) -> tuple[bool, object]:
    """Find a tag by case-insensitive name. Two spellings with different values are an error."""
    found: list[tuple[object, object]] = [(k, v) for k, v in tags.items() if isinstance(k, str)
                                          and k.strip().lower() == name.lower()]
    if not found:
        return False, None
    values = {v if isinstance(v, str) else repr(v) for _, v in found}
    if len(values) > 1:
        spellings = ", ".join(sorted(str(k) for k, _ in found))
        raise SnapshotTagError(name, found[0][1], f"the tag is set more than once with different values ({spellings})",
                               EXAMPLE_TAGS[name])
    return True, found[0][1]


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise SnapshotTagError(name, value, "tag values are text", EXAMPLE_TAGS[name])
    return value.strip()


def _small_int(name: str, text: str, low: int, high: int, problem: str) -> int:
    # str.isdigit() also accepts non-ASCII digits ("٣"); Azure users type ASCII, so insist on it.
    if not text or not text.isascii() or not text.isdigit() or len(text) > 4 or not low <= int(text) <= high:
        raise SnapshotTagError(name, text, problem, EXAMPLE_TAGS[name])
    return int(text)


def parse_tags(tags: Mapping[str, str] | None) -> SnapshotTags | None:
    """The validated tags of a snapshot, or None when it has not opted in (no ``autopilot.family``).

    Raises :class:`SnapshotTagError` (and nothing else) naming the first bad tag.
    """
    if tags is None:
        return None
    if not isinstance(tags, Mapping):
        raise SnapshotTagError(TAG_FAMILY, tags, "the snapshot's tags are not a name/value map",
                               EXAMPLE_TAGS[TAG_FAMILY])
    present, raw_family = _lookup(tags, TAG_FAMILY)
    if not present:
        return None

    family = canonical_family(_text(TAG_FAMILY, raw_family))
    if problem := family_problem(family):
        raise SnapshotTagError(TAG_FAMILY, raw_family, problem, EXAMPLE_TAGS[TAG_FAMILY])

    values: dict[str, str] = {}
    for name in (TAG_VERSION, TAG_DISK, TAG_DISK_COUNT):
        present, raw = _lookup(tags, name)
        if not present:
            raise SnapshotTagError(name, None, f"the tag is missing; a snapshot tagged {TAG_FAMILY} needs all of "
                                   f"{', '.join(ALL_TAGS)}",
                                   EXAMPLE_TAGS[name])
        values[name] = _text(name, raw)

    version = values[TAG_VERSION]
    if problem := version_problem(version):
        raise SnapshotTagError(TAG_VERSION, version, problem, EXAMPLE_TAGS[TAG_VERSION])

    disk = values[TAG_DISK]
    lun = None if disk.lower() == OS_DISK else _small_int(
        TAG_DISK, disk, 0, MAX_LUN,
        f"use '{OS_DISK}' for the OS disk, or the data disk's LUN, a whole number from 0 to {MAX_LUN}")
    disk_count = _small_int(
        TAG_DISK_COUNT, values[TAG_DISK_COUNT], 1, MAX_DISK_COUNT,
        f"give the number of disks in the set, OS disk included: a whole number from 1 to {MAX_DISK_COUNT}")
    if lun is not None and disk_count < 2:
        raise SnapshotTagError(TAG_DISK_COUNT, values[TAG_DISK_COUNT],
                               f"this snapshot is data disk LUN {lun}, so the set has at least 2 disks (the OS disk "
                               "and this one)", "2")
    return SnapshotTags(family=family, version=version, lun=lun, disk_count=disk_count)
