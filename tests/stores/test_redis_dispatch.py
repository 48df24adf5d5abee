"""The Redis store's Celery-mode half (service/stores/dispatch.py): ``claim_by_id`` starts a
record only for a message of its generation and never twice at once, and the dispatch plan
hands each due entry to one taker. A real redis-server."""

from __future__ import annotations

import asyncio
import math

import pytest

from service.models import Status
from service.rate_limits import RateLimit
from service.stores import RedisStore
from service.stores.base import Outcome, QueueBoundReached

from .contract import LEASE, NOW, claim, fetch, new, succeed


async def taken(store: RedisStore, now: float, again_at: float) -> list[str]:
    """The ids of the plan's entries due by ``now`` (no gate is closed in these tests)."""
    due = await store.take_dispatch(now, 10, again_at)
    assert due.woken == []
    return due.ids


@pytest.fixture
def store(redis_store: RedisStore) -> RedisStore:
    return redis_store


async def test_a_queued_record_is_claimed_once_for_its_generation(store: RedisStore) -> None:
    (record,) = await store.add([new()])
    await store.plan_dispatch({record.id: NOW + 5})
    seen = []
    store.on_change = lambda kind, changed: seen.append((kind, changed.status))
    first = await store.claim_by_id(record.id, 0, "w1", NOW, LEASE)
    assert first.verdict == "claimed"
    assert first.record is not None
    assert (first.record.status, first.record.attempts) == (Status.RUNNING, 1)
    assert (first.record.lease_owner, first.record.lease_expires) == ("w1", NOW + LEASE)
    assert seen == [("status", Status.RUNNING)]
    assert await store.next_dispatch() is None  # started: its message did its work
    # the same message delivered again while the attempt runs: held, not run twice
    again = await store.claim_by_id(record.id, 0, "w2", NOW + 1, LEASE)
    assert again.verdict == "held"
    assert (await fetch(store, record.id)).lease_owner == "w1"
    # a message of a later generation finds the attempt that sent it still running: held
    assert (await store.claim_by_id(record.id, 1, "w2", NOW + 1, LEASE)).verdict == "held"
    # an older or a far newer one is stale
    assert (await store.claim_by_id(record.id, 2, "w2", NOW + 1, LEASE)).verdict == "stale"


async def test_an_expired_lease_is_taken_over_at_the_same_attempt(store: RedisStore) -> None:
    (record,) = await store.add([new()])
    await store.claim_by_id(record.id, 0, "dead", NOW, LEASE)
    taken = await store.claim_by_id(record.id, 0, "w2", NOW + LEASE + 1, LEASE)
    assert taken.verdict == "taken_over"
    assert taken.record is not None
    assert (taken.record.attempts, taken.record.lease_owner) == (1, "w2")
    assert taken.record.lease_expires == NOW + 2 * LEASE + 1
    # the dead worker's settle no longer applies; the new holder's does
    late = await store.settle(taken.record, "dead", Outcome(Status.SUCCEEDED, NOW))
    assert late is None
    handed = await store.settle(taken.record, "w2", Outcome(Status.QUEUED, NOW + LEASE + 2))
    assert handed is not None
    assert handed.status is Status.QUEUED
    # now a message of generation 1 starts attempt 2; generation 0 is stale
    assert (await store.claim_by_id(record.id, 0, "w3", NOW + 50, LEASE)).verdict == "stale"
    rerun = await store.claim_by_id(record.id, 1, "w3", NOW + 50, LEASE)
    assert rerun.verdict == "claimed"
    assert rerun.record is not None
    assert rerun.record.attempts == 2


async def test_scheduled_records_start_when_due(store: RedisStore) -> None:
    (record,) = await store.add([new(scheduled_at=NOW + 10)])
    early = await store.claim_by_id(record.id, 0, "w", NOW, LEASE)
    assert early.verdict == "not_due"
    assert early.record is not None
    assert early.record.scheduled_at == NOW + 10
    due = await store.claim_by_id(record.id, 0, "w", NOW + 10, LEASE)
    assert due.verdict == "claimed"
    assert await store.next_due() is None
    counts = await store.count_by_status()
    assert (counts[Status.SCHEDULED], counts[Status.QUEUED], counts[Status.RUNNING]) == (0, 0, 1)


async def test_ended_cancelled_missing_and_limited(store: RedisStore) -> None:
    a, b, c = await store.add([new("n"), new("n"), new("n")])
    await store.request_cancel(a.id, NOW)
    await store.plan_dispatch({a.id: NOW, "x" * 24: NOW, c.id: NOW + 1})
    assert (await store.claim_by_id(a.id, 0, "w", NOW, LEASE)).verdict == "ended"
    assert (await store.claim_by_id("x" * 24, 0, "w", NOW, LEASE)).verdict == "missing"
    assert await store.next_dispatch() == NOW + 1  # ended and missing: planned no more
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE, limit=1)).verdict == "claimed"
    limited = await store.claim_by_id(c.id, 0, "w", NOW, LEASE, limit=1)
    assert limited.verdict == "limited"
    assert (await fetch(store, c.id)).status is Status.QUEUED
    await succeed(store, await fetch(store, b.id))
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE)).verdict == "ended"
    assert (await store.claim_by_id(c.id, 0, "w", NOW, LEASE, limit=1)).verdict == "claimed"


async def test_a_rate_limit_counts_the_starts_of_every_claim(store: RedisStore) -> None:
    rate = RateLimit(2, 10.0)  # at most 2 starts in any 10 s
    a, b, c = await store.add([new("n"), new("n"), new("n")])
    (first,) = await claim(store, now=NOW, rates={"n": rate})  # the runner's claim
    assert first.id == a.id
    assert (await store.claim_by_id(b.id, 0, "w", NOW + 1, LEASE, rate=rate)).verdict == \
        "claimed"
    held_back = await store.claim_by_id(c.id, 0, "w", NOW + 2, LEASE, rate=rate)
    assert held_back.verdict == "limited"
    assert held_back.retry_at == rate.next_start(NOW, NOW + 2)  # a's start + the window
    assert held_back.retry_at is not None
    assert held_back.retry_at > NOW + 10
    assert (await fetch(store, c.id)).status is Status.QUEUED
    before = math.nextafter(held_back.retry_at, -math.inf)
    assert (await store.claim_by_id(c.id, 0, "w", before, LEASE, rate=rate)).verdict == \
        "limited"
    started = await store.claim_by_id(c.id, 0, "w", held_back.retry_at, LEASE, rate=rate)
    assert started.verdict == "claimed"
    assert await store.next_start({"n": rate}, held_back.retry_at) == rate.next_start(
        NOW + 1, held_back.retry_at)  # now b's start is the 2nd newest: c's start counted


async def test_no_rate_no_limit(store: RedisStore) -> None:
    records = await store.add([new("n") for _ in range(5)])
    verdicts = [(await store.claim_by_id(r.id, 0, "w", NOW, LEASE)).verdict for r in records]
    assert verdicts == ["claimed"] * 5


async def test_claim_and_claim_by_id_never_both_start_a_record(store: RedisStore) -> None:
    records = await store.add([new() for _ in range(40)])
    by_claim, by_id = await asyncio.gather(
        claim(store, limit=40, worker="runner"),
        asyncio.gather(*(store.claim_by_id(r.id, 0, "celery", NOW, LEASE) for r in records)))
    started = [r.id for r in by_claim] + [c.record.id for c in by_id
                                          if c.verdict == "claimed" and c.record]
    assert sorted(started) == sorted(r.id for r in records)


async def test_the_dispatch_plan_hands_each_due_entry_to_one_taker(store: RedisStore) -> None:
    assert await store.next_dispatch() is None
    await store.plan_dispatch({"a": NOW + 1, "b": NOW + 2, "c": NOW + 30})
    assert await store.next_dispatch() == NOW + 1
    assert await taken(store, NOW, NOW + 100) == []
    assert await taken(store, NOW + 5, NOW + 100) == ["a", "b"]
    # taken: planned again for later, so a second taker gets none of them now
    assert await taken(store, NOW + 5, NOW + 100) == []
    assert await store.next_dispatch() == NOW + 30
    await store.dispatched(["a", "c"])
    assert await taken(store, NOW + 1000, NOW + 2000) == ["b"]
    await store.plan_dispatch({"b": NOW})  # planned again: the new time replaces the old
    assert await store.next_dispatch() == NOW
    await store.dispatched(["b"])
    assert await store.next_dispatch() is None


async def test_a_replan_never_brings_back_an_entry_that_a_worker_cleared(
        store: RedisStore) -> None:
    await store.plan_dispatch({"a": NOW, "b": NOW})
    await store.dispatched(["b"])
    await store.plan_dispatch({"a": NOW + 5, "b": NOW + 5}, planned_only=True)
    assert await taken(store, NOW + 5, NOW + 100) == ["a"]


async def test_records_and_their_plan_are_added_in_one_step(store: RedisStore) -> None:
    a, b = new(key="k"), new()
    stored = await store.add_planned([a, b], None, {a.id: NOW + 1, b.id: NOW + 2})
    assert [s.id for s in stored] == [a.id, b.id]
    assert await taken(store, NOW + 5, NOW + 100) == [a.id, b.id]
    # the same idempotency key: the stored record answers, and no entry names the new id
    again = new(key="k")
    (known,) = await store.add_planned([again], None, {again.id: NOW})
    assert known.id == a.id
    assert await taken(store, NOW + 5, NOW + 100) == []
    # refused by the queue bound: neither records nor entries
    c = new()
    with pytest.raises(QueueBoundReached):
        await store.add_planned([c], 2, {c.id: NOW})
    assert await store.get(c.id) is None
    assert await taken(store, NOW + 5, NOW + 100) == []
