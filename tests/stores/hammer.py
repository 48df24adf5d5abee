"""One process hammering a shared SQLite store, for tests/stores/test_sqlite.py.

``python -m tests.stores.hammer DB OUT SECONDS NAME``: submits, claims, reports progress,
settles, cancels and reads for SECONDS, then writes what it did to OUT (JSON): the ids it
added, the ids it claimed, and every error it met.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable

from service.models import Progress, Status, TaskRecord
from service.stores.base import ClaimRequest, ListQuery, Outcome
from service.stores.sqlite import SQLiteStore


class Hammer:
    def __init__(self, store: SQLiteStore, name: str, seconds: float) -> None:
        self.store = store
        self.name = name
        self.deadline = time.monotonic() + seconds
        self.added: list[str] = []
        self.claimed: list[str] = []
        self.errors: list[str] = []
        self.random = random.Random()

    def going(self) -> bool:
        return time.monotonic() < self.deadline

    async def guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        while self.going():
            try:
                await work()
            except Exception as exc:
                self.errors.append(repr(exc))

    async def submit(self) -> None:
        batch = [TaskRecord(name=self.random.choice("abc"), args=[i], created_at=time.time(),
                            priority=self.random.randint(0, 2))
                 for i in range(self.random.randint(1, 4))]
        added = await self.store.add(batch)
        self.added.extend(record.id for record in added)
        if self.random.random() < 0.2:
            await self.store.request_cancel(self.random.choice(self.added), time.time())

    async def run(self, worker: str) -> None:
        records = await self.store.claim(ClaimRequest(
            worker, time.time(), 60.0, limit=4, limits={"c": 2}))
        for record in records:
            self.claimed.append(record.id)
            if not await self.store.save_progress(record, worker, Progress(1, 2)):
                self.errors.append(f"progress refused for {record.id}")
            settled = await self.store.settle(record, worker, Outcome(
                Status.SUCCEEDED, time.time(), result=record.args))
            if settled is None:
                self.errors.append(f"settle refused for {record.id}")
        if not records:
            await asyncio.sleep(0.002)  # the workload idles a little, as a runner polls

    async def read(self) -> None:
        await self.store.page(ListQuery(statuses=frozenset({Status.RUNNING}), limit=20))
        await self.store.count_by_status()
        await asyncio.sleep(0.005)


async def main(path: str, seconds: float, name: str) -> dict[str, object]:
    store = SQLiteStore(path)
    await store.open()
    hammer = Hammer(store, name, seconds)
    jobs = [hammer.guarded(hammer.submit) for _ in range(4)]
    jobs += [hammer.guarded(functools.partial(hammer.run, f"{name}-{k}")) for k in range(2)]
    jobs.append(hammer.guarded(hammer.read))
    await asyncio.gather(*jobs)
    commits = store.commits
    await store.close()
    return {"added": hammer.added, "claimed": hammer.claimed, "errors": hammer.errors,
            "commits": commits}


if __name__ == "__main__":
    report = asyncio.run(main(sys.argv[1], float(sys.argv[3]), sys.argv[4]))
    with open(sys.argv[2], "w") as file:
        json.dump(report, file)
