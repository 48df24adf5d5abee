"""Process tasks: a pool of worker processes we start ourselves, killable one by one.

``multiprocessing`` refuses to start children inside Hypercorn's daemonic workers, so the
pool starts plain subprocesses and speaks JSON lines to them (nothing is pickled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

from ..context import TaskContext
from ..errors import WorkerCrashed
from .executors import Executor
from .job import Job

log = logging.getLogger("offload.process")
LINE_LIMIT = 256 * 1024 * 1024


class RemoteError(Exception):
    """An exception raised in a worker process, carried back as its names and message."""

    def __init__(self, type_name: str, message: str, traceback: str, mro: list[str]) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = traceback
        self.mro = mro

    def is_a(self, cls: type[BaseException]) -> bool:
        return f"{cls.__module__}.{cls.__qualname__}" in self.mro


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def request(self, message: dict[str, Any], context: TaskContext) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()
        while True:
            reply = await self.read()
            if "progress" in reply:
                update = reply["progress"]
                context.progress(update["current"], update["total"], update["message"])
            elif "ok" in reply:
                return reply["ok"]
            else:
                error = reply["error"]  # keys as in process_worker._describe
                raise RemoteError(error["type"], error["message"], error["traceback"],
                                  error["mro"])

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise WorkerCrashed(f"worker process {self.process.pid} died (exit code {code})")
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:  # a line cut short: the worker died while writing it
            self.kill()
            code = await self.process.wait()
            raise WorkerCrashed(f"worker process {self.process.pid} died mid-reply "
                                f"(exit code {code})") from None
        return reply

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        if self.process.stdin is not None:
            # closed now, on a live loop: left to the garbage collector it may be too late
            self.process.stdin.close()


class ProcessExecutor(Executor):
    """Runs plain functions in worker processes at a lower CPU priority: ``nice`` by
    default; ``idle_priority`` and ``yield_timer`` are opt-in (see
    :func:`service.runner.process_worker.lower_priority` for what each costs)."""

    def __init__(self, capacity: int, nice: int = 10, idle_priority: bool = False,
                 yield_timer: bool = False) -> None:
        self.capacity = capacity
        self._options = [str(nice), *(["idle"] if idle_priority else []),
                         *(["yield-timer"] if yield_timer else [])]
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()

    async def run(self, job: Job, context: TaskContext) -> Any:
        worker = self._take_idle() or await self._spawn()
        self._busy.add(worker)
        fn = job.task_type.fn  # the child binds the JSON arguments again: dates stay dates
        message = {"module": fn.__module__, "qualname": fn.__qualname__,
                   "args": job.record.args, "kwargs": job.record.kwargs,
                   "task_id": context.task_id, "attempt": context.attempt,
                   "task_name": context.task_name}
        try:
            value = await worker.request(message, context)
        except RemoteError:
            self._release(worker)
            raise
        except BaseException:
            # Cancelled, timed out or crashed: the worker's state is unknown, so it goes.
            self._busy.discard(worker)
            worker.kill()
            await _reap(worker)
            raise
        self._release(worker)
        return value

    def _take_idle(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.returncode is None:  # not killed while idle (OOM, kill -9)
                return worker
            worker.kill()  # already dead: this closes its pipe while the loop runs
        return None

    def _release(self, worker: _Worker) -> None:
        self._busy.discard(worker)
        self._idle.append(worker)

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.runner.process_worker", *self._options,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            limit=LINE_LIMIT,
        )
        worker = _Worker(process)
        try:
            await worker.read()  # the "ready" line: the interpreter is up
        except BaseException:
            worker.kill()
            await _reap(worker)
            raise
        return worker

    async def close(self) -> None:
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for worker in workers:
            worker.kill()
        await asyncio.gather(*(_reap(w) for w in workers), return_exceptions=True)


async def _reap(worker: _Worker) -> None:
    # shield: a reap interrupted by cancellation would leave a zombie behind
    with contextlib.suppress(Exception):
        await asyncio.shield(worker.process.wait())
