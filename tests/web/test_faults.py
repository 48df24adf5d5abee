"""Fault injection through the HTTP API: tasks that raise, hang past their timeout, return
what JSON cannot hold, kill their worker process, exhaust their retries or misuse progress
reporting, on each executor. Each ends in the right status with a clear error, and the
service goes on serving (a normal task runs; after a process fault, a process task too).

The async cases of raising, timing out and retrying to success are in test_submit.py; the
same faults below the HTTP layer in tests/runner/test_scheduler.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from .conftest import WEB_MODULES, MakeClient
from .fault_tasks import BAD_PROGRESS
from .helpers import assert_healthy, finished, submit

FAULT_MODULES = (*WEB_MODULES, "tests.web.fault_tasks")


@dataclass(frozen=True)
class Fault:
    task: str
    args: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    error_types: frozenset[str] = frozenset()
    message: str = ""  # a part of the error's message
    attempts: int = 1
    process: bool = False  # a process task: the pool must serve again after it

    def __str__(self) -> str:
        return " ".join([self.task, *map(str, self.args), *map(str, self.options)])


def fault(task: str, *args: Any, error: str | tuple[str, ...], message: str,
          attempts: int = 1, process: bool = False, **options: Any) -> Fault:
    types = frozenset((error,) if isinstance(error, str) else error)
    return Fault(task, list(args), options, types, message, attempts, process)


FAULTS = [
    # raises
    fault("thread_raises", "boom", error="ValueError", message="boom"),
    fault("process_raises", "boom", error="ValueError", message="boom", process=True),
    # hangs past its timeout
    fault("thread_hangs", timeout=0.2, error="TimeoutError", message="timeout of 0.2s"),
    fault("process_hangs", timeout=0.3, error="TimeoutError", message="timeout of 0.3s",
          process=True),
    # returns a value JSON cannot hold
    fault("returns_not_json", error="TypeError", message="not a JSON value"),
    fault("returns_infinity", error="TypeError", message="not a JSON number"),
    fault("thread_returns_not_json", error="TypeError", message="not a JSON value"),
    fault("process_returns_not_json", error="TypeError", message="not a JSON value",
          process=True),
    # kills its process-pool worker
    fault("exit_process", error="WorkerCrashed", message="exit code 3", process=True),
    fault("process_kills_itself", error="WorkerCrashed", message="exit code -9",
          process=True),
    # exhausts its retries (retries=2, on ConnectionError)
    fault("fails_with", "connection", error="ConnectionError", message="network down",
          attempts=3),
    # raises inside a progress report (a wrong type), from each executor
    *(fault(task, kind, error="TypeError", message="progress:", process=task.startswith("p"))
      for task in ("async_bad_progress", "thread_bad_progress", "process_bad_progress")
      for kind in BAD_PROGRESS),
]


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client(task_modules=FAULT_MODULES)


@pytest.mark.parametrize("case", FAULTS, ids=str)
async def test_faulty_task_fails_clearly_and_the_service_goes_on(client: Client,
                                                                 case: Fault) -> None:
    created = await submit(client, case.task, *case.args, **case.options)

    task = await finished(client, created["id"])

    assert task["status"] == "failed", task
    assert task["result"] is None
    assert task["error"]["type"] in case.error_types, task["error"]
    assert case.message in task["error"]["message"], task["error"]
    assert "traceback" not in task["error"] or task["error"]["traceback"] is None
    assert task["attempts"] == case.attempts == task["max_attempts"]
    await assert_healthy(client)
    if case.process:
        again = await finished(client, (await submit(client, "process_pid"))["id"])
        assert again["status"] == "succeeded", again


async def test_task_that_catches_its_bad_progress_report_goes_on(client: Client) -> None:
    task = await finished(client, (await submit(client, "survives_bad_progress"))["id"])

    assert task["status"] == "succeeded", task
    assert task["result"] == "ok"
    assert task["progress"] == {"current": 2, "total": 2, "message": "done"}


async def test_faults_side_by_side_leave_the_others_alone(client: Client) -> None:
    """Every fault at once, beside healthy tasks of each executor: each ends its own way."""
    faulty = [(case, await submit(client, case.task, *case.args, **case.options))
              for case in FAULTS]
    healthy = [await submit(client, "add", 1, 2), await submit(client, "process_pid"),
               await submit(client, "thread_progress", 3)]

    for case, created in faulty:
        task = await finished(client, created["id"])
        assert task["status"] == "failed", (case, task)
        assert task["error"]["type"] in case.error_types, (case, task)
    for created in healthy:
        assert (await finished(client, created["id"]))["status"] == "succeeded"
    await assert_healthy(client)


@pytest.mark.parametrize(("task", "small", "big"), [
    ("returns_big", 990, 1000),  # a string of n: n + 2 bytes of JSON
    ("process_returns_big", 990, 1000),
    ("thread_returns_big_tuple", 200, 300),  # n strings "x": 4n + 1 bytes as an array
])
async def test_a_result_bigger_than_the_limit_fails_without_retries(
    make_client: MakeClient, task: str, small: int, big: int
) -> None:
    client = await make_client(task_modules=FAULT_MODULES, max_result=1000)
    fits = await finished(client, (await submit(client, task, small))["id"])
    assert fits["status"] == "succeeded"
    assert len(fits["result"]) == small
    big = await finished(client, (await submit(client, task, big))["id"])
    assert big["status"] == "failed", big
    assert big["error"]["type"] == "ResultTooLarge"
    assert "OFFLOAD_MAX_RESULT (1000)" in big["error"]["message"]
    assert big["attempts"] == 1  # the same code would return the same value again
    await assert_healthy(client)
