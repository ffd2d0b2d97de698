"""The checks from the Batch custom-image doc, reading from Azure what they need (accounts, source disk, supported
images); the rules themselves are pure, in shared/pipeline/image_rules.py."""

from __future__ import annotations

from shared.config.families import FamilyConfig
from shared.core.context import AppContext
from shared.core.resource_ids import ResourceId
from shared.pipeline import image_rules, naming
from shared.pipeline.snapshot_sets import SnapshotSet
from shared.resources import batch_accounts, batch_pools, compute


def validate(context: AppContext, family: FamilyConfig, snapshot_set: SnapshotSet, version_id: str,
             image_id: str | None) -> tuple[list[image_rules.Finding], dict[str, str]]:
    """Every check, reading what it needs from Azure. Returns findings and the nodeAgentSkuId per account."""
    now = context.clock.now()
    findings: list[image_rules.Finding] = list(image_rules.check_family(family))
    findings += image_rules.check_os_disk(snapshot_set, os_type=family.gallery.os_type)
    app_subscription = context.settings.subscription_id
    foreign = [a for a in dict.fromkeys(spec.account for spec in family.pools)
               if ResourceId.parse(a).subscription_id.lower() != app_subscription.lower()]
    if foreign:
        # The app reads accounts, snapshots and images in its own subscription only; an account elsewhere can
        # neither be read here nor use an image built here. Refuse before reading anything about it.
        for account_id in foreign:
            findings.append(image_rules.Finding(
                image_rules.REFUSE, "SNAPSHOT_SUBSCRIPTION", account_id,
                f"Batch account {account_id} is in subscription {ResourceId.parse(account_id).subscription_id}, but "
                "the snapshots "
                f"{', '.join(snapshot_set.snapshot_ids)} (and the image the app builds from them) are in "
                f"{app_subscription}; Batch "
                "needs the image in the account's subscription",
                "copy the snapshots into the Batch account's subscription and run the app there, or remove this "
                "account from the "
                "family's pools"))
        return _dedupe(findings), {}
    os_member = snapshot_set.os_member
    accounts = {}
    for spec in family.pools:
        if spec.account.lower() not in accounts:
            accounts[spec.account.lower()] = batch_accounts.get_account(context.clients, spec.account)
    targets = [image_rules.TargetAccount(a.id, a.location) for a in accounts.values()]
    findings += image_rules.check_location(
        snapshot_set.members, targets, gallery_location=family.gallery.location,
        gallery_subscription=family.gallery.subscription or app_subscription,
        allow_cross_subscription_gallery=context.settings.allow_cross_subscription_gallery)
    from shared.pipeline.set_membership import source_disk as disk_behind  # follows snapshot copies back to the disk

    source_disk = disk_behind(context, os_member.source_disk_id) if os_member and os_member.source_disk_id else None
    os_snapshot = compute.get_snapshot(context.clients, os_member.snapshot_id) if os_member else None
    source_image_id = image_rules.source_image_id_of_disk(source_disk) if source_disk else None
    plan = ((image_rules.purchase_plan_of(source_disk) if source_disk else None)
            or (image_rules.purchase_plan_of(os_snapshot) if os_snapshot else None))
    skus: dict[str, str] = {}
    supported_cache: dict[str, list[image_rules.SupportedImage]] = {}
    for spec in family.pools:
        account = accounts[spec.account.lower()]
        if account.id.lower() not in supported_cache:
            supported_cache[account.id.lower()] = [image_rules.SupportedImage.from_api(i)
                                                   for i in batch_pools.list_supported_images(context.clients, account)]
        result = image_rules.check_base_image(source_image_id, supported_cache[account.id.lower()], now=now,
                                              resource_id=os_member.snapshot_id if os_member else None,
                                              account_id=account.id,
                                              purchase_plan=plan, os_type=family.gallery.os_type,
                                              node_agent_sku_id=spec.node_agent_sku_id)
        findings += result.findings
        if result.node_agent_sku_id:
            skus[
                f"{account.id.lower()}|{spec.pool_id(family.name, snapshot_set.key.version)}"] = (
                    result.node_agent_sku_id)
    findings += image_rules.check_hyper_v_generation(
        os_member.hyper_v_generation if os_member else None, family.gallery.hyper_v_generation,
        [(spec.pool_id(family.name, snapshot_set.key.version), spec.vm_size) for spec in family.pools],
        snapshot_id=os_member.snapshot_id if os_member else None)
    pool_image = naming.family_pool_image_id(family, snapshot_set.key.version, context.settings.subscription_id)
    planned = image_rules.planned_pool_usages(family, snapshot_set.key.version, pool_image, snapshot_set.snapshot_ids)
    # No node-limit check here: the pools use the gallery image version, and Batch caps only pools created with a
    # managed image resource (quotas and limits page; the gallery doc lets gallery pools grow larger). The pool watch
    # enforces the managed-image cap at run time for the pre-existing managed-image pools it drives
    # (shared/watch/pool_limits.py).
    findings += image_rules.check_shared_image(planned)
    return _dedupe(findings), skus


def _dedupe(findings: list[image_rules.Finding]) -> list[image_rules.Finding]:
    seen, out = set(), []
    for finding in findings:
        if (finding.code, finding.message) not in seen:
            seen.add((finding.code, finding.message))
            out.append(finding)
    return out
