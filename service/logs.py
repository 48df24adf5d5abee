"""Structured logs: every line about a task carries its id and name; JSON when configured."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

from .context import _current
from .models import TaskRecord

request_id: ContextVar[str | None] = ContextVar("offload_request_id", default=None)

# What a LogRecord has of its own; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class ContextFilter(logging.Filter):
    """Adds the running task's id and name, and the HTTP request's id, to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = _current.get()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id = task.task_id
            record.task_name = task.task_name
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every structured field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines, with the structured fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return f"{line} {fields}" if fields else line


def configure(log_format: str = "text", level: str = "INFO") -> logging.Handler:
    """Send log records of the whole process to stderr, one line each (the standalone app).

    Hypercorn's loggers keep their own handlers; their records are not repeated here.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(lambda record: not record.name.startswith("hypercorn"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())  # the tasks' own loggers too, not only Offload's
    return handler


def task_event(logger: logging.Logger, level: int, event: str, record: TaskRecord,
               message: str, **fields: object) -> None:
    """Log one thing that happened to a task, with its id, name and status as fields."""
    if logger.isEnabledFor(level):
        logger.log(level, "task %s %s: %s", record.name, record.id, message,
                   extra={"event": event, "task_id": record.id, "task_name": record.name,
                          "status": record.status.value, "attempt": record.attempts,
                          **fields})
