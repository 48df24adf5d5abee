"""The event hub: subscriptions see every change in order and end after the terminal one."""

from __future__ import annotations

import asyncio

from service.events import LISTENER_BUFFER, EventHub, cancel_loops, wait_until_set
from service.models import Progress, Status, TaskError, TaskRecord


def running_record() -> TaskRecord:
    return TaskRecord(name="t", status=Status.RUNNING)


async def test_subscriber_sees_changes_in_order_and_stops_after_terminal() -> None:
    hub = EventHub()
    record = running_record()
    subscription = hub.subscribe(record.id)
    record.progress = Progress(1, 2)
    hub.publish("progress", record)
    record.progress = Progress(2, 2)
    hub.publish("progress", record)
    record.move(Status.SUCCEEDED)
    hub.publish("status", record)
    hub.publish("status", record)  # after the terminal event: nobody hears it
    events = [event async for event in subscription]
    assert [(e.kind, e.task["status"], e.terminal) for e in events] == [
        ("progress", "running", False), ("progress", "running", False),
        ("status", "succeeded", True)]
    assert events[0].task["progress"] == {"current": 1, "total": 2, "message": None}
    assert events[1].task["progress"]["current"] == 2
    assert hub.listener_count() == 0


async def test_events_are_snapshots_not_live_records() -> None:
    hub = EventHub()
    record = running_record()
    subscription = hub.subscribe(record.id)
    hub.publish("status", record)
    record.progress = Progress(5)
    event = await subscription.next(timeout=1)
    assert event is not None
    assert event.task["progress"] is None
    subscription.close()


async def test_other_tasks_events_are_not_delivered() -> None:
    hub = EventHub()
    mine, other = running_record(), running_record()
    subscription = hub.subscribe(mine.id)
    hub.publish("status", other)
    assert await subscription.next(timeout=0.01) is None
    subscription.close()


async def test_every_subscriber_gets_every_event_and_close_detaches() -> None:
    hub = EventHub()
    record = running_record()
    first, second = hub.subscribe(record.id), hub.subscribe(record.id)
    assert hub.listener_count() == 2
    hub.publish("status", record)
    assert (await first.next(1)) is not None
    assert (await second.next(1)) is not None
    first.close()
    first.close()  # idempotent
    assert hub.listener_count() == 1
    second.close()
    assert hub.listener_count() == 0
    hub.publish("status", record)  # nobody listens: no error


async def test_slow_reader_loses_oldest_events_but_never_the_terminal_one() -> None:
    hub = EventHub()
    record = running_record()
    subscription = hub.subscribe(record.id)
    for i in range(LISTENER_BUFFER + 50):
        record.progress = Progress(i)
        hub.publish("progress", record)
    record.move(Status.FAILED)
    hub.publish("status", record)
    events = [event async for event in subscription]
    assert len(events) == LISTENER_BUFFER
    assert events[-1].terminal
    assert events[-1].task["status"] == "failed"
    currents = [e.task["progress"]["current"] for e in events[:-1]]
    assert currents == sorted(currents)
    assert currents[-1] == LISTENER_BUFFER + 49


async def test_wait_terminal_wakes_every_waiter_on_terminal_publish() -> None:
    hub = EventHub()
    record = running_record()
    waiters = [asyncio.create_task(hub.wait_terminal(record.id, 5)) for _ in range(3)]

    def finish() -> None:  # runs after the waiters' first step (call_soon is FIFO)
        record.move(Status.CANCELLED)
        hub.publish("status", record)

    asyncio.get_running_loop().call_soon(finish)
    assert await asyncio.gather(*waiters) == [True, True, True]


async def test_wait_terminal_ignores_non_terminal_changes() -> None:
    hub = EventHub()
    record = running_record()
    waiter = asyncio.create_task(hub.wait_terminal(record.id, 0.05))
    loop = asyncio.get_running_loop()
    loop.call_soon(hub.publish, "progress", record)
    loop.call_soon(hub.publish, "status", record)
    assert await waiter is False


async def test_wait_terminal_times_out() -> None:
    hub = EventHub()
    assert await hub.wait_terminal(running_record().id, 0.01) is False


async def test_forget_releases_waiters() -> None:
    hub = EventHub()
    record = running_record()
    waiter = asyncio.create_task(hub.wait_terminal(record.id, 5))
    asyncio.get_running_loop().call_soon(hub.forget, record.id)
    assert await waiter is True
    hub.forget("unknown")  # no waiter: no error


async def test_next_after_the_end_stops_iteration() -> None:
    hub = EventHub()
    record = running_record()
    subscription = hub.subscribe(record.id)
    record.move(Status.SUCCEEDED)
    hub.publish("status", record)
    assert [e.kind async for e in subscription] == ["status"]
    assert [e async for e in subscription] == []


async def test_expect_terminal_catches_an_end_published_before_the_wait() -> None:
    hub = EventHub()
    record = running_record()
    finished = hub.expect_terminal(record.id)
    assert hub.expect_terminal(record.id) is finished  # one event per task
    record.move(Status.SUCCEEDED)
    hub.publish("status", record)
    assert await wait_until_set(finished, 0.01) is True
    assert await hub.wait_terminal(record.id, 0.01) is False  # only later ends count


def test_a_listener_that_never_reads_is_dropped_at_the_terminal_event() -> None:
    hub = EventHub()
    record = TaskRecord(name="t")
    hub.subscribe(record.id)  # a client that went away before its stream began
    record.status = Status.FAILED
    hub.publish("status", record)
    assert hub.listener_count() == 0


def test_events_carry_tracebacks_only_when_configured() -> None:
    record = TaskRecord(name="t", status=Status.FAILED,
                        error=TaskError("ValueError", "bad", "Traceback ..."))
    for include, expected in ((False, None), (True, "Traceback ...")):
        hub = EventHub(include_traceback=include)
        subscription = hub.subscribe(record.id)
        hub.publish("status", record)
        event = subscription._queue.get_nowait()
        assert event.task["error"].get("traceback") == expected  # type: ignore[union-attr]


async def test_cancel_loops_ends_a_loop_that_outlives_a_cancel() -> None:
    """A loop that swallows one cancel (as a cancel landing in ``asyncio.timeout``'s expiry
    can be on Python 3.11) is cancelled again until it ends: a stop never hangs on it."""
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # swallowed: the loop goes on
        await asyncio.Event().wait()

    loop = asyncio.create_task(stubborn())
    await asyncio.sleep(0)  # let it reach its first wait
    async with asyncio.timeout(30):
        await cancel_loops([loop])
    assert swallowed.is_set()
    assert loop.cancelled()
