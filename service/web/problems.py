"""RFC 9457 problem details for every error the API answers."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import pydantic
from quart import Quart, Response, current_app, g, request
from quart.typing import ResponseReturnValue
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from .. import errors, jsonutil
from ..errors import FieldError

log = logging.getLogger("offload.web")
MAX_FIELD_ERRORS = 50
# One style for every problem: ``type`` is ``about:blank`` (RFC 9457 §4.2.1: the problem is
# what the status says), ``title`` the status phrase, and ``code`` a stable kebab-case name
# for programs to branch on (documented in the README). No URI on a domain nobody serves.
PROBLEM_TYPE = "about:blank"
# RFC 9110's names, the same on every Python (3.11 still says "Unprocessable Entity").
TITLES = {413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
          422: "Unprocessable Content"}
# The code of a problem that is the HTTP status itself (not from a phrase: those differ
# between Python versions, e.g. 413).
HTTP_CODES = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 406: "not-acceptable", 408: "request-timeout",
    411: "length-required", 413: "body-too-large", 415: "unsupported-media-type",
    422: "invalid-body", 429: "too-many-requests", 431: "headers-too-large",
    500: "internal-error", 503: "unavailable",
}

# One HTTP status per error of the core; anything else is a bug and a 500.
STATUS_OF: dict[type[errors.OffloadError], int] = {
    errors.TaskNotFound: 404,
    errors.InvalidSubmission: 422,
    errors.IdempotencyConflict: 422,
    errors.BadQuery: 400,
    errors.QueueFull: 429,
    errors.ShuttingDown: 503,
    errors.NotRunning: 503,
    errors.StoreUnavailable: 503,
    errors.TaskAlreadyTerminal: 409,
    errors.TaskStillActive: 409,
}


def problem(status: int, detail: str, *, code: str | None = None,
            field_errors: list[FieldError] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """A problem+json response; ``code`` defaults to the status's own (``HTTP_CODES``)."""
    title = TITLES.get(status) or HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE, "title": title, "status": status, "detail": detail,
        "code": code or HTTP_CODES.get(status) or title.lower().replace(" ", "-"),
    }
    if field_errors is not None:
        shown = field_errors[:MAX_FIELD_ERRORS]
        body["errors"] = [{"field": e.field, "message": e.message} for e in shown]
        if len(field_errors) > len(shown):
            body["detail"] += f" ({len(field_errors)} problems, first {len(shown)} listed)"
    response = Response(jsonutil.dumps(body), status, content_type="application/problem+json")
    response.headers.update(headers or {})
    return response


def from_offload_error(error: errors.OffloadError) -> Response:
    status = next((s for cls, s in STATUS_OF.items() if isinstance(error, cls)), 500)
    headers = {}
    if isinstance(error, errors.QueueFull):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, errors.ShuttingDown | errors.NotRunning | errors.StoreUnavailable):
        headers["Retry-After"] = "5"
    field_errors = error.errors if isinstance(error, errors.InvalidSubmission) else None
    code = re.sub(r"(?<!^)(?=[A-Z])", "-", type(error).__name__).lower()  # task-not-found
    # A TaskNotFound's message is the id as given: never echo that (it may be 10 KB long).
    detail = "no task with this id" if isinstance(error, errors.TaskNotFound) else str(error)
    return problem(status, detail, code=code, field_errors=field_errors, headers=headers)


def from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    response = problem(status, error.description or HTTPStatus(status).phrase)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def from_schema_error(error: RequestSchemaValidationError) -> Response:
    cause = error.validation_error
    is_query = "Querystring" in type(error).__name__
    status = 400 if is_query else 422
    fields: list[FieldError] = []
    if isinstance(cause, pydantic.ValidationError):
        for item in cause.errors(include_url=False):
            where = ".".join(str(part) for part in item["loc"]) or "body"
            fields.append(FieldError(where, item["msg"]))
    detail = "invalid query parameters" if is_query else "the request body does not fit"
    return problem(status, detail, code="bad-query" if is_query else "invalid-body",
                   field_errors=fields)


def mark_body_read() -> None:
    """The request's body has been read to its end (see :func:`close_if_body_unread`)."""
    g.offload_body_read = True


async def close_if_body_unread(response: Response) -> Response:
    """Say ``Connection: close`` when answering before the request's body was read.

    Hypercorn closes a connection whose request body had not all arrived when the answer
    was done (a 401, 413 or 415 comes before the body is read), but without saying so: a
    client that keeps the connection for its next request (httpx does) would find it
    closed under it ("Server disconnected without sending a response").
    """
    declares_body = ((request.content_length or 0) > 0
                     or "chunked" in request.headers.get("Transfer-Encoding", "").lower())
    if declares_body and not g.get("offload_body_read", False):
        response.headers["Connection"] = "close"
    return response


SUBMIT_ENDPOINTS = frozenset({"offload_api.submit_task", "offload_api.submit_batch"})


def _counted(response: Response) -> Response:
    """Count a refused submission in ``offload_submissions_rejected_total`` (a full queue is
    counted where it is detected, in the scheduler, and so are its library submissions)."""
    extension = current_app.extensions.get("offload")
    if (extension is not None and request.endpoint in SUBMIT_ENDPOINTS
            and response.status_code != 429):
        reason = f"http_{response.status_code}"
        extension.service.metrics.rejected.labels(reason).inc()
    return response


def register_handlers(target: Any) -> None:
    """Answer every error raised under ``target`` (an app or a blueprint) as a problem."""

    async def offload_error(error: errors.OffloadError) -> ResponseReturnValue:
        return _counted(from_offload_error(error))

    async def schema_error(error: RequestSchemaValidationError) -> ResponseReturnValue:
        return _counted(from_schema_error(error))

    async def http_error(error: HTTPException) -> ResponseReturnValue:
        return _counted(from_http_exception(error))

    target.after_request(close_if_body_unread)
    target.register_error_handler(errors.OffloadError, offload_error)
    target.register_error_handler(RequestSchemaValidationError, schema_error)
    target.register_error_handler(HTTPException, http_error)


def register_app_handlers(app: Quart) -> None:
    """Also answer routing errors (404, 405) and crashes as problems (standalone app)."""
    register_handlers(app)

    async def crash(error: Exception) -> ResponseReturnValue:
        log.exception("unhandled error", exc_info=error)
        return problem(500, "internal error")

    app.register_error_handler(Exception, crash)
