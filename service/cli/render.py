"""How ``offload`` shows things to people: rich tables, a task's details, a live progress bar.

Everything that comes from task data (names, arguments, results, messages) is shown as
plain :class:`~rich.text.Text`, never parsed as rich markup: a result of ``"[red]x"`` prints
as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..client import TaskEvent, TaskType
from ..models import JSON, Status, TaskRecord
from ..models import Progress as TaskProgress

STYLES = {Status.QUEUED: "dim", Status.SCHEDULED: "dim", Status.WAITING: "dim",
          Status.RUNNING: "cyan",
          Status.SUCCEEDED: "green", Status.FAILED: "red", Status.CANCELLED: "yellow"}
SHOWN = 200  # characters of an argument list or result shown in a table cell


def status_text(status: Status) -> Text:
    return Text(status.value, style=STYLES.get(status, ""))


def compact(value: JSON, limit: int = SHOWN) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def progress_text(progress: TaskProgress | None) -> str:
    if progress is None:
        return ""
    done = f"{progress.current:g}" + (f"/{progress.total:g}" if progress.total else "")
    return f"{done} {progress.message}" if progress.message else done


def when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def duration(record: TaskRecord) -> str:
    if record.started_at is None:
        return ""
    end = record.finished_at or time.time()
    return span(end - record.started_at)


def span(seconds: float) -> str:
    """``0.25s``, ``42s``, ``7m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def print_record(console: Console, record: TaskRecord) -> None:
    """A task's details, one field a line."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, Text | str]] = [
        ("id", record.id), ("name", record.name), ("status", status_text(record.status)),
        ("args", compact(record.args)), ("kwargs", compact(record.kwargs))]
    if record.progress is not None:
        rows.append(("progress", progress_text(record.progress)))
    if record.status is Status.SUCCEEDED:
        rows.append(("result", compact(record.result, 2000)))
    if record.error is not None:
        rows.append(("error", f"{record.error.type}: {record.error.message}"))
    if record.cancel_requested and not record.terminal:
        rows.append(("cancel", "requested"))
    rows += [("attempts", f"{record.attempts} of {record.max_attempts}"),
             ("created", when(record.created_at)), ("scheduled", when(record.scheduled_at)),
             ("started", when(record.started_at)), ("finished", when(record.finished_at)),
             ("duration", duration(record))]
    for key, value in rows:
        if value:
            grid.add_row(key, value if isinstance(value, Text) else Text(value))
    console.print(grid)
    if record.error is not None and record.error.traceback:
        console.print(Text(record.error.traceback.rstrip(), style="dim"))


def task_table(records: Iterable[TaskRecord]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=24)  # ids are copied whole, never cut
    table.add_column("name", overflow="fold", max_width=30)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("progress", overflow="ellipsis", no_wrap=True, max_width=24)
    table.add_column("age", no_wrap=True, justify="right")
    table.add_column("duration", no_wrap=True, justify="right")
    now = time.time()
    for record in records:
        table.add_row(Text(record.id), Text(record.name), status_text(record.status),
                      Text(progress_text(record.progress)),
                      Text(span(now - record.created_at) if record.created_at else ""),
                      Text(duration(record)))
    return table


def types_table(task_types: Iterable[TaskType]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    task_types = list(task_types)
    widest = max((len(t.name) for t in task_types), default=4)
    table.add_column("name", no_wrap=True, min_width=widest)
    table.add_column("parameters", ratio=1)
    for column in ("executor", "timeout", "retries"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    table.add_column("description", ratio=1)
    for task_type in task_types:
        timeout = "" if task_type.timeout is None else f"{task_type.timeout:g}s"
        summary = task_type.description.strip().splitlines()[0] if task_type.description else ""
        table.add_row(Text(task_type.name), Text(parameters_text(task_type.parameters)),
                      Text(task_type.executor), Text(timeout), Text(str(task_type.retries)),
                      Text(summary))
    return table


def parameters_text(schema: dict[str, Any]) -> str:
    """``a: integer, b: number = 0.1`` from a JSON Schema of the parameters."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    parts = []
    for name, spec in properties.items():
        kind = spec.get("type") or "any" if isinstance(spec, dict) else "any"
        part = f"{name}: {kind}"
        if name not in required and isinstance(spec, dict) and "default" in spec:
            part += f" = {compact(spec['default'], 40)}"
        parts.append(part)
    return ", ".join(parts)


def stats_table(stats: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for status, count in (stats.get("counts") or {}).items():
        grid.add_row(Text(str(status)), Text(str(count)))
    for key in ("queue_depth", "capacity", "max_queue", "uptime_seconds", "accepting"):
        if key in stats:
            grid.add_row(Text(key.replace("_", " ")), Text(str(stats[key])))
    return grid


class ProgressView:
    """A live progress bar of one task, fed with its events."""

    def __init__(self, console: Console, record: TaskRecord) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(),
            TextColumn("{task.fields[done]}", markup=False),
            TextColumn("{task.fields[status]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("{task.fields[message]}", markup=False),
            console=console)
        self._bar: TaskID = self._progress.add_task(record.name, total=None, done="",
                                                    status="", message="")
        self._status: Status | None = None

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def show(self, event: TaskEvent) -> None:
        record = event.record
        if record.status is not self._status:
            self._status = record.status
            self._progress.console.print(Text.assemble(
                (f"{record.name} {record.id} ", ""), status_text(record.status)))
        progress = record.progress
        total = progress.total if progress is not None and progress.total else None
        completed = progress.current if progress is not None else 0
        if record.status is Status.SUCCEEDED and total is None:
            total = completed = completed or 1  # a task that never said how far: full
        self._progress.update(
            self._bar, total=total, completed=completed, status=record.status.value,
            done=progress_text(TaskProgress(progress.current, progress.total))
            if progress is not None else "",
            message=(progress.message or "") if progress is not None else "")
