"""Inbound NAT pools: the ranges Batch accepts (azure-batch 15.1.0 BatchInboundNatPool docstrings), checked before
asking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config.families import FamilyConfigError, families_from_dict
from shared.pipeline import nat
from tests.unit.test_families import POOL, minimal, problems, with_change


def test_ranges_batch_accepts_pass() -> None:
    pools = [nat.NatPool("ssh", 22, 40000, 40039), nat.NatPool("app", 8080, 55001, 56000, "UDP")]
    assert nat.problems(pools) == []
    assert nat.node_limit(pools) == 40


@pytest.mark.parametrize(("pools", "words"), [
    ([nat.NatPool("ssh", 22, 50000, 54999)], "reserves"),  # the range the app used to send
    ([nat.NatPool("ssh", 22, 49990, 50029)], "reserves"),  # touching the block at one end
    ([nat.NatPool("ssh", 22, 54990, 55039)], "reserves"),
    ([nat.NatPool("ssh", 22, 40000, 40038)], "at least 40"),
    ([nat.NatPool("a", 22, 40000, 40100), nat.NatPool("b", 23, 40100, 40200)], "overlap"),
    ([nat.NatPool("a", 29876, 40000, 40100)], "reserved"),
    ([nat.NatPool("a", 29877, 40000, 40100)], "reserved"),
    ([nat.NatPool("a", 22, 40000, 40100), nat.NatPool("b", 22, 41000, 41100)], "unique"),
    ([nat.NatPool(f"p{i}", 20 + i, 1000 + 100 * i, 1050 + 100 * i) for i in range(6)], "at most 5"),
])
def test_ranges_batch_refuses_are_named(pools: list[nat.NatPool], words: str) -> None:
    assert any(words in p for p in nat.problems(pools)), nat.problems(pools)


@given(st.integers(0, 15000), st.sampled_from(["Linux", "Windows"]))
def test_the_app_always_chooses_a_range_batch_accepts_holding_every_node(nodes: int, os_type: str) -> None:
    chosen = nat.choose(os_type, nodes)
    assert nat.problems(chosen) == []
    assert (nat.node_limit(chosen) or 0) >= nodes


def test_families_take_true_or_validated_ranges() -> None:
    chosen = families_from_dict(with_change([*POOL, "inboundNatPools"], True)).families["gpu"].pools[0]
    assert chosen.inbound_nat_pools and chosen.nat_pools == ()
    [ssh] = chosen.nat_pools_for("Linux")
    assert (ssh.backend_port, ssh.frontend_start) == (22, 40000) and nat.problems([ssh]) == []

    configured = [{"name": "ssh", "backendPort": 22, "frontendPortRangeStart": 1000, "frontendPortRangeEnd": 1099}]
    spec = families_from_dict(with_change([*POOL, "inboundNatPools"], configured)).families["gpu"].pools[0]
    assert spec.nat_pools_for("Linux") == (nat.NatPool("ssh", 22, 1000, 1099, "TCP"),)


def test_families_refuse_ranges_batch_would_refuse_or_too_small_for_the_pool() -> None:
    reserved = [{"name": "ssh", "backendPort": 22, "frontendPortRangeStart": 50000, "frontendPortRangeEnd": 54999}]
    [problem] = problems(with_change([*POOL, "inboundNatPools"], reserved))
    assert problem.startswith("families.gpu.pools[0].inboundNatPools:") and "reserves" in problem
    small = with_change([*POOL, "dedicated"], 60, with_change([*POOL, "inboundNatPools"],
                        [{"name": "ssh", "backendPort": 22, "frontendPortRangeStart": 1000,
                          "frontendPortRangeEnd": 1049}]))
    [problem] = problems(small)
    assert "holds 50 ports" in problem and "60 nodes" in problem
    with pytest.raises(FamilyConfigError):
        families_from_dict(with_change([*POOL, "inboundNatPools"], []))
    assert minimal()  # the helper stays untouched
