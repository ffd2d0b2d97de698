"""Attacker-controlled *content*, not only the envelope: hostile tag values (long, markdown, unicode, many distinct
values), snapshots written where the app has no role (403), and the If-Match on the resize that Batch's own 409 would
otherwise hide.

Invariants: no invocation fails and nothing is dead-lettered; every Table key stays within the service's limits (the
alert still goes out); alerts do not multiply beyond one per snapshot; Teams cards carry no live markdown or link.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import timedelta

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from tests.e2e.test_pipeline import alerts_of, families, no_failed_invocations
from tests.e2e.test_pipeline import make_azure as _make_azure_fixture

from .harness import LEDGER, scaled

make_azure = _make_azure_fixture
APP = "batch-image-autopilot"
MARKDOWN = ["[click](https://evil.example/p)", "**urgent**", "_x_", "`rm -rf`", "# head", "- item", "<b>x</b>",
            "~~gone~~"]
UNICODE = ["\u202eevil\u202c", "ｇｐｕ", "🔥" * 40, "é" * 128, "\u200b" * 10, "日本語"]


def hostile_value(rng: random.Random) -> str:
    parts = [rng.choice(MARKDOWN + UNICODE) for _ in range(rng.randint(1, 6))]
    value = " ".join(parts)
    return (value * (256 // max(1, len(value)) + 1))[:256] if rng.random() < 0.5 else value[:256]


def test_hostile_tags_never_fail_an_invocation_and_cards_stay_inert(make_azure: Callable[..., LocalAzure]) -> None:
    LEDGER.case("hostile-tags")
    rng = random.Random(13)
    la = make_azure(families())
    disk = la.add_prepared_disk("hostile-osdisk")
    snapshots = scaled(6, 40)
    for i in range(snapshots):
        tags = {"autopilot.family": "gpu", "autopilot.version": hostile_value(rng), "autopilot.disk": "os",
                "autopilot.diskCount": "1"}
        for j in range(rng.randint(0, 12)):  # many distinct extra tags
            tags[f"note{j}"] = hostile_value(rng)
        la.snapshot(f"hostile-{i}", disk, tags)
        # ... and re-tagged through ARM with another bad value (its write event reaches the app too)
        tags["autopilot.version"] = hostile_value(rng)
        la.operator.compute.snapshots.begin_update("images-rg", f"hostile-{i}", {"tags": tags}).result()
    la.run(timedelta(minutes=10))

    no_failed_invocations(la)
    LEDGER.held("no failed invocation on hostile tags")
    refused = alerts_of(la, "ImageRefused")
    # Sent (their keys fit Table storage), and bounded by the writes: at most one per snapshot write. (Issue 11 narrows
    # the de-duplication to one refusal per snapshot and situation an hour; this test only needs the bound.)
    assert 1 <= len(refused) <= 2 * snapshots
    LEDGER.held("refusal alerts bounded per snapshot write")
    for message in la.emulator.teams_messages:
        card = message["body"]["attachments"][0]["content"]
        for block in card["body"]:
            texts = [block.get("text", "")] + [f["value"] for f in block.get("facts", [])]
            for text in texts:
                body = text.removeprefix("**What to do:** ")
                assert not re.search(r"(?<!\\)\]\(", body), body  # no [text](link)
                assert "https://" not in body and "\n" not in body
                assert "\u202e" not in body
                assert len(body) <= 3000
    LEDGER.held("teams cards inert and short", len(la.emulator.teams_messages))
    assert json.dumps(la.alerts())  # the topic events serialise


def test_an_unreadable_snapshot_elsewhere_is_never_poison(make_azure: Callable[..., LocalAzure]) -> None:
    LEDGER.case("403-out-of-scope")
    la = make_azure(families())
    la.emulator.resources.put_group(SUBSCRIPTION_ID, "backups-rg", "westeurope")
    la.emulator.authorization.deny("Microsoft.Compute/*", f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/backups-rg",
                                   principal=APP)
    disk = la.add_prepared_disk("b-disk", resource_group="backups-rg")
    for i in range(scaled(5, 50)):
        la.snapshot(f"b-{i}", disk, {"autopilot.family": "gpu", "autopilot.version": "1.0.0"},
                    resource_group="backups-rg")
    la.run(timedelta(hours=2))
    no_failed_invocations(la)
    assert la.host.dead_letters == []
    assert alerts_of(la, "PermissionDenied") == []
    LEDGER.held("403 outside scope is an ignore, not a dead letter")


def test_a_resize_decided_on_a_pool_that_changed_since_is_refused_by_if_match(
        make_azure: Callable[..., LocalAzure]) -> None:
    """The watch decides on the pool it listed; if a person changes the (steady) pool before the resize lands, Batch's
    If-Match check answers 412 and nothing is overridden. Without If-Match the stale resize would be accepted: a steady
    pool gives no 409 to hide the difference."""
    from shared.resources import batch_accounts, batch_pools

    LEDGER.case("if-match")
    la = make_azure(families())
    la.emulator.batch.create_pool("renderweu", "team-pool", vm_size="Standard_D4ds_v5",
                                  node_agent_sku_id="batch.node.ubuntu 24.04",
                                  image_reference={"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                                   "sku": "server", "version": "latest"},
                                  target_dedicated=2,
                                  metadata={"autopilot.managed": "true", "autopilot.desiredDedicated": "2"})
    la.run(timedelta(minutes=10))  # steady at 2
    account = batch_accounts.get_account(la.context.clients, la.context.settings.batch_accounts[0])
    seen = batch_pools.get_pool(la.context.clients, account, "team-pool")
    assert seen is not None and seen["allocationState"] == "steady"
    # A person changes the pool (metadata) in between: its ETag changes, it stays steady.
    from azure.mgmt.batch.models import MetadataItem, Pool

    la.operator.batch_management.pool.update("batch-rg", "renderweu", "team-pool", Pool(metadata=[
        MetadataItem(name="autopilot.managed", value="true"),
        MetadataItem(name="autopilot.desiredDedicated", value="1")]))
    result = batch_pools.resize_pool(la.context.clients, account, "team-pool", etag=seen["eTag"], target_dedicated=5,
                                     target_spot=0,
                                     resize_timeout=timedelta(minutes=25))
    assert result == batch_pools.ResizeResult.CHANGED
    assert la.pool("renderweu", "team-pool").target["dedicated"] == 2  # nothing overridden
    LEDGER.held("stale resize refused by If-Match")
