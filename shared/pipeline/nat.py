"""Inbound NAT pools on a Batch pool: the port ranges Batch accepts, checked before asking, or chosen by the app.

Every rule here is from the azure-batch 15.1.0 model docstrings (``BatchInboundNatPool`` and
``BatchPoolEndpointConfiguration``; azure-mgmt-batch ``InboundNatPool`` says the same):

* frontend ports lie in 1-65534, **except 50000-55000, which Batch reserves**; a range touching them fails with 400;
* every frontend range holds at least 40 ports, and the ranges of one pool do not overlap;
* the backend port is 1-65535, unique within the pool, and not 29876 or 29877 (reserved);
* a pool has at most 5 inbound NAT pools.

Each node gets one frontend port of every range, so the smallest range is also the most nodes the
pool can hold (the pool watch and the pipeline treat it as a node limit of the pool).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESERVED_FRONTEND = (50000, 55000)  # inclusive
FRONTEND_MAX = 65534
BACKEND_MAX = 65535
RESERVED_BACKEND = frozenset({29876, 29877})
MIN_RANGE_PORTS = 40
MAX_NAT_POOLS = 5
PROTOCOLS = ("TCP", "UDP")  # management-plane casing
# Where the app starts looking for a free range of its own: under the reserved block, clear of the
# well-known ports, with 10,000 ports before the reserved block (more than a pool of this app's sizes).
CHOSEN_RANGE_START = 40000


@dataclass(frozen=True)
class NatPool:
    name: str
    backend_port: int
    frontend_start: int
    frontend_end: int
    protocol: str = "TCP"

    @property
    def ports(self) -> int:
        return self.frontend_end - self.frontend_start + 1

    def body(self) -> dict[str, Any]:
        """The management-plane ``inboundNatPools`` item."""
        return {"name": self.name, "protocol": self.protocol, "backendPort": self.backend_port,
                "frontendPortRangeStart": self.frontend_start, "frontendPortRangeEnd": self.frontend_end}


def problems(pools: Sequence[NatPool]) -> list[str]:
    """Every reason Batch would refuse these NAT pools with 400, one line each; [] when it accepts them."""
    out: list[str] = []
    if len(pools) > MAX_NAT_POOLS:
        out.append(f"{len(pools)} inbound NAT pools; Batch allows at most {MAX_NAT_POOLS} per pool")
    low, high = RESERVED_FRONTEND
    names: set[str] = set()
    backends: set[int] = set()
    for p in pools:
        label = f"NAT pool {p.name!r}"
        if p.name.lower() in names:
            out.append(f"{label}: the name is used twice; names are unique within a pool")
        names.add(p.name.lower())
        if p.protocol.upper() not in PROTOCOLS:
            out.append(f"{label}: protocol {p.protocol!r} is not TCP or UDP")
        if not 1 <= p.backend_port <= BACKEND_MAX or p.backend_port in RESERVED_BACKEND:
            out.append(f"{label}: backend port {p.backend_port} is outside 1-{BACKEND_MAX} or reserved by Batch "
                       "(29876, 29877)")
        elif p.backend_port in backends:
            out.append(f"{label}: backend port {p.backend_port} is used by another NAT pool; backend ports are unique "
                       "within a pool")
        backends.add(p.backend_port)
        if not 1 <= p.frontend_start <= p.frontend_end <= FRONTEND_MAX:
            out.append(f"{label}: frontend range {p.frontend_start}-{p.frontend_end} is not an ascending range within "
                       f"1-{FRONTEND_MAX}")
            continue
        if p.frontend_start <= high and p.frontend_end >= low:
            out.append(f"{label}: frontend range {p.frontend_start}-{p.frontend_end} touches {low}-{high}, which "
                       "Batch reserves")
        if p.ports < MIN_RANGE_PORTS:
            out.append(f"{label}: frontend range {p.frontend_start}-{p.frontend_end} holds {p.ports} ports; Batch "
                       f"needs at least {MIN_RANGE_PORTS}")
    ordered = sorted((p for p in pools if p.frontend_start <= p.frontend_end), key=lambda p: p.frontend_start)
    for a, b in itertools.pairwise(ordered):
        if b.frontend_start <= a.frontend_end:
            out.append(f"NAT pools {a.name!r} and {b.name!r}: frontend ranges {a.frontend_start}-{a.frontend_end} and "
                       f"{b.frontend_start}-{b.frontend_end} overlap; the ranges of one pool must be distinct")
    return out


def node_limit(pools: Sequence[NatPool]) -> int | None:
    """The most nodes the pool can hold: one frontend port of every range per node (None without NAT pools)."""
    return min((p.ports for p in pools), default=None)


def choose(os_type: str, nodes: int) -> tuple[NatPool, ...]:
    """The app's own NAT pool when a family asks for one without ranges: SSH (Linux) or RDP (Windows), one
    frontend port per node (at least the 40 Batch requires), placed below the reserved block, else above it."""
    size = max(MIN_RANGE_PORTS, nodes)
    low, high = RESERVED_FRONTEND
    if CHOSEN_RANGE_START + size - 1 < low:
        start = CHOSEN_RANGE_START
    elif high + size <= FRONTEND_MAX:
        start = high + 1
    else:
        start = 1024  # more nodes than fit on either side of the block: start lower (problems() still judges it)
    linux = os_type.lower() == "linux"
    return (NatPool("ssh" if linux else "rdp", 22 if linux else 3389, start, start + size - 1),)


def from_config(raw: Mapping[str, Any]) -> NatPool:
    """One configured NAT pool (``{"name", "backendPort", "frontendPortRangeStart", "frontendPortRangeEnd",
    "protocol"?}``); the caller has checked the types."""
    return NatPool(name=str(raw["name"]), backend_port=int(raw["backendPort"]),
                   frontend_start=int(raw["frontendPortRangeStart"]),
                   frontend_end=int(raw["frontendPortRangeEnd"]), protocol=str(raw.get("protocol", "TCP")).upper())
