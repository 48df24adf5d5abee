"""What the client raises: problem+json answers as typed exceptions, and a lost connection.

Each error answer of the API becomes an :class:`ApiError` carrying the problem's ``status``,
``title``, ``detail``, ``type``, ``code`` and field ``errors``; its class follows the
problem's ``code`` (``task-not-found``, ``queue-full``…), else its status. Where the library
has an exception for the same thing, the client's class derives from it too, so ``except
TaskNotFound`` (or ``InvalidSubmission``, ``QueueFull``…) catches it whether the task was
asked for in-process or over HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import httpx

from .. import errors
from ..errors import FieldError, OffloadError


class ClientError(OffloadError):
    """Base class of every error the client raises on its own behalf."""


class ConnectionFailed(ClientError):
    """The service could not be reached, or the connection broke before an answer came."""


class UnexpectedAnswer(ClientError):
    """The service answered with something that is not what the API promises."""


class ApiError(ClientError):
    """The service answered with an error (an RFC 9457 problem, as a rule)."""

    def __init__(self, status: int, title: str, detail: str, type: str = "about:blank",
                 code: str = "", errors: list[FieldError] | None = None,
                 headers: httpx.Headers | None = None) -> None:
        # Not the library bases' own __init__: their arguments differ; what they keep is
        # set here (``errors`` for InvalidSubmission, ``retry_after`` by QueueFull below).
        Exception.__init__(self, detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.code = code
        self.errors: list[FieldError] = list(errors or [])
        self.headers = headers if headers is not None else httpx.Headers()

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        fields = "; ".join(f"{e.field}: {e.message}" for e in self.errors
                           if e.message not in self.detail)
        return f"{text} ({fields})" if fields else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.title, self.detail, self.type, self.code,
                             self.errors))


class Unauthorized(ApiError):
    """401: no token, or one the service does not know (see ``OFFLOAD_TOKEN``)."""


class BadRequestError(ApiError, errors.BadQuery):
    """400: a filter, limit, cursor or ``wait`` the service refuses."""


class TaskNotFoundError(ApiError, errors.TaskNotFound):
    """404: no task with that id (or not one this token may see)."""


class InvalidSubmissionError(ApiError, errors.InvalidSubmission):
    """422: the arguments or options do not fit the task type; ``errors`` names each field."""


class UnknownTaskTypeError(InvalidSubmissionError, errors.UnknownTaskType):
    """422: no task type of that name is registered on the service."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _, _, quoted = self.detail.partition("named ")
        self.name = quoted.strip("'\"")  # the name the service did not know


class IdempotencyConflictError(ApiError, errors.IdempotencyConflict):
    """422: the Idempotency-Key was used before with another request body."""


class TaskAlreadyTerminalError(ApiError, errors.TaskAlreadyTerminal):
    """409: cancel asked of a task that has already finished."""


class TaskStillActiveError(ApiError, errors.TaskStillActive):
    """409: delete asked of a task that has not finished."""


class QueueFullError(ApiError, errors.QueueFull):
    """429: the service's queue is full; ``retry_after`` says when to try again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = round(retry_after_seconds(self.headers) or 1)


class ServiceUnavailable(ApiError):
    """503: the service is starting, draining or cannot use its store just now."""


class ShuttingDownError(ServiceUnavailable, errors.ShuttingDown):
    """503: the service is draining and accepts no new work."""


class StoreUnavailableError(ServiceUnavailable, errors.StoreUnavailable):
    """503: the service's store cannot be used now; nothing accepted is lost."""


# A problem's ``code`` is the kebab-case name of the library's exception behind it.
_BY_CODE: dict[str, type[ApiError]] = {
    "task-not-found": TaskNotFoundError,
    "invalid-submission": InvalidSubmissionError,
    "unknown-task-type": UnknownTaskTypeError,
    "idempotency-conflict": IdempotencyConflictError,
    "bad-query": BadRequestError,
    "task-already-terminal": TaskAlreadyTerminalError,
    "task-still-active": TaskStillActiveError,
    "queue-full": QueueFullError,
    "shutting-down": ShuttingDownError,
    "not-running": ServiceUnavailable,
    "store-unavailable": StoreUnavailableError,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError, 401: Unauthorized, 404: TaskNotFoundError,
    422: InvalidSubmissionError, 429: QueueFullError, 503: ServiceUnavailable,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed exception for an error answer (problem+json or not)."""
    body = _problem_body(response)
    status = response.status_code
    title = _text(body.get("title")) or _phrase(status)
    detail = _text(body.get("detail")) or (response.text[:500] if not body else "")
    kind = _text(body.get("type")) or "about:blank"
    code = _text(body.get("code"))
    errors_given = body.get("errors")
    field_errors = [FieldError(_text(item.get("field")), _text(item.get("message")))
                    for item in (errors_given if isinstance(errors_given, list) else [])
                    if isinstance(item, dict)]
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status, ApiError)
    return cls(status, title, detail, kind, code, field_errors, response.headers)


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (given as seconds or as an HTTP date), None if absent."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    if "json" not in response.headers.get("Content-Type", ""):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
