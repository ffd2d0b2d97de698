"""``autopilot status | plan | reconcile``: a subscription (real, or the emulator's) read and acted on with the
Function App's own settings, from the environment."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from autopilot.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    SEVERITY_STYLES,
    UsageError,
    escape,
    make_console,
    print_diagnosis,
    print_json,
    storage_refused,
)

SETTINGS_NOTE = ("Settings come from the environment, as the Function App has them (AUTOPILOT_SUBSCRIPTION_ID, "
                 "AUTOPILOT_BATCH_ACCOUNTS, "
                 "AUTOPILOT_FAMILIES, AzureWebJobsStorage, ...); AUTOPILOT_CREDENTIAL=emulator targets the "
                 "local emulator.")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The status, plan and reconcile commands' parsers."""
    p = sub.add_parser("status", parents=[common], help="pools, episodes, images and locks of the subscription",
                       description="Show every pool of the watched Batch accounts (desired / current / Batch "
                                   "target, allocation state, the watch's episode and backoff) and the images and "
                                   "gallery versions with the pools that use them and their locks. " + SETTINGS_NOTE,
                       epilog="Exit codes: 0 healthy, 1 failing or stopped pools, unreadable accounts or missing "
                              "images, 2 settings, families or credentials.")
    p.add_argument("--json", action="store_true", help="print the documented JSON structure (docs/cli.md)")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("plan", parents=[common], help="what the watch and the guard would do now (changes nothing)",
                       description="A dry run of the pool watch (tick) and the image guard (reconcile): the "
                                   "decision for every managed pool and the lock changes the guard would make. Only "
                                   "reads. " + SETTINGS_NOTE,
                       epilog="Exit codes: 0 done, 1 an account could not be read, 2 settings, families or "
                              "credentials.")
    p.add_argument("--json", action="store_true", help="print the documented JSON structure (docs/cli.md)")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("reconcile", parents=[common], help="one watch pass and one guard pass now",
                       description="Run the pool watch's tick (stalled pools are published as PoolResizeStalled "
                                   "events for the Function App) and the image guard's reconcile (missing locks are "
                                   "put, unneeded ones removed). " + SETTINGS_NOTE,
                       epilog="Exit codes: 0 done, 1 a lock change or a stall failed, or an account could not be "
                              "read, 2 settings, families or credentials.")
    p.add_argument("--handle-stalls", action="store_true",
                   help="also re-issue the stalled pools' resizes here (when no Function App handles the events)")
    p.add_argument("--json", action="store_true", help="print the documented JSON structure (docs/cli.md)")
    p.set_defaults(handler=cmd_reconcile)


def _context() -> Any:
    from autopilot.status import build_context
    from shared.config.settings import SettingsError

    try:
        return build_context()
    except SettingsError as exc:
        if all(p.startswith("AUTOPILOT_FAMILIES_FILE") for p in exc.problems):
            hint = ("fix the file AUTOPILOT_FAMILIES_FILE names (each line above says where); "
                    "docs/families.schema.json describes every key")
        elif all(p.startswith("AUTOPILOT_FAMILIES") for p in exc.problems):
            hint = ("fix the AUTOPILOT_FAMILIES setting (each line above says where); docs/families.schema.json "
                    "describes every key")
        else:
            hint = ("fix or export the settings named above, as the Function App has them (local.settings.sample.json "
                    "lists every one; "
                    "`az functionapp config appsettings list` shows a deployed app's); for a local sandbox, `autopilot "
                    "sandbox` prints them")
        raise UsageError("the app settings in the environment are incomplete or invalid:\n  - "
                         + "\n  - ".join(exc.problems), hint) from None


def _azure_call(fn: Callable[[], Any]) -> Any:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    try:
        return fn()
    except ClientAuthenticationError as exc:
        raise UsageError(f"cannot authenticate to Azure: {str(exc).splitlines()[0]}",
                         "sign in with `az login` (or set AZURE_CLIENT_ID for a managed identity), "
                         "then try again") from None
    except ServiceRequestError as exc:
        raise UsageError(f"cannot reach Azure: {exc}",
                         "check AUTOPILOT_ARM_ENDPOINT and your network (for the emulator: is it running?)") from None
    except Exception as exc:
        if storage_refused(exc):
            raise UsageError("the app's table storage refused the credentials in AzureWebJobsStorage (403 "
                             "AuthorizationFailure)",
                             "set AzureWebJobsStorage to the storage account's (or Azurite's) connection string with "
                             "its current key") from None
        raise


def cmd_status(args: argparse.Namespace) -> int:
    from autopilot.status import collect_status, status_failing

    context = _context()
    try:
        status = _azure_call(lambda: collect_status(context))
    finally:
        context.clients.close()
    if args.json:
        print_json(status)
        return EXIT_PROBLEMS if status_failing(status) else EXIT_OK
    from rich.table import Table

    console = make_console()
    console.print(f"[bold]{status['target']}[/] subscription {status['subscriptionId']} at {status['generatedAt']}")
    pools = Table(title="Pools", title_justify="left", box=None, pad_edge=False, show_edge=False)
    for column in ("pool", "health", "desired", "current", "Batch target", "usable / unhealthy", "allocation",
                   "episode / backoff"):
        pools.add_column(column, overflow="fold")
    for p in status["pools"]:
        desired = "-"
        if p["desired"]:
            desired = (f"{p['desired']['dedicated']} / {p['desired']['spot']}"
                       + (" (schedule)" if p["desired"]["source"] == "schedule" else ""))
        episode = p["episode"]
        ep_text = "-"
        if episode:
            ep_text = f"{episode['attempts']} failed, {episode['requests']} request(s)"
            if episode["backoff"]["active"]:
                ep_text += f"; backing off until {episode['backoff']['until'][11:16]}"
            if episode["recoveredAt"]:
                ep_text += f"; recovered {episode['recoveredAt'][11:16]}"
            if episode["stoppedReason"]:
                ep_text += f"; {episode['stoppedReason']}"
        style = "red" if p["health"] in ("failing", "stopped", "gave-up", "invalid-metadata",
                                         "image-missing") else "green" if p["health"] == "ok" else "yellow"
        nodes = p["nodes"]
        node_text = "-"
        if nodes:
            node_text = f"{nodes['usable']} / " + (f"[red]{nodes['unhealthy']}[/]" if nodes["unhealthy"] else "0")
            node_text += f" ({nodes['booting']} booting)" if nodes["booting"] else ""
        if p["canary"] in ("pending", "failed"):
            node_text += f"; canary {p['canary']}"
        pools.add_row(f"{p['account']}/{p['id']}", f"[{style}]{p['health']}[/]", desired,
                      f"{p['current']['dedicated']} / {p['current']['spot']}",
                      f"{p['target']['dedicated']} / {p['target']['spot']}", node_text, p["allocationState"],
                      escape(ep_text))
    console.print(pools)
    images = Table(title="Images", title_justify="left", box=None, pad_edge=False, show_edge=False)
    for column in ("kind", "image", "state", "used by", "locks"):
        images.add_column(column, overflow="fold")
    for i in status["images"]:
        locks = (", ".join(f"{lk['name']} ({'app' if lk['owner'] == 'app' else 'other'})" for lk in i["locks"])
                 or "[yellow]none[/]")
        state = i["provisioningState"] if i["exists"] else "[red]missing[/]"
        images.add_row(i["kind"], escape(i["id"].rsplit("/providers/", 1)[-1]), state, ", ".join(i["pools"]) or "-",
                       locks)
    console.print(images)
    console.print(f"[bold]Recent alerts[/] ({len(status['recentAlerts'])})")
    for alert in status["recentAlerts"]:
        style = SEVERITY_STYLES.get(alert["severity"], "bold")
        console.print(f"  {alert['time'][:16].replace('T', ' ')} [{style}]{alert['type']}[/] ({alert['severity']}): "
                      f"{escape(alert['title'])}")
        print_diagnosis(console, alert, indent="      ")
    for problem in status["problems"]:
        console.print(f"[red]problem:[/] {escape(problem)}")
    for warning in status["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    return EXIT_PROBLEMS if status_failing(status) else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from autopilot.status import plan

    context = _context()
    try:
        result = _azure_call(lambda: plan(context))
    finally:
        context.clients.close()
    if args.json:
        print_json(result)
        return EXIT_PROBLEMS if result["watch"]["unreadableAccounts"] else EXIT_OK
    console = make_console()
    watch, guard = result["watch"], result["guard"]
    console.print(f"[bold]plan[/] at {result['generatedAt']} (nothing is changed): {watch['accounts']} account(s), "
                  f"{watch['pools']} pool(s), "
                  f"{watch['managed']} managed")
    console.print("[bold]pool watch[/]")
    for d in watch["decisions"]:
        resize = (f" → resize to {d['resize']['dedicated']} / {d['resize']['spot']} ({d['resize']['resizeTimeout']})"
                  if d["resize"] else "")
        alerts = f" [yellow]alerts: {', '.join(d['alerts'])}[/]" if d["alerts"] else ""
        console.print(f"  {d['pool']}: [bold]{d['action']}[/]{resize}{alerts} — {escape(d['reason'])}")
    if not watch["decisions"]:
        console.print("  no managed pools")
    for account, error in watch["unreadableAccounts"].items():
        console.print(f"  [red]cannot read[/] {account}: {escape(error)}")
    console.print(f"[bold]image guard[/] ({guard['guarded']} guarded resource(s))")
    for a in guard["actions"]:
        console.print(f"  {a['kind']} lock on {escape(a['resource'])}")
    if not guard["actions"]:
        console.print("  every lock is in place")
    if guard["skippedRelease"]:
        console.print("  [yellow]lock removals held back: an account could not be read[/]")
    rollout = result.get("rollout") or {}
    if rollout.get("actions") or rollout.get("errors"):
        console.print("[bold]image rollouts[/]")
        for line in rollout.get("actions", []):
            console.print(f"  {escape(line)}")
        for account, error in (rollout.get("errors") or {}).items():
            console.print(f"  [red]rollout failed[/] in {account}: {escape(error)}")
    if result.get("retention"):
        console.print("[bold]retention[/] (what it would delete; nothing is deleted by plan)")
        for v in result["retention"]:
            verdict = "[red]delete[/]" if v["delete"] else "keep"
            console.print(f"  {v['family']} {v['version'] or ''}: {verdict} — {escape(v['reason'])}")
    return EXIT_PROBLEMS if watch["unreadableAccounts"] else EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from autopilot.status import reconcile_failed, reconcile_now

    context = _context()
    try:
        result = _azure_call(lambda: reconcile_now(context, handle_stalls=args.handle_stalls))
    finally:
        context.clients.close()
    if args.json:
        print_json(result)
        return EXIT_PROBLEMS if reconcile_failed(result) else EXIT_OK
    console = make_console()
    watch, guard = result["watch"], result["guard"]
    console.print(f"[bold]reconcile[/] at {result['generatedAt']}")
    console.print(f"pool watch: {watch['managed']} managed pool(s); {watch['stallEventsPublished']} PoolResizeStalled "
                  "event(s) published; "
                  f"{watch['alerts']} alert(s)")
    for h in watch["handled"]:
        console.print(f"  {h['pool']}: {escape(h['result'])}")
    console.print(f"image guard: {len(guard['applied'])} lock change(s) for {guard['guarded']} guarded resource(s)")
    for a in guard["applied"]:
        console.print(f"  {a['kind']} lock on {escape(a['resource'])}")
    for resource, error in guard["failed"].items():
        console.print(f"  [red]failed[/] {escape(resource)}: {escape(error)}")
    return EXIT_PROBLEMS if reconcile_failed(result) else EXIT_OK
