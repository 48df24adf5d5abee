"""The blocking client: for Flask, Django, scripts and any code without an event loop."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from ..models import JSON, Status, TaskRecord
from .errors import ConnectionFailed, UnexpectedAnswer, error_from_response
from .events import TaskEvent, decode_event
from .wire import (
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_POLL_WAIT,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Call,
    ClientSettings,
    TaskPage,
    TaskType,
    describe_failure,
    events_call,
    get_call,
    json_body,
    list_call,
    log_retry,
    outcome,
    page_from_json,
    record_from_json,
    still_running,
    submit_call,
    task_path,
    task_types_from_json,
)


class RemoteTaskHandle:
    """A task on the service: its id, its record as last seen, and ways to wait for it,
    read its result, follow it or stop it. Mirrors the library's ``TaskHandle``."""

    def __init__(self, client: OffloadClient, record: TaskRecord) -> None:
        self._client = client
        self.id = record.id
        self.record = record

    @property
    def status(self) -> Status:
        """The status as last seen: a snapshot, not a request (:meth:`refresh` asks)."""
        return self.record.status

    def refresh(self) -> TaskRecord:
        """Ask the service for the task as it is now."""
        self.record = self._client.get_record(self.id)
        return self.record

    def wait(self, timeout: float | None = None) -> TaskRecord:
        """Wait until the task is terminal (forever when ``timeout`` is None); raise
        :class:`TimeoutError` if ``timeout`` seconds pass first. Long-polls the service
        (``GET /tasks/{id}?wait=``), no sleeping here."""
        if self.record.terminal:
            return self.record  # a terminal record never changes again
        self.record = self._client.wait_record(self.id, timeout)
        return self.record

    def result(self, timeout: float | None = None) -> JSON:
        """The task's return value once it has one; :class:`~service.errors.TaskFailed` or
        :class:`~service.errors.TaskCancelled` if it ended otherwise."""
        return outcome(self.wait(timeout))

    def cancel(self) -> TaskRecord:
        """Ask the service to stop the task (queued: never runs; running: see the SPEC)."""
        self.record = self._client.cancel_record(self.id)
        return self.record

    def delete(self) -> None:
        """Forget the finished task's record on the service (Celery's ``forget``)."""
        self._client.delete(self.id)

    def events(self) -> Iterator[TaskEvent]:
        """The task's status and progress events, from its state now to its terminal one."""
        for event in self._client.task_events(self.id):
            self.record = event.record
            yield event

    def ready(self) -> bool:
        """Whether the task had ended when last seen (Celery's ``ready()``; a snapshot,
        as the library's handle: :meth:`refresh` or :meth:`wait` updates it)."""
        return self.record.terminal

    def successful(self) -> bool:
        """Whether the task had succeeded when last seen (Celery's ``successful()``)."""
        return self.record.status is Status.SUCCEEDED

    def failed(self) -> bool:
        """Whether the task had failed when last seen (Celery's ``failed()``)."""
        return self.record.status is Status.FAILED

    def __repr__(self) -> str:
        return f"<RemoteTaskHandle {self.id} {self.status}>"


class OffloadClient:
    """A client of an Offload service over HTTP, with one connection pool for all calls.

    ``url`` and ``token`` default to ``OFFLOAD_URL`` (else ``http://127.0.0.1:8000``) and
    ``OFFLOAD_TOKEN``. ``timeout``: seconds to connect and to wait for an answer. A 429 or
    503 answer is sent again after its ``Retry-After``, at most ``retries`` times and
    ``max_retry_wait`` seconds in all per call (``retries=0``: never). ``poll_wait``: how
    long one long-poll of :meth:`RemoteTaskHandle.wait` may last (the service allows 60 s).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
                 poll_wait: float = DEFAULT_POLL_WAIT) -> None:
        self.settings = ClientSettings.resolve(url, token, timeout, retries, max_retry_wait,
                                               poll_wait)
        self._http = httpx.Client(**self.settings.http_options())

    @property
    def url(self) -> str:
        return self.settings.url

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> OffloadClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # submitting

    def submit(self, name: str, /, *args: JSON, **kwargs: JSON) -> RemoteTaskHandle:
        """Run task type ``name`` with these arguments on the service; returns at once."""
        return self.submit_with(name, args, kwargs)

    def submit_with(self, name: str, args: Iterable[JSON] = (),
                    kwargs: dict[str, JSON] | None = None, *, delay: float | None = None,
                    priority: int = 0, timeout: float | None = None,
                    idempotency_key: str | None = None,
                    depends_on: Iterable[str] = ()) -> RemoteTaskHandle:
        """``submit`` with options: start after ``delay`` seconds, a ``priority`` (higher
        first), a ``timeout`` for this run, an ``idempotency_key`` (a second submission
        with the same key and body returns the first task), ``depends_on`` (ids of tasks
        that must succeed first: it waits until then)."""
        call = submit_call(name, args, kwargs, delay=delay, priority=priority,
                           timeout=timeout, idempotency_key=idempotency_key,
                           depends_on=depends_on)
        return RemoteTaskHandle(self, record_from_json(self._json(call)))

    # one task

    def get(self, task_id: str) -> RemoteTaskHandle:
        """A handle on the task with this id (raises ``TaskNotFound`` if there is none)."""
        return RemoteTaskHandle(self, self.get_record(task_id))

    def get_record(self, task_id: str, wait: float | None = None) -> TaskRecord:
        """The task's record; with ``wait``, once it is terminal or ``wait`` s have passed."""
        return record_from_json(self._json(get_call(task_id, wait)))

    def wait_record(self, task_id: str, timeout: float | None = None) -> TaskRecord:
        """The task's record once it is terminal; :class:`TimeoutError` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            hold = self.settings.poll_wait
            if deadline is not None:
                hold = max(0.0, min(hold, deadline - time.monotonic()))
            record = self.get_record(task_id, wait=hold)
            if record.terminal:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise still_running(record)

    def cancel_record(self, task_id: str) -> TaskRecord:
        return record_from_json(self._json(Call("POST", f"{task_path(task_id)}/cancel")))

    def cancel(self, task_id: str) -> TaskRecord:
        """Cancel the task with this id; its record after the request."""
        return self.cancel_record(task_id)

    def delete(self, task_id: str) -> None:
        """Forget a finished task's record."""
        self._send(Call("DELETE", task_path(task_id)))

    def task_events(self, task_id: str) -> Iterator[TaskEvent]:
        """The task's events until its terminal one (see :meth:`RemoteTaskHandle.events`)."""
        response = self._send(events_call(task_id))
        try:
            for message in EventSource(response).iter_sse():
                event = decode_event(message)
                if event is not None:
                    yield event
                    if event.terminal:
                        return
        except httpx.TransportError as exc:
            raise ConnectionFailed(describe_failure(exc, self.url)) from exc
        except SSEError as exc:
            raise UnexpectedAnswer(str(exc)) from exc
        finally:
            response.close()

    # the service

    def task_types(self) -> list[TaskType]:
        """The task types the service runs, with each one's parameters as JSON Schema."""
        return task_types_from_json(self._json(Call("GET", "/task-types")))

    def stats(self) -> dict[str, Any]:
        """Counts by status, queue depth, running tasks, capacity and uptime."""
        body: dict[str, Any] = self._json(Call("GET", "/stats"))
        return body

    # many tasks (``list`` shadows the builtin below this line)

    def list(self, status: str | Iterable[str] | None = None, name: str | None = None,
             limit: int | None = None, cursor: str | None = None) -> TaskPage:
        """One page of tasks, newest first; pass its ``next_cursor`` for the next page."""
        return page_from_json(self._json(list_call(status, name, limit, cursor)))

    def iter_tasks(self, status: str | Iterable[str] | None = None, name: str | None = None,
                   page_size: int | None = None) -> Iterator[TaskRecord]:
        """Every task that fits the filters, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list(status, name, page_size, cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # sending

    def _json(self, call: Call) -> Any:
        return json_body(self._send(call))

    def _send(self, call: Call) -> httpx.Response:
        """Send ``call``, again after a 429 or 503 as the retry policy allows. A streamed
        answer is returned open: the caller closes it."""
        retried, waited = 0, 0.0
        while True:
            request = self._http.build_request(call.method, call.path,
                                               **call.request_options(self.settings))
            try:
                response = self._http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                raise ConnectionFailed(describe_failure(exc, self.url)) from exc
            if response.is_success:
                return response
            if call.stream:
                response.read()
                response.close()
            delay = self.settings.retry.delay(response, retried, waited)
            if delay is None:
                raise error_from_response(response)
            log_retry(call, response, delay, retried + 1, self.settings.retry.retries)
            time.sleep(delay)  # the service's own Retry-After
            retried, waited = retried + 1, waited + delay
