"""What both client flavours share: settings, the API's requests, and decoding its answers.

Nothing here does I/O: :mod:`.sync` and :mod:`.aio` send the :class:`Call` objects built
here, each in its own way, and decode the answers with the functions here.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import TaskCancelled, TaskFailed
from ..models import JSON, Progress, Status, TaskError, TaskRecord
from .errors import UnexpectedAnswer, retry_after_seconds

URL_ENV = "OFFLOAD_URL"
TOKEN_ENV = "OFFLOAD_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"  # hypercorn.toml's bind, what `make run` serves on
DEFAULT_TIMEOUT = 30.0  # seconds to connect, and to wait for an answer beyond a ?wait=
DEFAULT_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT = 60.0
DEFAULT_POLL_WAIT = 30.0  # seconds one ?wait= may hold (the service allows up to 60)
STREAM_SILENCE = 60.0  # an event stream says something (a keep-alive) every 15 s by default
RETRYABLE = frozenset({429, 503})
USER_AGENT = "offload-client/0.1"
CLIENT_KEY = "offload-client-"  # the Idempotency-Key of a submission that names none
log = logging.getLogger("offload.client")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to send a request again: after a 429 or 503, once ``Retry-After`` has passed.

    ``retries`` is the most times one request is sent again (0 turns retrying off);
    ``max_wait`` the most seconds spent waiting on retries of one request: a
    ``Retry-After`` that would go past it is not waited for, its error is raised instead.
    """

    retries: int = DEFAULT_RETRIES
    max_wait: float = DEFAULT_MAX_RETRY_WAIT

    def __post_init__(self) -> None:
        if self.retries < 0 or self.max_wait < 0:
            raise ValueError("retries and max_retry_wait cannot be negative")

    def delay(self, response: httpx.Response, retried: int, waited: float) -> float | None:
        """Seconds to wait before sending again, or None to give up with this answer."""
        if response.status_code not in RETRYABLE or retried >= self.retries:
            return None
        delay = retry_after_seconds(response.headers)
        if delay is None:
            delay = float(2 ** retried)  # no Retry-After: 1, 2, 4… seconds
        if waited + delay > self.max_wait:
            return None
        return delay


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where the service is and how to talk to it (see the clients' constructors)."""

    url: str
    token: str | None
    timeout: float
    retry: RetryPolicy
    poll_wait: float

    @classmethod
    def resolve(cls, url: str | None, token: str | None, timeout: float, retries: int,
                max_retry_wait: float, poll_wait: float) -> ClientSettings:
        """Arguments first, then ``OFFLOAD_URL`` and ``OFFLOAD_TOKEN``, then defaults."""
        url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the service URL must start with http:// or https://: {url!r}")
        token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        if not 0 < poll_wait <= 60:
            raise ValueError(f"poll_wait must be above 0 and at most 60 s, not {poll_wait!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be above 0, not {timeout!r}")
        return cls(url, token, timeout, RetryPolicy(retries, max_retry_wait), poll_wait)

    def http_options(self) -> dict[str, Any]:
        """Arguments for ``httpx.Client`` / ``httpx.AsyncClient``: one pool, reused."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {"base_url": self.url, "headers": headers, "timeout": self.timeout}


@dataclass(frozen=True, slots=True)
class Call:
    """One request of the API. ``hold`` is how long the service may hold the answer
    (a ``?wait=``): the read timeout grows by as much. A ``stream`` is read as it comes."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: JSON = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0
    stream: bool = False

    def timeout(self, settings: ClientSettings) -> httpx.Timeout:
        if self.stream:  # silence longer than the keep-alive period means a lost peer
            return httpx.Timeout(settings.timeout, read=max(settings.timeout, STREAM_SILENCE))
        return httpx.Timeout(settings.timeout, read=settings.timeout + self.hold)

    def request_options(self, settings: ClientSettings) -> dict[str, Any]:
        options: dict[str, Any] = {"params": self.params, "headers": self.headers,
                                   "timeout": self.timeout(settings)}
        if self.body is not None:
            options["json"] = self.body
        return options


def task_path(task_id: str) -> str:
    # Quoted whole: an id with a "/" or "?" in it is some other id (a 404), never a route.
    return f"/tasks/{quote(task_id, safe='')}"


def submit_call(name: str, args: Iterable[JSON], kwargs: dict[str, JSON] | None, *,
                delay: float | None, priority: int, timeout: float | None,
                idempotency_key: str | None, depends_on: Iterable[str] = ()) -> Call:
    body: dict[str, JSON] = {"name": name, "args": list(args), "kwargs": kwargs or {}}
    if depends_on:
        body["depends_on"] = list(depends_on)
    if delay is not None:
        body["delay"] = delay
    if priority:
        body["priority"] = priority
    if timeout is not None:
        body["timeout"] = timeout
    # Always a key: a submission retried after a 503 whose answer was lost (the store may
    # have taken it) then finds the first task instead of making a second one.
    key = idempotency_key if idempotency_key is not None else CLIENT_KEY + secrets.token_urlsafe(18)
    return Call("POST", "/tasks", body=body, headers={"Idempotency-Key": key})


def get_call(task_id: str, wait: float | None = None) -> Call:
    if wait is None:
        return Call("GET", task_path(task_id))
    wait = round(max(0.0, wait), 3)
    return Call("GET", task_path(task_id), [("wait", f"{wait:g}")], hold=wait)


def events_call(task_id: str) -> Call:
    return Call("GET", f"{task_path(task_id)}/events", headers={"Accept": "text/event-stream"},
                stream=True)


def list_call(status: str | Iterable[str] | None, name: str | None, limit: int | None,
              cursor: str | None) -> Call:
    statuses = [status] if isinstance(status, str) else list(status or [])
    params = [("status", str(s)) for s in statuses]
    if name is not None:
        params.append(("name", name))
    if limit is not None:
        params.append(("limit", str(limit)))
    if cursor is not None:
        params.append(("cursor", cursor))
    return Call("GET", "/tasks", params)


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of ``GET /tasks``: its tasks, newest first, and the cursor of the next page
    (None on the last one)."""

    items: list[TaskRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class TaskType:
    """A task type the service runs (an entry of ``GET /task-types``)."""

    name: str
    description: str
    parameters: dict[str, JSON]
    executor: str
    timeout: float | None
    retries: int
    idempotent: bool
    concurrency: int | None
    rate_limit: str | None = None
    """At most N starts in a period (``"10/m"``), every worker counted; None for none."""


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise UnexpectedAnswer(f"{response.request.method} {response.request.url} answered "
                               f"{response.status_code} without JSON") from exc


def record_from_json(body: Any) -> TaskRecord:
    """The API's task object as a :class:`TaskRecord`, the library's own record type."""
    try:
        progress, error = body.get("progress"), body.get("error")
        return TaskRecord(
            id=body["id"], name=body["name"], status=Status(body["status"]),
            args=list(body.get("args") or []), kwargs=dict(body.get("kwargs") or {}),
            priority=int(body.get("priority") or 0),
            progress=None if progress is None else Progress(
                progress["current"], progress.get("total"), progress.get("message")),
            result=body.get("result"),
            error=None if error is None else TaskError(
                error["type"], error["message"], error.get("traceback")),
            attempts=int(body.get("attempts") or 0),
            max_attempts=int(body.get("max_attempts") or 1),
            cancel_requested=bool(body.get("cancel_requested")),
            timeout=body.get("timeout"),
            created_at=_epoch(body.get("created_at")) or 0.0,
            scheduled_at=_epoch(body.get("scheduled_at")),
            started_at=_epoch(body.get("started_at")),
            finished_at=_epoch(body.get("finished_at")),
            depends_on=list(body.get("depends_on") or []),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UnexpectedAnswer(f"not a task object: {str(body)[:200]}") from exc


def page_from_json(body: Any) -> TaskPage:
    try:
        return TaskPage([record_from_json(item) for item in body["items"]],
                        body.get("next_cursor"))
    except (KeyError, TypeError) as exc:
        raise UnexpectedAnswer(f"not a page of tasks: {str(body)[:200]}") from exc


def task_types_from_json(body: Any) -> list[TaskType]:
    try:
        return [TaskType(item["name"], item.get("description") or "",
                         item.get("parameters") or {}, item["executor"], item.get("timeout"),
                         int(item.get("retries") or 0), bool(item.get("idempotent")),
                         item.get("concurrency"), item.get("rate_limit"))
                for item in body["items"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UnexpectedAnswer(f"not a list of task types: {str(body)[:200]}") from exc


def outcome(record: TaskRecord) -> JSON:
    """A terminal task's result; :class:`TaskFailed` or :class:`TaskCancelled` otherwise,
    exactly as the library's ``TaskHandle.result()``."""
    if record.status is Status.FAILED:
        raise TaskFailed(record.error or TaskError("Unknown", "the task failed"))
    if record.status is Status.CANCELLED:
        raise TaskCancelled(f"task {record.id} was cancelled")
    return record.result


def still_running(record: TaskRecord) -> TimeoutError:
    return TimeoutError(f"task {record.id} is still {record.status}")


def log_retry(call: Call, response: httpx.Response, delay: float, retry: int,
              retries: int) -> None:
    log.info("%s %s answered %d; retrying in %.3g s (retry %d of %d)", call.method,
             call.path, response.status_code, delay, retry, retries)


def describe_failure(exc: httpx.TransportError, url: str) -> str:
    """What a :class:`~.errors.ConnectionFailed` says."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        reason = f"timed out ({type(exc).__name__})"
    return f"cannot reach the Offload service at {url}: {reason}"


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).timestamp()
