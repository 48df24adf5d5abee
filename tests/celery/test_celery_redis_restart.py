"""A restart of redis-server (store and broker, append-only file) in the middle of a stream
of submissions: the web process answers 503 while Redis is down and works again without a
restart, the worker reconnects, and every task that was accepted (202) runs to its end,
messages the broker lost in the kill (the Redis transport pops a message, then records it
as unacknowledged: a kill in between loses it) sent again from the store's dispatch plan."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.helpers import wait_terminal
from tests.e2e.sqlite_helpers import wait_until
from tests.redis_server import RedisServer, running_redis

from .cluster import Deployment, Worker, running, start_worker
from .conftest import CLIENT_TIMEOUT

pytestmark = pytest.mark.e2e
BEFORE, DURING, AFTER = 30, 10, 30  # submissions in each phase


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis(persistent=True) as server:
        yield server


def back(worker: Worker) -> bool:
    """The worker has connected to the broker again since the restart."""
    return worker.output().count("Connected to redis://") >= 2


def gave_up(worker: Worker) -> bool:
    return worker.process.poll() is not None or "Unrecoverable error" in worker.output()


async def submit_some(http: httpx.AsyncClient, count: int, accepted: list[str]) -> list[int]:
    codes = []
    for i in range(count):
        response = await http.post("/tasks", json={"name": "add", "args": [i, 1]})
        codes.append(response.status_code)
        if response.status_code == 202:
            accepted.append(response.json()["id"])
    return codes


async def test_every_accepted_task_survives_a_redis_restart(
        redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("celery-restart")
    deployment = Deployment.on(redis, tmp / "runs.jsonl")
    accepted: list[str] = []
    with running(tmp, deployment, OFFLOAD_CELERY_RESEND="1") as (webs, workers):
        async with httpx.AsyncClient(base_url=webs[0].base_url, timeout=CLIENT_TIMEOUT) as http:
            assert set(await submit_some(http, BEFORE, accepted)) == {202}
            redis.stop()  # kill -9: what was acknowledged is in the append-only file
            during = await submit_some(http, DURING, accepted)
            assert set(during) == {503}
            assert (await http.get("/readyz")).status_code in (200, 503)
            redis.start()
            worker = workers[0]
            await wait_until(lambda: back(worker) or gave_up(worker), "the worker reacts", 60)
            if not back(worker):
                # Celery 5.7's Redis transport sometimes gives up on a connection that the
                # server dropped ("Unrecoverable error: AttributeError ... 'hostname'"):
                # a supervisor starts the worker again, as docs/celery.md says to run it
                worker.kill()
                workers.append(start_worker(tmp, deployment, "w2", OFFLOAD_CELERY_RESEND="1"))
            assert set(await submit_some(http, AFTER, accepted)) == {202}
            ends = [await wait_terminal(http, task_id) for task_id in accepted]
    assert len(accepted) == BEFORE + AFTER
    # each ran to its end, but an attempt whose settle the outage cut off (one per pool
    # process at most) has no outcome: taken back after its lease, by the Interrupted rule
    cut_off = [end for end in ends if end["status"] != "succeeded"]
    assert len(cut_off) <= 2, cut_off
    assert all((end["status"], end["error"]["type"]) == ("failed", "Interrupted")
               for end in cut_off)
    assert all(end["result"] == end["args"][0] + 1 for end in ends if end not in cut_off)
