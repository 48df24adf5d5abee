"""The gates of limited types in the Redis store's Celery-mode half (see the header of
service/stores/redis_lua_dispatch.py): once a limit holds a start back, a type's records
start in queue order but for those in its room, and the gate sends their messages itself,
each once. A real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.models import Status, TaskRecord
from service.rate_limits import RateLimit
from service.stores import RedisStore
from service.stores.base import Outcome

from .contract import LEASE, NOW, fetch, new, succeed


@pytest.fixture
def store(redis_store: RedisStore) -> RedisStore:
    return redis_store


async def taken(store: RedisStore, now: float, again_at: float
                ) -> tuple[list[str], list[str]]:
    """The ids a dispatch take at ``now`` finds due, and those the gates wake (planned for
    ``again_at``)."""
    due = await store.take_dispatch(now, 10, again_at)
    return due.ids, [record.id for record in due.woken]


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
    assert await taken(store, NOW + 9, NOW + 100) == ([], [])
    # c's message came while the rate allowed no start: dropped too; no message is out
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 5, LEASE, rate=rate)).verdict == \
        "limited"
    # once a start is allowed, another message of the type finds c first in line: dropped,
    # and c, in the room with no message out, woken
    gated = await store.claim_by_id(b.id, 0, "w", NOW + 11, LEASE, rate=rate)
    assert (gated.verdict, [r.id for r in gated.hand_on]) == ("gated", [c.id])
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 11, LEASE, rate=rate)).verdict == \
        "claimed"
    started = [c.id]
    for _ in range(2):  # the gate wakes the lane's head alone, when a start is allowed
        at = await store.next_dispatch()
        assert at is not None
        due, woken = await taken(store, at, at + 100)
        assert (due, len(woken)) == ([], 1)
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
    assert await taken(store, NOW + 5, NOW + 100) == ([], [])  # b's message is out
    assert await taken(store, NOW + 60, NOW + 100) == ([b.id], [])  # unless lost
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
    assert await taken(store, NOW + 5, NOW + 100) == ([], [records[3].id])  # the head
    started = await store.claim_by_id(records[3].id, 0, "w", NOW + 5, LEASE, limit=3,
                                      resend=30)
    assert started.verdict == "claimed"
    assert [r.id for r in started.hand_on] == [r.id for r in records[4:6]]  # room for two
    assert all(r.status is Status.QUEUED for r in started.hand_on)
    # planned, in case their messages are lost: sent again (the head by its gate's look)
    assert await taken(store, NOW + 35, NOW + 100) == ([records[5].id], [records[4].id])
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
    x, y, a, b, c, d = await store.add([new("n") for _ in range(6)])
    for record in (x, y):
        await store.claim_by_id(record.id, 0, "w", NOW, LEASE, limit=2)
    for record in (a, b, c):
        assert (await store.claim_by_id(record.id, 0, "w", NOW, LEASE, limit=2)).verdict \
            == "limited"
    # a cancel while every slot is taken passes nothing on
    await store.request_cancel(c.id, NOW + 1)
    assert await store.open_gate("n", NOW + 1, NOW + 61, limit=2) == []
    for record in (x, y):
        await succeed(store, await fetch(store, record.id))
    assert [r.id for r in await store.open_gate("n", NOW + 1, NOW + 61, limit=2)] == \
        [a.id, b.id]
    # b, second in the room, is cancelled (its message revoked: no worker sees it) while
    # a's message is out: the canceller wakes the next with none, past a
    await store.request_cancel(b.id, NOW + 2)
    (instead,) = await store.open_gate("n", NOW + 2, NOW + 62, limit=2)
    assert instead.id == d.id
    for record in (a, d):
        assert (await store.claim_by_id(record.id, 0, "w", NOW + 3, LEASE, limit=2)
                ).verdict == "claimed"


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
    # with no web process: c's message, if a worker sees it, finds it ended, and that
    # worker opens the gate (as the cancelling process does): d is woken, once
    assert (await store.claim_by_id(c.id, 0, "w", NOW + 3, LEASE, limit=2)).verdict == \
        "ended"
    (after,) = await store.open_gate("n", NOW + 3, NOW + 60, limit=2)
    assert after.id == d.id
    assert await store.open_gate("n", NOW + 3, NOW + 60, limit=2) == []
    assert await taken(store, NOW + 3, NOW + 100) == ([], [])  # d's message is out
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
    assert await taken(store, NOW + 11, NOW + 100) == ([], [c.id])
    await store.request_cancel(c.id, NOW + 12)
    assert await taken(store, NOW + 100, NOW + 200) == ([c.id], [])  # its resend
    assert await store.next_dispatch() == NOW + 200  # c's entry only: the gate has gone




async def test_a_message_dropped_while_there_is_room_wakes_those_in_it(
        store: RedisStore) -> None:
    # a task handed back after its worker died takes a new message at the back of the
    # line; the slot its end freed goes to the first in line, which has no message out
    x, head = await store.add([new("n"), new("n", priority=5)])
    await store.claim_by_id(x.id, 0, "w", NOW, LEASE, limit=1)
    assert (await store.claim_by_id(head.id, 0, "w", NOW, LEASE, limit=1)).verdict == \
        "limited"
    taken_over = await store.claim_by_id(x.id, 0, "w2", NOW + LEASE + 1, LEASE, limit=1)
    assert taken_over.verdict == "taken_over"
    assert taken_over.record is not None
    handed = await store.settle(taken_over.record, "w2",
                                Outcome(Status.QUEUED, NOW + LEASE + 2))
    assert handed is not None
    dropped = await store.claim_by_id(x.id, 1, "w2", NOW + LEASE + 2, LEASE, limit=1)
    assert dropped.verdict == "gated"
    assert [r.id for r in dropped.hand_on] == [head.id]
    again = await store.claim_by_id(x.id, 1, "w2", NOW + LEASE + 3, LEASE, limit=1)
    assert (again.verdict, again.hand_on) == ("gated", ())  # head's message is out
    assert (await store.claim_by_id(head.id, 0, "w", NOW + LEASE + 3, LEASE, limit=1)
            ).verdict == "claimed"


async def test_a_head_a_dispatch_pass_woke_is_sent_again_after_the_resend(
        store: RedisStore) -> None:
    a, b = await store.add([new("n"), new("n")])
    await store.claim_by_id(a.id, 0, "w", NOW, LEASE, limit=1)
    assert (await store.claim_by_id(b.id, 0, "w", NOW, LEASE, limit=1)).verdict == "limited"
    await succeed(store, await fetch(store, a.id))  # its worker killed: no gate opened
    assert await taken(store, NOW + 5, NOW + 65) == ([], [b.id])  # the gate looks again
    # b's message is lost: its entry comes due at the resend, not after b's whole wait
    assert await store.next_dispatch() == NOW + 65
    assert await taken(store, NOW + 64, NOW + 125) == ([], [])
    assert await taken(store, NOW + 65, NOW + 125) == ([], [b.id])  # by its gate, again
