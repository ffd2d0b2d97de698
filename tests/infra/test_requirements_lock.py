"""The deployed requirements are locked: requirements.txt (what Flex Consumption's remote build installs) pins every
runtime dependency with a hash, and agrees with the direct pins in requirements.in."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = PIN.match(line.strip())
        if m:
            found[m.group(1).lower().replace("_", "-")] = m.group(2)
    return found


def test_every_deployed_requirement_is_pinned_with_a_hash() -> None:
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z])", text.split("\n", 3)[-1].strip())
    assert len(entries) >= 20  # the direct dependencies and their transitive closure
    for entry in entries:
        assert PIN.match(entry), entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"no hash: {entry}"


def test_the_lock_holds_the_direct_pins() -> None:
    direct, locked = pins(ROOT / "requirements.in"), pins(ROOT / "requirements.txt")
    assert direct and all(locked.get(name) == version for name, version in direct.items()), {
        n: (v, locked.get(n)) for n, v in direct.items() if locked.get(n) != v}
    assert "-r requirements.in" in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
