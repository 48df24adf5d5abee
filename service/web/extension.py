"""The Quart extension: a thin layer that serves a :class:`TaskService` over HTTP."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, overload

from quart import Quart, current_app, g, has_app_context
from typing_extensions import Unpack

from ..core import TaskService
from ..handles import Decorator, TaskFunction, TaskOptions
from ..handles import task as declare_task
from ..schedules import Schedule, ScheduleError, ScheduleOptions
from ..settings import Settings
from ..stores import TaskStore
from . import feed, schedules  # noqa: F401  (they add /events, /schedules to the API)
from .api import api
from .binding import AppBinding, Options
from .dashboard import dashboard
from .docs import docs
from .headers import optional_header
from .openapi import hide_from_host_documents
from .ops import public
from .request_ids import install as install_request_ids

DEFAULT_PREFIX = "/offload"

for _blueprint in (api, public, dashboard):
    install_request_ids(_blueprint)


class Offload:
    """Background tasks for a Quart app::

        app = Quart(__name__)
        offload = Offload(app)          # or Offload(); offload.init_app(app)

        @offload.task(timeout=30, retries=2)
        async def long_task(n: int) -> str: ...

    The HTTP API is served under ``url_prefix`` (``/offload``: ``/offload/tasks``,
    ``/offload/openapi.json``, ``/offload/docs``); ``url_prefix=""`` serves it at the root.
    Nothing else of the app changes: its JSON provider, ``make_response``, error handlers
    and its own quart-schema document stay as they were.

    Settings come from the ``settings`` argument, else from ``OFFLOAD_*`` keys of
    ``app.config``, else from ``OFFLOAD_*`` environment variables, read again when the app
    starts if they changed since ``init_app``. Every start of the app (each
    ``app.test_app()`` of a test run, say) runs a fresh :class:`TaskService` with every
    task registered so far, and tasks declared with :meth:`task` belong to every app the
    extension is initialised with.

    ``openapi=False`` leaves the document and docs page out. ``eager=True`` (or
    ``offload.eager = True`` before the app starts) makes every submission return once its
    task has ended, like Celery's ``task_always_eager``, for tests: see docs/testing.md.
    """

    def __init__(self, app: Quart | None = None, *, settings: Settings | None = None,
                 store: TaskStore | None = None, url_prefix: str = DEFAULT_PREFIX,
                 openapi: bool = True, eager: bool = False) -> None:
        self._options = Options(settings, store, url_prefix.rstrip("/"), eager)
        self._openapi = openapi
        self._declared: list[TaskFunction] = []
        self._bindings: weakref.WeakSet[AppBinding] = weakref.WeakSet()
        self._last: AppBinding | None = None
        if app is not None:
            self.init_app(app)

    @property
    def eager(self) -> bool:
        """Whether submissions return once their task has ended (see docs/testing.md).
        May be set at any time; an app takes it when it starts."""
        return self._options.eager

    @eager.setter
    def eager(self, value: bool) -> None:
        self._options.eager = value

    @property
    def url_prefix(self) -> str:
        """Where the HTTP API is served ("" for the root)."""
        return self._options.url_prefix

    def init_app(self, app: Quart) -> None:
        """Serve the API on ``app`` and run its tasks while it is served."""
        binding = AppBinding(self._options, app)
        for declared in self._declared:
            binding.service.register(declared)
        app.extensions["offload"] = binding
        prefix = self.url_prefix or None
        app.register_blueprint(api, url_prefix=prefix)
        app.register_blueprint(public, url_prefix=prefix)
        app.register_blueprint(dashboard, url_prefix=prefix)
        if self._openapi:
            app.register_blueprint(docs, url_prefix=prefix)
        hide_from_host_documents(app.view_functions)
        app.before_serving(self._starting(binding))
        app.after_serving(binding.stop)
        self._bindings.add(binding)
        self._last = binding

    def _starting(self, binding: AppBinding) -> Callable[[], Any]:
        async def start() -> None:
            self._last = binding
            await binding.start()
        return start

    def _binding(self) -> AppBinding:
        """Offload on the app in context, else on the app started (or initialised) last."""
        if has_app_context():
            binding = current_app.extensions.get("offload")
            if isinstance(binding, AppBinding) and binding in self._bindings:
                return binding
        if self._last is None:
            raise RuntimeError("Offload.init_app(app) has not been called")
        return self._last

    @property
    def service(self) -> TaskService:
        """The framework-free task service behind the extension: the one of the app in
        context, else of the app started last (a new one each time the app starts)."""
        return self._binding().service

    @property
    def unavailable(self) -> str | None:
        """Why the task store cannot be used, while it cannot (shown by ``/readyz``)."""
        return self._binding().unavailable

    @overload
    def task(self, fn: Callable[..., Any], /) -> TaskFunction: ...
    @overload
    def task(self, fn: None = None, /, **options: Unpack[TaskOptions]) -> Decorator: ...
    def task(self, fn: Callable[..., Any] | None = None, /,
             **options: Unpack[TaskOptions]) -> TaskFunction | Decorator:
        """Register a task type with every app of this extension, those initialised later
        too; see :func:`service.task` for the options."""
        def register(function: Callable[..., Any]) -> TaskFunction:
            declared = declare_task(**options)(function)
            self._declared.append(declared)
            for binding in list(self._bindings):
                binding.service.register(declared)
            return declared
        return register(fn) if fn is not None else register

    def schedule(self, name: str, task: TaskFunction | str,
                 **options: Unpack[ScheduleOptions]) -> Schedule:
        """Run a task periodically on every app of this extension (declare it before the
        app starts)::

            offload.schedule("nightly", report, cron="0 3 * * *", timezone="Europe/Paris")

        See :meth:`TaskService.schedule` for the options and docs/schedules.md."""
        schedule = Schedule.of(name, task if isinstance(task, str) else task.name, **options)
        known = {s.name: s for s in self._options.schedules}
        if known.get(name, schedule) != schedule:
            raise ScheduleError(name, "another schedule already has this name")
        if name not in known:
            self._options.schedules.append(schedule)
        for binding in list(self._bindings):
            if not binding.service.scheduler.started:
                binding.service.scheduler.add(schedule)
        return schedule

    def current_owner(self) -> str | None:
        """For your own routes: check the bearer token (401) and return the caller's owner
        id, to pass as ``owner=`` to the service. None when tokens are not configured."""
        if "offload_owner" not in g:
            g.offload_owner = self._binding().auth.owner(optional_header("Authorization"))
        owner: str | None = g.offload_owner
        return owner
