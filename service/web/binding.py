"""Offload on one app: its settings, the task service of the current serving cycle, the
token check, and the task functions that every cycle's service registers again.

A :class:`TaskService` runs once (a stopped one does not start again), while an app may be
served many times in one process (each ``app.test_app()`` of a test run). So every serving
cycle gets a fresh service, built at start with the settings read then, holding every task
registered on the app's earlier services.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quart import Quart

from ..core import TaskService
from ..errors import StoreUnavailable
from ..handles import TaskFunction
from ..models import Submission, TaskRecord
from ..schedules import Schedule
from ..settings import PREFIX, Settings
from ..stores import TaskStore
from ..workers import claim_single_worker, report_refusal
from .auth import TokenAuth

log = logging.getLogger("offload")
STORE_RETRY = 2.0  # seconds between attempts to open a task store that could not be used
TEST_GRACE = 1.0
"""Seconds running tasks get when an app with ``app.testing`` stops (its test ends), at most:
Quart's test app gives the whole shutdown 6 s, and a task still running when a test ends is
one the test no longer waits for."""


@dataclass
class Options:
    """What an :class:`~service.web.Offload` was made with, shared by all its apps (only
    ``eager`` may change, read when an app starts)."""

    settings: Settings | None
    store: TaskStore | None
    url_prefix: str
    eager: bool
    schedules: list[Schedule] = field(default_factory=list)


class CycleService(TaskService):
    """A task service for one serving cycle; what is registered on it is also kept for the
    services of the cycles after it."""

    kept: dict[str, TaskFunction] | None = None

    def register(self, task: TaskFunction) -> TaskFunction:
        registered = super().register(task)
        if self.kept is not None:  # after the registry took it: a refused task is not kept
            self.kept[task.name] = task
        return registered


class EagerService(CycleService):
    """``submit`` returns once the task has ended, like Celery's ``task_always_eager``.

    The task still runs as it would (its executor, timeout, retries), only the submission
    waits for its end; a ``delay`` is ignored (as Celery's eager mode ignores countdowns).
    """

    async def submit(self, submission: Submission, *, owner: str | None = None,
                     idempotency_key: str | None = None, request_hash: str | None = None,
                     ) -> tuple[TaskRecord, bool]:
        record, created = await super().submit(
            _now(submission), owner=owner, idempotency_key=idempotency_key,
            request_hash=request_hash)
        return await self.wait(record.id, None, owner), created

    async def submit_many(self, submissions: Sequence[Submission], *,
                          owner: str | None = None, most: int | None = None
                          ) -> list[TaskRecord]:
        records = await super().submit_many([_now(s) for s in submissions], owner=owner,
                                            most=most)
        return list(await asyncio.gather(*(self.wait(r.id, None, owner) for r in records)))


def _now(submission: Submission) -> Submission:
    return dataclasses.replace(submission, delay=None) if submission.delay else submission


class AppBinding:
    """Offload on one app (``app.extensions["offload"]``): what its routes use."""

    def __init__(self, options: Options, app: Quart) -> None:
        self.url_prefix = options.url_prefix
        self._options = options
        self._app = weakref.ref(app)
        self._kept: dict[str, TaskFunction] = {}
        self._read = _offload_values(app.config)
        self.settings = options.settings or Settings.load(app.config)
        self.service: TaskService = self._new_service(self.settings)
        """The task service of the current serving cycle (before the first start: the one
        that holds registrations, and that the first cycle runs)."""
        self._fresh = True  # self.service has not been started yet
        self.auth = TokenAuth(self.settings.api_tokens)
        self.unavailable: str | None = None
        """Why the task store cannot be used, while it cannot (shown by ``/readyz``)."""
        self._retrying: asyncio.Task[None] | None = None

    def _new_service(self, settings: Settings) -> CycleService:
        kind = EagerService if self._options.eager else CycleService
        service = kind(settings, self._options.store)
        for module in settings.task_modules:  # these follow the settings, not kept
            service.register_module(module)
        for task in list(self._kept.values()):
            service.register(task)
        for schedule in self._options.schedules:
            service.scheduler.add(schedule)
        service.kept = self._kept
        return service

    def _settings_now(self, config: Mapping[str, Any]) -> Settings:
        """The settings for a start: read again if the app's config or the environment
        changed since they were last read (a test's ``app.config[...] = ...``)."""
        if self._options.settings is not None:
            return self._options.settings
        read = _offload_values(config)
        if read != self._read:
            self._read = read
            self.settings = Settings.load(config)
        return self.settings

    async def start(self) -> None:
        """Start a serving cycle (``before_serving``)."""
        app = self._app()
        assert app is not None  # it is the app being served
        try:
            settings = self._settings_now(app.config)
            eager = isinstance(self.service, EagerService)
            if (not self._fresh or settings is not self.service.settings
                    or eager != self._options.eager):
                self.service = self._new_service(settings)
            self._fresh = False
            self.auth = TokenAuth(settings.api_tokens)
            self.unavailable = None
            if not self.service.store.shared:
                claim_single_worker(settings.store)
            await self.service.start()
        except StoreUnavailable as exc:
            # Not a silent fallback and not a dead server: /readyz says 503 with the reason,
            # and the service starts as soon as the store can be used.
            log.error("offload cannot use its task store (retrying every %gs): %s",
                      STORE_RETRY, exc)
            self.unavailable = str(exc)
            self._retrying = asyncio.create_task(self._start_when_store_is_back())
        except BaseException as exc:
            report_refusal(exc)
            raise

    async def _start_when_store_is_back(self) -> None:
        while True:
            await asyncio.sleep(STORE_RETRY)
            try:
                await self.service.start()
            except StoreUnavailable as exc:
                self.unavailable = str(exc)
                continue
            log.info("offload's task store is back: the service has started")
            self.unavailable = None
            return

    async def stop(self) -> None:
        """End the serving cycle (``after_serving``): drain, unless the server did already,
        and close the store."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
            self._retrying = None
        app = self._app()
        grace = None
        if app is not None and app.testing:
            grace = min(self.service.settings.shutdown_grace, TEST_GRACE)
        await self.service.stop(grace)


def _offload_values(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Every ``OFFLOAD_*`` value of the config and of the environment, to see a change."""
    return (*sorted((k, repr(v)) for k, v in config.items()
                    if isinstance(k, str) and k.startswith(PREFIX)),
            *sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX)))
