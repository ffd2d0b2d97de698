"""Simulation scenarios: load a scenario file, validate it, and give the simulator plain values.

A scenario (``scenarios/*.json``, format in docs/scenarios.md) is validated in two passes, and every
problem is reported at once with its JSON path and an example of what is expected there:

1. the JSON Schema ``scenarios/scenario.schema.json`` (shape, types, names of actions and expectations);
2. the meaning: the app settings and the image-families configuration are parsed by the app's own
   parsers (``shared.config.settings``, ``shared.config.families``), times fall within the run, pools name known
   accounts, resources are of a type the simulator can act on.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.core import durations

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "scenarios" / "scenario.schema.json"

DEFAULT_START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # the emulator's default: a Monday morning
DEFAULT_STEP = timedelta(minutes=1)
DEFAULT_REGION = "westeurope"
IMAGES_RG = "images-rg"
BATCH_RG = "batch-rg"
DEFAULT_IDENTITY = {"name": "operator@contoso.com", "appid": "operator-cli"}
MAX_DURATION = timedelta(days=14)

# Settings the simulator owns: the app must talk to the local emulator, Azurite and topic it starts.
RESERVED_SETTINGS = frozenset({
    "AUTOPILOT_SUBSCRIPTION_ID", "AUTOPILOT_ARM_ENDPOINT", "AUTOPILOT_CREDENTIAL", "AUTOPILOT_CA_BUNDLE",
    "AUTOPILOT_EVENTS_TOPIC_ENDPOINT", "AUTOPILOT_EVENTS_TOPIC_KEY", "AUTOPILOT_TEAMS_WEBHOOK_URL",
    "AUTOPILOT_TABLE_PREFIX",
    "AUTOPILOT_FAMILIES", "AUTOPILOT_FAMILIES_FILE", "AUTOPILOT_BATCH_ACCOUNTS", "AzureWebJobsStorage",
    "AzureWebJobsStorage__tableServiceUri",
})

# What deleteResource can delete, by resource type (lower-case).
DELETABLE_TYPES = (
    "microsoft.compute/snapshots", "microsoft.compute/disks", "microsoft.compute/images",
    "microsoft.compute/galleries/images/versions", "microsoft.compute/galleries/images", "microsoft.compute/galleries",
    "microsoft.batch/batchaccounts/pools",
)
LOCKABLE_HINT = ("a resource inside a resource group, e.g. "
                 "/resourceGroups/images-rg/providers/Microsoft.Compute/snapshots/gpu-1-0-0-os")



class ScenarioError(ValueError):
    """The scenario cannot be run. ``problems`` holds one line per problem, each starting with its JSON path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """'90m', '2h', '1h30m', '45s', '1d' or ISO 8601 'PT1H30M' as a timedelta; ValueError otherwise."""
    value = text.strip() if isinstance(text, str) else ""
    try:
        return durations.parse_iso_duration(value) if value[:1].upper() == "P" else durations.parse_short(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: use e.g. '30m', '2h', '1h30m' or 'PT1H30M'") from None


format_duration = durations.format_short  # '1d2h', '1h30m': how reports and summaries show a duration


def format_offset(delta: timedelta) -> str:
    """+HH:MM (virtual time since the start of the run)."""
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def identity_of(raw: Any) -> dict[str, str]:
    """An ``as`` value (user name or {name, appid}) as {name, appid}."""
    if raw is None:
        return dict(DEFAULT_IDENTITY)
    if isinstance(raw, str):
        slug = re.sub(r"[^a-z0-9]+", "-", raw.lower().split("@")[0]).strip("-") or "user"
        return {"name": raw, "appid": f"user-{slug}"}
    return {"name": raw["name"], "appid": raw.get("appid") or f"app-{raw['name']}"}


@dataclass(frozen=True)
class Action:
    index: int  # position in the timeline (for messages: $.timeline[index])
    at: timedelta
    kind: str
    spec: Mapping[str, Any]

    @property
    def path(self) -> str:
        return f"$.timeline[{self.index}]"

    @property
    def note(self) -> str | None:
        note = self.spec.get("note")
        return note if isinstance(note, str) and note else None


@dataclass
class Scenario:
    name: str
    source: str
    description: str
    seed: int
    start: datetime
    duration: timedelta
    step: timedelta
    settings: dict[str, str]
    families: dict[str, Any] | None  # the whole families document ({"families": {...}}), accounts expanded
    accounts: list[dict[str, Any]]
    timeline: list[Action]
    expectations: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)
    subscription_id: str = "00000000-0000-4000-8000-000000000001"

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def account_id(self, name: str) -> str:
        account = next((a for a in self.accounts if a["name"] == name), None)
        group = (account or {}).get("resourceGroup", BATCH_RG)
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/Microsoft.Batch"
                f"/batchAccounts/{name}")

    def resource(self, ref: str) -> str:
        """A resource reference as a full ARM id."""
        return resolve_resource(ref, self.subscription_id)

    def watched_accounts(self) -> list[str]:
        return [self.account_id(a["name"]) for a in self.accounts if a.get("watch", True)]


def resolve_resource(ref: str, subscription_id: str) -> str:
    text = ref.replace("{subscription}", subscription_id).strip()
    if text.lower().startswith("/resourcegroups/"):
        text = f"/subscriptions/{subscription_id}{text}"
    return text.rstrip("/")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    with SCHEMA_PATH.open(encoding="utf-8") as fh:
        return json.load(fh)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` lists every problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        bundled = sorted(p.name for p in (ROOT / "scenarios").glob("*.json") if not p.name.endswith(".schema.json"))
        hint = f"; bundled scenarios: {', '.join('scenarios/' + b for b in bundled)}" if bundled else ""
        raise ScenarioError(source, [f"no such file{hint}"])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(source, [f"cannot read the file: {exc.strerror}"]) from None
    return parse_scenario(text, source=source)


def parse_scenario(document: str | Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
    if isinstance(document, str):
        try:
            raw = json.loads(document)
        except json.JSONDecodeError as exc:
            raise ScenarioError(source,
                                [f"$: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    else:
        raw = copy.deepcopy(dict(document))
    if not isinstance(raw, dict):
        raise ScenarioError(source,
                            ['$: a scenario is a JSON object, e.g. {"name": "demo", "duration": "8h", "timeline": []}'])
    problems = schema_problems(raw)
    if not problems:
        scenario, problems = _build(raw, source)
        if problems:
            raise ScenarioError(source, problems)
        return scenario
    # Every problem in one pass: the meaning checks run too, on the parts of the document the schema accepted.
    try:
        _, more = _build(_without_schema_errors(raw), source)
    # a shape the pruning missed: the schema problems stand
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        more = []
    raise ScenarioError(source, problems + [p for p in more if p not in problems])


# What stands in for a required top-level value the schema found missing or wrong, so the meaning checks can still run.
_STAND_INS: dict[str, Any] = {"name": "scenario", "duration": "1h"}


def _without_schema_errors(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` without the parts the schema refused: a list item with a problem becomes None (indices, and so
    the paths in messages, stay), a top-level value with a problem is dropped (or stood in for, when required)."""
    from jsonschema import Draft202012Validator

    schema = load_schema()
    pruned = copy.deepcopy(raw)
    known = set((schema.get("properties") or {}).keys())
    for key in list(pruned):
        if key not in known:
            del pruned[key]
    for error in Draft202012Validator(schema).iter_errors(raw):
        path = list(error.absolute_path)
        if not path:
            continue
        key = path[0]
        value = pruned.get(key)
        if isinstance(value, list) and len(path) > 1 and isinstance(path[1], int) and path[1] < len(value):
            item = value[path[1]]
            # an account keeps its name (other items refer to it), whatever else is wrong with it
            value[path[1]] = ({"name": item["name"]} if key == "batchAccounts" and isinstance(item, dict)
                              and isinstance(item.get("name"), str) else None)
        elif key in _STAND_INS:
            pruned[key] = _STAND_INS[key]
        else:
            pruned.pop(key, None)
    for key, value in _STAND_INS.items():
        if not isinstance(pruned.get(key), str):
            pruned[key] = value
    for key in ("batchAccounts", "pools", "timeline", "expect"):
        if key in pruned and not isinstance(pruned[key], list):
            pruned.pop(key)
    return pruned


# ---------------------------------------------------------------------------------------------
# Pass 1: JSON Schema, with the path and an example for every problem
# ---------------------------------------------------------------------------------------------


def json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        out += (f"[{part}]" if isinstance(part, int)
                else (f".{part}" if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", str(part)) else f"[{json.dumps(part)}]"))
    return out


def schema_problems(raw: Any, schema: Mapping[str, Any] | None = None, *, limit: int = 200) -> list[str]:
    from jsonschema import Draft202012Validator

    schema = schema or load_schema()
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    out: list[str] = []
    seen: set[str] = set()
    for error in _leaves(errors):
        line = f"{json_path(error.absolute_path)}: {_message(error)}"
        example = _example_for(schema, list(error.absolute_schema_path))
        if example is not None:
            line += f"; for example {json.dumps(example, separators=(', ', ': '))}"
        if line not in seen:
            seen.add(line)
            out.append(line)
        if len(out) >= limit:
            out.append("... (fix these first; further problems are not listed)")
            break
    return out


def _leaves(errors: Iterable[Any]) -> Iterable[Any]:
    """The errors that say something. For a failed oneOf/anyOf, the branch that came closest (jsonschema's
    ``best_match``) explains it better than "not valid under any of the given schemas"; a choice between
    required keys is its own message."""
    from jsonschema.exceptions import best_match

    for error in errors:
        if error.context and not _is_required_choice(error):
            # The branch that got furthest into the instance is the one the author meant (e.g. the list, not null).
            deepest = max(len(e.absolute_path) for e in error.context)
            yield from _leaves([best_match([e for e in error.context if len(e.absolute_path) == deepest])])
        else:
            yield error


def _is_required_choice(error: Any) -> bool:
    return error.validator == "anyOf" and all(isinstance(s, Mapping) and set(s) == {"required"}
                                              for s in error.validator_value)


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
        hint = ""
        if extra:
            import difflib

            close = difflib.get_close_matches(extra[0], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key(s) {', '.join(repr(e) for e in extra)}{hint}; allowed: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{json.dumps(error.instance)} is not one of {', '.join(json.dumps(v) for v in error.validator_value)}"
    if error.validator == "pattern":
        described = error.schema.get("description")
        return (f"{json.dumps(error.instance)} is not valid"
                + (f": {described}" if described else f" (pattern {error.validator_value})"))
    if _is_required_choice(error):
        return "give " + " or ".join(repr(s["required"][0]) for s in error.validator_value)
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    return error.message


def _example_for(schema: Mapping[str, Any], schema_path: list[Any]) -> Any:
    """The ``examples`` of the deepest schema node on the failing path (following local $refs)."""
    node: Any = schema
    found = schema.get("examples", [None])[0] if isinstance(schema, Mapping) else None
    for part in schema_path:
        while isinstance(node, Mapping) and "$ref" in node and part not in node:
            node = _resolve(schema, node["$ref"])
            if isinstance(node, Mapping) and node.get("examples"):
                found = node["examples"][0]
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
        if isinstance(node, Mapping) and "$ref" in node:
            target = _resolve(schema, node["$ref"])
            if isinstance(target, Mapping) and target.get("examples"):
                found = target["examples"][0]
        if isinstance(node, Mapping) and node.get("examples"):
            found = node["examples"][0]
    return found


def _resolve(schema: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = schema
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


# ---------------------------------------------------------------------------------------------
# Pass 2: meaning
# ---------------------------------------------------------------------------------------------


def _build(raw: dict[str, Any], source: str) -> tuple[Scenario, list[str]]:
    """The scenario, and every problem with its meaning (in the order of the document: run, accounts, settings,
    families, pools, timeline, expectations)."""
    problems: list[str] = []
    start, total, step = _run_window(raw, problems)
    accounts = list(raw.get("batchAccounts") or [])
    account_names = {a["name"] for a in accounts if a is not None}
    problems += _account_problems(accounts)
    scenario = Scenario(
        name=raw["name"], source=source, description=raw.get("description", ""), seed=int(raw.get("seed", 1)),
        start=start,
        duration=total, step=step, settings=dict(raw.get("settings") or {}), families=None, accounts=accounts,
        timeline=[], expectations=list(raw.get("expect") or []), raw=raw,
    )
    problems += _settings_problems(scenario)
    if "families" in raw:
        problems += _set_families(scenario, raw["families"], account_names)
    # initial pools name known accounts
    for i, pool in enumerate(raw.get("pools") or []):
        if pool is None:
            continue
        if pool["account"] not in account_names:
            problems.append(f"$.pools[{i}].account: {pool['account']!r} is not one of the scenario's batchAccounts; "
                            "add it to $.batchAccounts")
    actions: list[Action] = []
    for i, spec in enumerate(raw.get("timeline") or []):
        if spec is None:
            continue
        path = f"$.timeline[{i}]"
        at = _duration(problems, f"{path}.at", spec["at"])
        if at > total:
            problems.append(f"{path}.at: {spec['at']} is after the end of the run ({raw['duration']}); move it earlier "
                            "or lengthen $.duration")
        problems += _action_problems(scenario, spec, path, account_names)
        actions.append(Action(i, at, spec["action"], spec))
    # stable: actions at the same time run in the order written
    scenario.timeline = sorted(actions, key=lambda a: (a.at, a.index))
    for i, expectation in enumerate(scenario.expectations):
        if expectation is not None:
            _expectation_problems(scenario, expectation, f"$.expect[{i}]", total, account_names, problems)
    return scenario, problems


def _duration(problems: list[str], path: str, value: str) -> timedelta:
    """The duration, or 0 with a problem noted at ``path``."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.append(f"{path}: {exc}")
        return timedelta(0)


def _run_window(raw: dict[str, Any], problems: list[str]) -> tuple[datetime, timedelta, timedelta]:
    """When the run starts, how long it lasts and its step."""
    start = DEFAULT_START
    if "start" in raw:
        try:
            start = datetime.fromisoformat(raw["start"].replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            problems.append(f"$.start: {raw['start']!r} is not a date-time; for example \"2026-11-02T06:00:00Z\"")
    total = _duration(problems, "$.duration", raw["duration"])
    if total <= timedelta(0) or total > MAX_DURATION:
        problems.append(f"$.duration: {raw['duration']!r} must be more than 0 and at most 14 days; for example \"8h\"")
    step = _duration(problems, "$.step", raw["step"]) if "step" in raw else DEFAULT_STEP
    if not timedelta(seconds=10) <= step <= timedelta(minutes=15):
        problems.append(f"$.step: {raw.get('step')!r} must be between 10s and 15m (the resize engine moves minute by "
                        "minute); for example \"1m\"")
    return start, total, step


def _account_problems(accounts: list[Any]) -> list[str]:
    problems = []
    seen_accounts: set[str] = set()
    for i, account in enumerate(accounts):
        if account is None:  # refused by the schema (reported already)
            continue
        if account["name"] in seen_accounts:
            problems.append(f"$.batchAccounts[{i}].name: {account['name']!r} appears twice; Batch account names "
                            "are unique")
        seen_accounts.add(account["name"])
    return problems


def _settings_problems(scenario: Scenario) -> list[str]:
    """The app's own settings parser, on the values the simulator will run with."""
    problems = [f"$.settings.{name}: set by the simulator (it points the app at the local emulator and Azurite); "
                "remove it" for name in scenario.settings if name in RESERVED_SETTINGS]
    if problems:
        return problems
    from shared.config.settings import SettingsError, load_settings

    probe = {"AUTOPILOT_SUBSCRIPTION_ID": scenario.subscription_id, "AUTOPILOT_CREDENTIAL": "emulator",
             "AUTOPILOT_ARM_ENDPOINT": "https://127.0.0.1:1", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
             **scenario.settings}
    try:
        load_settings(probe)
    except SettingsError as exc:
        return [f"$.settings: {p}" for p in exc.problems]
    return []


def _set_families(scenario: Scenario, raw_families: dict[str, Any], account_names: set[str]) -> list[str]:
    """Expand account names, then the app's families parser; the scenario gets the expanded document."""
    from shared.config.families import FamilyConfigError, parse_families

    problems = []
    families = copy.deepcopy(raw_families)
    for fname, family in families.items():
        problems.extend(_expand_accounts(scenario, family, f"$.families.{fname}", account_names))
    document = {"families": families}
    try:
        parse_families(json.dumps(document))
    except FamilyConfigError as exc:
        problems.extend(f"$.{p}" if p.startswith("families") else f"$.families: {p}" for p in exc.problems)
    scenario.families = document
    return problems


def _action_problems(scenario: Scenario, spec: dict[str, Any], path: str, account_names: set[str]) -> list[str]:
    """What the schema cannot say about one timeline action: the accounts and resources it names, the keys that go
    together."""
    problems = []
    action = spec["action"]
    pool = spec.get("pool")
    if isinstance(pool, str) and pool.split("/", 1)[0] not in account_names:
        problems.append(f"{path}.pool: account {pool.split('/', 1)[0]!r} is not one of the scenario's "
                        "batchAccounts "
                        f"({', '.join(sorted(account_names)) or 'none'})")
    if action == "setQuotas" and spec["account"] not in account_names:
        problems.append(f"{path}.account: {spec['account']!r} is not one of the scenario's batchAccounts")
    if action == "deleteResource":
        problems.extend(_check_resource(f"{path}.resource", spec["resource"], scenario.subscription_id,
                                        DELETABLE_TYPES))
    if action in ("putLock", "removeLock"):
        problems.extend(_check_resource(f"{path}.resource", spec["resource"], scenario.subscription_id, None))
    if action == "tagResource":
        problems.extend(_check_resource(f"{path}.resource", spec["resource"], scenario.subscription_id, None))
        if spec["operation"] != "Delete" and "tags" not in spec:
            problems.append(f"{path}.tags: {spec['operation']} needs the tags; for example \"tags\": "
                            f"{{\"autopilot.version\": \"1.0.0\"}} "
                            "(only Delete may leave them out, to remove every tag)")
    if action == "createSnapshotSet" and set(spec.get("omitLuns") or []) - set(spec.get("dataLuns") or []):
        problems.append(f"{path}.omitLuns: every omitted LUN must also be in dataLuns; for example \"dataLuns\": "
                        "[0, 1], \"omitLuns\": [1]")
    if action == "resizePool" and "dedicated" not in spec and "spot" not in spec:
        problems.append(f"{path}: give dedicated and/or spot; for example {{\"dedicated\": 20, \"spot\": 0}}")
    if action == "setPoolTarget" and "dedicated" not in spec and "spot" not in spec:
        problems.append(f"{path}: give dedicated and/or spot; for example {{\"dedicated\": 40}}")
    if action == "setFamily":
        problems.extend(_check_set_family(scenario, spec, path, account_names))
    if action == "injectPoolFailure" and spec["kind"] == "custom" and not spec.get("code"):
        problems.append(
            f"{path}.code: a custom failure needs its error code; for example \"code\": \"AllocationFailed\"")
    return problems


def _expectation_problems(scenario: Scenario, expectation: dict[str, Any], path: str, total: timedelta,
                          account_names: set[str], problems: list[str]) -> None:
    """What the schema cannot say about one expectation: its times within the run, the accounts and resources it
    names."""
    for key in ("by", "after", "before"):
        if key not in expectation or (key == "by" and expectation.get("expect") == "resizeRequests"):
            continue  # resizeRequests' "by" names who made the requests
        when = _duration(problems, f"{path}.{key}", expectation[key])
        if when > total:
            problems.append(f"{path}.{key}: {expectation[key]} is after the end of the run "
                            f"({scenario.raw['duration']})")
    pool = expectation.get("pool")
    if isinstance(pool, str) and pool.split("/", 1)[0] not in account_names:
        problems.append(f"{path}.pool: account {pool.split('/', 1)[0]!r} is not one of the scenario's "
                        "batchAccounts")
    kind = expectation.get("expect")
    if kind == "imageExists" or (kind == "poolImage" and "image" in expectation):
        problems.extend(_check_resource(f"{path}.image", expectation["image"], scenario.subscription_id,
                                        ("microsoft.compute/images",
                                         "microsoft.compute/galleries/images/versions")))
    if expectation.get("expect") == "locks" and "on" in expectation:
        problems.extend(_check_resource(f"{path}.on", expectation["on"], scenario.subscription_id, None))


def _expand_accounts(scenario: Scenario, family: Any, path: str, account_names: set[str]) -> list[str]:
    """A family's pool accounts given by name become the scenario's account ids (in place); unknown names are
    problems."""
    problems = []
    for i, pool in enumerate(family.get("pools") or [] if isinstance(family, dict) else []):
        if not isinstance(pool, dict) or not isinstance(pool.get("account"), str):
            continue
        account = pool["account"]
        if not account.startswith("/"):
            if account not in account_names:
                problems.append(f"{path}.pools[{i}].account: {account!r} is not one of the scenario's batchAccounts "
                                f"({', '.join(sorted(account_names)) or 'none'}); add it to $.batchAccounts or "
                                "give a full "
                                "resource id")
            pool["account"] = scenario.account_id(account)
    return problems


def families_with(scenario: Scenario, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The families document with one family's configuration replaced (a ``setFamily`` action), accounts expanded."""
    family = copy.deepcopy(dict(config))
    _expand_accounts(scenario, family, "", {a["name"] for a in scenario.accounts})
    document = copy.deepcopy(scenario.families or {"families": {}})
    document["families"][name] = family
    return document


def _check_set_family(scenario: Scenario, spec: Mapping[str, Any], path: str, account_names: set[str]) -> list[str]:
    """The new configuration must be one the app accepts: the app's own parser, on the whole document it will read."""
    from shared.config.families import FamilyConfigError, parse_families

    family = copy.deepcopy(dict(spec["config"]))
    problems = _expand_accounts(scenario, family, f"{path}.config", account_names)
    document = copy.deepcopy(scenario.families or {"families": {}})
    document["families"][spec["family"]] = family
    try:
        parse_families(json.dumps(document))
    except FamilyConfigError as exc:
        prefix = f"families.{spec['family']}"
        problems.extend(f"{path}.config{p[len(prefix):]}" if p.startswith(prefix) else f"{path}.config: {p}"
                        for p in exc.problems)
    return problems


def _check_resource(path: str, ref: str, subscription_id: str, types: tuple[str, ...] | None) -> list[str]:
    from shared.core.resource_ids import InvalidResourceId, ResourceId

    try:
        rid = ResourceId.parse(resolve_resource(ref, subscription_id))
    except InvalidResourceId as exc:
        return [f"{path}: {exc}; for example {LOCKABLE_HINT.split(', e.g. ')[1]!r}"]
    if rid.resource_group is None or not rid.types:
        return [f"{path}: {ref!r} is not {LOCKABLE_HINT}"]
    if types is not None and rid.resource_type.lower() not in types:
        return [f"{path}: the simulator cannot act on {rid.resource_type or 'this'} resources here; use one of: "
                + ", ".join(
                    t.replace("microsoft.", "Microsoft.").replace("compute/", "Compute/").replace("batch/", "Batch/")
                    for t in types)]
    return []
