"""Tasks for the stateful test of the core (tests/test_core_state_machine.py).

A *held* task waits on its :class:`Latch` until the test hands it a verdict: ``succeed``
(return the key), ``fail`` (raise ``ValueError``, not retried) or ``retry`` (raise
``ConnectionError``, retried while attempts remain). Each attempt takes one verdict, so the
test decides every attempt's end without sleeping. While an attempt waits, the latch says so
(``waiting``), which tells the test that the task is at rest.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from service import TaskContext, cancel_requested, current_task, report_progress, task

Verdict = str  # "succeed" | "fail" | "retry"
RETRIES = 2
POLL = 0.002  # how often a thread attempt looks at its latch and at cancel_requested


def _ignore() -> None:
    pass


on_change: Callable[[], None] = _ignore
"""Called (from any thread) whenever an attempt starts or stops waiting; the test points it
at its event loop."""


class Latch:
    """Verdicts for one held task, one per attempt; safe for async and thread attempts."""

    def __init__(self) -> None:
        self._verdicts: queue.SimpleQueue[Verdict] = queue.SimpleQueue()
        self._posted = asyncio.Event()  # bound to the loop of the first async waiter
        self._lock = threading.Lock()
        self._given = threading.Condition(self._lock)
        self._waiting: set[int] = set()
        self.started = threading.Event()  # some attempt has begun to wait
        self.contexts: dict[int, TaskContext] = {}  # each attempt's view of its task

    def give(self, verdict: Verdict) -> None:
        """Hand the next attempt its verdict (call from the event loop's thread)."""
        with self._given:
            self._verdicts.put(verdict)
            self._given.notify_all()
        self._posted.set()

    def waiting(self, attempt: int) -> bool:
        """True while that attempt, and no other, waits and no verdict is ready for it (an
        earlier attempt cut off in its thread may wait on until it sees its stop)."""
        with self._lock:
            return self._waiting == {attempt} and self._verdicts.empty()

    async def take(self, attempt: int) -> Verdict:
        self._mark(attempt, True)
        try:
            while True:
                try:
                    return self._verdicts.get_nowait()
                except queue.Empty:
                    self._posted.clear()
                    await self._posted.wait()
        finally:
            self._mark(attempt, False)

    def take_blocking(self, attempt: int) -> Verdict | None:
        """The verdict, or None once cancellation is requested (or the test ends)."""
        self._mark(attempt, True)
        try:
            while not abandoned.is_set():
                with self._given:  # taken and no longer waiting at once, as waiting() sees it
                    if self._verdicts.empty():
                        self._given.wait(POLL)
                    if not self._verdicts.empty():
                        self._waiting.discard(attempt)
                        return self._verdicts.get_nowait()
                if cancel_requested():
                    return None
            return None
        finally:
            self._mark(attempt, False)

    def _mark(self, attempt: int, waiting: bool) -> None:
        with self._lock:
            if waiting:
                self.contexts[attempt] = current_task()
                self._waiting.add(attempt)
            else:
                self._waiting.discard(attempt)
        if waiting:
            self.started.set()
        on_change()


latches: dict[str, Latch] = {}
abandoned = threading.Event()
"""Set at the end of a test case: thread attempts still waiting give up."""


def latch(key: str) -> Latch:
    return latches.setdefault(key, Latch())


def reset(hook: Callable[[], None] = _ignore) -> None:
    """Start a test case: fresh latches, ``hook`` as :data:`on_change`."""
    global on_change
    abandoned.clear()
    latches.clear()
    on_change = hook


def release_all() -> None:
    """End a test case: no thread attempt stays blocked, nobody is called back."""
    global on_change
    on_change = _ignore
    abandoned.set()


def _act(key: str, verdict: Verdict | None, attempt: int) -> str:
    if verdict == "succeed":
        return key
    if verdict == "fail":
        raise ValueError(f"{key} failed on attempt {attempt}")
    if verdict == "retry":
        raise ConnectionError(f"{key} attempt {attempt} hit a retryable error")
    return "saw cancel"  # a thread attempt that noticed cancellation: its result is dropped


async def _held(key: str) -> str:
    attempt = current_task().attempt
    report_progress(attempt, RETRIES + 1, "waiting for a verdict")
    return _act(key, await latch(key).take(attempt), attempt)


def _held_thread(key: str) -> str:
    attempt = current_task().attempt
    report_progress(attempt, RETRIES + 1, "waiting for a verdict")
    return _act(key, latch(key).take_blocking(attempt), attempt)


@task(retries=RETRIES, retry_on=(ConnectionError,), retry_backoff=0.001)
async def held(key: str) -> str:
    """Async: one verdict per attempt."""
    return await _held(key)


@task(retries=RETRIES, retry_on=(ConnectionError,), retry_backoff=0.001)
def held_thread(key: str) -> str:
    """Thread: one verdict per attempt; stops waiting once cancellation is requested."""
    return _held_thread(key)


@task(retries=RETRIES, retry_on=(ConnectionError,), retry_backoff=0.001, idempotent=True)
async def held_idempotent(key: str) -> str:
    """Async, safe to run again after a crash (re-queued by a durable store at shutdown)."""
    return await _held(key)


@task(retries=RETRIES, retry_on=(ConnectionError,), retry_backoff=0.001, idempotent=True)
def held_thread_idempotent(key: str) -> str:
    """Thread, safe to run again after a crash."""
    return _held_thread(key)


@task(retries=1, retry_on=(ConnectionError,), retry_backoff=60)
async def held_slow_retry(key: str) -> str:
    """Async: like ``held``, but a retry waits a minute (scheduled, counted as pending)."""
    return await _held(key)


@task
async def quick_add(a: int, b: int) -> int:
    return a + b


@task
def thread_add(a: int, b: int) -> int:
    return a + b


@task
async def quick_fail(message: str) -> None:
    raise RuntimeError(message)
