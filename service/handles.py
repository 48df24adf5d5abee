"""What user code holds: task functions (``@task``) and handles on submitted tasks."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

from typing_extensions import TypedDict, Unpack

from .errors import TaskCancelled, TaskFailed, UnknownTaskType
from .models import JSON, Status, Submission, TaskRecord
from .registry import Executor, TaskType, default_executor

if TYPE_CHECKING:
    from .core import TaskService
    from .workflows import Signature


class TaskHandle:
    """A submitted task: its id, its last known record, and ways to wait for it or stop it."""

    def __init__(self, service: TaskService, task_id: str,
                 record: TaskRecord | None = None) -> None:
        self._service = service
        self.id = task_id
        self.record = record

    @property
    def status(self) -> Status | None:
        """The status as last seen: a snapshot, updated by :meth:`refresh`, :meth:`wait`,
        :meth:`result` and :meth:`cancel` (``None`` for a handle made from an id alone)."""
        return None if self.record is None else self.record.status

    def ready(self) -> bool:
        """Whether the task had ended when last seen (Celery's ``ready()``; a snapshot)."""
        return self.record is not None and self.record.terminal

    def successful(self) -> bool:
        """Whether the task had succeeded when last seen (Celery's ``successful()``)."""
        return self.status is Status.SUCCEEDED

    def failed(self) -> bool:
        """Whether the task had failed when last seen (Celery's ``failed()``)."""
        return self.status is Status.FAILED

    async def refresh(self) -> TaskRecord:
        """Read the task's record from the store now; :class:`TaskNotFound` once it is gone."""
        self.record = await self._service.get(self.id)
        return self.record

    async def wait(self, timeout: float | None = None) -> TaskRecord:
        """Wait until the task is terminal; raise :class:`TimeoutError` if ``timeout`` passes."""
        if self.record is not None and self.record.terminal:
            return self.record  # a terminal record never changes again
        self.record = await self._service.wait(self.id, timeout)
        if not self.record.terminal:
            raise TimeoutError(f"task {self.id} is still {self.record.status}")
        return self.record

    async def result(self, timeout: float | None = None) -> JSON:
        """The task's return value, once it has one. Raises :class:`TaskFailed` or
        :class:`TaskCancelled` for a task that ended otherwise."""
        record = await self.wait(timeout)
        if record.status is Status.FAILED:
            assert record.error is not None
            raise TaskFailed(record.error)
        if record.status is Status.CANCELLED:
            raise TaskCancelled(f"task {self.id} was cancelled")
        return record.result

    async def cancel(self) -> TaskRecord:
        """Ask the task to stop: a queued one never starts, an async one is cancelled at its next
        await, a thread one sees ``cancel_requested()``, a process one is killed."""
        self.record = await self._service.cancel(self.id)
        return self.record

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id} {self.status}>"


class TaskFunction:
    """A function registered as a task. Call it to run it here and now; ``submit`` to run it
    in the background."""

    def __init__(self, task_type: TaskType) -> None:
        self.task_type = task_type
        self._service: TaskService | None = None
        functools.update_wrapper(self, task_type.fn)

    @property
    def name(self) -> str:
        return self.task_type.name

    def bind(self, service: TaskService) -> None:
        """Make ``submit`` use ``service`` (the last service that registered this task)."""
        self._service = service

    @property
    def service(self) -> TaskService:
        """The service ``submit`` uses; :class:`UnknownTaskType` if none registered it."""
        if self._service is None:
            raise self._unregistered()
        return self._service

    def s(self, *args: JSON, **kwargs: JSON) -> Signature:
        """This task with these arguments, to submit later or to put in a workflow
        (Celery's ``s``): in a chain, the previous step's result comes first."""
        from .workflows import Signature
        return Signature(self, args, kwargs)

    def si(self, *args: JSON, **kwargs: JSON) -> Signature:
        """An immutable signature (Celery's ``si``): in a chain it gets no result."""
        from .workflows import Signature
        return Signature(self, args, kwargs, immutable=True)

    def signature(self, args: tuple[JSON, ...] | list[JSON] = (),
                  kwargs: dict[str, JSON] | None = None, *, priority: int = 0,
                  timeout: float | None = None, immutable: bool = False) -> Signature:
        """A signature with options (Celery's ``signature``)."""
        from .workflows import Signature
        return Signature(self, tuple(args), kwargs or {}, priority=priority, timeout=timeout,
                         immutable=immutable)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task_type.fn(*args, **kwargs)

    def submit(self, *args: JSON, **kwargs: JSON) -> Coroutine[Any, Any, TaskHandle]:
        """Run in the background with these arguments; returns at once (Celery's ``delay``).
        Await it: ``handle = await add.submit(2, 3)``."""
        return self.submit_with(args, kwargs)  # its coroutine: one frame less per submit

    delay = submit  # Celery's name, for code moving over: ``await add.delay(2, 3)``

    def apply_async(
        self, args: tuple[JSON, ...] | list[JSON] = (), kwargs: dict[str, JSON] | None = None,
        *, countdown: float | None = None, eta: datetime | None = None, priority: int = 0,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, TaskHandle]:
        """Celery's ``apply_async``: ``countdown`` seconds from now, or at ``eta`` (an aware
        datetime); ``priority`` and ``timeout`` as in :meth:`submit_with` (higher priority
        runs first). Await it."""
        if countdown is not None and eta is not None:
            raise ValueError("give countdown or eta, not both")
        if eta is not None:
            if eta.tzinfo is None:
                raise ValueError("eta must be an aware datetime (naive times are ambiguous)")
            countdown = max(0.0, eta.timestamp() - time.time())
        return self.submit_with(args, kwargs, delay=countdown, priority=priority,
                                timeout=timeout)

    async def submit_with(
        self, args: tuple[JSON, ...] | list[JSON] = (), kwargs: dict[str, JSON] | None = None,
        *, delay: float | None = None, priority: int = 0, timeout: float | None = None,
    ) -> TaskHandle:
        """``submit`` with options (Celery's ``apply_async``)."""
        if self._service is None:
            raise self._unregistered()
        kwargs = kwargs or {}
        submission = Submission(self.name, list(args), kwargs, delay, priority, timeout)
        record, _ = await self._service.submit(submission)
        return TaskHandle(self._service, record.id, record)

    async def map(self, items: list[tuple[JSON, ...]]) -> list[TaskHandle]:
        """Submit one task per argument tuple, all or none (one store write)."""
        if self._service is None:
            raise self._unregistered()
        submissions = [Submission(self.name, list(item)) for item in items]
        records = await self._service.submit_many(submissions)
        return [TaskHandle(self._service, r.id, r) for r in records]


    def _unregistered(self) -> UnknownTaskType:
        return UnknownTaskType(self.name, f"task type {self.name!r} is not registered with a task "
                               "service: list its module in OFFLOAD_TASK_MODULES, declare it "
                               "with @offload.task, or pass it to TaskService.register()")


class TaskOptions(TypedDict, total=False):
    """Options of ``@task``; every one may be left out."""

    name: str
    executor: Executor
    timeout: float | None
    retries: int
    retry_on: tuple[type[BaseException], ...]
    retry_backoff: float | None
    concurrency: int | None
    rate_limit: str | int | None
    idempotent: bool


Decorator = Callable[[Callable[..., Any]], TaskFunction]


@overload
def task(fn: Callable[..., Any], /) -> TaskFunction: ...
@overload
def task(fn: None = None, /, **options: Unpack[TaskOptions]) -> Decorator: ...
def task(fn: Callable[..., Any] | None = None, /,
         **options: Unpack[TaskOptions]) -> TaskFunction | Decorator:
    """Declare a task in a module without a service at hand (like Celery's ``shared_task``);
    a service picks it up with ``register_module`` (or ``OFFLOAD_TASK_MODULES``).

    ``async def`` functions run on the event loop, plain ``def`` ones in a thread pool;
    ``executor="process"`` runs a plain ``def`` in a worker process that can be killed.
    Options: ``name``, ``executor``, ``timeout`` (seconds), ``retries``, ``retry_on``
    (exception types worth a retry), ``retry_backoff`` (first delay, seconds; doubles each
    time, with jitter), ``concurrency`` (at most this many running at once),
    ``rate_limit`` (at most N starts in a period, retries included: ``"10/m"``, ``"5/s"``,
    ``"100/h"``, ``"1/5s"``; a whole number is per second) and ``idempotent`` (safe to
    run again after a crash).
    """
    def declare(function: Callable[..., Any]) -> TaskFunction:
        executor = options.get("executor") or default_executor(function)
        settings = {k: v for k, v in options.items() if k not in ("name", "executor")}
        task_type = TaskType(name=options.get("name") or function.__name__, fn=function,
                             executor=executor, **settings)  # type: ignore[arg-type]
        return TaskFunction(task_type)
    return declare(fn) if fn is not None else declare


def collect_tasks(module: ModuleType) -> list[TaskFunction]:
    """The tasks a module defines (not those it merely imports)."""
    found = []
    for _, value in inspect.getmembers(module, lambda v: isinstance(v, TaskFunction)):
        if value.task_type.fn.__module__ == module.__name__:
            found.append(value)
    return found


async def gather_results(handles: list[TaskHandle], timeout: float | None = None) -> list[JSON]:
    """The results of several tasks, in order."""
    return list(await asyncio.gather(*(h.result(timeout) for h in handles)))
