"""Snapshot set -> managed image -> gallery image version -> pools, as a resumable stage machine.

Every step is idempotent and claimed before it is taken:

* names derive from (family, version), so a repeated step finds its own earlier result;
* the per-version row in the ``Pipeline`` table records the stage reached, and each Azure write is
  preceded by an ETag-guarded update of that row, so two instances racing on redelivered events
  never both start the same operation;
* long-running operations are started, never awaited: the image's and the gallery version's own
  ``ResourceWriteSuccess`` events (or the sweep timer) call :func:`advance` again.

Nothing is created for a version that fails a check from the Batch custom-image doc; an alert says
what is wrong and how to fix it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared import alerts, image_rules, naming, pool_metadata, snapshot_sets
from shared.alerts import Alert, AlertPublisher
from shared.clock import iso
from shared.context import AppContext
from shared.families import FamilyConfig, parse_families
from shared.resource_ids import normalize, same_id
from shared.resources import batch_accounts, batch_pools, compute
from shared.snapshot_sets import SnapshotSet, SnapshotSetConflict, SnapshotSetKey
from shared.snapshot_tags import TAG_FAMILY, TAG_VERSION, SnapshotTagError, parse_tags
from shared.state import PIPELINE, SNAPSHOT_SETS, ConcurrencyConflict, Record

log = logging.getLogger("autopilot.pipeline")

MANAGED_BY_TAG = "autopilot.managedBy"
MANAGED_BY = "batch-image-autopilot"
GALLERY_VERSION_LIFETIME = timedelta(days=180)  # the 2026-03-03 API's default end of life: six months
CLAIM_RETRIES = 5

# Stages, in order. "refused" and "failed" are terminal until the set changes (new snapshots).
ASSEMBLING, VALIDATED, IMAGE_REQUESTED, VERSION_REQUESTED, DONE = "assembling", "validated", "image-requested", "version-requested", "done"
REFUSED, FAILED = "refused", "failed"
TERMINAL = (DONE, REFUSED, FAILED)


@dataclass(frozen=True)
class Outcome:
    stage: str
    detail: str = ""


def families_of(context: AppContext) -> Any:
    return parse_families(context.settings.families_json or '{"families": {}}')


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def on_snapshot_written(context: AppContext, snapshot_id: str) -> Outcome:
    """A snapshot was written: re-read it, and if it is opted in, add it to its set and advance."""
    snapshot = compute.get_snapshot(context.clients, snapshot_id)
    if snapshot is None:
        return Outcome("ignored", f"snapshot {snapshot_id} no longer exists")
    tags = snapshot.get("tags") or {}
    try:
        parsed = parse_tags(tags)
    except SnapshotTagError as exc:
        _alert(context, alerts.IMAGE_REFUSED, snapshot_id, f"Snapshot tags are invalid: {exc.tag}", str(exc),
               f"fix the tag on the snapshot, for example {exc.example}", dedupe=f"tags|{json.dumps(tags, sort_keys=True)}")
        return Outcome("refused", str(exc))
    if parsed is None:
        return Outcome("ignored", "not opted in (no autopilot.family tag)")
    state = (snapshot.get("properties") or {}).get("provisioningState")
    if state and state.lower() != "succeeded":
        return Outcome("ignored", f"snapshot is {state}; its completion raises another write event")
    family = families_of(context).get(parsed.family)
    if family is None:
        _alert(context, alerts.IMAGE_REFUSED, snapshot_id, f"Unknown image family {parsed.family!r}",
               f"snapshot {snapshot_id} is tagged {TAG_FAMILY}={parsed.family}, but no such family is configured",
               "add the family to AUTOPILOT_FAMILIES (see docs/families.example.json) or fix the tag", dedupe=f"family|{parsed.family}")
        return Outcome("refused", f"unknown family {parsed.family}")
    member = snapshot_sets.member_from_snapshot(snapshot, parsed)
    key = SnapshotSetKey(family.name, parsed.version)
    try:
        _merge_member(context, key, member)
    except SnapshotSetConflict as exc:
        _alert(context, alerts.IMAGE_REFUSED, snapshot_id, f"Conflicting snapshots for {key}", str(exc), exc.fix,
               dedupe=f"conflict|{key}|{normalize(snapshot_id)}")
        return Outcome("refused", str(exc))
    return advance(context, family.name, parsed.version)


def on_image_written(context: AppContext, resource_id: str) -> Outcome:
    """A managed image or gallery image version the pipeline started has changed: advance its version."""
    resource = compute.get_any_image(context.clients, resource_id)
    if resource is None:
        return Outcome("ignored", f"{resource_id} no longer exists")
    tags = {k.lower(): v for k, v in (resource.get("tags") or {}).items()}
    if tags.get(MANAGED_BY_TAG.lower()) != MANAGED_BY or not tags.get(TAG_FAMILY) or not tags.get(TAG_VERSION):
        return Outcome("ignored", "not built by the pipeline")
    return advance(context, tags[TAG_FAMILY], tags[TAG_VERSION])


def sweep(context: AppContext) -> list[Outcome]:
    """Timer: advance every unfinished version (catching up on lost events); alert on overdue sets."""
    outcomes = []
    timeout = timedelta(minutes=context.settings.set_assembly_timeout_minutes)
    now = context.clock.now()
    for record in context.state.table(SNAPSHOT_SETS).query():
        snapshot_set = snapshot_sets.from_entity(record.data)
        if not snapshot_sets.is_complete(snapshot_set):
            if snapshot_sets.is_overdue(snapshot_set, now, timeout):
                missing = ", ".join(snapshot_sets.missing(snapshot_set))
                first = snapshot_set.members[0].snapshot_id if snapshot_set.members else f"{snapshot_set.key}"
                _alert(context, alerts.SNAPSHOT_SET_INCOMPLETE, first, f"Snapshot set {snapshot_set.key} is incomplete",
                       f"{snapshot_sets.describe(snapshot_set)}; still missing: {missing}",
                       "snapshot the missing disk(s) and tag them with the same autopilot.family and autopilot.version, "
                       "or correct autopilot.diskCount", dedupe=f"incomplete|{snapshot_set.key}", severity=alerts.SEVERITY_WARNING,
                       details={"missing": missing})
            continue
        stage = _load_stage(context, snapshot_set.key)
        if stage is None or stage.data.get("stage") not in TERMINAL:
            outcomes.append(advance(context, snapshot_set.key.family, snapshot_set.key.version))
    return outcomes


# ---------------------------------------------------------------------------------------------
# The stage machine
# ---------------------------------------------------------------------------------------------


def advance(context: AppContext, family_name: str, version: str) -> Outcome:
    family = families_of(context).get(family_name)
    if family is None:
        return Outcome("ignored", f"family {family_name} is not configured")
    key = SnapshotSetKey(family.name, version)
    record = context.state.table(SNAPSHOT_SETS).get(key.partition_key, key.row_key)
    if record is None:
        return Outcome(ASSEMBLING, "no snapshots yet")
    snapshot_set = snapshot_sets.from_entity(record.data)
    if not snapshot_sets.is_complete(snapshot_set):
        return Outcome(ASSEMBLING, "waiting for " + ", ".join(snapshot_sets.missing(snapshot_set)))
    for _ in range(CLAIM_RETRIES):
        try:
            return _advance_once(context, family, snapshot_set)
        except ConcurrencyConflict:
            continue  # another instance moved the stage: re-read and carry on from there
    return Outcome("busy", "another instance is advancing this version")


def _advance_once(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet) -> Outcome:
    key = snapshot_set.key
    sub = context.settings.subscription_id
    version_id = naming.family_gallery_version_id(family, key.version, sub)
    image_id = naming.family_managed_image_id(family, key.version, sub) if family.builds_managed_image else None
    row = _load_stage(context, key)
    stage = row.data.get("stage", ASSEMBLING) if row else ASSEMBLING
    if stage in TERMINAL:
        return Outcome(stage, row.data.get("detail", "") if row else "")

    if stage == ASSEMBLING:
        gone = [m.snapshot_id for m in snapshot_set.members if compute.get_snapshot(context.clients, m.snapshot_id) is None]
        if gone:
            return _refuse(context, key, row, version_id, [image_rules.Finding(
                image_rules.REFUSE, "SNAPSHOT_DELETED", gone[0], f"snapshot(s) {', '.join(gone)} were deleted before the image was built",
                "re-create the snapshot(s) from the prepared VM's disks and tag them again")])
        findings, skus = validate(context, family, snapshot_set, version_id, image_id)
        if image_rules.has_refusal(findings):
            return _refuse(context, key, row, version_id, findings)
        for warning in image_rules.warnings(findings):
            log.warning("%s: %s (%s)", key, warning.message, warning.fix)
        row = _save_stage(context, key, row, VALIDATED, nodeAgentSkus=json.dumps(skus))
        stage = VALIDATED

    if stage == VALIDATED and image_id is not None:
        image = compute.get_image(context.clients, image_id)
        if image is None:
            row = _save_stage(context, key, row, IMAGE_REQUESTED)  # claim first: only one instance creates it
            compute.start_image_create(context.clients, image_id, image_body(family, snapshot_set))
            return Outcome(IMAGE_REQUESTED, image_id)
        stage = IMAGE_REQUESTED
    elif stage == VALIDATED:
        stage = IMAGE_REQUESTED  # snapshots straight into the gallery: no managed image

    if stage == IMAGE_REQUESTED:
        if image_id is not None:
            image = compute.get_image(context.clients, image_id)
            state = _provisioning_state(image)
            if image is None or state in ("creating", "updating", ""):
                return Outcome(IMAGE_REQUESTED, f"image {image_id} is {state or 'not visible yet'}")
            if state == "failed":
                return _fail(context, key, row, image_id, "The managed image could not be built")
        _ensure_image_definition(context, family)
        if compute.get_gallery_image_version(context.clients, version_id) is None:
            row = _save_stage(context, key, row, VERSION_REQUESTED)
            compute.start_gallery_image_version_create(
                context.clients, version_id, gallery_version_body(context, family, snapshot_set, image_id))
            return Outcome(VERSION_REQUESTED, version_id)
        row = _save_stage(context, key, row, VERSION_REQUESTED)
        stage = VERSION_REQUESTED

    if stage == VERSION_REQUESTED:
        gallery_version = compute.get_gallery_image_version(context.clients, version_id)
        state = _provisioning_state(gallery_version)
        if gallery_version is None or state in ("creating", "updating", ""):
            return Outcome(VERSION_REQUESTED, f"gallery version {version_id} is {state or 'not visible yet'}")
        if state == "failed":
            return _fail(context, key, row, version_id, "The gallery image version could not be built")
        skus = json.loads(row.data.get("nodeAgentSkus") or "{}") if row else {}
        created = create_pools(context, family, snapshot_set, version_id, image_id, skus)
        if image_id is not None and not family.keep_managed_image and not family.legacy_managed_image_pools:
            # The gallery version is an independent copy; the intermediate image is no longer needed.
            context.clients.compute.images.begin_delete(*_rg_and_name(image_id), polling=False)
        row = _save_stage(context, key, row, DONE, detail=f"pools: {', '.join(created) or 'already existed'}")
        from shared.guard import reconcile  # lock what the new pools use now, not at the next tick

        reconcile(context)
        _alert(context, alerts.POOLS_CREATED, version_id, f"Image {key} is ready: pools created",
               f"gallery image version {version_id} was built from {len(snapshot_set.members)} snapshot(s); pools: "
               f"{', '.join(created) or 'already existed'}",
               "nothing to do; the pool watch drives the pools to their targets", dedupe=f"done|{key}",
               severity=alerts.SEVERITY_INFO, details={"pools": created, "family": key.family, "version": key.version})
        return Outcome(DONE, ", ".join(created))
    return Outcome(stage)


# ---------------------------------------------------------------------------------------------
# Checks from the Batch custom-image doc
# ---------------------------------------------------------------------------------------------


def validate(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, version_id: str,
             image_id: str | None) -> tuple[list[image_rules.Finding], dict[str, str]]:
    """Every check, reading what it needs from Azure. Returns findings and the nodeAgentSkuId per account."""
    now = context.clock.now()
    findings: list[image_rules.Finding] = list(image_rules.check_family(family))
    findings += image_rules.check_os_disk(snapshot_set, os_type=family.gallery.os_type)
    os_member = snapshot_set.os_member
    accounts = {}
    for spec in family.pools:
        if spec.account.lower() not in accounts:
            accounts[spec.account.lower()] = batch_accounts.get_account(context.clients, spec.account)
    targets = [image_rules.TargetAccount(a.id, a.location) for a in accounts.values()]
    findings += image_rules.check_location(snapshot_set.members, targets, gallery_location=family.gallery.location,
                                           gallery_subscription=family.gallery.subscription or context.settings.subscription_id)
    source_disk = compute.get_disk(context.clients, os_member.source_disk_id) if os_member and os_member.source_disk_id else None
    os_snapshot = compute.get_snapshot(context.clients, os_member.snapshot_id) if os_member else None
    source_image_id = image_rules.source_image_id_of_disk(source_disk) if source_disk else None
    plan = (image_rules.purchase_plan_of(source_disk) if source_disk else None) or (image_rules.purchase_plan_of(os_snapshot) if os_snapshot else None)
    skus: dict[str, str] = {}
    supported_cache: dict[str, list[image_rules.SupportedImage]] = {}
    for spec in family.pools:
        account = accounts[spec.account.lower()]
        if account.id.lower() not in supported_cache:
            supported_cache[account.id.lower()] = [image_rules.SupportedImage.from_api(i)
                                                   for i in batch_pools.list_supported_images(context.clients, account)]
        result = image_rules.check_base_image(source_image_id, supported_cache[account.id.lower()], now=now,
                                              resource_id=os_member.snapshot_id if os_member else None, account_id=account.id,
                                              purchase_plan=plan, os_type=family.gallery.os_type, node_agent_sku_id=spec.node_agent_sku_id)
        findings += result.findings
        if result.node_agent_sku_id:
            skus[f"{account.id.lower()}|{spec.pool_id(family.name, snapshot_set.key.version)}"] = result.node_agent_sku_id
    findings += image_rules.check_hyper_v_generation(
        os_member.hyper_v_generation if os_member else None, family.gallery.hyper_v_generation,
        [(spec.pool_id(family.name, snapshot_set.key.version), spec.vm_size) for spec in family.pools],
        snapshot_id=os_member.snapshot_id if os_member else None)
    pool_image = naming.family_pool_image_id(family, snapshot_set.key.version, context.settings.subscription_id)
    planned = image_rules.planned_pool_usages(family, snapshot_set.key.version, pool_image, snapshot_set.snapshot_ids)
    findings += image_rules.check_node_limits(planned, existing_usages(context), family.node_limits)
    findings += image_rules.check_shared_image(planned)
    return _dedupe(findings), skus


def existing_usages(context: AppContext) -> list[image_rules.PoolUsage]:
    """Managed pools that exist now, as the node-limit check counts them."""
    from shared.references import observe

    inventory = observe(context, follow_sources=False)
    usages = []
    for account_id, pools in inventory.pools.items():
        for pool in pools:
            metadata = pool_metadata.as_dict(pool.get("metadata"))
            image = ((pool.get("virtualMachineConfiguration") or {}).get("imageReference") or {}).get("id")
            snapshots = tuple(s for s in metadata.get(pool_metadata.SNAPSHOT_IDS, "").split(",") if s)
            if not image and not snapshots:
                continue
            dedicated = max(int(pool.get("targetDedicatedNodes") or 0), int(metadata.get(pool_metadata.DESIRED_DEDICATED) or 0))
            spot = max(int(pool.get("targetLowPriorityNodes") or 0), int(metadata.get(pool_metadata.DESIRED_SPOT) or 0))
            usages.append(image_rules.PoolUsage(f"{account_id}/pools/{pool.get('id')}", image, snapshots, dedicated, spot))
    return usages


def _dedupe(findings: list[image_rules.Finding]) -> list[image_rules.Finding]:
    seen, out = set(), []
    for finding in findings:
        if (finding.code, finding.message) not in seen:
            seen.add((finding.code, finding.message))
            out.append(finding)
    return out


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------


def _tags(snapshot_set: SnapshotSet) -> dict[str, str]:
    return {TAG_FAMILY: snapshot_set.key.family, TAG_VERSION: snapshot_set.key.version, MANAGED_BY_TAG: MANAGED_BY}


def image_body(family: FamilyConfig, snapshot_set: SnapshotSet) -> dict[str, Any]:
    os_member = snapshot_set.os_member
    assert os_member is not None  # validated: the set has its OS disk
    return {
        "location": os_member.region,
        "tags": _tags(snapshot_set),
        "properties": {
            # Match the snapshot's generation: a mismatch makes every allocation fail later.
            "hyperVGeneration": os_member.hyper_v_generation or family.gallery.hyper_v_generation,
            "storageProfile": {
                "osDisk": {"osType": family.gallery.os_type, "osState": "Generalized", "snapshot": {"id": os_member.snapshot_id}},
                "dataDisks": [{"lun": m.lun, "snapshot": {"id": m.snapshot_id}} for m in snapshot_set.data_members],
                "zoneResilient": False,
            },
        },
    }


def gallery_version_body(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, image_id: str | None) -> dict[str, Any]:
    planned_nodes = sum(p.peak_dedicated + p.peak_spot for p in family.pools)
    replicas = image_rules.replica_count(planned_nodes, family.replicas.nodes_per_replica, family.replicas.minimum)
    if image_id is not None:
        storage: dict[str, Any] = {"source": {"id": image_id}}
    else:
        os_member = snapshot_set.os_member
        assert os_member is not None
        storage = {
            "osDiskImage": {"source": {"id": os_member.snapshot_id}, "hostCaching": "ReadOnly"},
            "dataDiskImages": [{"lun": m.lun, "source": {"id": m.snapshot_id}, "hostCaching": "ReadOnly"} for m in snapshot_set.data_members],
        }
    end_of_life = context.clock.now() + GALLERY_VERSION_LIFETIME
    return {
        "location": family.gallery.location,
        "tags": _tags(snapshot_set),
        "properties": {
            "publishingProfile": {
                # Plan one replica per 300 VMs (Batch's 2026 guidance for gallery images).
                "targetRegions": [{"name": family.gallery.location, "regionalReplicaCount": replicas,
                                   "storageAccountType": family.replicas.storage_account_type}],
                "replicaCount": replicas,
                "excludeFromLatest": False,
                "endOfLifeDate": iso(end_of_life),
            },
            "storageProfile": storage,
            # Deletion protection where the API offers it; the guard's lock covers the rest.
            "safetyProfile": {"allowDeletionOfReplicatedLocations": False, "blockDeletionBeforeEndOfLife": True},
        },
    }


def pool_body(family: FamilyConfig, spec: Any, snapshot_set: SnapshotSet, pool_image_id: str, image_id: str | None,
              node_agent_sku_id: str, growth_step: int) -> dict[str, Any]:
    metadata = dict(spec.metadata_dict())
    metadata.update({
        pool_metadata.MANAGED: "true",
        pool_metadata.FAMILY: family.name,
        pool_metadata.VERSION: snapshot_set.key.version,
        pool_metadata.IMAGE_ID: pool_image_id,
        pool_metadata.SNAPSHOT_IDS: ",".join(snapshot_set.snapshot_ids),
        pool_metadata.DESIRED_DEDICATED: str(spec.dedicated),
        pool_metadata.DESIRED_SPOT: str(spec.spot),
        pool_metadata.DEALLOCATION: spec.node_deallocation_option.lower(),
    })
    if image_id is not None and family.keep_managed_image:
        metadata[pool_metadata.MANAGED_IMAGE_ID] = image_id
    if spec.schedule:
        metadata[pool_metadata.SCHEDULE] = json.dumps([{"cron": s.cron, "dedicated": s.dedicated, "spot": s.spot} for s in spec.schedule],
                                                      separators=(",", ":"))
    body: dict[str, Any] = {
        "properties": {
            "vmSize": spec.vm_size,
            "deploymentConfiguration": {"virtualMachineConfiguration": {
                "imageReference": {"id": pool_image_id}, "nodeAgentSkuId": node_agent_sku_id}},
            # Staged growth from the start: the first resize asks for at most one step; the pool
            # watch takes the pool the rest of the way (pools past 300 custom-image nodes may need
            # several resizes, per the Batch custom-image doc).
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": min(spec.dedicated, growth_step),
                                             "targetLowPriorityNodes": min(spec.spot, growth_step),
                                             "resizeTimeout": f"PT{spec.resize_timeout_minutes}M",
                                             "nodeDeallocationOption": spec.node_deallocation_option}},
            "metadata": [{"name": k, "value": v} for k, v in sorted(metadata.items())],
        }
    }
    if spec.inbound_nat_pools:
        body["properties"]["networkConfiguration"] = {"endpointConfiguration": {"inboundNatPools": [{
            "name": "ssh" if family.gallery.os_type == "Linux" else "rdp", "protocol": "TCP",
            "backendPort": 22 if family.gallery.os_type == "Linux" else 3389,
            "frontendPortRangeStart": 50000, "frontendPortRangeEnd": 54999}]}}
    return body


def create_pools(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, version_id: str, image_id: str | None,
                 skus: dict[str, str]) -> list[str]:
    pool_image_id = naming.family_pool_image_id(family, snapshot_set.key.version, context.settings.subscription_id)
    created = []
    for spec in family.pools:
        account = batch_accounts.get_account(context.clients, spec.account)
        pool_id = spec.pool_id(family.name, snapshot_set.key.version)
        sku = spec.node_agent_sku_id or skus.get(f"{account.id.lower()}|{pool_id}")
        if not sku:
            raise RuntimeError(f"no nodeAgentSkuId for pool {pool_id}: set nodeAgentSkuId in the family's pool configuration")
        body = pool_body(family, spec, snapshot_set, pool_image_id, image_id, sku, context.settings.growth_step_nodes)
        if batch_pools.create_pool(context.clients, account, pool_id, body):
            created.append(f"{account.name}/{pool_id}")
            log.info("created pool %s in %s from %s", pool_id, account.id, pool_image_id)
    return created


# ---------------------------------------------------------------------------------------------
# State and small helpers
# ---------------------------------------------------------------------------------------------


def _merge_member(context: AppContext, key: SnapshotSetKey, member: snapshot_sets.SnapshotMember) -> SnapshotSet:
    table = context.state.table(SNAPSHOT_SETS)
    for _ in range(CLAIM_RETRIES):
        record = table.get(key.partition_key, key.row_key)
        stored = snapshot_sets.from_entity(record.data) if record else None
        result = snapshot_sets.merge(stored, key, member, context.clock.now())
        if not result.changed:
            return result.set
        try:
            table.save(key.partition_key, key.row_key, snapshot_sets.to_entity(result.set), expected=record)
            _reopen_if_refused(context, key)
            return result.set
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"could not record snapshot {member.snapshot_id} in set {key} after {CLAIM_RETRIES} tries")


def _reopen_if_refused(context: AppContext, key: SnapshotSetKey) -> None:
    """A changed set (e.g. a re-created snapshot) gets a fresh run of the checks."""
    row = _load_stage(context, key)
    if row is not None and row.data.get("stage") in (REFUSED, FAILED):
        context.state.table(PIPELINE).delete(row)


def _load_stage(context: AppContext, key: SnapshotSetKey) -> Record | None:
    return context.state.table(PIPELINE).get(key.partition_key, key.row_key)


def _save_stage(context: AppContext, key: SnapshotSetKey, row: Record | None, stage: str, **extra: str) -> Record:
    data = dict(row.data) if row else {}
    data.update(extra)
    data.update({"stage": stage, "updatedAt": iso(context.clock.now())})
    return context.state.table(PIPELINE).save(key.partition_key, key.row_key, data, expected=row)


def _refuse(context: AppContext, key: SnapshotSetKey, row: Record | None, subject: str, findings: list[image_rules.Finding]) -> Outcome:
    refusals = image_rules.refusals(findings)
    detail = "; ".join(f.message for f in refusals)
    _save_stage(context, key, row, REFUSED, detail=detail[:4000])
    _alert(context, alerts.IMAGE_REFUSED, subject, f"Image {key} refused: {refusals[0].code}", detail,
           " / ".join(dict.fromkeys(f.fix for f in refusals)), dedupe=f"refused|{key}",
           details={"codes": [f.code for f in refusals], "family": key.family, "version": key.version,
                    "resources": sorted({f.resource_id for f in refusals if f.resource_id})})
    return Outcome(REFUSED, detail)


def _fail(context: AppContext, key: SnapshotSetKey, row: Record | None, resource_id: str, title: str) -> Outcome:
    _save_stage(context, key, row, FAILED, detail=f"{title}: {resource_id}")
    _alert(context, alerts.IMAGE_BUILD_FAILED, resource_id, f"{title} ({key})",
           f"{resource_id} ended in provisioningState Failed",
           "check the resource's activity log; fix the cause (quota, a deleted snapshot, a region), delete the failed resource, "
           "then re-tag a snapshot of the set to retry", dedupe=f"failed|{key}|{normalize(resource_id)}")
    return Outcome(FAILED, resource_id)


def _alert(context: AppContext, kind: str, subject: str, title: str, diagnosis: str, fix: str, *, dedupe: str,
           severity: str = alerts.SEVERITY_WARNING, details: dict[str, Any] | None = None) -> None:
    AlertPublisher(context).publish(Alert(kind, severity, subject, title, diagnosis, fix, dedupe, context.clock.now(), details or {}))


def _provisioning_state(resource: dict[str, Any] | None) -> str:
    return str(((resource or {}).get("properties") or {}).get("provisioningState") or "").lower()


def _rg_and_name(resource_id: str) -> tuple[str, str]:
    from shared.resource_ids import ResourceId

    rid = ResourceId.parse(resource_id)
    return rid.resource_group or "", rid.name


def _ensure_image_definition(context: AppContext, family: FamilyConfig) -> None:
    gallery = family.gallery
    definition = compute.get_gallery_image(context.clients, gallery.resource_group, gallery.name, gallery.image_definition)
    if definition is not None:
        props = definition.get("properties") or {}
        if not same_id(str(props.get("osState", "")), "Generalized"):
            raise RuntimeError(f"gallery image definition {gallery.image_definition} is {props.get('osState')}; Batch needs Generalized images")
        return
    body = {"location": gallery.location, "properties": {
        "osType": gallery.os_type, "osState": gallery.os_state, "hyperVGeneration": gallery.hyper_v_generation,
        "identifier": {"publisher": "batch-image-autopilot", "offer": family.name, "sku": gallery.image_definition}}}
    compute.ensure_gallery_image(context.clients, gallery.resource_group, gallery.name, gallery.image_definition, body)
