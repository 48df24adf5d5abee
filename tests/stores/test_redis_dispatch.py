"""The Redis store's Celery-mode half (service/stores/dispatch.py): ``claim_by_id`` starts a
record only for a message of its generation and never twice at once, and the dispatch plan
hands each due entry to one taker. A real redis-server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.models import Status, TaskRecord
from service.rate_limits import RateLimit
from service.stores import RedisStore, open_store
from service.stores.base import Outcome, QueueBoundReached
from tests.redis_server import RedisServer, fresh_prefix

from .contract import LEASE, NOW, claim, fetch, new, succeed


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    opened = open_store(f"{redis_server.url}?prefix={fresh_prefix()}")
    assert isinstance(opened, RedisStore)
    await opened.open()
    yield opened
    await opened.close()


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
    assert await store.take_dispatch(NOW, 10, NOW + 100) == []
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == ["a", "b"]
    # taken: planned again for later, so a second taker gets none of them now
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == []
    assert await store.next_dispatch() == NOW + 30
    await store.dispatched(["a", "c"])
    assert await store.take_dispatch(NOW + 1000, 10, NOW + 2000) == ["b"]
    await store.plan_dispatch({"b": NOW})  # planned again: the new time replaces the old
    assert await store.next_dispatch() == NOW
    await store.dispatched(["b"])
    assert await store.next_dispatch() is None


async def test_a_rate_limited_type_starts_in_queue_order_one_message_at_a_time(
        store: RedisStore) -> None:
    rate = RateLimit(1, 10.0)
    a, b, c, d = await store.add([new("n"), new("n"), new("n", priority=5), new("n")])
    await store.plan_dispatch({r.id: NOW + 60 for r in (a, b, c, d)})
    assert (await store.claim_by_id(a.id, 0, "w", NOW, LEASE, rate=rate)).verdict == "claimed"
    held = await store.claim_by_id(d.id, 0, "w", NOW + 1, LEASE, rate=rate)
    assert held.verdict == "limited"
    # d's message is done with: the gate stands for it, due when the rate allows a start
    first = rate.next_start(NOW, NOW + 1)
    assert first is not None
    gate_at = await store.next_dispatch()
    assert gate_at is not None
    assert first <= gate_at < first + 1e-9
    assert await store.take_dispatch(NOW + 9, 10, NOW + 100) == []
    # another message of the type finds the gate closed and c first in line: dropped
    assert (await store.claim_by_id(b.id, 0, "w", NOW + 11, LEASE, rate=rate)).verdict == \
        "gated"
    # c's message came while the rate allowed no start: dropped too; no message is out
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 5, LEASE, rate=rate)).verdict == \
        "limited"
    started = []
    for _ in range(3):  # the gate wakes the lane's head alone, when a start is allowed
        at = await store.next_dispatch()
        assert at is not None
        woken = await store.take_dispatch(at, 10, at + 100)
        assert len(woken) == 1
        claimed = await store.claim_by_id(woken[0], 0, "w", at, LEASE, rate=rate)
        assert (claimed.verdict, claimed.hand_on) == ("claimed", ())
        started.append(woken[0])
        after = await store.next_dispatch()  # one start per window
        assert after is None or after >= at + rate.window
    assert started == [c.id, b.id, d.id]  # priority first, then first in first out
    assert await store.next_dispatch() is None  # the lane is empty: no gate, no plan


async def test_a_concurrency_limited_type_opens_its_gate_when_one_ends(
        store: RedisStore) -> None:
    a, b, c = await store.add([new("n"), new("n"), new("n")])
    assert (await store.claim_by_id(a.id, 0, "w", NOW, LEASE, limit=1)).verdict == "claimed"
    assert (await store.claim_by_id(c.id, 0, "w", NOW, LEASE, limit=1)).verdict == "limited"
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE, limit=1)).verdict == "limited"
    assert await store.next_dispatch() == NOW + 5  # looked at again by itself, later
    assert await store.open_gate("other", NOW, NOW + 60) == []  # no closed gate: nothing
    assert await store.open_gate("n", NOW, NOW + 60, limit=1) == []  # still full
    await succeed(store, await fetch(store, a.id))
    (head,) = await store.open_gate("n", NOW, NOW + 60, limit=1)  # a slot: the head, now
    assert (head.id, head.status) == (b.id, Status.QUEUED)
    assert await store.next_dispatch() == NOW + 5
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == []  # b's message is out
    assert await store.take_dispatch(NOW + 60, 10, NOW + 100) == [b.id]  # unless lost
    started = await store.claim_by_id(b.id, 0, "w", NOW + 61, LEASE, limit=1, recheck=2)
    assert (started.verdict, started.hand_on) == ("claimed", ())  # full again
    assert await store.next_dispatch() == NOW + 63  # c looks again by itself


async def test_slots_freed_together_wake_as_many_records_never_one_twice(
        store: RedisStore) -> None:
    records = await store.add([new("n", priority=p) for p in (0, 0, 0, 5, 0, 0)])
    for record in records[:3]:
        claimed = await store.claim_by_id(record.id, 0, "w", NOW, LEASE, limit=3)
        assert (claimed.verdict, claimed.hand_on) == ("claimed", ())  # no gate yet
    limited = await store.claim_by_id(records[4].id, 0, "w", NOW, LEASE, limit=3)
    assert limited.verdict == "limited"  # the gate closes
    for record in records[:2]:
        await succeed(store, await fetch(store, record.id))
    # two workers whose tasks ended open the gate at once: two slots, two records
    woken = await asyncio.gather(*(store.open_gate("n", NOW + 1, NOW + 60, limit=3)
                                   for _ in range(2)))
    assert sorted(len(w) for w in woken) == [0, 2]
    assert [r.id for w in woken for r in w] == [records[3].id, records[4].id]
    # either may start first; one start leaves room for one, already woken: no message
    second = await store.claim_by_id(records[4].id, 0, "w", NOW + 2, LEASE, limit=3)
    assert (second.verdict, second.hand_on) == ("claimed", ())
    first = await store.claim_by_id(records[3].id, 0, "w", NOW + 2, LEASE, limit=3)
    assert (first.verdict, first.hand_on) == ("claimed", ())
    late = await store.claim_by_id(records[5].id, 0, "w", NOW + 2, LEASE, limit=3)
    assert late.verdict == "limited"  # full
    assert await store.next_dispatch() == NOW + 2 + 5


async def test_a_start_that_leaves_room_wakes_as_many_as_may_start(
        store: RedisStore) -> None:
    records = await store.add([new("n") for _ in range(7)])
    for record in records[:3]:
        assert (await store.claim_by_id(record.id, 0, "w", NOW, LEASE, limit=3)).verdict \
            == "claimed"
    assert (await store.claim_by_id(records[3].id, 0, "w", NOW, LEASE, limit=3)).verdict \
        == "limited"
    for record in records[:3]:  # ended on workers that did not open the gate (killed)
        await succeed(store, await fetch(store, record.id))
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == [records[3].id]  # the head
    started = await store.claim_by_id(records[3].id, 0, "w", NOW + 5, LEASE, limit=3,
                                      resend=30)
    assert started.verdict == "claimed"
    assert [r.id for r in started.hand_on] == [r.id for r in records[4:6]]  # room for two
    assert all(r.status is Status.QUEUED for r in started.hand_on)
    assert sorted(await store.take_dispatch(NOW + 35, 10, NOW + 100)) == \
        sorted(r.id for r in records[4:6])  # planned, in case their messages are lost
    # a record beyond the room, whose message comes first, waits its turn
    assert (await store.claim_by_id(records[6].id, 0, "w", NOW + 6, LEASE, limit=3)
            ).verdict == "gated"


async def test_a_fresh_start_under_a_gate_wakes_no_record_already_woken(
        store: RedisStore) -> None:
    records = await store.add([new("n") for _ in range(5)])
    for record in records[:3]:
        await store.claim_by_id(record.id, 0, "w", NOW, LEASE, limit=3)
    assert (await store.claim_by_id(records[3].id, 0, "w", NOW, LEASE, limit=3)).verdict \
        == "limited"
    await succeed(store, await fetch(store, records[0].id))
    await succeed(store, await fetch(store, records[1].id))
    woken = await store.open_gate("n", NOW + 1, NOW + 60, limit=3)
    assert [r.id for r in woken] == [r.id for r in records[3:5]]
    # a submission that jumps the line starts on its own message and wakes nobody: the
    # record it leaves room for has its message out already
    (urgent,) = await store.add([new("n", priority=9)])
    started = await store.claim_by_id(urgent.id, 0, "w", NOW + 2, LEASE, limit=3)
    assert (started.verdict, started.hand_on) == ("claimed", ())
    assert (await store.claim_by_id(records[3].id, 0, "w", NOW + 2, LEASE, limit=3)
            ).verdict == "claimed"
    assert (await store.claim_by_id(records[4].id, 0, "w", NOW + 2, LEASE, limit=3)
            ).verdict == "limited"  # full: it waits for the next opening
    await succeed(store, await fetch(store, urgent.id))
    assert [r.id for r in await store.open_gate("n", NOW + 3, NOW + 60, limit=3)] == \
        [records[4].id]


async def admit(store: RedisStore, **fields: Any) -> TaskRecord:
    """A submission as a web process admits it: the record and its plan in one step, then
    its message (in flight in the tests below)."""
    record = new("n", **fields)
    (stored,) = await store.add_planned([record], None, {record.id: NOW + 60})
    return stored


async def test_a_gate_never_wakes_a_submission_whose_own_message_is_out(
        store: RedisStore) -> None:
    a, b, c = await store.add([new("n"), new("n"), new("n")])
    for record in (a, b):
        await store.claim_by_id(record.id, 0, "w", NOW, LEASE, limit=2)
    assert (await store.claim_by_id(c.id, 0, "w", NOW, LEASE, limit=2)).verdict == "limited"
    urgent = await admit(store, priority=5)  # first in line, its message on its way
    await succeed(store, await fetch(store, a.id))
    assert await store.open_gate("n", NOW + 1, NOW + 61, limit=2) == []
    await succeed(store, await fetch(store, b.id))
    (woken,) = await store.open_gate("n", NOW + 1, NOW + 61, limit=2)
    assert woken.id == c.id
    late = await admit(store)  # behind c, its message on its way
    started = await store.claim_by_id(urgent.id, 0, "w", NOW + 2, LEASE, limit=2)
    assert (started.verdict, started.hand_on) == ("claimed", ())  # c's, late's are out
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 2, LEASE, limit=2)).verdict == \
        "claimed"
    assert (await store.claim_by_id(late.id, 0, "w", NOW + 2, LEASE, limit=2)).verdict == \
        "limited"


async def test_the_room_a_rate_leaves_is_never_overcounted_at_its_windows_edge(
        store: RedisStore) -> None:
    rate, now = RateLimit(3, 1.0), 1010.0
    edge = now - rate.window  # rounded: by the exact test, still inside the window at now
    assert rate.holds_back(edge, now)
    records = await store.add([new("n") for _ in range(7)])
    await store.claim_by_id(records[0].id, 0, "w", edge - 1e-3, LEASE, rate=rate)
    for record in records[1:3]:
        await store.claim_by_id(record.id, 0, "w", edge, LEASE, rate=rate)
    assert (await store.claim_by_id(records[3].id, 0, "w", edge, LEASE, rate=rate)
            ).verdict == "limited"
    (woken,) = await store.open_gate("n", now, now + 60, rate=rate)  # room for one: the head
    assert woken.id == records[3].id
    assert (await store.claim_by_id(woken.id, 0, "w", now, LEASE, rate=rate)).verdict == \
        "claimed"


async def test_a_cancel_passes_a_woken_records_turn_on(store: RedisStore) -> None:
    a, b, c = await store.add([new("n") for _ in range(3)])
    await store.claim_by_id(a.id, 0, "w", NOW, LEASE, limit=1)
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE, limit=1)).verdict == "limited"
    await succeed(store, await fetch(store, a.id))
    (woken,) = await store.open_gate("n", NOW + 1, NOW + 61, limit=1)
    assert woken.id == b.id
    # cancelled, its message revoked (no worker sees it): the canceller wakes one in its
    # place, whose claim checks the limits (it knows neither)
    await store.request_cancel(b.id, NOW + 2)
    (instead,) = await store.open_gate("n", NOW + 2, NOW + 62, most=1)
    assert instead.id == c.id
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 3, LEASE, limit=1)).verdict == \
        "claimed"


async def test_a_limit_removed_while_its_gate_is_closed_drains_the_lane(
        store: RedisStore) -> None:
    records = await store.add([new("n") for _ in range(5)])
    await store.claim_by_id(records[0].id, 0, "w", NOW, LEASE, limit=1)
    assert (await store.claim_by_id(records[1].id, 0, "w", NOW, LEASE, limit=1)).verdict \
        == "limited"
    # the workers' configuration has no limit now: any record starts, and wakes the rest
    started = await store.claim_by_id(records[4].id, 0, "w", NOW + 1, LEASE)
    assert started.verdict == "claimed"
    assert [r.id for r in started.hand_on] == [r.id for r in records[1:4]]
    for record in started.hand_on:
        claimed = await store.claim_by_id(record.id, 0, "w", NOW + 1, LEASE)
        assert (claimed.verdict, claimed.hand_on) == ("claimed", ())
    assert await store.next_dispatch() is None  # the lane is empty: no gate, no plan


async def test_a_woken_record_cancelled_before_its_message_wakes_the_next(
        store: RedisStore) -> None:
    a, b, c, d = await store.add([new("n") for _ in range(4)])
    assert (await store.claim_by_id(a.id, 0, "w", NOW, LEASE, limit=2)).verdict == "claimed"
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE, limit=1)).verdict == "limited"
    started = await store.claim_by_id(b.id, 0, "w", NOW + 1, LEASE, limit=2, resend=60)
    assert started.hand_on == ()  # 2 running: full
    await succeed(store, await fetch(store, a.id))
    (head,) = await store.open_gate("n", NOW + 1, NOW + 60, limit=2)
    assert head.id == c.id
    await store.request_cancel(c.id, NOW + 2)  # before its message comes: its turn passes
    assert await store.next_dispatch() == 0  # a web process's dispatch looks at once
    # with no web process: c's message finds it ended, and the gate opened by the cancelling
    # process (open_gate) wakes d
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 3, LEASE, limit=2)).verdict == \
        "ended"
    (after,) = await store.open_gate("n", NOW + 3, NOW + 60, limit=2)
    assert after.id == d.id
    assert await store.take_dispatch(NOW + 3, 10, NOW + 100) == []  # d's message is out
    assert (await store.claim_by_id(d.id, 0, "w", NOW + 3, LEASE, limit=2)).verdict == \
        "claimed"
    assert await store.next_dispatch() is None  # the lane is empty: no gate, no plan


async def test_a_gate_skips_what_left_the_lane_and_opens_with_it(store: RedisStore) -> None:
    rate = RateLimit(1, 10.0)
    a, b, c = await store.add([new("n"), new("n"), new("n", scheduled_at=NOW + 5)])
    assert (await store.claim_by_id(a.id, 0, "w", NOW, LEASE, rate=rate)).verdict == "claimed"
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE, rate=rate)).verdict == "limited"
    # a due scheduled record joins the lane, behind b
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 6, LEASE, rate=rate)).verdict == \
        "limited"
    assert (await fetch(store, c.id)).status is Status.QUEUED
    await store.request_cancel(b.id, NOW + 7)  # the head ends: the next is woken instead
    assert await store.take_dispatch(NOW + 11, 10, NOW + 100) == [c.id]
    await store.request_cancel(c.id, NOW + 12)
    assert await store.take_dispatch(NOW + 100, 10, NOW + 200) == [c.id]  # its resend
    assert await store.next_dispatch() == NOW + 200  # c's entry only: the gate has gone


async def test_a_replan_never_brings_back_an_entry_that_a_worker_cleared(
        store: RedisStore) -> None:
    await store.plan_dispatch({"a": NOW, "b": NOW})
    await store.dispatched(["b"])
    await store.plan_dispatch({"a": NOW + 5, "b": NOW + 5}, planned_only=True)
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == ["a"]


async def test_records_and_their_plan_are_added_in_one_step(store: RedisStore) -> None:
    a, b = new(key="k"), new()
    stored = await store.add_planned([a, b], None, {a.id: NOW + 1, b.id: NOW + 2})
    assert [s.id for s in stored] == [a.id, b.id]
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == [a.id, b.id]
    # the same idempotency key: the stored record answers, and no entry names the new id
    again = new(key="k")
    (known,) = await store.add_planned([again], None, {again.id: NOW})
    assert known.id == a.id
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == []
    # refused by the queue bound: neither records nor entries
    c = new()
    with pytest.raises(QueueBoundReached):
        await store.add_planned([c], 2, {c.id: NOW})
    assert await store.get(c.id) is None
    assert await store.take_dispatch(NOW + 5, 10, NOW + 100) == []
