"""How one attempt ended, and what follows from it: the error's public form, whether it is
worth a retry, the log line."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from .. import jsonutil
from ..errors import ResultTooLarge
from ..logs import task_event
from ..models import JSON, Status, TaskError, TaskRecord
from ..registry import TaskType
from .process_pool import RemoteError

log = logging.getLogger("offload.scheduler")


@dataclass(slots=True)
class AttemptResult:
    """What an attempt produced: a value, or the error it raised."""

    value: JSON = None
    error: BaseException | None = None


def log_outcome(record: TaskRecord) -> None:
    error = record.error
    if record.status is Status.SUCCEEDED and not log.isEnabledFor(logging.DEBUG):
        return  # the common case, and its line is off by default: nothing to format
    took = (record.finished_at or 0.0) - (record.started_at or record.created_at)
    if record.status is not Status.FAILED or error is None:
        level = logging.DEBUG if record.status is Status.SUCCEEDED else logging.INFO
        task_event(log, level, "task_finished", record, f"{record.status.value} in {took:.3f}s",
                   duration=round(took, 6))
        return
    level = logging.WARNING if error.type in ("Interrupted", "WorkerCrashed") else logging.INFO
    task_event(log, level, "task_finished", record,
               f"failed after {record.attempts} attempt(s): {error.type}: {error.message}",
               duration=round(took, 6), error_type=error.type, error_message=error.message)


def describe_error(exc: BaseException) -> TaskError:
    """The public form of an exception: its type name and message, traceback kept aside."""
    if isinstance(exc, RemoteError):
        return TaskError(exc.type_name, str(exc), exc.remote_traceback)
    if isinstance(exc, jsonutil.NotJSON):
        return TaskError("TypeError", f"the task's result is not a JSON value: {exc}")
    return TaskError(type(exc).__name__, str(exc), format_traceback(exc))


def format_traceback(exc: BaseException) -> str:
    """The traceback without Python 3.11's ``^^^`` markers: drawing them parses source with
    ``ast``, whose recursion counter is shared by threads (a thread using ``ast`` at the
    same moment makes it raise ``SystemError``)."""
    frames = [(f.filename, f.lineno or 0, f.name, f.line) for f in traceback.extract_tb(
        exc.__traceback__)]
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames),
                    *traceback.format_exception_only(exc)])


def retryable(task_type: TaskType, exc: BaseException) -> bool:
    """Whether the task type's ``retry_on`` covers this error (also one from a process)."""
    if isinstance(exc, jsonutil.NotJSON | ResultTooLarge):
        return False  # the same code returns the same value: another attempt cannot help
    retry_on = task_type.retry_on
    if isinstance(exc, RemoteError):
        return any(exc.is_a(cls) for cls in retry_on)
    return isinstance(exc, retry_on)
