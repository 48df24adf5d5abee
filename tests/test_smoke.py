from __future__ import annotations

from service import TaskService


async def test_add_through_library(service: TaskService) -> None:
    from service.demo import add

    handle = await add.submit(2, 3)
    assert await handle.result(timeout=5) == 5
