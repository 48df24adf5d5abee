"""The web side of Celery mode (``CeleryDispatch``) against a real redis-server, store and
broker, with no worker: what messages it sends for a type's closed gate. The store's
claims stand for the workers' (``claim_by_id``, as a worker calls it); the messages are
counted where the broker keeps them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis

from service.models import TaskRecord
from service.registry import Registry, TaskType
from service.scaleout.dispatcher import CeleryDispatch
from service.settings import Settings
from service.stores import RedisStore, open_store
from tests.redis_server import RedisServer
from tests.stores.contract import new, succeed

from .cluster import Deployment, waiting_messages

LIMIT = 2  # of the type "limited" below
LEASE = 30.0
RESEND = 60.0


async def limited() -> None:
    """A type that may run twice at once."""


@dataclass
class Web:
    """A web process's dispatch, never started (no dispatch pass runs but those the test
    calls), on a store and a broker of its own."""

    dispatch: CeleryDispatch
    store: RedisStore
    broker: str

    def messages(self) -> int:
        """Messages waiting with the broker."""
        return sum(waiting_messages(self.broker).values())

    async def gated(self, count: int, now: float
                    ) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """``LIMIT`` records running, and ``count`` waiting in line behind the closed gate
        (their messages dropped; it looks again at ``now``)."""
        records = await self.store.add([new("limited") for _ in range(LIMIT + count)])
        for record in records:
            await self.store.claim_by_id(record.id, 0, "w", now, LEASE, limit=LIMIT,
                                         recheck=0.0)
        running = [await self.store.get(r.id) for r in records[:LIMIT]]
        return [r for r in running if r is not None], records[LIMIT:]


@pytest.fixture
async def web(redis: RedisServer, tmp_path: Path) -> AsyncIterator[Web]:
    deployment = Deployment.on(redis, tmp_path / "runs.jsonl")
    broker = Redis.from_url(deployment.broker)
    broker.flushdb()  # the module's broker database: only this test's messages
    broker.close()
    store = open_store(deployment.store)
    assert isinstance(store, RedisStore)
    await store.open()
    registry = Registry()
    registry.add(TaskType("limited", limited, "async", concurrency=LIMIT))
    settings = Settings(store=deployment.store, celery_broker=deployment.broker,
                        celery_resend=RESEND)
    dispatch = CeleryDispatch(settings, store, registry)
    try:
        yield Web(dispatch, store, deployment.broker)
    finally:
        await dispatch.stop()
        await store.close()


async def test_a_cancel_passes_a_woken_records_turn_on_past_a_head_whose_message_is_out(
        web: Web) -> None:
    now = time.time()
    running, (a, b, c, d) = await web.gated(4, now)
    cancelled = await web.store.request_cancel(d.id, now)
    assert cancelled is not None
    web.dispatch.cancelled(cancelled)  # every slot taken: nothing to pass on
    await web.dispatch.dispatcher.settle_background()
    assert web.messages() == 0
    for record in running:  # ended on workers, which wake a and b (and send their messages)
        await succeed(web.store, record, now + 1)
    woken = await web.store.open_gate("limited", now + 1, now + RESEND, LIMIT)
    assert [r.id for r in woken] == [a.id, b.id]
    cancelled = await web.store.request_cancel(b.id, now + 2)  # before its message runs
    assert cancelled is not None
    web.dispatch.cancelled(cancelled)  # b's message revoked: Celery drops it unseen
    await web.dispatch.dispatcher.settle_background()
    assert web.messages() == 1  # c's
    claimed = await web.store.claim_by_id(c.id, 0, "w", time.time(), LEASE, limit=LIMIT)
    assert claimed.verdict == "claimed"


async def test_a_head_its_gate_wakes_is_sent_again_after_the_resend(web: Web) -> None:
    now = time.time()
    running, (head, _) = await web.gated(2, now)
    await succeed(web.store, running[0], now)  # its worker killed: no gate opened
    # the gate's time came: a dispatch pass wakes the head, long queued, and sends it
    assert await web.dispatch.dispatcher.send_due() == 0
    assert web.messages() == 1
    # lost: a dispatch pass after the resend sends it again (not after as long again as
    # it has been queued, the wait of a message sent again)
    later = await web.store.take_dispatch(time.time() + RESEND + 1, 10, time.time() + 600)
    assert head.id in later.ids + [r.id for r in later.woken]


async def test_a_released_record_is_sent_again_after_the_resend(web: Web) -> None:
    # it waited long (its creation is long past) for a dependency; just released, its
    # message is sent, and if that is lost, sent again after the resend, not after its wait
    (record,) = await web.store.add_planned([new("limited")], None, {})
    now = time.time()
    await web.store.plan_dispatch({record.id: now + 1000})  # as a waiting record's
    await web.dispatch.dispatcher.send_released([record])
    assert web.messages() == 1
    later = await web.store.take_dispatch(time.time() + RESEND + 1, 10, time.time() + 600)
    assert later.ids == [record.id]
