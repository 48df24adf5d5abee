"""The runner and a rate limit, on real time with short windows: at most N starts of the
type in any window, the rest wait queued (not failed), other types run meanwhile, and the
runner claims again when the next start is allowed (the memory store has no poll: without
that wake-up the tasks held back would never start)."""

from __future__ import annotations

import asyncio

from service.demo import add

from .helpers import Factory

DEADLINE = 30.0  # seconds: generous, for a loaded machine


def most_in_a_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


async def test_a_rate_limited_type_starts_n_per_window_and_all_of_it_runs(
        make_service: Factory) -> None:
    service = make_service()

    @service.task(rate_limit="3/s")
    async def ping(i: int) -> int:
        return i

    await service.start()
    limited = [await ping.submit_with([i], priority=5) for i in range(7)]
    other = await add.submit(2, 3)
    assert await other.result(timeout=DEADLINE) == 5
    assert await asyncio.gather(*(h.result(timeout=DEADLINE) for h in limited)) == list(range(7))
    records = [await service.get(h.id) for h in limited]
    starts = sorted(r.started_at or 0.0 for r in records)
    assert most_in_a_window(starts, 1.0) == 3
    assert all(r.attempts == 1 for r in records)  # held back in the queue, never failed
    other_start = (await service.get(other.id)).started_at or 0.0
    assert other_start < starts[3]  # not held up behind the type at its limit


async def test_a_period_of_several_seconds_spaces_the_starts(make_service: Factory) -> None:
    service = make_service()

    @service.task(rate_limit="1/2s")
    async def slow_lane() -> str:
        return "ok"

    await service.start()
    first, second = await slow_lane.submit(), await slow_lane.submit()
    assert [await first.result(timeout=DEADLINE), await second.result(timeout=DEADLINE)] == [
        "ok", "ok"]
    one, two = (await service.get(first.id)), (await service.get(second.id))
    assert (two.started_at or 0.0) - (one.started_at or 0.0) >= 2.0
    assert (one.attempts, two.attempts) == (1, 1)
