"""What every command shares: exit codes, the error a command raises when it cannot run as asked, the console
(errors as one line and what to do), and the checks that fail fast before a long run (result files, table storage)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
ROOT = Path(__file__).resolve().parent.parent.parent


class UsageError(Exception):
    """The command cannot run as asked. ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def make_console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (a pipe, a CI log): no colours and wide lines rather than rich's 80 columns.
    width = None if stream.isatty() else 160
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def fail(message: str, hint: str = "", problems: Sequence[str] = ()) -> int:
    err = make_console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(message)}")
    for problem in problems:
        err.print(f"  - {escape(problem)}")
    if hint:
        err.print(f"[yellow]what to do:[/] {escape(hint)}")
    return EXIT_USAGE


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))


SEVERITY_STYLES = {"critical": "red", "warning": "yellow", "info": "green", "error": "red"}


def print_diagnosis(console: Any, alert: dict[str, Any], indent: str = "    ") -> None:
    """An alert's diagnosis and fix, one indented line each (what a person needs to act on it)."""
    if alert.get("diagnosis"):
        console.print(f"{indent}[dim]diagnosis:[/] {escape(alert['diagnosis'])}")
    if alert.get("fix"):
        console.print(f"{indent}[bold]fix:[/] {escape(alert['fix'])}")


# ---------------------------------------------------------------------------------------------
# Fail fast: result files and table storage
# ---------------------------------------------------------------------------------------------


def check_writable(path: str, option: str) -> None:
    """Fail before a long run, not after it, when a result file cannot be written."""
    target = Path(path)
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        with open(target, "a", encoding="utf-8"):
            pass
        if not existed:
            target.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc})",
                         f"give {option} a path in a directory you can write, e.g. {option} out/report.json") from None


def start_azurite(connection: str | None) -> tuple[str, Any]:
    """A connection string, and the Azurite process to stop (None when an existing one was given)."""
    if connection:
        probe_storage(connection, "--azurite")
        return connection, None
    from emulator.azurite import Azurite, AzuriteError

    azurite = Azurite()
    try:
        azurite.start()
    except AzuriteError as exc:
        raise UsageError(f"cannot start Azurite: {exc}",
                         "run `make setup` in the repository root (it installs Azurite with npm), or pass --azurite "
                         "CONNECTION_STRING") from None
    return azurite.connection_string, azurite


def storage_refused(exc: BaseException) -> bool:
    """Table storage (Azurite or Azure) refused the credentials: 403 AuthorizationFailure / AuthenticationFailed."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    if isinstance(exc, ClientAuthenticationError):
        return "failed to authenticate" in str(exc).lower() or "authorizationfailure" in str(exc).lower()
    code = str(getattr(exc, "error_code", "") or "").lower().replace("tableerrorcode.", "").replace("_", "")
    return isinstance(exc, HttpResponseError) and exc.status_code == 403 and (
        code in ("authorizationfailure", "authenticationfailed") or "failed to authenticate" in str(exc).lower())


def probe_storage(connection: str, where: str) -> None:
    """One cheap Table call, so that a wrong key or a stopped Azurite is one clear line before anything runs."""
    from azure.core.exceptions import AzureError, ServiceRequestError
    from azure.data.tables import TableServiceClient

    try:
        service = TableServiceClient.from_connection_string(connection)
    except ValueError as exc:
        raise UsageError(f"{where}: not a storage connection string ({exc})",
                         "pass the connection string Azurite prints "
                         "(DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                         "AccountKey=...;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;), or leave it out "
                         "to start one") from None
    try:
        with service:
            next(iter(service.list_tables(results_per_page=1)), None)
    except ServiceRequestError:
        raise UsageError(f"cannot reach the table storage {where} names ({service.url})",
                         "start Azurite (`autopilot sandbox` starts one and prints its connection string), or leave "
                         "out --azurite "
                         "to let the command start its own") from None
    except AzureError as exc:
        if storage_refused(exc):
            raise UsageError(f"the table storage {where} names ({service.url}) refused the credentials (403 "
                             "AuthorizationFailure)",
                             "use the account name and key of that Azurite or storage account exactly as it "
                             "prints them "
                             "(Azurite's default: AccountName=devstoreaccount1 and its well-known key)") from None
        raise
