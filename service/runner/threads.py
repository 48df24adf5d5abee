"""A thread pool whose threads never hold the process at exit."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
_WorkItem = tuple[Future[Any], Callable[[], Any]]


class DaemonThreadPool(Executor):
    """Like :class:`~concurrent.futures.ThreadPoolExecutor`, but with daemon threads.

    ``ThreadPoolExecutor`` joins its threads when the interpreter exits, so one task that
    never returns (and never checks ``cancel_requested``) would keep a stopped server alive
    long past Hypercorn's ``shutdown_timeout``. Its record is already marked ``Interrupted``
    by then; the thread may simply die with the process.
    """

    def __init__(self, max_workers: int, name: str = "offload",
                 initializer: Callable[[], object] | None = None) -> None:
        self._max_workers = max_workers
        self._name = name
        self._initializer = initializer  # run first in each thread
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a closed thread pool")
            future: Future[T] = Future()
            self._work.put((future, functools.partial(fn, *args, **kwargs)))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                self._start_thread()
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                self._cancel_waiting()
            for _ in self._threads:
                self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._serve, daemon=True,
                                  name=f"{self._name}-{len(self._threads)}")
        thread.start()
        self._threads.append(thread)

    def _cancel_waiting(self) -> None:
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()

    def _serve(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to the awaiting coroutine, not lost
                    future.set_exception(exc)
            del item, future, call  # drop references to the task's result before idling
            self._idle.release()
