"""The ``offload`` command line: its arguments, and the ``--arg k=v`` rule."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..models import JSON, Status, looks_like_task_id

DESCRIPTION = """\
Talk to a running Offload service: submit tasks, follow them, cancel them, list them.
The service is OFFLOAD_URL (default http://127.0.0.1:8000); OFFLOAD_TOKEN is sent as a
bearer token when set."""
EPILOG = """\
exit codes: 0 done (a task: succeeded), 1 the task failed, 2 usage, connection or service
error, 3 the task was cancelled, 130 interrupted.
--json prints JSON for scripts instead of text for people (before or after the command;
submit's --json followed by an object gives the task's arguments instead)."""
LIST_LIMIT = 20
ONE_TASK_COMMANDS = {
    "status": "show a task (exit code: its outcome once it has ended)",
    "watch": "follow a task live, with a progress bar, until it ends",
    "cancel": "cancel a task that has not ended (and what waits for it)"}


def parse_pair(text: str) -> tuple[str, JSON]:
    """``k=v``: ``v`` as JSON when it is valid JSON (``n=3``, ``ok=true``, ``xs=[1,2]``),
    else as the string it is (``path=/tmp/x``, ``word=yes``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, json_or_string(raw)


def json_or_string(raw: str) -> JSON:
    try:
        # NaN and Infinity are no JSON: the service would refuse them, so they are text here
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return raw


def parse_object(text: str) -> dict[str, JSON]:
    """``--json '{...}'``: the task's keyword arguments, a JSON object."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of keyword arguments")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, parsed (a usage error exits 2, as argparse does)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return build_parser().parse_args(_dashed_ids_last(args))


def _dashed_ids_last(args: list[str]) -> list[str]:
    """Ids made before ids stopped starting with ``-`` would read as options: after a
    one-task command, such an id goes behind ``--``, where argparse takes it as the id."""
    if "--" in args or not any(command in args for command in ONE_TASK_COMMANDS):
        return args
    dashed = [arg for arg in args if arg.startswith("-") and looks_like_task_id(arg)]
    if not dashed:
        return args
    return [arg for arg in args if arg not in dashed] + ["--", *dashed]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offload", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the service's URL (default: $OFFLOAD_URL, else "
                        "http://127.0.0.1:8000)")
    parser.add_argument("--token", help="bearer token (default: $OFFLOAD_TOKEN)")
    parser.add_argument("--json", dest="json_output", action="store_true",
                        help="print JSON for scripts")
    parser.add_argument("--http-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="seconds to wait for the service to answer (default 30)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(commands)
    for name, text in ONE_TASK_COMMANDS.items():
        command = _command(commands, name, text)
        command.add_argument("id", help="the task's id")
    _add_ls(commands)
    _command(commands, "types", "the task types the service runs, with their parameters")
    _command(commands, "stats", "counts by status, queue depth, running and capacity")
    return parser


def _command(commands: Any, name: str, text: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)
    # SUPPRESS: left out, it does not reset a --json given before the command
    command.add_argument("--json", dest="json_output", action="store_true",
                         default=argparse.SUPPRESS, help="print JSON for scripts")
    return command


def _add_submit(commands: Any) -> None:
    text = "submit a task; prints its id (with --wait, its outcome)"
    submit: argparse.ArgumentParser = commands.add_parser(
        "submit", help=text, description=text + ". --arg values are JSON when they parse "
        "as JSON (n=3, ok=true, xs=[1,2], s='\"3\"'), else text (path=/tmp/x).")
    submit.add_argument("name", help="the task type's name (see: offload types)")
    submit.add_argument("--arg", dest="pairs", action="append", type=parse_pair, default=[],
                        metavar="NAME=VALUE", help="a keyword argument (repeat it)")
    # --json with an object: the task's arguments; alone: JSON output, as for the others
    submit.add_argument("--json", dest="kwargs", type=parse_object, metavar="OBJECT",
                        nargs="?", const=True,
                        help="keyword arguments as a JSON object (--arg wins on a clash); "
                        "without one: print JSON for scripts")
    submit.add_argument("--delay", type=float, metavar="SECONDS", help="start after this long")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--timeout", dest="task_timeout", type=float, metavar="SECONDS",
                        help="this run's time limit")
    submit.add_argument("--idempotency-key", metavar="KEY",
                        help="submitting again with this key returns the first task")
    submit.add_argument("--wait", action="store_true",
                        help="wait for the task's end; the exit code is its outcome")


def _add_ls(commands: Any) -> None:
    ls = _command(commands, "ls", "list tasks, newest first")
    ls.add_argument("--status", action="append", choices=[s.value for s in Status],
                    help="only tasks with this status (repeat for several)")
    ls.add_argument("--name", help="only tasks of this type")
    ls.add_argument("--limit", type=int, default=LIST_LIMIT,
                    help=f"tasks per page (default {LIST_LIMIT})")
    ls.add_argument("--cursor", help="the page after this cursor (printed under a page)")
    ls.add_argument("--all", action="store_true", help="every page, not just the first")
