"""The runner's own steps: a store that fails under it, leases (renewed, lost, reclaimed),
a cancel that lands between a claim and the attempt's first step, a task that cancels
itself, and how much of the loop a flood of short tasks may take."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest

from service import TaskService, current_task
from service.demo import add
from service.models import Status, Submission, TaskRecord
from service.stores import MemoryStore
from service.stores.base import ClaimRequest, Outcome
from tests import sample_tasks as st
from tests.conftest import TEST_MODULES, settings
from tests.sample_tasks import gate
from tests.stores.copying import CopyingStore

from .helpers import Factory, started

# -- a store that fails -------------------------------------------------------------------


class BrokenSettleStore(MemoryStore):
    """Fails to settle one task's attempts as one status: an internal error, not the task's."""

    def __init__(self, name: str, status: Status) -> None:
        super().__init__()
        self.broken = (name, status)

    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        if (record.name, outcome.status) == self.broken:
            raise OSError("disk on fire")
        return await super().settle(record, worker, outcome)


def service_on(store: MemoryStore, **overrides: Any) -> TaskService:
    service = TaskService(settings(**overrides), store=store)
    for module in TEST_MODULES:
        service.register_module(module)
    return service


@pytest.mark.parametrize(("name", "args", "status"), [
    ("echo", ["x"], Status.SUCCEEDED), ("flaky", [2], Status.SCHEDULED),
])
async def test_internal_crash_is_logged_frees_the_slot_and_ends_the_task(
    caplog: pytest.LogCaptureFixture, name: str, args: list[Any], status: Status,
) -> None:
    service = service_on(BrokenSettleStore(name, status), max_concurrency=1)
    await service.start()
    try:
        with caplog.at_level(logging.ERROR, logger="offload"):
            bystander, _ = await service.submit(Submission("wait_for_release", ["by"]))
            submitted, _ = await service.submit(Submission(name, args))
            await gate("by").wait_started()
            gate("by").open()
            async with asyncio.timeout(3):  # its waiters hear of its end (no 30 s wait)
                broken = await service.handle(submitted.id).wait(timeout=30)
            after = await add.submit(1, 2)
            assert await after.result(timeout=5) == 3  # the only slot was given back
        assert broken.status is Status.FAILED  # never left running
        assert broken.error is not None
        assert broken.error.type == "Interrupted"
        assert (await service.get(bystander.id)).status is Status.SUCCEEDED
        stats = await service.stats()
        assert (stats["queue_depth"], stats["running"]) == (0, 0)
        crash_logs = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
        assert len(crash_logs) == 1, caplog.text
        assert submitted.id in crash_logs[0]  # it names the task whose path broke
        assert bystander.id not in crash_logs[0]
        assert "disk on fire" in caplog.text
    finally:
        await service.stop(grace=0.1)


class FlakyStore(MemoryStore):
    """Its first call of one method fails, as a database may for a moment."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method
        self.failures = 0

    def _fail_once(self, method: str) -> None:
        if method == self.method and not self.failures:
            self.failures += 1
            raise OSError("database is busy")

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        self._fail_once("claim")
        return await super().claim(request)

    async def next_due(self) -> float | None:
        self._fail_once("next_due")
        return await super().next_due()


@pytest.mark.parametrize("method", ["claim", "next_due"])
async def test_a_store_failure_while_claiming_is_logged_and_tried_again(
    caplog: pytest.LogCaptureFixture, method: str,
) -> None:
    store = FlakyStore(method)
    service = service_on(store)
    with caplog.at_level(logging.ERROR, logger="offload"):
        await service.start()
        try:
            record, _ = await service.submit(Submission("add", [2, 3]))
            done = await service.wait(record.id, timeout=5)  # no other wake-up comes
        finally:
            await service.stop(grace=0.1)
    assert done.status is Status.SUCCEEDED
    assert store.failures == 1
    assert "claiming tasks from the store failed" in caplog.text


# -- a cancel between a claim and the attempt's first step ----------------------------------


class CancelDuringClaimStore(CopyingStore):
    """A store that keeps records elsewhere (copies), where the front's cancel of a task
    lands after the claim that took it was committed and before the runner has its answer."""

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        claimed = await super().claim(request)
        for record in claimed:
            if record.name == "wait_for_release":
                await self.request_cancel(record.id, time.time())
        return claimed


async def test_a_cancel_that_lands_while_the_claim_returns_stops_the_task() -> None:
    service = service_on(CancelDuringClaimStore())  # type: ignore[arg-type]
    await service.start()
    try:
        # one task first: the runner's first lease renewal (which would see the cancel
        # request, 3 s early) has passed before the race below
        assert await (await add.submit(1, 1)).result(timeout=5) == 2
        record, _ = await service.submit(Submission("wait_for_release", ["never"]))
        done = await service.wait(record.id, timeout=2)  # well before a lease renewal
        assert done.status is Status.CANCELLED
        assert done.attempts == 1
        assert not gate("never").started.is_set()  # its code never ran
        assert await (await add.submit(1, 1)).result(timeout=5) == 2
        assert service.runner.running == 0
    finally:
        await service.stop(grace=0.1)


class ClaimSignalStore(MemoryStore):
    """Sets ``claimed`` inside its claim: whoever waits on it runs before the claimed
    attempts take their first step (asyncio runs callbacks in the order they were made)."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed = asyncio.Event()

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        records = await super().claim(request)
        if records:
            self.claimed.set()
        return records


async def test_a_cancel_before_the_attempts_first_step_ends_it_quietly_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ClaimSignalStore()
    service = service_on(store, max_concurrency=1)
    await service.start()
    try:
        record, _ = await service.submit(Submission("record_order", ["never"]))
        events = service.hub.subscribe(record.id)
        await store.claimed.wait()
        job = service.runner.job(record.id)
        assert job is not None  # claimed and handed to its task, which has not begun
        assert (job.in_code, job.stop_reason) == (False, None)
        await service.cancel(record.id)
        done = await service.wait(record.id, timeout=5)
        assert done.status is Status.CANCELLED
        assert done.attempts == 1
        assert st.execution_order == []
        seen = [(e.task["status"], e.task["cancel_requested"]) async for e in events
                if e.kind == "status"]
        assert seen == [("running", False), ("running", True), ("cancelled", True)], seen
        after, _ = await service.submit(Submission("add", [2, 2]))  # the slot came back
        assert (await service.wait(after.id, timeout=5)).result == 4
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await service.stop(grace=0.1)


class HeldRetrySettleStore(MemoryStore):
    """A store whose settle of a retry waits until the test lets it go (as a database may)."""

    def __init__(self) -> None:
        super().__init__()
        self.saving_retry = asyncio.Event()
        self.release = asyncio.Event()

    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        if outcome.status is Status.SCHEDULED and not self.release.is_set():
            self.saving_retry.set()
            await self.release.wait()
        return await super().settle(record, worker, outcome)


async def test_cancel_while_a_retry_is_being_settled() -> None:
    store = HeldRetrySettleStore()
    service = service_on(store)
    await service.start()
    try:
        record, _ = await service.submit(Submission("flaky", [3]))
        async with asyncio.timeout(5):
            await store.saving_retry.wait()
        cancelled = await service.cancel(record.id)
        assert (cancelled.status, cancelled.cancel_requested) == (Status.RUNNING, True)
        store.release.set()
        done = await service.wait(record.id, timeout=5)
        assert done.status is Status.CANCELLED  # the retry became the cancel it now is
        assert done.attempts == 1
        assert (await service.stats())["queue_depth"] == 0
        again, _ = await service.submit(Submission("echo", [2]))  # the books still balance
        assert (await service.wait(again.id, timeout=5)).result == 2
        stats = await service.stats()
        assert (stats["queue_depth"], stats["running"]) == (0, 0)
    finally:
        store.release.set()
        await service.stop(grace=0)


# -- a task that cancels itself -------------------------------------------------------------


async def test_a_task_that_cancels_itself_leaves_the_next_task_alone(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_concurrency=1)

    async def cancel_myself() -> int:
        await service.cancel(current_task().task_id)
        return 1  # no await after the cancel: it must not land in the next task

    async def after() -> str:
        await asyncio.sleep(0)
        return "ok"

    first = await service.task(name="cancel_myself")(cancel_myself).submit()
    nexts = [await service.task(name="after")(after).submit() for _ in range(2)]
    assert (await first.wait(5)).status is Status.CANCELLED
    assert [await handle.result(5) for handle in nexts] == ["ok", "ok"]
    assert service.runner.running == 0


async def test_a_task_that_cancels_itself_is_cancelled_at_its_next_await(
    make_service: Factory,
) -> None:
    service = await started(make_service)
    reached = []

    async def cancel_then_wait() -> None:
        await service.cancel(current_task().task_id)
        await asyncio.Event().wait()
        reached.append("after the await")

    handle = await service.task(name="cancel_then_wait")(cancel_then_wait).submit()
    assert (await handle.wait(5)).status is Status.CANCELLED
    assert reached == []


async def test_a_task_that_survives_its_timeout_can_still_be_cancelled(
    make_service: Factory,
) -> None:
    service = await started(make_service)
    in_cleanup = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # the timeout's cancel, swallowed: a slow cleanup
            in_cleanup.set()
            await asyncio.Event().wait()

    handle = await service.task(name="stubborn", timeout=0.05)(stubborn).submit()
    await asyncio.wait_for(in_cleanup.wait(), 5)
    await handle.cancel()  # a second stop: a second cancel reaches the cleanup
    record = await handle.wait(5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TimeoutError"  # the first reason stays the reason


# -- a flood of short tasks ------------------------------------------------------------------


async def test_a_flood_of_short_tasks_lets_the_loop_run_other_callbacks(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_queue=5_000, max_concurrency=4)
    records = [(await service.submit(Submission("add", [i, 1])))[0] for i in range(5_000)]
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: seen.append(sum(r.terminal for r in records)))
    await service.wait(records[-1].id, timeout=60)
    assert len(seen) == 1
    assert seen[0] < len(records)  # it ran while the flood was still going
    assert all(r.result == i + 1 for i, r in enumerate(records))


async def test_one_pass_of_the_loop_ends_at_most_one_attempt_per_slot(
    make_service: Factory,
) -> None:
    # Each attempt is a task of its own, started by the dispatcher only into a free slot:
    # one pass of the loop can finish at most max_concurrency of them, never a run of
    # thousands on one slot.
    service = await started(make_service, max_queue=5_000, max_concurrency=100)
    records = [(await service.submit(Submission("add", [i, 1])))[0] for i in range(5_000)]
    finished_by_pass: list[int] = []
    loop = asyncio.get_running_loop()

    def count() -> None:
        finished_by_pass.append(sum(r.terminal for r in records))
        if finished_by_pass[-1] < len(records):
            loop.call_soon(count)

    loop.call_soon(count)
    await service.wait(records[-1].id, timeout=60)
    steps = [b - a for a, b in itertools.pairwise(finished_by_pass)]
    assert max(steps) <= 100, max(steps)
    assert sum(steps) == len(records) - finished_by_pass[0]


def test_tracebacks_are_formatted_without_parsing_source() -> None:
    # Python 3.11 draws ^^^ markers by parsing source with ast, which is not thread-safe.
    import traceback as tb

    from service.runner.outcome import format_traceback

    def boom() -> None:
        raise ValueError("bad")

    try:
        boom()
    except ValueError as exc:
        caught = exc
    original = tb._extract_caret_anchors_from_line_segment  # type: ignore[attr-defined]
    calls: list[object] = []
    tb._extract_caret_anchors_from_line_segment = lambda s: calls.append(s)  # type: ignore
    try:
        text = format_traceback(caught)
    finally:
        tb._extract_caret_anchors_from_line_segment = original  # type: ignore[attr-defined]
    assert calls == []
    assert text.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("bad")' in text
    assert text.endswith("ValueError: bad\n")
