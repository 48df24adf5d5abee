"""What each ``offload`` command does, and its exit code."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.text import Text

from ..client import OffloadClient, UnexpectedAnswer
from ..models import JSON, Status, TaskRecord
from . import render

OK, FAILED, USAGE, CANCELLED = 0, 1, 2, 3


def exit_code(record: TaskRecord) -> int:
    """0 for a task that succeeded or has not ended, 1 failed, 3 cancelled."""
    return {Status.FAILED: FAILED, Status.CANCELLED: CANCELLED}.get(record.status, OK)


class Output:
    """Where a command writes: JSON for scripts, or rich text for people."""

    def __init__(self, as_json: bool, console: Console) -> None:
        self.as_json = as_json
        self.console = console

    def json(self, value: JSON) -> None:
        # print, not the console: no wrapping, no markup, one value a line
        print(json.dumps(value, ensure_ascii=False), flush=True)

    def record(self, record: TaskRecord) -> int:
        if self.as_json:
            self.json(record.to_json(include_traceback=True))
        else:
            render.print_record(self.console, record)
        return exit_code(record)


Command = Callable[[OffloadClient, argparse.Namespace, Output], int]


def submit(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    if args.kwargs is True:  # a bare --json: JSON output
        out.as_json, args.kwargs = True, None
    kwargs: dict[str, JSON] = {**(args.kwargs or {}), **dict(args.pairs)}
    handle = client.submit_with(args.name, (), kwargs, delay=args.delay,
                                priority=args.priority, timeout=args.task_timeout,
                                idempotency_key=args.idempotency_key)
    if args.wait:
        return out.record(handle.wait())
    if out.as_json:
        out.json(handle.record.to_json(include_traceback=True))
    else:
        out.console.print(Text.assemble(
            "submitted ", (handle.record.name, "bold"), f" {handle.id} ",
            render.status_text(handle.status)))
        out.console.print(Text(f"follow it: offload watch {handle.id}", style="dim"))
    return OK


def status(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    return out.record(client.get_record(args.id))


def watch(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    last: TaskRecord | None = None
    if out.as_json:  # one JSON line per event
        for event in client.task_events(args.id):
            out.json({"event": event.kind, "task": event.record.to_json(True)})
            last = event.record
    else:
        events = client.task_events(args.id)
        first = next(events, None)  # a 404 is raised here, before any bar is drawn
        if first is None:
            raise UnexpectedAnswer("the task's event stream ended without an event")
        with render.ProgressView(out.console, first.record) as view:
            view.show(first)
            last = first.record
            for event in events:
                view.show(event)
                last = event.record
        if last.error is not None and last.terminal:
            out.console.print(Text(f"{last.error.type}: {last.error.message}", style="red"))
        elif last.status is Status.SUCCEEDED:
            out.console.print(Text.assemble(("result ", "bold"), render.compact(last.result)))
    return OK if last is None else exit_code(last)


def cancel(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    record = client.cancel(args.id)
    if out.as_json:
        out.json(record.to_json(include_traceback=True))
    elif record.status is Status.CANCELLED:
        out.console.print(Text.assemble(f"{record.id} ", render.status_text(record.status)))
    else:  # a running thread task stops when it next checks
        out.console.print(Text(f"{record.id} cancel requested (still {record.status.value})"))
    return OK


def ls(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    if args.all:
        records = list(client.iter_tasks(args.status, args.name, args.limit))
        cursor = None
    else:
        page = client.list(args.status, args.name, args.limit, args.cursor)
        records, cursor = page.items, page.next_cursor
    if out.as_json:
        out.json({"items": [r.to_json(True) for r in records], "next_cursor": cursor})
        return OK
    if not records:
        out.console.print(Text("no tasks", style="dim"))
    else:
        out.console.print(render.task_table(records))
    if cursor is not None:
        out.console.print(Text(f"more: offload ls --cursor {cursor}", style="dim"))
    return OK


def types(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    found = client.task_types()
    if out.as_json:
        out.json({"items": [asdict(t) for t in found]})
    else:
        out.console.print(render.types_table(found))
    return OK


def stats(client: OffloadClient, args: argparse.Namespace, out: Output) -> int:
    found: dict[str, Any] = client.stats()
    if out.as_json:
        out.json(found)
    else:
        out.console.print(render.stats_table(found))
    return OK


COMMANDS: dict[str, Command] = {"submit": submit, "status": status, "watch": watch,
                                "cancel": cancel, "ls": ls, "types": types, "stats": stats}
