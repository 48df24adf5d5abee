"""The executors of a Celery prefork pool's child (service/runner/inline_process.py): a
``def`` task's stop is a soft limit (``cancel_requested()``), and one that has not returned
within the grace dooms the process (the hard limit), through a real runner."""

from __future__ import annotations

import asyncio
import threading
import time

from service import cancel_requested
from service.models import Status
from service.runner.inline_process import InlineThreadExecutor

from .helpers import Factory

HOLD_LIMIT = 30.0  # seconds: a thread the test forgot ends by itself


async def test_a_thread_task_that_returns_once_stopped_keeps_the_process(
        make_service: Factory) -> None:
    service = make_service()
    threads = InlineThreadExecutor(2, grace=10.0)
    service.runner.use_executor("thread", threads)

    @service.task(executor="thread", timeout=0.1)
    def heeds() -> str:
        deadline = time.monotonic() + HOLD_LIMIT
        while not cancel_requested() and time.monotonic() < deadline:
            time.sleep(0.01)
        return "stopped"

    await service.start()
    ended = await (await heeds.submit()).wait(HOLD_LIMIT)
    assert ended.status is Status.FAILED
    assert ended.error is not None
    assert ended.error.type == "TimeoutError"  # the stop's outcome, not the return value
    assert not threads.must_exit


async def test_a_thread_task_that_ignores_its_stop_dooms_the_process(
        make_service: Factory) -> None:
    service = make_service()
    threads = InlineThreadExecutor(2, grace=0.2)
    service.runner.use_executor("thread", threads)
    entered, release = threading.Event(), threading.Event()

    @service.task(executor="thread")
    def ignores() -> str:
        entered.set()
        release.wait(HOLD_LIMIT)
        return "late"

    await service.start()
    try:
        handle = await ignores.submit()
        assert await asyncio.to_thread(entered.wait, HOLD_LIMIT)
        await handle.cancel()
        ended = await handle.wait(HOLD_LIMIT)
        assert ended.status is Status.CANCELLED
        assert threads.must_exit  # its thread runs on: the worker ends the process
    finally:
        release.set()


async def test_a_cancel_keeps_its_whole_grace_while_renewals_repeat_it(
        make_service: Factory) -> None:
    # each lease renewal repeats a pending cancel; the winding up outlasts several of them
    service = make_service()
    service.runner.renew_every = 0.02
    threads = InlineThreadExecutor(2, grace=HOLD_LIMIT)
    service.runner.use_executor("thread", threads)
    entered, renewed = threading.Event(), threading.Event()
    renewals = 0
    renew = service.store.renew

    async def counting_renew(*args: object, **kwargs: object) -> object:
        nonlocal renewals
        held = await renew(*args, **kwargs)  # type: ignore[arg-type]
        if any(held.values()):  # a cancel pending: count the renewals that repeat it
            renewals += 1
            if renewals >= 5:
                renewed.set()
        return held

    service.store.renew = counting_renew  # type: ignore[method-assign]

    @service.task(executor="thread")
    def winds_up() -> str:
        entered.set()
        deadline = time.monotonic() + HOLD_LIMIT
        while not cancel_requested() and time.monotonic() < deadline:
            time.sleep(0.01)
        renewed.wait(HOLD_LIMIT)  # cleaning up while the cancel is repeated
        return "wound up"

    await service.start()
    handle = await winds_up.submit()
    assert await asyncio.to_thread(entered.wait, HOLD_LIMIT)
    await handle.cancel()
    ended = await handle.wait(HOLD_LIMIT)
    assert ended.status is Status.CANCELLED
    assert renewed.is_set()
    assert not threads.must_exit  # it returned within its grace: the process stays
