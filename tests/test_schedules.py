"""Periodic schedules (service/schedules.py, service/scheduler.py), driven by a fake clock.

The model: cron and interval ticks, time zones and DST, validation. The loop, in a real
task service (memory or SQLite store) whose clock only moves when the test moves it: ticks,
missed ticks after a downtime, clock jumps, overlap, pause and resume, two services on one
SQLite file, and stopping. No test sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service import TaskService
from service.models import Status, Submission, TaskRecord, isoformat
from service.scheduler import KEY_PREFIX, MAX_NAP, ScheduleNotFound
from service.schedules import Schedule, ScheduleError, parse_schedules
from service.settings import Settings
from service.stores.base import ListQuery
from tests.redis_server import RedisServer, fresh_prefix, redis_server
from tests.stores.copying import CopyingStore

from . import sample_tasks
from .conftest import TEST_MODULES, settings
from .fake_clock import FakeClock

__all__ = ["redis_server"]  # the session's redis-server, for the shared-store tests
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a multiple of every interval used here
# Tests that move the fake clock on faster than real tasks end say overlap=True: overlap has
# tests of its own, and the others must not depend on how fast the runner is.


def at(text: str) -> float:
    """Epoch seconds of an ISO 8601 time with its offset."""
    return datetime.fromisoformat(text).timestamp()


# -- the model: ticks --------------------------------------------------------------------

def test_interval_ticks_are_multiples_of_every_since_the_epoch() -> None:
    every = Schedule("s", "add", every=10)
    assert every.next_after(T0) == T0 + 10  # strictly after
    assert every.next_after(T0 + 3.5) == T0 + 10
    assert every.latest_at_or_before(T0) == T0  # at or before
    assert every.latest_at_or_before(T0 + 9.99) == T0
    assert Schedule("s", "add", every=1.5).next_after(0.2) == 1.5


def test_cron_ticks_in_utc() -> None:
    hourly = Schedule("s", "add", cron="0 * * * *")
    assert hourly.next_after(at("2027-01-15T08:00:00+00:00")) == at("2027-01-15T09:00:00+00:00")
    assert hourly.next_after(at("2027-01-15T08:59:59.9+00:00")) == at("2027-01-15T09:00:00+00:00")
    assert hourly.latest_at_or_before(at("2027-01-15T09:00:00+00:00")) == at(
        "2027-01-15T09:00:00+00:00")
    assert hourly.latest_at_or_before(at("2027-01-15T08:59:59.999+00:00")) == at(
        "2027-01-15T08:00:00+00:00")


def test_cron_runs_at_local_time_in_its_time_zone() -> None:
    nine = Schedule("s", "add", cron="0 9 * * *", timezone="Europe/Paris")
    assert nine.next_after(at("2027-01-15T00:00:00+00:00")) == at("2027-01-15T08:00:00+00:00")
    assert nine.next_after(at("2027-07-15T00:00:00+00:00")) == at("2027-07-15T07:00:00+00:00")


def _ticks(schedule: Schedule, start: str, end: str) -> list[str]:
    found, moment = [], at(start)
    while (moment := schedule.next_after(moment)) < at(end):
        found.append(datetime.fromtimestamp(moment, UTC).strftime("%H:%MZ"))
    return found


def test_dst_spring_forward_runs_a_skipped_local_time_right_after_the_jump() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    daily = Schedule("s", "add", cron="30 2 * * *", timezone="Europe/Paris")
    assert _ticks(daily, "2026-03-28T12:00:00+00:00", "2026-03-30T12:00:00+00:00") == [
        "01:00Z",  # 03:00 CEST, at once after the jump (Debian cron's rule)
        "00:30Z",  # 02:30 CEST the next day
    ]


def test_dst_fall_back_runs_a_daily_job_once_and_an_hourly_one_in_both_hours() -> None:
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
    daily = Schedule("s", "add", cron="30 2 * * *", timezone="Europe/Paris")
    assert _ticks(daily, "2026-10-24T22:00:00+00:00", "2026-10-25T22:00:00+00:00") == ["00:30Z"]
    hourly = Schedule("s", "add", cron="0 * * * *", timezone="Europe/Paris")
    ticks = _ticks(hourly, "2026-10-24T23:30:00+00:00", "2026-10-25T03:30:00+00:00")
    assert ticks == ["00:00Z", "01:00Z", "02:00Z", "03:00Z"]  # 02:00 CEST, 02:00 CET, ...


# -- the model: validation ---------------------------------------------------------------

BAD = [
    ({"cron": "61 * * * *"}, "bad cron expression"),
    ({"cron": "* * * * * *"}, "five fields"),
    ({"cron": "0 0 30 2 *"}, "bad cron expression"),  # cronsim knows February
    ({"cron": "* * */20 * 1L"}, "never matches"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"cron": "0 3 * * *", "every": 60}, "either 'cron' or 'every'"),
    ({}, "either 'cron' or 'every'"),
    ({"every": 0.5}, "at least 1"),
    ({"every": "60"}, "'every' must be a number"),
    ({"every": True}, "'every' must be a number"),
    ({"every": 60, "timezone": "Europe/Paris"}, "'cron' schedules only"),
    ({"every": 60, "missed": "all"}, "'missed' must be 'skip' or 'latest'"),
    ({"every": 60, "overlap": "no"}, "'overlap' must be true or false"),
    ({"every": 60, "args": "abc"}, "'args' must be a list"),
    ({"every": 60, "kwargs": [1]}, "'kwargs' must be an object"),
    ({"every": 60, "when": "now"}, "unknown field(s) 'when'"),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_a_bad_schedule_is_refused_naming_it(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError, match=r"^schedule 'nightly': ") as caught:
        parse_schedules([{"name": "nightly", "task": "add", **fields}])
    assert message in str(caught.value)
    assert caught.value.schedule == "nightly"


def test_bad_names_and_lists_are_refused() -> None:
    with pytest.raises(ScheduleError, match="a name is 1 to 100"):
        parse_schedules([{"name": "no spaces", "task": "add", "every": 60}])
    with pytest.raises(ScheduleError, match="'task' is missing"):
        parse_schedules([{"name": "n", "every": 60}])
    with pytest.raises(ScheduleError, match="schedule 'n': two schedules have this name"):
        parse_schedules([{"name": "n", "task": "add", "every": 60}] * 2)
    with pytest.raises(ValueError, match=r"OFFLOAD_SCHEDULES\[0\]: must be an object"):
        parse_schedules([3])  # type: ignore[list-item]
    with pytest.raises(ScheduleError, match="'args' is not a JSON value"):
        Schedule("n", "add", every=60, args=(object(),))


def test_settings_read_schedules_from_json_and_refuse_bad_json() -> None:
    env = {"OFFLOAD_SCHEDULES": '[{"name": "nightly", "task": "add", "cron": "0 3 * * *", '
                                '"timezone": "Europe/Paris", "args": [1, 2]}]'}
    (nightly,) = Settings.load(environ=env).schedules
    assert (nightly.name, nightly.cron, nightly.timezone, nightly.args) == (
        "nightly", "0 3 * * *", "Europe/Paris", (1, 2))
    assert (nightly.missed, nightly.overlap) == ("skip", False)
    from_config = Settings.load({"OFFLOAD_SCHEDULES": [{"name": "a", "task": "add",
                                                        "every": 5}]}, environ={})
    assert from_config.schedules[0].every == 5
    assert Settings.load(environ={}).schedules == ()
    with pytest.raises(ValueError, match="OFFLOAD_SCHEDULES: not valid JSON"):
        Settings.load(environ={"OFFLOAD_SCHEDULES": '[{"name": '})
    with pytest.raises(ValueError, match="OFFLOAD_SCHEDULES: must be a JSON list"):
        Settings.load(environ={"OFFLOAD_SCHEDULES": '{"name": "a"}'})
    with pytest.raises(ScheduleError, match="schedule 'x': bad cron expression '0 25 "):
        Settings.load(environ={"OFFLOAD_SCHEDULES": '[{"name": "x", "task": "add", '
                                                    '"cron": "0 25 * * *"}]'})


@pytest.mark.parametrize(("schedule", "message"), [
    ({"task": "nope"}, "schedule 'job': no task named 'nope' is registered"),
    ({"task": "add", "args": ["one", 2]}, "schedule 'job': bad arguments for 'add': args.0"),
    ({"task": "add", "args": [1]}, "schedule 'job': bad arguments for 'add'"),
    ({"task": "add", "kwargs": {"c": 1}, "args": [1, 2]}, "schedule 'job': bad arguments"),
])
async def test_the_task_and_its_arguments_are_checked_at_start(
        schedule: dict[str, Any], message: str) -> None:
    service = TaskService(settings(schedules=({"name": "job", "every": 60, **schedule},)))
    for module in TEST_MODULES:
        service.register_module(module)
    with pytest.raises(ScheduleError) as caught:
        await service.start()
    assert message in str(caught.value)
    assert not service.started


async def test_a_store_without_named_values_is_refused_at_start() -> None:
    service = TaskService(settings(), store=CopyingStore())
    service.register_module("service.demo")
    service.schedule("job", "add", every=60, args=[1, 2])
    with pytest.raises(ScheduleError, match=r"schedule 'job': the task store .*cannot keep"):
        await service.start()


# -- the loop ------------------------------------------------------------------------------

Build = Callable[..., TaskService]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Task services with the test tasks on a given clock; all stopped after the test."""
    made: list[TaskService] = []

    def make(clock: FakeClock, **overrides: Any) -> TaskService:
        service = TaskService(settings(**overrides), clock=clock)
        for module in TEST_MODULES:
            service.register_module(module)
        made.append(service)
        return service

    yield make
    for gate in sample_tasks.gates.values():
        gate.open()
    for service in made:
        await service.stop(grace=0.5)


async def tasks_by_tick(service: TaskService, name: str) -> dict[str, list[TaskRecord]]:
    """The tasks of a schedule, by the tick (ISO time) their idempotency key names."""
    found: dict[str, list[TaskRecord]] = defaultdict(list)
    for record in await service.store.page(ListQuery(limit=1000)):
        key = record.idempotency_key or ""
        if key.startswith(f"{KEY_PREFIX}{name}@"):
            found[key.rpartition("@")[2]].append(record)
    return dict(found)


def iso(moment: float) -> str:
    text = isoformat(moment)
    assert text is not None
    return text


async def test_an_interval_schedule_submits_one_task_per_tick_with_its_arguments(
        build: Build) -> None:
    clock = FakeClock(T0 + 0.25)
    service = build(clock)
    service.schedule("sum", "add", every=5, args=[2], kwargs={"b": 3}, overlap=True)
    await service.start()
    await clock.wait_asleep()
    assert await tasks_by_tick(service, "sum") == {}  # nothing before the first tick
    for _ in range(4):
        await clock.advance(2.5)
    ticks = await tasks_by_tick(service, "sum")
    assert sorted(ticks) == [iso(T0 + 5), iso(T0 + 10)]
    for (record,) in ticks.values():
        assert (record.name, record.args, record.kwargs, record.owner) == (
            "add", [2], {"b": 3}, None)
        assert (await service.wait(record.id, 10)).result == 5


async def test_first_tick_and_next_run_at_are_read_from_the_clock(build: Build) -> None:
    clock = FakeClock(T0 + 3.5)
    service = build(clock)
    service.schedule("sum", "add", every=10, args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    view = await service.scheduler.describe("sum")
    assert view["next_run_at"] == iso(T0 + 10)
    assert (view["last_task_id"], view["last_status"], view["paused"]) == (None, None, False)
    await clock.advance(6.4999)
    assert await tasks_by_tick(service, "sum") == {}
    await clock.advance(0.0001)  # exactly on the tick
    (record,) = (await tasks_by_tick(service, "sum"))[iso(T0 + 10)]
    await service.wait(record.id, 10)
    view = await service.scheduler.describe("sum")
    assert view["next_run_at"] == iso(T0 + 20)
    assert (view["last_task_id"], view["last_status"], view["last_run_at"]) == (
        record.id, "succeeded", iso(T0 + 10))


async def test_a_long_sleep_reads_the_clock_again_at_least_every_max_nap(build: Build) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("daily", "add", cron="0 3 * * *", args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    (deadline, _), = clock._sleepers  # what the loop asked to sleep for
    assert deadline == T0 + MAX_NAP


async def test_a_cron_schedule_ticks_at_local_time_across_a_dst_change(build: Build) -> None:
    clock = FakeClock(at("2026-03-28T12:00:00+00:00"))
    service = build(clock)
    service.schedule("night", "add", cron="30 2 * * *", timezone="Europe/Paris", args=[1, 1],
                     overlap=True)
    await service.start()
    await clock.wait_asleep()
    while clock.now() < at("2026-03-30T12:00:00+00:00"):
        await clock.advance(MAX_NAP * 60)  # many naps at a time: the ticks still come
    ticks = await tasks_by_tick(service, "night")
    assert sorted(ticks) == [iso(at("2026-03-29T01:00:00+00:00")),  # 03:00 CEST
                             iso(at("2026-03-30T00:30:00+00:00"))]  # 02:30 CEST
    assert all(len(records) == 1 for records in ticks.values())


async def test_a_clock_jump_runs_the_latest_tick_once_never_a_burst(
        build: Build, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("sec", "add", every=1, args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    with caplog.at_level(logging.INFO, "offload.schedules"):
        await clock.advance(3600.5)  # a suspended laptop, a clock set forward
    assert list(await tasks_by_tick(service, "sec")) == [iso(T0 + 3600)]
    coalesced = [r for r in caplog.records if getattr(r, "event", "") == "schedule_coalesced"]
    assert len(coalesced) == 1
    assert iso(T0 + 1) in coalesced[0].getMessage()


async def test_each_tick_is_logged_with_the_schedule_name(
        build: Build, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("sum", "add", every=2, args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    with caplog.at_level(logging.INFO, "offload.schedules"):
        await clock.advance(2)
    (tick,) = [r for r in caplog.records if getattr(r, "event", "") == "schedule_tick"]
    (record,) = (await tasks_by_tick(service, "sum"))[iso(T0 + 2)]
    assert (tick.schedule, tick.tick, tick.task_id, tick.new_task) == (  # type: ignore[attr-defined]
        "sum", iso(T0 + 2), record.id, True)
    assert "schedule sum tick" in tick.getMessage()


# -- missed ticks after a downtime (a durable store remembers the last tick) ---------------

async def _run_then_restart(build: Build, tmp_path: Path, missed: str
                            ) -> tuple[TaskService, FakeClock]:
    """Tick three times, stop, stay down 100 s, start again: the service after the gap."""
    store = f"sqlite:///{tmp_path}/tasks.db"
    clock = FakeClock(T0 + 0.5)
    first = build(clock, store=store)
    first.schedule("sec", "add", every=1, args=[1, 1], missed=missed, overlap=True)  # type: ignore[arg-type]
    await first.start()
    await clock.wait_asleep()
    for _ in range(3):
        await clock.advance(1)
    await first.stop(grace=0.5)
    assert sorted(await tasks_by_tick(await _reader(build, store), "sec")) == [
        iso(T0 + 1), iso(T0 + 2), iso(T0 + 3)]
    clock = FakeClock(T0 + 103.5)  # down from T0 + 3.5: the ticks T0 + 4 ... T0 + 103 missed
    second = build(clock, store=store)
    second.schedule("sec", "add", every=1, args=[1, 1], missed=missed, overlap=True)  # type: ignore[arg-type]
    await second.start()
    await clock.wait_asleep()
    return second, clock


async def _reader(build: Build, store: str) -> TaskService:
    reader = build(FakeClock(T0), store=store)
    await reader.start()
    return reader


async def test_missed_skip_runs_no_tick_of_the_downtime(build: Build, tmp_path: Path) -> None:
    service, clock = await _run_then_restart(build, tmp_path, "skip")
    assert sorted(await tasks_by_tick(service, "sec")) == [
        iso(T0 + 1), iso(T0 + 2), iso(T0 + 3)]
    await clock.advance(1)  # the first tick after the start runs as usual
    assert sorted(await tasks_by_tick(service, "sec")) == [
        iso(T0 + 1), iso(T0 + 2), iso(T0 + 3), iso(T0 + 104)]


async def test_missed_latest_runs_the_latest_missed_tick_once(
        build: Build, tmp_path: Path) -> None:
    service, clock = await _run_then_restart(build, tmp_path, "latest")
    ticks = await tasks_by_tick(service, "sec")
    assert sorted(ticks) == [iso(T0 + 1), iso(T0 + 2), iso(T0 + 3), iso(T0 + 103)]
    assert len(ticks[iso(T0 + 103)]) == 1
    await clock.advance(1)
    assert sorted(await tasks_by_tick(service, "sec")) == [
        iso(T0 + 1), iso(T0 + 2), iso(T0 + 3), iso(T0 + 103), iso(T0 + 104)]


async def test_a_first_start_catches_nothing_up(build: Build, tmp_path: Path) -> None:
    clock = FakeClock(T0 + 0.5)
    service = build(clock, store=f"sqlite:///{tmp_path}/tasks.db")
    service.schedule("sec", "add", every=1, args=[1, 1], missed="latest")
    await service.start()
    await clock.wait_asleep()
    assert await tasks_by_tick(service, "sec") == {}


# -- overlap --------------------------------------------------------------------------------

async def test_without_overlap_a_tick_is_skipped_while_the_last_run_is_active(
        build: Build, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("slow", "wait_for_release", every=1, args=["slow"])
    await service.start()
    await clock.wait_asleep()
    gate = sample_tasks.gate("slow")
    await clock.advance(1)
    await gate.wait_started()
    with caplog.at_level(logging.INFO, "offload.schedules"):
        await clock.advance(1)  # the first run still runs: this tick is skipped
    assert list(await tasks_by_tick(service, "slow")) == [iso(T0 + 1)]
    (skipped,) = [r for r in caplog.records if getattr(r, "event", "") == "schedule_skipped"]
    assert "still running" in skipped.getMessage()
    gate.open()
    ((first,),) = (await tasks_by_tick(service, "slow")).values()
    assert (await service.wait(first.id, 10)).status is Status.SUCCEEDED
    await clock.advance(1)  # the last run is over: this one runs
    assert sorted(await tasks_by_tick(service, "slow")) == [iso(T0 + 1), iso(T0 + 3)]


async def test_with_overlap_every_tick_runs(build: Build) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("slow", "wait_for_release", every=1, args=["slow"], overlap=True)
    await service.start()
    await clock.wait_asleep()
    await clock.advance(1)
    await sample_tasks.gate("slow").wait_started()
    await clock.advance(1)
    ticks = await tasks_by_tick(service, "slow")
    assert sorted(ticks) == [iso(T0 + 1), iso(T0 + 2)]
    assert ticks[iso(T0 + 1)][0].status is Status.RUNNING


async def test_a_tick_refused_by_a_full_queue_is_logged_and_the_next_one_runs(
        build: Build, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    service = build(clock, max_queue=1)
    service.schedule("sec", "add", every=1, args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    blocker = await service.submit(Submission("add", [1, 1], delay=3600))  # fills the queue
    with caplog.at_level(logging.INFO, "offload.schedules"):
        await clock.advance(1)
    assert await tasks_by_tick(service, "sec") == {}
    (skipped,) = [r for r in caplog.records if getattr(r, "event", "") == "schedule_skipped"]
    assert "queue full" in skipped.getMessage()
    await service.cancel(blocker[0].id)
    await clock.advance(1)
    assert list(await tasks_by_tick(service, "sec")) == [iso(T0 + 2)]


# -- pause and resume ----------------------------------------------------------------------

async def test_a_paused_schedule_does_not_tick_until_resumed(build: Build) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("sec", "add", every=1, args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    state = await service.scheduler.set_paused("sec", True)
    assert state.paused
    view = await service.scheduler.describe("sec")
    assert (view["paused"], view["next_run_at"]) == (True, None)
    for _ in range(3):
        await clock.advance(1)
    assert await tasks_by_tick(service, "sec") == {}
    await service.scheduler.set_paused("sec", False)
    assert (await service.scheduler.describe("sec"))["next_run_at"] == iso(T0 + 4)
    await clock.advance(1)  # the paused ticks are not caught up
    assert list(await tasks_by_tick(service, "sec")) == [iso(T0 + 4)]
    with pytest.raises(ScheduleNotFound):
        await service.scheduler.set_paused("nope", True)


# -- several processes: two services on one shared store (SQLite, Redis) -----------------

@pytest.fixture(params=["sqlite", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a store that several services share: an SQLite file, a Redis server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tasks.db"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix={fresh_prefix()}"


async def test_two_services_on_one_shared_store_run_each_tick_once(
        build: Build, shared_store: str, caplog: pytest.LogCaptureFixture) -> None:
    store = shared_store
    clock = FakeClock(T0 + 0.5)
    services = [build(clock, store=store) for _ in range(2)]
    for service in services:
        service.schedule("sec", "add", every=1, args=[1, 1], overlap=True)
        await service.start()
    await clock.wait_asleep(2)
    with caplog.at_level(logging.INFO, "offload.schedules"):
        for _ in range(10):
            await clock.advance(1)
    ticks = await tasks_by_tick(services[0], "sec")
    assert sorted(ticks) == [iso(T0 + n) for n in range(1, 11)]
    assert all(len(records) == 1 for records in ticks.values())
    created = [r for r in caplog.records
               if getattr(r, "event", "") == "schedule_tick" and r.new_task]  # type: ignore[attr-defined]
    assert sorted(r.tick for r in created) == sorted(ticks)  # type: ignore[attr-defined]


async def test_pausing_in_one_service_pauses_the_schedule_in_the_other(
        build: Build, shared_store: str) -> None:
    store = shared_store
    clock = FakeClock(T0 + 0.5)
    first, second = build(clock, store=store), build(clock, store=store)
    for service in (first, second):
        service.schedule("sec", "add", every=1, args=[1, 1], overlap=True)
        await service.start()
    await clock.wait_asleep(2)
    await first.scheduler.set_paused("sec", True)
    assert (await second.scheduler.describe("sec"))["paused"] is True
    await clock.advance(1)
    assert await tasks_by_tick(second, "sec") == {}
    await second.scheduler.set_paused("sec", False)
    await clock.advance(1)
    assert list(await tasks_by_tick(first, "sec")) == [iso(T0 + 2)]


# -- stopping ---------------------------------------------------------------------------------

async def test_the_loop_stops_with_the_service_and_never_holds_it(build: Build) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    service.schedule("daily", "add", cron="0 3 * * *", args=[1, 1])
    await service.start()
    await clock.wait_asleep()
    assert service.scheduler.running
    async with asyncio.timeout(5):  # a loop asleep until tomorrow does not hold the stop
        await service.drain(grace=0.5)
    assert not service.scheduler.running
    assert clock.sleepers == 0
    await service.stop()


async def test_schedules_are_declared_before_the_start(build: Build) -> None:
    clock = FakeClock(T0)
    service = build(clock)
    await service.start()
    assert not service.scheduler.running  # no schedule, no loop
    with pytest.raises(RuntimeError, match="before the task service starts"):
        service.schedule("late", "add", every=60, args=[1, 1])
    other = build(clock)
    other.schedule("a", "add", every=60, args=[1, 1])
    other.schedule("a", "add", every=60, args=[1, 1])  # the same again: fine
    with pytest.raises(ScheduleError, match="another schedule already has this name"):
        other.schedule("a", "add", every=30, args=[1, 1])
