"""The app's settings: one typed, validated object read from the environment when first needed.

Every setting is documented in ``local.settings.sample.json`` and the README's configuration
reference (a test keeps the three in step). Errors name the setting, say what is wrong and show a
good value, because the person reading them is an operator looking at a Function App's logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from shared.core.resource_ids import ResourceId, is_batch_account_id

T = TypeVar("T")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SettingsError(ValueError):
    """One or more settings are missing or invalid. ``problems`` holds one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid app settings:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class RetrySettings:
    """How the SDK clients retry: bounded, with exponential backoff, honouring Retry-After."""

    total: int = 4
    backoff_factor: float = 0.8
    backoff_max: int = 60  # cap on the policy's own exponential backoff between retries (not on Retry-After)
    # the longest Retry-After one invocation waits for; longer: no retry now (shared/resources/retry.py)
    retry_after_max: int = 60
    read_timeout: float = 60.0  # seconds an SDK call waits for an answer before it fails (and may be retried)


@dataclass(frozen=True)
class Settings:
    subscription_id: str
    batch_accounts: tuple[str, ...]
    arm_endpoint: str = "https://management.azure.com"
    credential: str = "default"  # "default" (DefaultAzureCredential) | "emulator" (loopback only)
    ca_bundle: str | None = None
    events_topic_endpoint: str | None = None
    events_topic_key: str | None = None
    storage_connection: str | None = None
    storage_table_endpoint: str | None = None
    table_prefix: str = "autopilot"
    families_json: str | None = None
    # the setting the families came from: "AUTOPILOT_FAMILIES" or "AUTOPILOT_FAMILIES_FILE (path)"
    families_source: str | None = None
    teams_webhook_url: str | None = None
    watch_schedule: str = "0 * * * * *"
    watch_full_scan_minutes: float = 5.0
    # node health (issue 16, shared/watch/node_health.py)
    unhealthy_node_minutes: float = 15.0
    max_node_replacements: int = 10
    node_ready_minutes: float = 30.0
    image_unhealthy_share: float = 0.5
    node_health_rotation_minutes: float = 60.0
    guard_schedule: str = "0 */15 * * * *"
    pipeline_schedule: str = "30 */5 * * * *"
    retry: RetrySettings = field(default_factory=RetrySettings)
    backoff_initial_minutes: float = 5.0
    backoff_max_minutes: float = 30.0
    backoff_reset_hours: float = 3.0
    max_resize_attempts: int = 12
    max_episode_hours: float = 24.0
    growth_step_nodes: int = 300
    alert_cooldown_minutes: float = 60.0
    set_assembly_timeout_minutes: float = 60.0
    state_retention_days: float = 30.0  # finished state rows expire after this long (shared/core/state_expiry.py)
    # AZURE_CLIENT_ID: the app's own identity, to recognise its own writes in events
    identity_client_id: str | None = None
    # AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY: a family's gallery may be in another subscription than its Batch
    # accounts (off: refused with GALLERY_SUBSCRIPTION; Batch's docs disagree on whether that works, docs/deploy.md).
    allow_cross_subscription_gallery: bool = False

    @property
    def app_ids(self) -> frozenset[str]:
        """Caller ids (the ``appid`` claim) that mean "the app itself" in Event Grid events."""
        ids = {self.identity_client_id} if self.identity_client_id else set()
        if self.is_emulator:
            ids.add("batch-image-autopilot")  # shared.resources.clients.EmulatorCredential's appid
        return frozenset(ids)

    @property
    def arm_scope(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/.default"

    @property
    def is_emulator(self) -> bool:
        return self.credential == "emulator"


# Every default, written once: the fields above. load_settings falls back to these, and the policies' defaults
# (shared/watch/pool_policy.py, shared/watch/backoff.py, which say why each value is what it is) are read from here.
DEFAULTS = Settings(subscription_id="", batch_accounts=())


# --------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else None

    def required(self, name: str, example: str, check: Callable[[str], str | None] | None = None) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name} is missing: set it, for example {name}={example}")
            return ""
        if check is not None and (why := check(value)):
            self.problems.append(f"{name}={value!r} is invalid: {why}; for example {name}={example}")
        return value

    def optional(self, name: str, example: str, check: Callable[[str], str | None] | None = None) -> str | None:
        value = self.raw(name)
        if value is not None and check is not None and (why := check(value)):
            self.problems.append(f"{name}={value!r} is invalid: {why}; for example {name}={example}")
        return value

    def number(self, name: str, default: T, convert: Callable[[str], T], low: float, high: float) -> T:
        example = f"{default:g}"  # the default is the example: both come from the Settings dataclass
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = convert(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not a number; for example {name}={example}")
            return default
        if not low <= float(number) <= high:  # type: ignore[arg-type]
            self.problems.append(f"{name}={value!r} is out of range: it must be between {low:g} and {high:g}; for "
                                 f"example {name}={example}")
            return default
        return number


def _https_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.netloc:
        return "it must be an https:// URL"
    return None


def _boolean(value: str) -> str | None:
    return None if value.lower() in ("true", "false") else "use true or false"


def _guid(value: str) -> str | None:
    return None if _GUID.match(value) else "it must be a GUID"


def _ncrontab(value: str) -> str | None:
    # The parser every schedule goes through (pool metadata, families, the timers' own), not a count of fields.
    from shared.watch import ncrontab

    try:
        ncrontab.parse(value)
    except ncrontab.NcrontabError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _table_prefix(value: str) -> str | None:
    return (None if re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,40}", value) else "use 3-41 letters and digits, starting "
            "with a letter")


def _read_families_file(path: str) -> tuple[str | None, str | None]:
    """The file's text, or a problem line that names the setting and says what to do."""
    where = os.path.abspath(path)
    shown = path if where == path else f"{path} (from the working directory {os.getcwd()}: {where})"
    if not os.path.exists(path):
        return None, (f"AUTOPILOT_FAMILIES_FILE={shown} does not exist: give the absolute path of the families JSON "
                      "document, for example "
                      "AUTOPILOT_FAMILIES_FILE=/home/site/wwwroot/families.json (infra/families.sample.json is a "
                      "starting point)")
    if not os.path.isfile(path):
        return (None, f"AUTOPILOT_FAMILIES_FILE={shown} is a directory, not a file: give the path of the families JSON "
                "document itself")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(), None
    except UnicodeDecodeError:
        return None, f"AUTOPILOT_FAMILIES_FILE={shown} is not UTF-8 text: save the families document as UTF-8 JSON"
    except OSError as exc:
        return (None,
                f"AUTOPILOT_FAMILIES_FILE={shown} cannot be read ({exc.strerror or exc}): make it readable by the app")


def check_startup(settings: Settings) -> None:
    """What the app refuses to start with, beyond single settings: a families document that does not validate (every
    problem, naming the setting it came from), or nothing to do at all (no family and no watched account).

    A deployment with watched accounts and no families is a documented watch-only use; with neither, a deployed app
    would silently do nothing, which is worse than refusing. Raises SettingsError."""
    from shared.config.families import FamilyConfigError, parse_families

    source = settings.families_source or "AUTOPILOT_FAMILIES"
    fix = "fix the file" if source.startswith("AUTOPILOT_FAMILIES_FILE") else "fix the setting"
    try:
        families = parse_families(settings.families_json)
    except FamilyConfigError as exc:
        raise SettingsError([f"{source} is not a valid families document ({fix}; docs/families.schema.json describes "
                             f"it): {problem}"
                             for problem in exc.problems]) from None
    if not families.families and not settings.batch_accounts:
        what = (f"{source} has no family" if settings.families_json
                and settings.families_json.strip() else "no families are configured")
        raise SettingsError([f"{what} and AUTOPILOT_BATCH_ACCOUNTS is empty, so the app would do nothing: add a "
                             "family to "
                             "AUTOPILOT_FAMILIES (or the file AUTOPILOT_FAMILIES_FILE names), or list the Batch "
                             "accounts to watch in "
                             "AUTOPILOT_BATCH_ACCOUNTS (a watch-only deployment)"])


def _path_exists(value: str) -> str | None:
    return None if os.path.isfile(value) else "no such file"


def _read_batch_accounts(r: _Reader, subscription_id: str) -> tuple[str, ...]:
    accounts_raw = r.raw("AUTOPILOT_BATCH_ACCOUNTS") or ""
    accounts = tuple(a.strip() for a in accounts_raw.split(",") if a.strip())
    for account in accounts:
        if (is_batch_account_id(account) and _GUID.match(subscription_id)
                and ResourceId.parse(account).subscription_id.lower() != subscription_id.lower()):
            r.problems.append(f"AUTOPILOT_BATCH_ACCOUNTS has {account!r}, which is in another subscription: the app "
                              "manages one "
                              f"subscription ({subscription_id}); deploy another instance for that subscription")
        if not is_batch_account_id(account):
            r.problems.append(
                f"AUTOPILOT_BATCH_ACCOUNTS has {account!r}, which is not a Batch account resource id; for example "
                "AUTOPILOT_BATCH_ACCOUNTS=/subscriptions/<sub>/resourceGroups/batch-rg/providers/Microsoft.Batch"
                "/batchAccounts/myaccount"
            )
    return accounts


def _read_teams_webhook(r: _Reader) -> str | None:
    teams_raw = r.raw("AUTOPILOT_TEAMS_WEBHOOK_URL") or ""
    if teams_raw.startswith("@Microsoft.KeyVault("):
        # The platform resolves Key Vault references before the app starts; the literal text means it could not.
        r.problems.append("AUTOPILOT_TEAMS_WEBHOOK_URL is an unresolved Key Vault reference: the Function App could "
                          "not read the "
                          "secret. Give the app identity 'Key Vault Secrets User' on the vault and check the site's "
                          "keyVaultReferenceIdentity (infra/modules/keyvault.bicep does both)")
        return None
    return r.optional("AUTOPILOT_TEAMS_WEBHOOK_URL", "https://prod-00.westeurope.logic.azure.com/workflows/...",
                      _https_url)


def _read_families(r: _Reader) -> tuple[str | None, str | None]:
    """The families document's text and the setting it came from (AUTOPILOT_FAMILIES, or the file named)."""
    families = r.raw("AUTOPILOT_FAMILIES")
    families_file = r.raw("AUTOPILOT_FAMILIES_FILE")
    families_source = "AUTOPILOT_FAMILIES" if families else None
    if families and families_file:
        r.problems.append("AUTOPILOT_FAMILIES and AUTOPILOT_FAMILIES_FILE are both set: keep one")
    elif families_file:
        families, why = _read_families_file(families_file)
        families_source = f"AUTOPILOT_FAMILIES_FILE ({families_file})"
        if why:
            r.problems.append(why)
    return families, families_source


def _read_storage(r: _Reader) -> tuple[str | None, str | None]:
    storage_connection = r.raw("AzureWebJobsStorage")
    table_endpoint = r.optional("AzureWebJobsStorage__tableServiceUri", "https://mystorage.table.core.windows.net",
                                lambda v: None if urlparse(v).scheme in {"http", "https"} else "it must be a URL")
    if not storage_connection and not table_endpoint:
        r.problems.append("AzureWebJobsStorage is missing: set a connection string, or "
                          "AzureWebJobsStorage__tableServiceUri "
                          "for identity-based access (e.g. https://mystorage.table.core.windows.net)")
    return storage_connection, table_endpoint


def _check_loopback(r: _Reader, arm_endpoint: str, topic: str | None) -> None:
    # The emulator credential hands out a local unsigned token; refuse it anywhere but loopback
    # so that a mis-set app setting can never send it to a real endpoint.
    for name, url in (("AUTOPILOT_ARM_ENDPOINT", arm_endpoint), ("AUTOPILOT_EVENTS_TOPIC_ENDPOINT", topic)):
        if url and urlparse(url).hostname not in LOOPBACK_HOSTS:
            r.problems.append(f"{name}={url!r} is not on loopback, but AUTOPILOT_CREDENTIAL=emulator only talks to "
                              "a local emulator")


def _read_retry(r: _Reader) -> RetrySettings:
    rd = DEFAULTS.retry
    return RetrySettings(
        total=r.number("AUTOPILOT_HTTP_RETRY_TOTAL", rd.total, int, 0, 10),
        backoff_factor=r.number("AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS", rd.backoff_factor, float, 0, 30),
        backoff_max=r.number("AUTOPILOT_HTTP_RETRY_BACKOFF_MAX_SECONDS", rd.backoff_max, int, 0, 300),
        retry_after_max=r.number("AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS", rd.retry_after_max, int, 0, 600),
        read_timeout=r.number("AUTOPILOT_HTTP_READ_TIMEOUT_SECONDS", rd.read_timeout, float, 0.1, 300),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting, reporting all problems at once."""
    r = _Reader(os.environ if env is None else env)
    subscription_id = r.required("AUTOPILOT_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000", _guid)
    accounts = _read_batch_accounts(r, subscription_id)
    arm_endpoint = r.optional("AUTOPILOT_ARM_ENDPOINT", DEFAULTS.arm_endpoint, _https_url) or DEFAULTS.arm_endpoint
    credential = (r.raw("AUTOPILOT_CREDENTIAL") or "default").lower()
    if credential not in {"default", "emulator"}:
        r.problems.append(f"AUTOPILOT_CREDENTIAL={credential!r} is invalid: use 'default' (managed identity) or "
                          "'emulator'")
    ca_bundle = r.optional("AUTOPILOT_CA_BUNDLE", "/path/to/ca.pem", _path_exists)
    topic = r.optional("AUTOPILOT_EVENTS_TOPIC_ENDPOINT", "https://mytopic.westeurope-1.eventgrid.azure.net/api/events",
                       _https_url)
    teams = _read_teams_webhook(r)
    families, families_source = _read_families(r)
    storage_connection, table_endpoint = _read_storage(r)
    if credential == "emulator":
        _check_loopback(r, arm_endpoint, topic)

    d = DEFAULTS  # every default is the dataclasses' (DEFAULTS); the reader only parses
    retry = _read_retry(r)
    settings = Settings(
        subscription_id=subscription_id,
        batch_accounts=accounts,
        arm_endpoint=arm_endpoint.rstrip("/"),
        credential=credential,
        ca_bundle=ca_bundle,
        events_topic_endpoint=topic,
        events_topic_key=r.raw("AUTOPILOT_EVENTS_TOPIC_KEY"),
        storage_connection=storage_connection,
        storage_table_endpoint=table_endpoint,
        table_prefix=r.optional("AUTOPILOT_TABLE_PREFIX", d.table_prefix, _table_prefix) or d.table_prefix,
        families_json=families,
        families_source=families_source,
        teams_webhook_url=teams,
        watch_schedule=r.optional("AUTOPILOT_WATCH_SCHEDULE", d.watch_schedule, _ncrontab) or d.watch_schedule,
        watch_full_scan_minutes=r.number("AUTOPILOT_WATCH_FULL_SCAN_MINUTES", d.watch_full_scan_minutes, float, 1,
                                         1440),
        guard_schedule=r.optional("AUTOPILOT_GUARD_SCHEDULE", d.guard_schedule, _ncrontab) or d.guard_schedule,
        pipeline_schedule=r.optional("AUTOPILOT_PIPELINE_SCHEDULE", d.pipeline_schedule, _ncrontab)
        or d.pipeline_schedule,
        retry=retry,
        backoff_initial_minutes=r.number("AUTOPILOT_BACKOFF_INITIAL_MINUTES", d.backoff_initial_minutes, float, 0.5,
                                         240),
        backoff_max_minutes=r.number("AUTOPILOT_BACKOFF_MAX_MINUTES", d.backoff_max_minutes, float, 1, 1440),
        backoff_reset_hours=r.number("AUTOPILOT_BACKOFF_RESET_HOURS", d.backoff_reset_hours, float, 0.1, 168),
        max_resize_attempts=r.number("AUTOPILOT_MAX_RESIZE_ATTEMPTS", d.max_resize_attempts, int, 1, 1000),
        max_episode_hours=r.number("AUTOPILOT_MAX_EPISODE_HOURS", d.max_episode_hours, float, 0.5, 720),
        growth_step_nodes=r.number("AUTOPILOT_GROWTH_STEP_NODES", d.growth_step_nodes, int, 10, 2500),
        alert_cooldown_minutes=r.number("AUTOPILOT_ALERT_COOLDOWN_MINUTES", d.alert_cooldown_minutes, float, 0, 10080),
        identity_client_id=r.raw("AZURE_CLIENT_ID"),
        allow_cross_subscription_gallery=(r.optional("AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY", "false", _boolean)
                                          or "false").lower() == "true",
        set_assembly_timeout_minutes=r.number("AUTOPILOT_SET_ASSEMBLY_TIMEOUT_MINUTES", d.set_assembly_timeout_minutes,
                                              float, 1, 10080),
        state_retention_days=r.number("AUTOPILOT_STATE_RETENTION_DAYS", d.state_retention_days, float, 1, 3650),
        unhealthy_node_minutes=r.number("AUTOPILOT_UNHEALTHY_NODE_MINUTES", d.unhealthy_node_minutes, float, 1, 1440),
        max_node_replacements=r.number("AUTOPILOT_MAX_NODE_REPLACEMENTS", d.max_node_replacements, int, 0, 1000),
        node_ready_minutes=r.number("AUTOPILOT_NODE_READY_MINUTES", d.node_ready_minutes, float, 5, 1440),
        image_unhealthy_share=r.number("AUTOPILOT_IMAGE_UNHEALTHY_SHARE", d.image_unhealthy_share, float, 0.05, 1.0),
        node_health_rotation_minutes=r.number("AUTOPILOT_NODE_HEALTH_ROTATION_MINUTES", d.node_health_rotation_minutes,
                                              float, 5, 10080),
    )
    if settings.backoff_max_minutes < settings.backoff_initial_minutes:
        r.problems.append("AUTOPILOT_BACKOFF_MAX_MINUTES is below AUTOPILOT_BACKOFF_INITIAL_MINUTES: the cap must be "
                          "at least the first delay")
    if r.problems:
        raise SettingsError(r.problems)
    return settings


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import: the worker indexes first)."""
    global _cached
    if _cached is None:
        settings = load_settings()
        check_startup(settings)  # the app refuses to start with invalid families or nothing to do
        _cached = settings
    return _cached


def reset_settings_cache() -> None:
    global _cached
    _cached = None


def describe(settings: Settings) -> dict[str, Any]:
    """Settings safe to log (secrets masked)."""
    out = {k: v for k, v in settings.__dict__.items()
           if k not in {"events_topic_key", "storage_connection", "families_json"}}
    out["events_topic_key"] = "***" if settings.events_topic_key else None
    out["storage_connection"] = "***" if settings.storage_connection else None
    return out
