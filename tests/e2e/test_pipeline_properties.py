"""Property: whatever Event Grid does with the pipeline's events - any order, any number of copies, either
schema, ids in any casing, temporary-deployment copies first, deliveries interleaved with time passing -
one set of snapshots gives exactly one managed image, one gallery image version and one set of pools.

Each example is a fresh LocalAzure (own emulator over HTTPS, own table prefix in the session's Azurite,
the local Functions host running the real functions). The snapshots are taken untagged through ARM (their
events are recorded and ignored), then tagged where no event reaches the app; from then on only the
host's ``publish`` of copies of those recorded events - in the order hypothesis draws - drives the app.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot.local import SUBSCRIPTION_ID, LocalAzure
from emulator.server import TlsMaterial
from shared.core.resource_ids import normalize
from shared.core.state import SNAPSHOT_SETS
from shared.resources import batch_accounts
from tests.e2e.test_pipeline import (
    ACCOUNT,
    ACCOUNT_ID,
    BUILD_ACTIONS,
    DEFINITION_WRITE,
    GALLERY,
    IMAGE_WRITE,
    IMAGES_RG,
    POOL_WRITE,
    SNAPSHOT_WRITE,
    VERSION_WRITE,
    alerts_of,
    assert_pool,
    built,
    families,
    no_failed_invocations,
    pipeline_stage,
    pool_spec,
    prepared_disks,
    recased,
    recorded,
    redeliver,
    tags,
)

ROLES = ("os", "0", "1")
FAMILY, VERSION = "gpu", "3.1.4"

# One delivery of a recorded snapshot event: which snapshot, in which schema, in which casing, and whether
# the host delivers everything queued so far right after it.
delivery = st.tuples(st.sampled_from(ROLES), st.booleans(), st.booleans(), st.booleans())
# A late redelivery once things exist: of a snapshot's, the image's or the gallery version's event.
late = st.tuples(st.sampled_from(("os", "0", "1", "image", "version")), st.booleans())


@st.composite
def delivery_plans(draw: st.DrawFn) -> dict[str, Any]:
    extra = draw(st.lists(delivery, max_size=5))
    firsts = [(role, draw(st.booleans()), draw(st.booleans()), draw(st.booleans())) for role in ROLES]
    sequence = draw(st.permutations(firsts + extra))
    return {
        "sequence": sequence,
        "temporary_first": draw(st.booleans()),  # Event Grid's temporary-deployment copy precedes a write's event
        "late": draw(st.lists(late, max_size=4)),
        "late_at_minutes": draw(st.sampled_from((1, 4, 9))),  # during the image build, the replication, or after
    }


@settings(max_examples=8, deadline=None, derandomize=False, print_blob=True)
@given(plan=delivery_plans())
def test_any_delivery_order_and_duplication_builds_exactly_once(azurite: str, tls_material: TlsMaterial,
                                                                plan: dict[str, Any]) -> None:
    batch_accounts.forget_accounts()  # see the make_azure fixture in test_pipeline.py
    with LocalAzure(azurite_connection=azurite, families=families(pools=[pool_spec(dedicated=20, spot=10)]),
                    accounts=[ACCOUNT_ID],
                    tls=tls_material) as la:
        la.add_batch_account(ACCOUNT)
        la.emulator.compute.create_gallery(SUBSCRIPTION_ID, IMAGES_RG, GALLERY, location="westeurope")
        la.emulator.eventgrid.duplicate_writes = plan["temporary_first"]
        disks = prepared_disks(la, "prop", [0, 1])
        ids = {role: la.snapshot(f"prop-{role}", disks[role]) for role in ROLES}
        la.settle()  # the untagged snapshots' events: read once each, ignored
        assert not list(la.context.state.table(SNAPSHOT_SETS).query())
        for role in ROLES:
            la.emulator.compute.update_snapshot(SUBSCRIPTION_ID, IMAGES_RG, f"prop-{role}",
                                                {"tags": tags(FAMILY, VERSION, role, 3)})
        written = {role: recorded(la, SNAPSHOT_WRITE, ids[role])[0] for role in ROLES}
        temporary = {role: [e for e in la.emulator.eventgrid.events("system")
                            if e["data"].get("correlationId") == written[role]["data"].get("correlationId")
                            and e is not written[role]
                            and "/deployments/" in e["subject"].lower()] for role in ROLES}

        for role, cloud, upper, pump in plan["sequence"]:
            for event in temporary[role]:
                redeliver(la, event, cloud=cloud)
            redeliver(la, recased(written[role]) if upper else written[role], cloud=cloud)
            if pump:
                la.settle()
        la.settle()
        assert pipeline_stage(la, FAMILY, VERSION) == "image-requested"

        la.run(timedelta(minutes=plan["late_at_minutes"]))
        sources = {**{role: [written[role]] for role in ROLES}, "image": recorded(la, IMAGE_WRITE),
                   "version": recorded(la, VERSION_WRITE)}
        for what, cloud in plan["late"]:
            for event in sources[what]:
                redeliver(la, event, cloud=cloud)
        la.run(timedelta(minutes=25 - plan["late_at_minutes"]))
        for what, cloud in plan["late"]:  # and once more after everything is done
            for event in [*sources[what], *recorded(la, IMAGE_WRITE), *recorded(la, VERSION_WRITE)][:3]:
                redeliver(la, event, cloud=not cloud)
        la.settle()

        no_failed_invocations(la)
        assert pipeline_stage(la, FAMILY, VERSION) == "done"
        # Exactly one of each, and not even a redundant (refused) create was sent.
        assert built(la, attempts=True) == {IMAGE_WRITE: 1, DEFINITION_WRITE: 1, VERSION_WRITE: 1, POOL_WRITE: 1}
        assert set(BUILD_ACTIONS) == {IMAGE_WRITE, DEFINITION_WRITE, VERSION_WRITE, POOL_WRITE}
        versions = list(la.emulator.compute.gallery_image_versions.values())
        assert len(versions) == 1 and sorted(d["lun"] for d in versions[0].storage_profile["dataDiskImages"]) == [0, 1]
        assert [p.id for p in la.emulator.batch.list_pools(ACCOUNT)] == ["gpu-3-1-4"]
        assert_pool(la, "gpu-3-1-4", family=FAMILY, version=VERSION, snapshot_ids=list(ids.values()), dedicated=20,
                    spot=10)
        assert len(alerts_of(la, "PoolsCreated")) == 1
        assert alerts_of(la, "ImageRefused") == [] and alerts_of(la, "ImageBuildFailed") == []
        sets = list(la.context.state.table(SNAPSHOT_SETS).query())
        assert (len(sets) == 1 and {normalize(s) for s in sets[0].data["snapshotIds"].split(",")}
                == {normalize(s) for s in ids.values()})
    batch_accounts.forget_accounts()
