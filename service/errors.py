"""Exceptions of the public API. The web layer maps each to one HTTP status."""

from __future__ import annotations

from dataclasses import dataclass

from .models import TaskError


class OffloadError(Exception):
    """Base class of every error Offload raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of a submission, e.g. ``kwargs.b``."""

    field: str
    message: str


class TaskNotFound(OffloadError, LookupError):
    """No task with that id (or not one the caller may see)."""


SHOWN_ERRORS = 5  # field errors spelled out in an InvalidSubmission's message


class InvalidSubmission(OffloadError):
    """Arguments or options do not fit the task type; ``errors`` names each field."""

    def __init__(self, errors: list[FieldError], message: str = "invalid task arguments") -> None:
        super().__init__(message)
        self.errors = errors

    def __str__(self) -> str:
        message = super().__str__()
        shown = [f"{e.field}: {e.message}" for e in self.errors if e.message != message]
        if len(shown) > SHOWN_ERRORS:
            shown[SHOWN_ERRORS:] = [f"and {len(shown) - SHOWN_ERRORS} more"]
        return f"{message} ({'; '.join(shown)})" if shown else message

    def prefixed(self, prefix: str) -> InvalidSubmission:
        """The same errors with field names under ``prefix`` (e.g. ``tasks.3``)."""
        fields = [FieldError(f"{prefix}.{e.field}", e.message) for e in self.errors]
        return InvalidSubmission(fields, self.args[0])


class UnknownTaskType(InvalidSubmission):
    """A submission named a task type that is not registered."""

    def __init__(self, name: str, message: str | None = None) -> None:
        shown = name if len(name) <= 100 else name[:100] + "…"
        message = message or f"no task type named {shown!r}"
        super().__init__([FieldError("name", message)], message)
        self.name = name


class BadQuery(OffloadError, ValueError):
    """A list filter, limit or cursor that makes no sense."""


class IdempotencyConflict(OffloadError):
    """The Idempotency-Key was used before with a different request body."""


class QueueFull(OffloadError):
    """Queued plus scheduled tasks are at the configured bound."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"the queue holds its limit of {limit} pending tasks")
        self.retry_after = retry_after


class StoreUnavailable(OffloadError):
    """The task store cannot be used now (a file it cannot write, a full disk, a lost
    connection). Nothing accepted is lost; try again later."""


class ShuttingDown(OffloadError):
    """The service is draining and accepts no new work."""


class NotRunning(OffloadError):
    """The task service has not been started (or has stopped)."""


class TaskAlreadyTerminal(OffloadError):
    """Cancel asked of a task that has already finished."""


class TaskStillActive(OffloadError):
    """Delete asked of a task that has not finished."""


class WorkerCrashed(OffloadError):
    """A process-pool worker died while running the task."""


class ResultTooLarge(OffloadError):
    """A task returned a value whose JSON is larger than ``OFFLOAD_MAX_RESULT``."""


class TaskFailed(OffloadError):
    """Raised by ``TaskHandle.result()`` when the task failed."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(f"{error.type}: {error.message}")
        self.error = error


class TaskCancelled(OffloadError):
    """Raised by ``TaskHandle.result()`` when the task was cancelled."""
