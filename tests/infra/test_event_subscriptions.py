"""The Event Grid subscriptions in infra/ are exactly shared/core/event_routing.SUBSCRIPTIONS.

The local Functions host routes the emulator's events with the Python table; Azure routes with the
Bicep. If the two drift, the app behaves differently in Azure than in every test.
"""

from __future__ import annotations

import re

from shared.core import alerts
from shared.core.event_routing import CUSTOM, EVENT_NAMESPACE, SUBSCRIPTIONS, SYSTEM
from tests.infra import bicep

# The app's functions (names are final; handlers/ and function_app.py register them).
EVENT_GRID_FUNCTIONS = ("image_pipeline", "image_guard_events", "resize_stalled")
TIMER_FUNCTIONS = ("pool_watch", "image_guard_reconcile", "pipeline_sweep")
FUNCTIONS = EVENT_GRID_FUNCTIONS + TIMER_FUNCTIONS

BICEP_VARS = {SYSTEM: "systemTopicSubscriptions", CUSTOM: "customTopicSubscriptions"}
MODULES = {SYSTEM: "modules/system-topic.bicep", CUSTOM: "modules/custom-topic-subscriptions.bicep"}


def bicep_subscriptions(topic: str) -> dict[str, dict]:
    entries = bicep.literal(bicep.read("main.bicep"), BICEP_VARS[topic])
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names), f"{BICEP_VARS[topic]} has duplicate names: {names}"
    return {e["name"]: e for e in entries}


def test_every_subscription_is_in_infra_with_the_same_routing() -> None:
    for topic in (SYSTEM, CUSTOM):
        in_bicep = bicep_subscriptions(topic)
        in_python = {s.name: s for s in SUBSCRIPTIONS if s.topic == topic}
        assert set(in_bicep) == set(in_python), (
            f"{topic} topic: infra/main.bicep {BICEP_VARS[topic]} has {sorted(in_bicep)}, "
            f"shared/core/event_routing.py has {sorted(in_python)}"
        )
        for name, sub in in_python.items():
            entry = in_bicep[name]
            assert set(entry) == {"name", "function", "includedEventTypes", "operationNames", "subjectContains",
                                  "resourceGroupScoped"}, \
                f"{name}: unexpected keys {sorted(entry)}"
            assert sorted(entry["subjectContains"]) == sorted(sub.subject_contains), (f"{name}: subject filter "
                                                                                      "values differ")
            assert entry["resourceGroupScoped"] == sub.resource_group_scoped, f"{name}: resource-group filter differs"
            assert entry["function"] == sub.function, (f"{name}: infra targets {entry['function']}, the app routes to "
                                                       f"{sub.function}")
            assert sorted(entry["includedEventTypes"]) == sorted(sub.included_event_types), (f"{name}: event "
                                                                                             "types differ")
            assert sorted(entry["operationNames"]) == sorted(sub.operation_names), (f"{name}: data.operationName "
                                                                                    "filter values differ")


def test_no_subscription_outside_the_table() -> None:
    assert {s.topic for s in SUBSCRIPTIONS} <= {SYSTEM, CUSTOM}
    total = sum(len(bicep_subscriptions(t)) for t in (SYSTEM, CUSTOM))
    assert total == len(SUBSCRIPTIONS)
    # Only the documented alert webhook placeholder is declared besides the looped function subscriptions.
    for topic, module in MODULES.items():
        text = bicep.read(module)
        declared = re.findall(r"^resource \w+ 'Microsoft\.EventGrid/(?:systemTopics|topics)/eventSubscriptions@", text,
                              re.MULTILINE)
        expected = 2 if topic == CUSTOM else 1
        assert len(declared) == expected, (f"{module} declares {len(declared)} event subscription resources, expected "
                                           f"{expected}")


def test_functions_named_are_the_apps() -> None:
    targets = {s.function for s in SUBSCRIPTIONS}
    assert targets == set(EVENT_GRID_FUNCTIONS), (f"Event Grid targets {sorted(targets)} are not the app's Event Grid "
                                                  f"functions {EVENT_GRID_FUNCTIONS}")
    assert len(set(FUNCTIONS)) == len(FUNCTIONS)


def registered_functions() -> dict[str, str]:
    """Function name -> trigger ("eventGrid" | "timer") as handlers/*.py and function_app.py declare them."""
    found: dict[str, str] = {}
    sources = [*sorted((bicep.ROOT / "handlers").glob("*.py")), bicep.ROOT / "function_app.py"]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        pattern = (
            r"@\w+\.(event_grid_trigger|timer_trigger|schedule)\((?:[^()]|\([^()]*\))*\)\s*(?:@[^\n]*\n\s*)*def (\w+)")
        for trigger, name in re.findall(pattern, text):
            found[name] = "eventGrid" if trigger == "event_grid_trigger" else "timer"
    return found


def test_registered_functions_match() -> None:
    registered = registered_functions()
    unknown = sorted(set(registered) - set(FUNCTIONS))
    assert not unknown, f"functions {unknown} are not among the app's final function names {FUNCTIONS}"
    for name, trigger in registered.items():
        expected = "eventGrid" if name in EVENT_GRID_FUNCTIONS else "timer"
        assert trigger == expected, f"{name} is registered with a {trigger} trigger, expected {expected}"
    # Once the wiring (function_app.py) is there, every function infra subscribes must be registered.
    if (bicep.ROOT / "function_app.py").is_file():
        missing = sorted({s.function for s in SUBSCRIPTIONS} - set(registered))
        assert not missing, f"infra subscribes {missing}, but no handler registers them"


def test_system_subscriptions_always_filter_on_operation_name() -> None:
    # Without the StringIn filter every write in the subscription (tag writes included) would invoke a function.
    for name, entry in bicep_subscriptions(SYSTEM).items():
        assert entry["operationNames"], f"{name}: a system-topic subscription must filter on data.operationName"
        assert all("*" not in op for op in entry["operationNames"])
        # Tags-API writes are raised for every resource in the subscription: only a subscription that also filters
        # on the subject (snapshots) may take them, and it takes nothing a subject filter would wrongly drop.
        tag_ops = {"microsoft.resources/tags/write", "microsoft.resources/tags/delete"}
        if tag_ops & {op.lower() for op in entry["operationNames"]}:
            assert entry["subjectContains"] == ["/providers/Microsoft.Compute/snapshots/"], name
            assert all(op.lower() in tag_ops or op.lower().startswith("microsoft.compute/snapshots/")
                       for op in entry["operationNames"]), name
        # Advanced filters are capped at 25 values per subscription.
        assert len(entry["operationNames"]) + len(entry["subjectContains"]) <= 25, name
    tags_routes = [s for s in SUBSCRIPTIONS
                   if any(o.lower().startswith("microsoft.resources/tags/") for o in s.operation_names)]
    assert [s.function for s in tags_routes] == ["image_pipeline"]


def test_system_module_applies_the_subject_filter() -> None:
    loop = re.sub(r"\s+", " ", bicep.body(bicep.read(MODULES[SYSTEM]), "resource", "functionSubscriptions"))
    for needle in ("operatorType: 'StringContains'", "key: 'subject'", "values: s.subjectContains"):
        assert needle in loop, f"{MODULES[SYSTEM]}: functionSubscriptions lacks {needle!r}"


def test_modules_wire_each_entry_to_its_function() -> None:
    main = bicep.read("main.bicep")
    assert re.search(r"subscriptions: systemTopicSubscriptions\b", main), (
        "main.bicep must pass systemTopicSubscriptions to the system topic module")
    assert re.search(r"subscriptions: customTopicSubscriptions\b", main), (
        "main.bicep must pass customTopicSubscriptions to the custom topic module")
    for module in MODULES.values():
        loop = bicep.body(bicep.read(module), "resource", "functionSubscriptions")
        compact = re.sub(r"\s+", " ", loop)
        for needle in [
            "name: s.name",
            "endpointType: 'AzureFunction'",
            "resourceId: '${functionAppId}/functions/${s.function}'",
            "includedEventTypes: s.includedEventTypes",
            "operatorType: 'StringIn'",
            "key: 'data.operationName'",
            "values: s.operationNames",
            "retryPolicy: retryPolicy",
            "eventDeliverySchema: 'EventGridSchema'",
        ]:
            assert needle in compact, f"{module}: functionSubscriptions lacks {needle!r}"
        assert "deadLetterWithResourceIdentity" in compact and "UserAssigned" in bicep.read(module)


def test_system_topic_is_the_subscriptions_arm_topic() -> None:
    text = bicep.read("modules/system-topic.bicep")
    topic = re.sub(r"\s+", " ", bicep.body(text, "resource", "systemTopic"))
    assert "topicType: 'Microsoft.Resources.Subscriptions'" in topic
    assert "location: 'global'" in topic
    assert "source: subscription().id" in topic


def test_retry_policy_is_explicit() -> None:
    main = bicep.read("main.bicep")
    assert bicep.param_default(main, "eventMaxDeliveryAttempts") == 30
    assert bicep.param_default(main, "eventTimeToLiveInMinutes") == 1440
    policy = re.sub(r"\s+", " ", bicep.body(main, "var", "retryPolicy"))
    assert ("maxDeliveryAttempts: eventMaxDeliveryAttempts" in policy
            and "eventTimeToLiveInMinutes: eventTimeToLiveInMinutes" in policy)


def test_custom_topic_accepts_entra_id_only() -> None:
    topic = re.sub(r"\s+", " ", bicep.body(bicep.read("modules/custom-topic.bicep"), "resource", "topic"))
    assert "disableLocalAuth: true" in topic
    assert "inputSchema: 'EventGridSchema'" in topic


def test_alert_webhook_gets_every_alert_type() -> None:
    block = alerts.__file__
    with open(block, encoding="utf-8") as fh:
        source = fh.read()
    section = source[source.index("# Alert types") : source.index("SEVERITY_")]
    types = re.findall(r'^[A-Z][A-Z_]* = "([A-Za-z]+)"', section, re.MULTILINE)
    assert types, "no alert types found in shared/core/alerts.py"
    expected = sorted(f"{EVENT_NAMESPACE}.{t}" for t in types)
    assert sorted(bicep.literal(bicep.read("main.bicep"), "alertEventTypes")) == expected
    webhook = re.sub(r"\s+", " ",
                     bicep.body(bicep.read("modules/custom-topic-subscriptions.bicep"), "resource", "alertWebhook"))
    assert "endpointType: 'WebHook'" in webhook and "includedEventTypes: alertEventTypes" in webhook


def test_system_topic_subscriptions_are_deployed_only_when_asked() -> None:
    # A conditional collection, not a filtered loop: the grammar checkov uses parses both, pycep-parser 0.7.1 only this
    # one.
    header = bicep.loop(bicep.read("modules/system-topic.bicep"), "resource", "functionSubscriptions")
    assert header is not None and header["loop_type"]["detail"]["item_name"] == "s"
    collection = header["loop_type"]["detail"]["array_name"]["operator"]
    assert collection["type"] == "conditional"
    assert collection["operands"] == {"condition": "deployEventSubscriptions", "true_value": "subscriptions",
                                      "false_value": []}


def test_the_pipeline_subscription_is_filtered_to_the_configured_groups_within_event_grids_budget() -> None:
    from shared.config.families import MAX_WATCHED_GROUPS
    from shared.core.event_routing import MAX_FILTER_VALUES

    pipeline = next(s for s in SUBSCRIPTIONS if s.name == "image-pipeline")
    assert pipeline.resource_group_scoped
    for scoped in (s for s in SUBSCRIPTIONS if s.resource_group_scoped):
        assert len(
            scoped.operation_names) + len(
                scoped.subject_contains) + MAX_WATCHED_GROUPS <= MAX_FILTER_VALUES, scoped.name
    assert f"@maxLength({MAX_WATCHED_GROUPS})" in bicep.read("modules/system-topic.bicep")
    text = bicep.read("modules/system-topic.bicep")
    assert "StringBeginsWith" in text and "key: 'subject'" in text
    prefixes = ("/subscriptions/s/resourcegroups/images-rg/",)
    inside = "/subscriptions/s/resourceGroups/IMAGES-RG/providers/Microsoft.Compute/snapshots/x"
    outside = "/subscriptions/s/resourceGroups/images-rg-backups/providers/Microsoft.Compute/snapshots/x"
    write = "Microsoft.Resources.ResourceWriteSuccess"
    assert pipeline.matches(write, "Microsoft.Compute/snapshots/write", inside, prefixes)
    assert not pipeline.matches(write, "Microsoft.Compute/snapshots/write", outside, prefixes)
