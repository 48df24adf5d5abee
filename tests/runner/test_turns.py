"""The loop budget the scheduler's workers share."""

from __future__ import annotations

import asyncio

from service.runner.turns import LoopTurns


async def test_the_budget_is_shared_within_a_pass_and_fresh_in_the_next() -> None:
    clock = [10.0]
    budget = LoopTurns(seconds=1.0, clock=lambda: clock[0])
    assert not budget.spent()  # the pass's budget begins now
    clock[0] = 10.5
    assert not budget.spent()
    clock[0] = 11.0
    assert budget.spent()  # a second worker in the same pass finds it used up
    assert budget.spent()
    await asyncio.sleep(0)  # the next pass: the marker ran before this task resumed
    clock[0] = 20.0
    assert not budget.spent()


async def test_a_zero_budget_is_always_spent() -> None:
    assert LoopTurns(seconds=0).spent()
