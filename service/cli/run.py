"""One ``offload`` run: parse, call the service, report errors as exit code 2."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from ..client import ApiError, ClientError, OffloadClient
from .commands import COMMANDS, USAGE, Output
from .parser import parse_args


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)  # a usage error exits 2 here (argparse)
    errors = Console(stderr=True, highlight=False)
    out = Output(args.json_output, Console(highlight=False))
    try:
        client = OffloadClient(args.url, args.token, timeout=args.http_timeout)
    except ValueError as exc:
        return _report(errors, args.json_output, "bad option", str(exc))
    try:
        with client:
            return COMMANDS[args.command](client, args, out)
    except ApiError as exc:
        return _report_problem(errors, args.json_output, exc)
    except ClientError as exc:  # ConnectionFailed, UnexpectedAnswer
        return _report(errors, args.json_output, type(exc).__name__, str(exc))


def _report(errors: Console, as_json: bool, title: str, detail: str) -> int:
    if as_json:
        errors.print(json.dumps({"title": title, "detail": detail}, ensure_ascii=False),
                     markup=False, soft_wrap=True)
    else:
        errors.print(Text(f"offload: {detail}", style="red"), soft_wrap=True)
    return USAGE


def _report_problem(errors: Console, as_json: bool, exc: ApiError) -> int:
    if as_json:
        body = {"status": exc.status, "title": exc.title, "detail": exc.detail,
                "code": exc.code, "errors": [{"field": e.field, "message": e.message}
                                             for e in exc.errors]}
        errors.print(json.dumps(body, ensure_ascii=False), markup=False, soft_wrap=True)
        return USAGE
    errors.print(Text(f"offload: {exc.status} {exc.title}: {exc.detail}", style="red"),
                 soft_wrap=True)
    for error in exc.errors:
        if error.message not in exc.detail:
            errors.print(Text(f"  {error.field}: {error.message}"), soft_wrap=True)
    if exc.status == 401:
        errors.print(Text("  give a token with --token or OFFLOAD_TOKEN", style="dim"))
    return USAGE
