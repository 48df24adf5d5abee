"""The asyncio client against a real server: the same handle, awaited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.client import (
    AsyncOffloadClient,
    AsyncRemoteTaskHandle,
    ConnectionFailed,
    InvalidSubmissionError,
)
from service.errors import (
    InvalidSubmission,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
)
from service.models import Status

from ..e2e.server import Server, free_port
from .conftest import WAIT


async def test_submit_then_result(aclient: AsyncOffloadClient) -> None:
    handle = await aclient.submit("add", 2, 3)
    assert isinstance(handle, AsyncRemoteTaskHandle)
    assert await handle.result(WAIT) == 5
    assert handle.successful()
    assert handle.ready()


async def test_status_is_a_snapshot_until_refresh(aclient: AsyncOffloadClient,
                                                  tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    handle = await aclient.submit_with("journal_run", ["async-snapshot", 60.0, str(gate)])
    before = handle.status
    assert before in (Status.QUEUED, Status.RUNNING)
    gate.touch()
    assert (await aclient.get_record(handle.id, wait=WAIT)).status is Status.SUCCEEDED
    assert handle.status is before
    assert (await handle.refresh()).status is Status.SUCCEEDED
    assert handle.status is Status.SUCCEEDED


async def test_wait_held_while_the_task_runs(aclient: AsyncOffloadClient,
                                             tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    handle = await aclient.submit("journal_run", "async-wait", 60.0, str(gate))
    waiting = asyncio.create_task(handle.wait(WAIT))
    await asyncio.sleep(0)  # let the request go out; the gate decides when it ends
    gate.touch()
    record = await waiting
    assert record.status is Status.SUCCEEDED
    assert record.result == "async-wait"


async def test_failed_and_cancelled(aclient: AsyncOffloadClient) -> None:
    failed = await aclient.submit("fail", "async boom")
    with pytest.raises(TaskFailed, match="async boom"):
        await failed.result(WAIT)
    assert failed.failed()

    sleeping = await aclient.submit("sleep", 60)
    with pytest.raises(TimeoutError):
        await sleeping.wait(0.2)
    await sleeping.cancel()
    with pytest.raises(TaskCancelled):
        await sleeping.result(WAIT)


async def test_events(aclient: AsyncOffloadClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    handle = await aclient.submit("gated_count", 3, str(gate))
    events = handle.events()
    first = await anext(events)  # the stream is open before the task reports anything
    assert first.record.status in (Status.QUEUED, Status.RUNNING)
    gate.touch()
    rest = [event async for event in events]
    assert rest[-1].terminal
    assert rest[-1].record.result == 3
    progress = [e.record.progress.current for e in rest
                if e.kind == "progress" and e.record.progress is not None]
    assert progress == [1, 2, 3]
    assert handle.status is Status.SUCCEEDED


async def test_get_list_types_stats_delete(aclient: AsyncOffloadClient) -> None:
    mine = [(await aclient.submit("add", i, 200)).id for i in range(3)]
    page = await aclient.list(name="add", limit=1)
    assert len(page.items) == 1
    assert page.next_cursor is not None
    every = [r.id async for r in aclient.iter_tasks(name="add", page_size=2)]
    assert [i for i in every if i in mine] == mine[::-1]
    handle = await aclient.get(mine[0])
    assert await handle.result(WAIT) == 200
    await handle.delete()
    with pytest.raises(TaskNotFound):
        await aclient.get(mine[0])
    assert "add" in [t.name for t in await aclient.task_types()]
    assert "queue_depth" in await aclient.stats()


async def test_422_and_404(aclient: AsyncOffloadClient) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await aclient.submit("add", a=1)
    assert isinstance(caught.value, InvalidSubmissionError)
    assert [e.field for e in caught.value.errors] == ["kwargs.b"]
    with pytest.raises(TaskNotFound):
        await aclient.get("B" * 24)


async def test_environment_and_connection_failure(server: Server,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_URL", server.base_url)
    async with AsyncOffloadClient() as client:
        assert await (await client.submit("add", 3, 3)).result(WAIT) == 6
    async with AsyncOffloadClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectionFailed):
            await client.stats()
