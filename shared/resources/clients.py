"""The one door to Azure: every SDK client the app uses is built here, from settings.

This is the only module that knows whether the app talks to Azure or to the local emulator; the
difference is the endpoints, the CA bundle to trust and the credential. Heavy SDK modules are imported
inside the builders, so importing this module (or ``function_app``) costs nothing at cold start.
TLS verification is never switched off: a local CA is *trusted* through ``AUTOPILOT_CA_BUNDLE``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from shared.config.settings import Settings

if TYPE_CHECKING:
    from azure.batch import BatchClient
    from azure.core import PipelineClient
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.eventgrid._legacy import EventGridPublisherClient
    from azure.mgmt.batch import BatchManagementClient
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.resource.locks import ManagementLockClient

USER_AGENT = "batch-image-autopilot/0.1"
# The Batch data-plane api-version the app speaks: the one azure-batch 15.1.0 sends (contracts §4). The requests the
# app builds itself (pool list pages, resize, node calls) must use the same; written once, here.
BATCH_API_VERSION = "2025-06-01"
LIST_READ_BLOCK = 4 << 20  # bytes per read of a streamed answer from the Batch data plane (see batch_account)


class EmulatorCredential:
    """A TokenCredential for the local emulator only (settings refuse it for non-loopback endpoints).

    The token is an unsigned JWT whose claims say who is calling, so that the emulator's Event Grid
    events can name the caller as Azure's do (``data.claims``).
    """

    def __init__(self, name: str = "batch-image-autopilot", appid: str = "batch-image-autopilot") -> None:
        claims = {"name": name, "appid": appid, "http://schemas.microsoft.com/identity/claims/objectidentifier": appid}
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        self._token = f"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


class AzureClients:
    """Lazily built, cached SDK clients for one settings object."""

    def __init__(self, settings: Settings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------------
    @property
    def credential(self) -> TokenCredential:
        if self._credential is None:
            if self.settings.is_emulator:
                self._credential = EmulatorCredential()
            else:
                from azure.identity import DefaultAzureCredential

                # Managed identity in Azure (AZURE_CLIENT_ID selects a user-assigned identity);
                # developer credentials (az login) on a workstation. No secrets in settings.
                self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return self._credential

    def _transport_kwargs(self) -> dict[str, Any]:
        retry = self.settings.retry
        from shared.resources.retry import CappedRetryPolicy

        kwargs: dict[str, Any] = {
            # azure-core's RetryPolicy retries 408/429/500/502/503/504 and connection errors, and
            # sleeps for Retry-After when the service sends it; bounded so a function never hangs:
            # retries, backoff and (shared/resources/retry.py) the Retry-After an invocation will wait for.
            "retry_policy": CappedRetryPolicy(retry_total=retry.total, retry_backoff_factor=retry.backoff_factor,
                                              retry_backoff_max=retry.backoff_max,
                                              retry_after_max=retry.retry_after_max),
            "retry_total": retry.total,
            "retry_backoff_factor": retry.backoff_factor,
            "retry_backoff_max": retry.backoff_max,
            "connection_timeout": 10,
            "read_timeout": retry.read_timeout,
            "user_agent": USER_AGENT,
        }
        if self.settings.ca_bundle:
            kwargs["connection_verify"] = self.settings.ca_bundle
        return kwargs

    def _arm_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.settings.arm_endpoint, "credential_scopes": [self.settings.arm_scope],
                **self._transport_kwargs()}

    def _cached(self, key: str, build: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    # ----------------------------------------------------------------------------------------
    @property
    def compute(self) -> ComputeManagementClient:
        return self.compute_in(self.settings.subscription_id)

    def compute_in(self, subscription_id: str) -> ComputeManagementClient:
        """The Compute client for one subscription: the app's own, or (AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY) a
        family gallery's. The SDK puts the client's subscription in every URL, so each subscription needs its own."""

        def build() -> ComputeManagementClient:
            from azure.mgmt.compute import ComputeManagementClient

            return ComputeManagementClient(self.credential, subscription_id, **self._arm_kwargs())

        own = subscription_id.lower() == self.settings.subscription_id.lower()
        return self._cached("compute" if own else f"compute:{subscription_id.lower()}", build)

    @property
    def batch_management(self) -> BatchManagementClient:
        def build() -> BatchManagementClient:
            from azure.mgmt.batch import BatchManagementClient

            return BatchManagementClient(self.credential, self.settings.subscription_id, **self._arm_kwargs())

        return self._cached("batch_management", build)

    @property
    def locks(self) -> ManagementLockClient:
        return self.locks_in(self.settings.subscription_id)

    def locks_in(self, subscription_id: str) -> ManagementLockClient:
        """The lock client for one subscription (the app's own, or a cross-subscription gallery's)."""

        def build() -> ManagementLockClient:
            from azure.mgmt.resource.locks import ManagementLockClient

            return ManagementLockClient(self.credential, subscription_id, **self._arm_kwargs())

        own = subscription_id.lower() == self.settings.subscription_id.lower()
        return self._cached("locks" if own else f"locks:{subscription_id.lower()}", build)

    def batch_account(self, account_endpoint: str) -> BatchClient:
        """The Batch data-plane client for one account.

        ``account_endpoint`` is the account's ``accountEndpoint`` as ARM returns it: without a
        scheme (``myaccount.westeurope.batch.azure.com``); the data plane is always HTTPS.
        """
        endpoint = account_endpoint if account_endpoint.startswith("https://") else f"https://{account_endpoint}"

        def build() -> BatchClient:
            from azure.batch import BatchClient

            # The watch reads the pool list pages streamed (shared/resources/batch_pools.iter_pool_pages): in
            # azure-core's default 4 KiB blocks a 1,000-pool page (about 1.4 MB) is some 350 reads through urllib3
            # and TLS. One block per page (azure-core ConnectionConfiguration, connection_data_block_size).
            return BatchClient(endpoint, self.credential, connection_data_block_size=LIST_READ_BLOCK,
                               **self._transport_kwargs())

        return self._cached(f"batch:{endpoint.lower()}", build)

    @property
    def event_publisher(self) -> EventGridPublisherClient:
        """Publisher for the app's custom topic (PoolResizeStalled and alert events)."""
        if not self.settings.events_topic_endpoint:
            raise RuntimeError("AUTOPILOT_EVENTS_TOPIC_ENDPOINT is not set: the app cannot publish events. "
                               "Set it to the custom topic's endpoint, e.g. "
                               "https://mytopic.westeurope-1.eventgrid.azure.net/api/events")

        def build() -> EventGridPublisherClient:
            # azure-eventgrid 4.22.1's public EventGridPublisherClient wraps this basic-topic client
            # but drops **kwargs for basic topics (its _patch.py), so our retry bounds and CA bundle
            # would be silently ignored. Build the wrapped class directly, with the same defaults.
            from azure.eventgrid._legacy import EventGridPublisherClient

            credential: Any
            if self.settings.events_topic_key:
                from azure.core.credentials import AzureKeyCredential

                credential = AzureKeyCredential(self.settings.events_topic_key)
            else:
                credential = self.credential  # needs the "EventGrid Data Sender" role on the topic
            return EventGridPublisherClient(self.settings.events_topic_endpoint, credential, **self._transport_kwargs())

        return self._cached("event_publisher", build)

    @property
    def teams_webhook(self) -> PipelineClient | None:
        """An HTTPS client for the Teams Workflows webhook, or None when none is configured."""
        url = self.settings.teams_webhook_url
        if not url:
            return None

        def build() -> PipelineClient:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import HeadersPolicy, UserAgentPolicy

            kwargs = self._transport_kwargs()
            policies = [HeadersPolicy(), UserAgentPolicy(user_agent=USER_AGENT), kwargs.pop("retry_policy")]
            return PipelineClient(base_url=url, policies=policies, **kwargs)

        return self._cached("teams", build)

    @property
    def tables(self) -> TableServiceClient:
        """Table storage for the app's state (the Function App's own storage account)."""

        def build() -> TableServiceClient:
            from azure.data.tables import TableServiceClient

            kwargs = self._transport_kwargs()
            kwargs.pop("connection_verify", None)  # storage keeps the platform CA store
            # Tables keeps its own retry policy (secondary endpoints), with the same bounds
            kwargs.pop("retry_policy", None)
            if self.settings.storage_connection:
                return TableServiceClient.from_connection_string(self.settings.storage_connection, **kwargs)
            return TableServiceClient(self.settings.storage_table_endpoint or "", credential=self.credential, **kwargs)

        return self._cached("tables", build)

    def close(self) -> None:
        with self._lock:
            clients, self._cache = list(self._cache.values()), {}
        for client in clients:
            close = getattr(client, "close", None)
            if callable(close):
                close()
