"""``autopilot`` (``python -m autopilot``): the operator's command line for Batch Image Autopilot.

Commands (docs/cli.md has the full reference):

* ``simulate SCENARIO``  run a scenario on the local emulator, Azurite and the local Functions host;
* ``validate SCENARIO``  check a scenario file without running it;
* ``replay EVENTS.json`` deliver Event Grid event batches to the app on the local emulator (or a running sandbox);
* ``sandbox [SCENARIO]`` keep the emulator, Azurite and the app running for the other commands to poke;
* ``status``             pools, episodes, images and locks of a subscription (real, or the emulator);
* ``plan``               what the pool watch and the image guard would do now (a dry run: no writes);
* ``reconcile``          one watch pass and one guard pass now.

Exit codes: 0 ok; 1 the command ran and found problems (a scenario expectation failed, failing pools, a
failed lock change); 2 the command could not run as asked (usage, an invalid scenario or settings,
Azurite missing, no credentials): the message says what to do.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

from autopilot.commands import replay, sandbox, simulate, subscription, validate
from autopilot.commands.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    ROOT,
    UsageError,
    fail,
    make_console,
    storage_refused,
)


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Log to stderr for the command's duration, then put logging back as it was (main() also runs inside tests).

    The app and the emulator log a lot at INFO: the CLI shows only errors unless -v (INFO) or --debug."""
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.ERROR
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    noisy = {name: logging.getLogger(name) for name in ("azure", "urllib3", "matplotlib")}
    saved = (root.level, {name: lg.level for name, lg in noisy.items()})
    root.addHandler(handler)
    root.setLevel(min(level, root.level) if root.level else level)
    if not args.debug:
        for lg in noisy.values():
            lg.setLevel(logging.WARNING if args.verbose else logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, lg in noisy.items():
            lg.setLevel(saved[1][name])


# ---------------------------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\nwhat to do: run `{self.prog} --help` for the options\n")
        raise SystemExit(EXIT_USAGE)


def _version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batch-image-autopilot")
    except PackageNotFoundError:
        import tomllib

        with open(ROOT / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("-v", "--verbose", action="store_true", help="show the app's and the emulator's log (INFO)")
    top.add_argument("--debug", action="store_true", help="show DEBUG logs and tracebacks")
    # The same flags after the command; SUPPRESS keeps a flag given before the command from being reset by the
    # subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the app's and the emulator's log (INFO)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show DEBUG logs and tracebacks")

    parser = _Parser(prog="autopilot", description="Batch Image Autopilot: simulate scenarios locally, replay Event "
                                                   "Grid events, and inspect "
                     "or reconcile a subscription.",
                     epilog="Exit codes: 0 ok, 1 problems found, 2 cannot run as asked. See docs/cli.md.",
                     parents=[top])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    for command in (simulate, validate, replay, sandbox, subscription):
        command.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    with _logging(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except UsageError as exc:
        return fail(str(exc), exc.hint)
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted")
        return 130
    except OSError as exc:
        if args.debug:
            raise
        if getattr(exc, "filename", None):  # a file the command reads or writes
            return fail(f"cannot use the file {exc.filename}: {exc.strerror or exc}",
                        "check the path and its permissions, then run the command again")
        return fail(f"the command stopped on a system error: {exc.strerror or exc}",
                    "check the network and the paths given, then run again (--debug shows where it happened)")
    except Exception as exc:
        if args.debug:
            raise
        if storage_refused(exc):
            return fail("the app's table storage refused the credentials in AzureWebJobsStorage (403 "
                        "AuthorizationFailure)",
                        "set AzureWebJobsStorage to the storage account's (or Azurite's) connection string with its "
                        "current key")
        # Not something the command knows how to explain: no class names, the message, and how to see more.
        message = " ".join(str(exc).split())[:500] or "no message"
        fail(f"the command stopped on an unexpected error: {message}",
             "this is likely a bug: run again with --debug for the traceback and -v for the app's log, and "
             "report both")
        return EXIT_PROBLEMS


__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "UsageError", "build_parser", "main"]
