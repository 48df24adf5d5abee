"""The event-loop watchdog: a blocking async task is named in a warning and in metrics."""

from __future__ import annotations

import logging

import pytest

from service import TaskService
from service.core import Submission

from .conftest import settings


async def started(threshold: float) -> TaskService:
    svc = TaskService(settings(loop_lag_threshold=threshold))
    svc.register_module("tests.watchdog_tasks")
    await svc.start()
    return svc


def blocked_count(svc: TaskService, task: str) -> float:
    value = svc.metrics.registry.get_sample_value("offload_event_loop_blocked_total",
                                                  {"task": task})
    return value or 0.0


def lag_samples(svc: TaskService, le: str) -> float:
    value = svc.metrics.registry.get_sample_value("offload_event_loop_lag_seconds_bucket",
                                                  {"le": le})
    return value or 0.0


def lags_above(svc: TaskService, seconds: float) -> float:
    return lag_samples(svc, "+Inf") - lag_samples(svc, str(seconds))


async def test_a_blocking_async_task_is_named(caplog: pytest.LogCaptureFixture) -> None:
    svc = await started(threshold=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="offload.watchdog"):
            record, _ = await svc.submit(Submission("blocks_the_loop", [0.4]))
            done = await svc.wait(record.id, timeout=10)
            assert svc.watchdog is not None
            await svc.watchdog.next_measurement()
        assert done.status == "succeeded"
        warnings = [r for r in caplog.records if r.name == "offload.watchdog"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "'blocks_the_loop'" in warnings[0].getMessage()
        assert getattr(warnings[0], "task_name", None) == "blocks_the_loop"
        assert blocked_count(svc, "blocks_the_loop") == 1
        assert lags_above(svc, 0.25) == 1  # the heartbeat woke ~0.4 s late, once
    finally:
        await svc.stop(grace=1)


async def test_tasks_that_await_raise_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    svc = await started(threshold=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="offload.watchdog"):
            handles = [await svc.submit(Submission("behaves", [0.01])) for _ in range(50)]
            for record, _ in handles:
                assert (await svc.wait(record.id, timeout=10)).status == "succeeded"
            assert svc.watchdog is not None
            await svc.watchdog.next_measurement()
        assert not [r for r in caplog.records if r.name == "offload.watchdog"]
        assert blocked_count(svc, "behaves") == 0
        assert lag_samples(svc, "+Inf") > 0
    finally:
        await svc.stop(grace=1)


async def test_zero_threshold_turns_the_watchdog_off() -> None:
    svc = await started(threshold=0)
    try:
        record, _ = await svc.submit(Submission("blocks_the_loop", [0.05]))
        assert (await svc.wait(record.id, timeout=10)).status == "succeeded"
        assert svc.watchdog is None
        assert lag_samples(svc, "+Inf") == 0
    finally:
        await svc.stop(grace=1)


async def test_a_block_shorter_than_the_threshold_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = await started(threshold=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="offload.watchdog"):
            for _ in range(5):  # 0.12 s blocks: above half the threshold, under the whole
                record, _ = await svc.submit(Submission("blocks_the_loop", [0.12]))
                assert (await svc.wait(record.id, timeout=10)).status == "succeeded"
        assert not [r for r in caplog.records if r.name == "offload.watchdog"]
    finally:
        await svc.stop(grace=1)


async def test_a_task_without_code_of_its_own_does_not_stop_the_watchdog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import functools

    from service.handles import task
    from tests.watchdog_tasks import blocks_the_loop

    svc = TaskService(settings(loop_lag_threshold=0.05))
    svc.register_module("tests.watchdog_tasks")
    svc.register(task(name="partial_block")(functools.partial(blocks_the_loop.task_type.fn)))
    await svc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="offload.watchdog"):
            for _ in range(2):
                record, _ = await svc.submit(Submission("partial_block", [0.3]))
                assert (await svc.wait(record.id, timeout=10)).status == "succeeded"
                assert svc.watchdog is not None
                await svc.watchdog.next_measurement()
        warnings = [r for r in caplog.records if r.name == "offload.watchdog"]
        assert len(warnings) == 2  # it kept watching after the first
        assert all("'blocks_the_loop'" in w.getMessage() for w in warnings)
    finally:
        await svc.stop(grace=1)
