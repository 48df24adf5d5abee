"""The daemon thread pool behind thread tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.runner.threads import DaemonThreadPool


async def test_runs_calls_and_returns_results_and_errors() -> None:
    pool = DaemonThreadPool(2)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(pool, pow, 2, 10) == 1024
    with pytest.raises(ZeroDivisionError):
        await loop.run_in_executor(pool, divmod, 1, 0)
    pool.shutdown()


def test_threads_are_daemons_and_bounded() -> None:
    pool = DaemonThreadPool(2)
    gate = threading.Event()
    names: list[str] = []

    def hold() -> bool:
        names.append(threading.current_thread().name)
        return threading.current_thread().daemon and gate.wait(10)

    futures = [pool.submit(hold) for _ in range(5)]
    gate.set()
    assert all(f.result(10) for f in futures)
    assert len(set(names)) <= 2
    pool.shutdown()


def test_shutdown_cancels_waiting_work_and_refuses_more() -> None:
    pool = DaemonThreadPool(1)
    started, gate = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(10)

    running = pool.submit(hold)
    assert started.wait(10)
    waiting = pool.submit(pow, 2, 2)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(10) is True
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)


def test_an_initializer_runs_first_in_each_thread_of_the_pool() -> None:
    initialized: list[int] = []
    pool = DaemonThreadPool(2, initializer=lambda: initialized.append(threading.get_ident()))
    gate = threading.Event()

    def hold() -> int:
        gate.wait(10)
        return threading.get_ident()

    futures = [pool.submit(hold) for _ in range(2)]
    gate.set()
    ran_in = {f.result(10) for f in futures}
    assert sorted(initialized) == sorted(ran_in)  # once per thread, in that thread
    pool.shutdown()
