"""Rate limits, every store (conftest.py's ``store``), with the time given by each call:
a claim takes a name's record only while its rate allows (the start logged in the claim's
own step), other names are never held up by it, and ``next_start`` tells when it may
start again. Shared stores: two store objects on one file or server keep one limit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.models import Status
from service.rate_limits import RateLimit
from service.stores import ListQuery, SQLiteStore, TaskStore, open_store
from service.stores.base import Outcome
from tests.redis_server import fresh_prefix

from .contract import NOW, claim, fetch, new

RATE = RateLimit(3, 10.0)  # at most 3 starts in any 10 s (and a microsecond)
RATES = {"api": RATE}


async def started(store: TaskStore, now: float, limit: int = 10) -> list[str]:
    return [r.name for r in await claim(store, limit=limit, now=now, rates=RATES)]


def most_in_a_window(times: list[float], window: float) -> int:
    """The most of ``times`` that any half-open interval of length ``window`` holds."""
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + window) for start in times),
               default=0)


async def test_a_rate_holds_back_starts_beyond_its_limit(store: TaskStore) -> None:
    await store.add([new("api") for _ in range(7)])
    assert await started(store, NOW) == ["api"] * 3
    assert await started(store, NOW + 5) == []
    assert await started(store, NOW + 10) == []  # a whole period and a microsecond
    counts = await store.count_by_status()
    assert (counts[Status.QUEUED], counts[Status.RUNNING]) == (4, 3)  # waiting, not failed
    at = await store.next_start(RATES, NOW + 5)
    assert at == pytest.approx(NOW + RATE.window, abs=1e-9)
    assert at is not None
    assert at > NOW + RATE.period
    assert await started(store, at) == ["api"] * 3
    assert await started(store, at + 5) == []
    assert await store.next_start(RATES, at + 5) == pytest.approx(at + RATE.window, abs=1e-9)


async def test_starts_spread_over_time_keep_every_window_within_the_limit(
        store: TaskStore) -> None:
    await store.add([new("api") for _ in range(20)])
    starts: list[float] = []
    for step in range(120):  # a claim every 0.75 s for 90 s, one start each
        now = NOW + step * 0.75
        for record in await claim(store, now=now, rates=RATES):
            starts.append((await fetch(store, record.id)).started_at or 0.0)
    assert len(starts) == 20
    assert most_in_a_window(starts, RATE.period) == 3


async def test_next_start_is_none_while_nothing_is_held_back(store: TaskStore) -> None:
    assert await store.next_start(RATES, NOW) is None  # never started
    assert await store.next_start({}, NOW) is None
    await store.add([new("api"), new("api")])
    await started(store, NOW)
    assert await store.next_start(RATES, NOW) is None  # 2 of 3 used: one more may start
    assert await store.next_start({"other": RATE}, NOW) is None


async def test_a_held_back_name_does_not_block_other_names(store: TaskStore) -> None:
    # More records of the held-back name than a claim reads at the head of the queue.
    await store.add([new("api", priority=5) for _ in range(40)] + [new("other"), new("other")])
    assert await started(store, NOW, limit=2) == ["api", "api"]
    assert await started(store, NOW, limit=2) == ["api", "other"]
    assert await started(store, NOW, limit=2) == ["other"]
    assert await started(store, NOW) == []


async def test_every_claim_is_a_start_retries_included(store: TaskStore) -> None:
    rates = {"api": RateLimit(2, 10.0)}
    first, _ = await store.add([new("api"), new("api")])
    (running,) = await claim(store, now=NOW, rates=rates)
    assert running.id == first.id
    retry = Outcome(Status.SCHEDULED, NOW + 1, scheduled_at=NOW + 1)
    assert await store.settle(running, "w", retry) is not None
    (again,) = await claim(store, now=NOW + 1, rates=rates)
    assert (again.id, again.attempts) == (first.id, 2)
    assert await claim(store, now=NOW + 2, rates=rates) == []  # two starts in the window
    assert len(await claim(store, now=NOW + 10 + RATE.window, rates=rates)) == 1


async def test_a_cancelled_queued_record_never_counts(store: TaskStore) -> None:
    records = await store.add([new("api") for _ in range(5)])
    await store.request_cancel(records[0].id, NOW)
    await store.request_cancel(records[1].id, NOW)
    assert await started(store, NOW) == ["api"] * 3
    assert (await store.count_by_status())[Status.CANCELLED] == 2


async def test_a_lower_limit_counts_the_starts_already_logged(store: TaskStore) -> None:
    await store.add([new("api") for _ in range(4)])
    assert await started(store, NOW, limit=2) == ["api", "api"]
    one = {"api": RateLimit(1, 10.0)}
    assert await claim(store, now=NOW + 5, rates=one) == []
    assert len(await claim(store, now=NOW + 11, rates=one)) == 1


async def test_without_rates_a_claim_ignores_the_log(store: TaskStore) -> None:
    await store.add([new("api") for _ in range(5)])
    assert await started(store, NOW) == ["api"] * 3
    assert len(await claim(store, limit=10, now=NOW)) == 2


# -- two store objects, one file or server -------------------------------------------------

def _sqlite_pair(tmp: Path, request: pytest.FixtureRequest) -> tuple[TaskStore, TaskStore]:
    return SQLiteStore(str(tmp / "tasks.db")), SQLiteStore(str(tmp / "tasks.db"))


def _redis_pair(tmp: Path, request: pytest.FixtureRequest) -> tuple[TaskStore, TaskStore]:
    url = f"{request.getfixturevalue('redis_server').url}?prefix={fresh_prefix()}"
    return open_store(url), open_store(url)


@pytest.fixture(params=[pytest.param(_sqlite_pair, id="sqlite"),
                        pytest.param(_redis_pair, id="redis")])
async def shared(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[tuple[TaskStore, TaskStore]]:
    """Two store objects on one SQLite file or Redis prefix: as two processes would have."""
    make: Callable[[Path, pytest.FixtureRequest], tuple[TaskStore, TaskStore]] = request.param
    first, second = make(tmp_path, request)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_one_limit_holds_for_concurrent_claims_of_two_stores(
        shared: tuple[TaskStore, TaskStore]) -> None:
    first, second = shared
    await first.add([new("api") for _ in range(60)] + [new("other") for _ in range(20)])
    clock = itertools.count()  # each claim a step of 0.25 s; the two interleave

    async def claims(store: TaskStore, worker: str) -> None:
        for _ in range(60):
            await claim(store, limit=2, worker=worker, now=NOW + next(clock) * 0.25,
                        rates=RATES)

    await asyncio.gather(claims(first, "a"), claims(second, "b"))
    running = [r for r in await first.page(ListQuery(statuses=frozenset({Status.RUNNING}),
                                                     limit=1000)) if r.name == "api"]
    times = [r.started_at or 0.0 for r in running]
    assert most_in_a_window(times, RATE.period) == 3
    assert len(times) >= 3 * 2  # 30 s of claims: the limit was reached in several windows
    counts = await second.count_by_status()
    assert counts[Status.RUNNING] == len(running) + 20  # other names were never held up

