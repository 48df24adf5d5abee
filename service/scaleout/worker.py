"""The worker side of Celery mode: Offload's part of one Celery worker process.

Each process that runs tasks (a prefork pool's child, or the worker itself with the
``threads`` or ``solo`` pool) has one :class:`WorkerHost`: an event loop in a thread of
its own, the store, and a :class:`~service.runner.runner.Runner` that claims nothing of its
own accord. A Celery task hands it a record's id; the host starts that record with
``claim_by_id`` and runs it as the in-process runner does (the same executors, timeouts,
retries, progress and cancel), renewing its lease meanwhile. The lease renewal is also how
a cancel reaches a running task, every ``CANCEL_CHECK`` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Celery

from ..handles import collect_tasks
from ..metrics import Metrics
from ..models import Status, TaskRecord
from ..registry import Registry
from ..runner.attempt import interrupted
from ..runner.inline_process import InlineProcessExecutor, InlineThreadExecutor
from ..runner.process_worker import lower_priority
from ..runner.runner import Runner
from ..settings import DEMO_MODULE, Settings
from ..stores import open_store
from ..stores.base import ChangeKind, TaskStore
from ..stores.dispatch import RECHECK, ClaimById, DispatchStore
from .dispatcher import Dispatcher
from .front import WorkerFront
from .publisher import Publisher

log = logging.getLogger("offload.celery")
T = TypeVar("T")
CANCEL_CHECK = 0.5  # seconds between lease renewals, which report cancel requests
HELD_RECHECK = 1.0  # seconds before a message whose sender's attempt settles looks again
HELD_MARGIN = 0.05  # seconds past a lease's end before a held message looks again
STOP_TIMEOUT = 30.0
DOOMED_EXIT = 70  # the exit code of a pool process ended to stop its process task


def load_registry(settings: Settings) -> Registry:
    """The task types of ``OFFLOAD_TASK_MODULES`` (the demo module if none is named)."""
    registry = Registry()
    for module_name in settings.task_modules or (DEMO_MODULE,):
        for task in collect_tasks(importlib.import_module(module_name)):
            registry.add(task.task_type)
    if settings.rate_limits:  # as the web processes do (TaskService.start)
        registry.override_rate_limits(dict(settings.rate_limits))
    return registry


class WorkerHost:
    """Runs the records that Celery messages name, in this process."""

    def __init__(self, settings: Settings, registry: Registry, app: Celery,
                 inline_process: bool) -> None:
        self.settings = settings
        self.registry = registry
        self.app = app
        self.inline = InlineProcessExecutor(functools.partial(
            lower_priority, settings.process_nice, settings.process_idle_priority)
        ) if inline_process else None
        self.threads = InlineThreadExecutor(settings.thread_workers,
                                            settings.celery_thread_grace
                                            ) if inline_process else None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="offload-worker-loop")
        self._serving: set[str] = set()
        self._released: list[TaskRecord] = []
        self._store: TaskStore | None = None
        self._plans: DispatchStore | None = None  # the same store, as a DispatchStore
        self._runner: Runner | None = None
        self._dispatcher: Dispatcher | None = None
        self._front: WorkerFront | None = None

    def start(self) -> None:
        self._thread.start()
        self._call(self._open())

    def _call(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    async def _open(self) -> None:
        store = open_store(self.settings.store)
        if not isinstance(store, DispatchStore):
            raise ValueError(f"Celery workers need OFFLOAD_STORE=redis://…, not "
                             f"{self.settings.store!r}")
        store.on_change = self._on_change
        await store.open()
        runner = Runner(store, self.registry, Metrics(dict), self.settings, claiming=False)
        runner.renew_every = min(runner.renew_every, CANCEL_CHECK)
        if self.inline is not None and self.threads is not None:
            runner.use_executor("process", self.inline)
            runner.use_executor("thread", self.threads)
        dispatcher = Dispatcher(store, store, Publisher(self.app), self.settings.celery_resend)
        runner.requeuing = dispatcher.requeue
        runner.start(dispatch=False)
        self._store, self._plans = store, store
        self._runner, self._dispatcher = runner, dispatcher
        self._front = await self._open_front()

    async def _open_front(self) -> WorkerFront:
        """What ``other.submit()`` in a task here uses: the task modules' functions bound
        to a front of this process (see :mod:`.front`)."""
        front = WorkerFront(self.settings)
        for module_name in self.settings.task_modules or (DEMO_MODULE,):
            front.register_module(module_name)
        await front.start()
        return front

    def run(self, task_id: str, attempts: int, name: str) -> float | None:
        """Handle one message (blocking the calling thread until the attempt is settled):
        None when done with it, or the seconds after which it must be looked at again."""
        later = self._call(self._serve(task_id, attempts, name))
        if self._must_exit():
            self._settle_before_exit()
        if self.inline is not None and self.inline.must_exit:
            log.warning("task %s: its process task was stopped; ending this pool process "
                        "(Celery starts another)", task_id)
            os._exit(DOOMED_EXIT)
        if self.threads is not None and self.threads.must_exit:
            log.warning("task %s: its thread task did not return within "
                        "OFFLOAD_CELERY_THREAD_GRACE after it was stopped; ending this pool "
                        "process (Celery starts another)", task_id)
            os._exit(DOOMED_EXIT)
        return later

    def _settle_before_exit(self) -> None:
        """Send the messages this process still sends (the records it woke) before it is
        ended; never keeps it from being ended."""
        assert self._dispatcher is not None
        try:
            self._call(self._dispatcher.settle_background(), STOP_TIMEOUT)
        except Exception as exc:
            log.warning("messages not sent before this pool process ends (a web "
                        "process sends them again from the store's dispatch plan): %s", exc)

    def _must_exit(self) -> bool:
        return ((self.inline is not None and self.inline.must_exit)
                or (self.threads is not None and self.threads.must_exit))

    async def _serve(self, task_id: str, attempts: int, name: str) -> float | None:
        assert self._plans is not None
        assert self._runner is not None
        limit = self.registry.concurrency_limits().get(name)
        rate = self.registry.rate_limits().get(name)
        while True:
            now = time.time()
            claim = await self._plans.claim_by_id(
                task_id, attempts, self._runner.worker, now, self.settings.lease, limit,
                rate, recheck=RECHECK, resend=self.settings.celery_resend)
            record = claim.record
            if claim.verdict == "claimed" and record is not None:
                self._hand_on(claim.hand_on)
                await self._run(record)
                return None
            if claim.verdict == "taken_over" and record is not None:
                settled = await self._take_over(record)
                if settled is None or settled.status is not Status.QUEUED:
                    await self._open_gate(record.name)
                    return None
                attempts = settled.attempts  # handed back: run it again here, now
                continue
            return await self._later(claim, attempts, name, now)

    async def _later(self, claim: ClaimById, attempts: int, name: str, now: float
                     ) -> float | None:
        """What a message that cannot start its record now does."""
        assert self._plans is not None
        record = claim.record
        if claim.verdict in ("ended", "missing"):  # its turn, had it one, passes on (the
            await self._open_gate(name)  # canceller's does too, unless it was lost)
            return None
        if record is None or claim.verdict == "stale":
            return None
        if claim.verdict == "held":  # never twice at once: look again, at its lease's end
            lease_left = (record.lease_expires or now) - now + HELD_MARGIN
            if record.attempts == attempts:  # the attempt that sent it, settling: soon
                lease_left = min(lease_left, HELD_RECHECK)
            # its own attempt runs elsewhere (a copy, or a redelivery): only an expired
            # lease lets it take over, and a live one is renewed, so sooner is no use
            return max(HELD_MARGIN, lease_left)
        if claim.verdict in ("limited", "gated"):
            self._hand_on(claim.hand_on)  # those in the room, if idle, start first
            return None  # its type's gate in the store wakes it when its turn comes
        await self._plans.plan_dispatch({record.id: record.scheduled_at or now})  # not_due
        return None

    async def _run(self, record: TaskRecord) -> None:
        assert self._runner is not None
        assert self._dispatcher is not None
        assert self._plans is not None
        self._serving.add(record.id)
        try:
            await self._runner.run_claimed(record)
        finally:
            self._serving.discard(record.id)
        await self._open_gate(record.name)
        released, self._released = self._released, []
        if released:  # records that waited for this one: theirs are sent from here
            await self._dispatcher.send_released(released)

    def _hand_on(self, records: tuple[TaskRecord, ...]) -> None:
        """Send the messages of the records a start under a closed gate woke (in the
        background: the store has planned them, so a lost send only delays them)."""
        if records:
            assert self._dispatcher is not None
            self._dispatcher.spawn(self._dispatcher.send(records, replan=False))

    async def _open_gate(self, name: str) -> None:
        """A task of ``name`` ended here (or its message found it ended): if it is of a
        type with a concurrency limit whose gate is closed, the records that may start
        now are woken, their messages sent from here (awaited: this pool process may be
        ended right after)."""
        limit = self.registry.concurrency_limits().get(name)
        if limit is None:
            return
        assert self._dispatcher is not None
        try:
            await self._dispatcher.open_gate(name, limit, self.registry.rate_limits().get(name))
        except Exception as exc:
            log.debug("opening the gate of %s failed: %s", name, exc)

    async def _take_over(self, record: TaskRecord) -> TaskRecord | None:
        assert self._store is not None
        assert self._runner is not None
        outcome = interrupted(record, self.registry.is_idempotent(record.name),
                              self._store.durable, "its worker stopped while it ran")
        log.warning("task %s %s: its worker died; %s", record.name, record.id,
                    "running it again" if outcome.status is Status.QUEUED else "marked failed")
        return await self._store.settle(record, self._runner.worker, outcome)

    def _on_change(self, kind: ChangeKind, record: TaskRecord) -> None:
        # queued here, never started, not the record being served: released by a settle
        if (kind == "status" and record.status is Status.QUEUED and record.attempts == 0
                and record.id not in self._serving):
            self._released.append(record)

    def stop(self) -> None:
        """Drain the runner (the shutdown grace) and close the store."""
        if self._thread.is_alive():
            try:
                self._call(self._close(), STOP_TIMEOUT + self.settings.shutdown_grace)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(STOP_TIMEOUT)

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.drain(self.settings.shutdown_grace)
        if self._front is not None:
            await self._front.stop()
        if self._dispatcher is not None:
            await self._dispatcher.settle_background()
            self._dispatcher.publisher.close()
        if self._store is not None:
            await self._store.close()
