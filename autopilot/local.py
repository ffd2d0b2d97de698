"""Azure on this machine: the emulator over HTTPS, Azurite, and the local Functions host running the app.

One object wires them as they are wired in Azure: the app talks to the emulator only through its
settings (endpoints, CA bundle, emulator credential), keeps its state in Azurite, and is driven by
the host's Event Grid deliveries and timers on the emulator's virtual clock. People and scripts
act on the subscription through :attr:`LocalAzure.operator`, real SDK clients with a different
identity, so their writes raise events exactly as a person's would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from emulator.azure import Emulator
from emulator.functions_host import FunctionsHost
from emulator.server import EmulatorServer, TlsMaterial
from shared.config.settings import load_settings
from shared.core.context import AppContext, install_context
from shared.core.resource_ids import batch_account_id
from shared.resources.clients import AzureClients, EmulatorCredential

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
DEFAULT_REGION = "westeurope"
OPERATOR = "operator@contoso.com"


class LocalAzure:
    def __init__(self, *, azurite_connection: str, seed: int = 1, start: datetime | None = None,
                 families: Mapping[str, Any] | None = None, accounts: list[str] | None = None,
                 settings: Mapping[str, str] | None = None, tls: TlsMaterial | None = None,
                 max_delivery_attempts: int = 30) -> None:
        self.emulator = Emulator(seed=seed, start=start)
        self.server = EmulatorServer(self.emulator, tls=tls).start()
        self.subscription_id = SUBSCRIPTION_ID
        self.env: dict[str, str] = {
            "AUTOPILOT_SUBSCRIPTION_ID": SUBSCRIPTION_ID,
            "AUTOPILOT_ARM_ENDPOINT": self.server.base_url,
            "AUTOPILOT_CREDENTIAL": "emulator",
            "AUTOPILOT_CA_BUNDLE": str(self.server.ca_cert),
            "AUTOPILOT_EVENTS_TOPIC_ENDPOINT": f"{self.server.base_url}/eventgrid/autopilot/api/events",
            "AUTOPILOT_TEAMS_WEBHOOK_URL": f"{self.server.base_url}/_emulator/teams/alerts",
            "AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS": "0.05",
            "AUTOPILOT_HTTP_RETRY_BACKOFF_MAX_SECONDS": "1",
            # A fresh table prefix per run: runs sharing one Azurite never see each other's state.
            "AUTOPILOT_TABLE_PREFIX": "t" + uuid.uuid4().hex[:12],
            "AUTOPILOT_WATCH_SCHEDULE": "0 * * * * *",
            "AUTOPILOT_GUARD_SCHEDULE": "0 */15 * * * *",
            "AUTOPILOT_PIPELINE_SCHEDULE": "30 */5 * * * *",
            "AzureWebJobsStorage": azurite_connection,
        }
        if accounts:
            self.env["AUTOPILOT_BATCH_ACCOUNTS"] = ",".join(accounts)
        if families is not None:
            self.env["AUTOPILOT_FAMILIES"] = json.dumps(families)
        self.env.update(settings or {})
        self.settings = load_settings(self.env)
        self.context = AppContext.from_settings(self.settings, clock=self.emulator.clock)
        install_context(self.context)
        self.host = FunctionsHost(self.emulator, self.env, max_delivery_attempts=max_delivery_attempts)
        self.operator = AzureClients(self.settings, credential=EmulatorCredential(name=OPERATOR, appid="operator-cli"))
        self._operator_resources: Any = None
        self.emulator.resources.put_group(SUBSCRIPTION_ID, "images-rg", DEFAULT_REGION)
        self.emulator.resources.put_group(SUBSCRIPTION_ID, "batch-rg", DEFAULT_REGION)

    # ------------------------------------------------------------------------------------------
    def close(self) -> None:
        install_context(None)
        self.context.clients.close()
        self.operator.close()
        if self._operator_resources is not None:
            self._operator_resources.close()
        self.server.stop()

    def __enter__(self) -> LocalAzure:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # Setting up the subscription (state a team would already have)
    # ------------------------------------------------------------------------------------------
    def add_batch_account(self, name: str, *, resource_group: str = "batch-rg", location: str = DEFAULT_REGION,
                          **properties: Any) -> str:
        self.emulator.resources.put_group(SUBSCRIPTION_ID, resource_group, location)
        self.emulator.batch.create_account(SUBSCRIPTION_ID, resource_group, name, location, **properties)
        return batch_account_id(SUBSCRIPTION_ID, resource_group, name)

    def add_prepared_disk(self, name: str, *, image: str = "Canonical:ubuntu-24_04-lts:server",
                          version: str | None = None,
                          resource_group: str = "images-rg", location: str = DEFAULT_REGION,
                          data_disk_gb: int | None = None) -> str:
        """A disk as the Batch doc's step 1 leaves it: from a Marketplace image (or empty, for data disks)."""
        from emulator.compute.models import marketplace_image_id

        if data_disk_gb is not None:
            record = self.emulator.compute.create_disk(SUBSCRIPTION_ID, resource_group, name, location=location,
                                                       disk_size_gb=data_disk_gb)
        else:
            publisher, offer, sku = image.split(":")
            entry = self.emulator.compute.marketplace.get((publisher.lower(), offer.lower(), sku.lower()))
            chosen = version or (entry.versions[-1] if entry is not None else "1.0.0")
            image_id = marketplace_image_id(SUBSCRIPTION_ID, location, publisher, offer, sku, chosen)
            record = self.emulator.compute.create_disk(SUBSCRIPTION_ID, resource_group, name, location=location,
                                                       image_reference_id=image_id)
        return record.id

    def snapshot(self, name: str, disk_id: str, tags: Mapping[str, str] | None = None, *,
                 resource_group: str = "images-rg",
                 location: str = DEFAULT_REGION, incremental: bool = False) -> str:
        """The operator snapshots a disk through ARM (this raises the ResourceWriteSuccess event)."""
        body = {"location": location, "tags": dict(tags or {}), "properties": {
            "incremental": incremental, "creationData": {"createOption": "Copy", "sourceResourceId": disk_id}}}
        result = self.operator.compute.snapshots.begin_create_or_update(resource_group, name, body).result()
        return result.id

    def snapshot_copy(self, name: str, source_snapshot_id: str, *, location: str, tags: Mapping[str, str] | None = None,
                      resource_group: str = "images-rg") -> str:
        """The operator copies a snapshot to another region as the Learn page does (``az snapshot create
        --copy-start``).

        The copy is ``Succeeded`` at once but its ``completionPercent`` rises while the bytes are copied."""
        body = {"location": location, "tags": dict(tags or {}), "properties": {
            "incremental": True, "creationData": {"createOption": "CopyStart", "sourceResourceId": source_snapshot_id}}}
        return self.operator.compute.snapshots.begin_create_or_update(resource_group, name, body).result().id

    def operator_resources(self) -> Any:
        """azure-mgmt-resource's ResourceManagementClient as the operator (a development dependency: the app never
        tags)."""
        if self._operator_resources is None:
            from azure.mgmt.resource.resources import ResourceManagementClient

            kwargs = self.operator._arm_kwargs()
            self._operator_resources = ResourceManagementClient(self.operator.credential, SUBSCRIPTION_ID, **kwargs)
        return self._operator_resources

    def tag_resource(self, resource_id: str, tags: Mapping[str, str] | None,
                     operation: str = "Merge") -> dict[str, str]:
        """The operator tags through the Tags API (portal Tags blade, ``az tag update``/``az tag delete``), with the
        real SDK.

        ``operation``: Merge | Replace | Delete (``tags`` are the ones to remove), or ``DeleteAll`` (a DELETE of the
        tags resource, ``az tag delete --resource-id``). Returns the resource's tags afterwards."""
        client = self.operator_resources()
        if operation == "DeleteAll":
            client.tags.begin_delete_at_scope(resource_id).result()
            return {}
        body = {"operation": operation, "properties": {"tags": dict(tags or {})}}
        result = client.tags.begin_update_at_scope(resource_id, body).result()
        return dict(result.properties.tags or {})

    def snapshot_set(self, family: str, version: str, *, data_luns: tuple[int, ...] = (), prefix: str | None = None,
                     image: str = "Canonical:ubuntu-24_04-lts:server",
                     location: str = DEFAULT_REGION) -> dict[str, str]:
        """Prepared disks and tagged snapshots for one image version; returns snapshot ids by role."""
        prefix = prefix or f"{family}-{version.replace('.', '-')}"
        count = str(1 + len(data_luns))
        os_disk = self.add_prepared_disk(f"{prefix}-osdisk", image=image, location=location)
        ids = {"os": self.snapshot(f"{prefix}-os", os_disk, {"autopilot.family": family, "autopilot.version": version,
                                                             "autopilot.disk": "os", "autopilot.diskCount": count},
                                   location=location)}
        for lun in data_luns:
            disk = self.add_prepared_disk(f"{prefix}-data{lun}", data_disk_gb=128, location=location)
            ids[f"lun{lun}"] = self.snapshot(f"{prefix}-data{lun}", disk, {"autopilot.family": family,
                                                                           "autopilot.version": version,
                                                                          "autopilot.disk": str(lun),
                                                                           "autopilot.diskCount": count},
                                             location=location)
        return ids

    def reconfigure(self, **settings: str) -> None:
        """An operator changes app settings (e.g. AUTOPILOT_FAMILIES): the Functions host restarts the app with them.

        State stays where it is (the same tables); only the settings, and so the app's context, are new."""
        self.env.update(settings)
        self.settings = load_settings(self.env)
        old = self.context
        self.context = AppContext.from_settings(self.settings, clock=self.emulator.clock)
        install_context(self.context)
        self.host.env.update(settings)
        old.clients.close()

    def set_families(self, families: Mapping[str, Any]) -> None:
        self.reconfigure(AUTOPILOT_FAMILIES=json.dumps(families))

    # ------------------------------------------------------------------------------------------
    # Running and observing
    # ------------------------------------------------------------------------------------------
    def run(self, duration: timedelta, step: timedelta = timedelta(minutes=1)) -> None:
        self.host.run_for(duration, step)

    def settle(self) -> None:
        """Deliver every event raised so far, without moving the clock."""
        self.host.pump()

    def alerts(self, alert_type: str | None = None) -> list[dict[str, Any]]:
        events = [e for e in self.emulator.eventgrid.events("autopilot")
                  if str(e.get("eventType", "")).startswith("BatchImageAutopilot.")
                  and not str(e.get("eventType")).endswith("PoolResizeStalled")]
        if alert_type is not None:
            events = [e for e in events if e["eventType"] == f"BatchImageAutopilot.{alert_type}"]
        return events

    def stall_events(self) -> list[dict[str, Any]]:
        return [e for e in self.emulator.eventgrid.events("autopilot")
                if str(e.get("eventType")).endswith("PoolResizeStalled")]

    def pool(self, account: str, pool_id: str) -> Any:
        return self.emulator.batch.get_pool(account, pool_id)

    def locks_on(self, resource_id: str) -> list[Any]:
        return [lock for lock in self.emulator.locks.all_locks() if lock.scope.lower() == resource_id.lower()]
