"""Least privilege, proven: the ARM actions the app performs in the bundled scenarios are exactly
what the custom roles in infra/roles.json grant - nothing missing, nothing granted and never used."""

from __future__ import annotations

import pytest

from tests.infra.roles import CHECKED_BY_AZURE_NOT_CALLED, load_roles, uncovered, unexercised


def _observed(bundled_runs: dict[str, dict]) -> set[str]:
    actions: set[str] = set()
    for run in bundled_runs.values():
        actions.update(run["report"]["requests"]["appByAction"])
    return actions


@pytest.mark.xdist_group("bundled")  # shares the bundled runs with tests/cli/test_bundled_scenarios.py
def test_every_action_the_app_performs_is_granted(bundled_runs: dict[str, dict]) -> None:
    observed = _observed(bundled_runs)
    assert observed, "the scenarios recorded no request by the app"
    assert uncovered(observed, load_roles()) == [], "the app needs these actions, which infra/roles.json does not grant"


def test_every_custom_role_grant_is_used_by_the_scenarios(bundled_runs: dict[str, dict]) -> None:
    # Grants Azure checks without a call of the app's own are listed, with the reason, in
    # tests/infra/roles.py CHECKED_BY_AZURE_NOT_CALLED and are exempt here.
    assert CHECKED_BY_AZURE_NOT_CALLED
    assert unexercised(_observed(bundled_runs)) == [], ("granted but never used in any bundled scenario: remove, or "
                                                        "add a scenario that needs it")
