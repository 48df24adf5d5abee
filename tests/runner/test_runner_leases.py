"""Leases: a runner renews those of the attempts it runs, learns of cancels through them,
stops an attempt whose lease another runner took, and takes over leases that expired."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

import pytest

from service import TaskService
from service.models import Status, Submission, TaskRecord
from service.stores import MemoryStore
from service.stores.base import ClaimRequest, Outcome
from tests.conftest import TEST_MODULES, settings
from tests.sample_tasks import gate

from .helpers import RUNNER_TASKS

LEASE = 0.3  # renewed every 0.1 s


class DurableMemoryStore(MemoryStore):
    durable = True


class PeerCancelStore(MemoryStore):
    """Cancel requests land as another process's would: this process hears nothing of them
    through ``on_change``; its runner learns of them when it renews its leases. Counts the
    renewals, so that a test can wait for some to pass."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0
        self.renewed = asyncio.Condition()

    async def request_cancel(self, task_id: str, now: float) -> TaskRecord | None:
        listener, self.on_change = self.on_change, None
        try:
            return await super().request_cancel(task_id, now)
        finally:
            self.on_change = listener

    async def renew(self, worker: str, task_ids: Collection[str], now: float, lease: float
                    ) -> dict[str, bool]:
        held = await super().renew(worker, task_ids, now, lease)
        async with self.renewed:
            self.renewals += 1
            self.renewed.notify_all()
        return held

    async def renewals_passed(self, count: int) -> None:
        async with self.renewed:
            target = self.renewals + count
            await self.renewed.wait_for(lambda: self.renewals >= target)


async def service_on(store: MemoryStore) -> TaskService:
    service = TaskService(settings(lease=LEASE), store=store)
    for module in (*TEST_MODULES, RUNNER_TASKS):
        service.register_module(module)
    await service.start()
    return service


@pytest.mark.parametrize("name", ["wait_for_release", "thread_wait_for_release"])
async def test_a_cancel_made_elsewhere_reaches_the_task_through_its_lease(name: str) -> None:
    store = PeerCancelStore()
    service = await service_on(store)
    try:
        record, _ = await service.submit(Submission(name, ["c"]))
        await gate("c").wait_started()
        requested = await service.cancel(record.id)
        assert (requested.status, requested.cancel_requested) == (Status.RUNNING, True)
        done = await service.wait(record.id, timeout=5)
        assert done.status is Status.CANCELLED
        assert done.result is None
    finally:
        await service.stop(grace=0.1)


async def test_an_attempt_longer_than_its_lease_keeps_it() -> None:
    store = PeerCancelStore()
    service = await service_on(store)
    try:
        record, _ = await service.submit(Submission("wait_for_release", ["long"]))
        await gate("long").wait_started()
        first = (await service.get(record.id)).lease_expires
        async with asyncio.timeout(5):
            await store.renewals_passed(6)  # two leases' time: reclaim ran meanwhile
        now = await service.get(record.id)
        assert now.status is Status.RUNNING
        assert first is not None
        assert now.lease_expires is not None
        assert now.lease_expires > first
        gate("long").open()
        done = await service.wait(record.id, timeout=5)
        assert (done.status, done.result, done.attempts) == (Status.SUCCEEDED, "long", 1)
    finally:
        await service.stop(grace=0.1)


@pytest.mark.parametrize("name", ["wait_for_release", "thread_wait_for_release"])
async def test_an_attempt_whose_lease_another_runner_took_stops_and_writes_nothing(
    caplog: pytest.LogCaptureFixture, name: str,
) -> None:
    store = MemoryStore()
    service = await service_on(store)
    try:
        record, _ = await service.submit(Submission(name, ["lost"]))
        await gate("lost").wait_started()
        job = service.runner.job(record.id)
        assert job is not None
        assert job.task is not None
        # this runner was paused past its lease, and a live peer took the record over
        (taken,) = await store.reclaim("peer", time.time() + 60, 60)
        with caplog.at_level(logging.WARNING, logger="offload"):
            await asyncio.wait_for(asyncio.shield(job.task), 5)  # stopped at its renewal
        assert not gate("lost").released.is_set()  # it did not run to its end
        assert service.runner.running == 0
        assert "lost its lease" in caplog.text
        kept = await service.get(record.id)
        assert (kept.status, kept.lease_owner, kept.result) == (Status.RUNNING, "peer", None)
        await store.settle(taken, "peer", Outcome(Status.SUCCEEDED, time.time(), "peer's"))
        assert (await service.wait(record.id, timeout=1)).result == "peer's"
    finally:
        await service.stop(grace=0.1)


@pytest.mark.parametrize(("kind", "name", "status", "attempts"), [
    (MemoryStore, "echo", Status.FAILED, 1),
    (DurableMemoryStore, "echo", Status.FAILED, 1),
    (DurableMemoryStore, "idempotent_echo", Status.SUCCEEDED, 2),
], ids=["memory", "durable", "durable-idempotent"])
async def test_a_live_runner_takes_over_the_expired_lease_of_a_dead_one(
    kind: type[MemoryStore], name: str, status: Status, attempts: int,
) -> None:
    store = kind()
    service = await service_on(store)
    try:
        (record,) = await store.add([TaskRecord(name=name, args=[5], created_at=time.time())])
        (record,) = await store.claim(ClaimRequest(  # before the live runner can claim it
            "dead-worker", time.time() - 100, lease=1.0))
        assert (record.status, record.lease_owner) == (Status.RUNNING, "dead-worker")
        done = await service.wait(record.id, timeout=5)  # within a renewal period
        assert (done.status, done.attempts) == (status, attempts)
        if status is Status.FAILED:
            assert done.error is not None
            assert done.error.type == "Interrupted"
            assert "its worker stopped" in done.error.message
        else:
            assert done.result == 5
    finally:
        await service.stop(grace=0.1)
