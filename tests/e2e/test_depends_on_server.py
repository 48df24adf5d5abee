"""``depends_on`` on real servers and an SQLite file: a dependency survives ``kill -9`` and
a restart, and two Hypercorn workers share it (a dependant submitted on one worker runs
when its dependency, run by either, succeeds; a cancel on one reaches the other's).

Which task ran, and how often, comes from the runs journal of ``durable_tasks``; a
dependency is held by a gate file until the test creates it (nothing is timed). The last
test runs on the module's server in both modes (see conftest.py): embedded, and in Celery
mode with the tasks on a worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from .durable_tasks import read_runs, starts_by_key
from .helpers import submit, wait_terminal
from .sqlite_helpers import (
    CLIENT_TIMEOUT,
    WAIT,
    key_prefix,
    pinned_clients,
    post,
    serving,
    start_sqlite,
    wait_for_workers,
    wait_on,
    wait_until,
)

pytestmark = pytest.mark.e2e


async def call(base_url: str, method: str, path: str, **options: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as http:
        response = await http.request(method, path, **options)
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_dependant_survives_kill_9_and_runs_after_its_dependency(
        tmp_path: Path) -> None:
    db, runs, gate = tmp_path / "offload.db", tmp_path / "runs.jsonl", tmp_path / "gate"
    first = start_sqlite(tmp_path, db, runs, name="before", OFFLOAD_LEASE="1")
    with serving(first):
        url = first.base_url
        # idempotent: cut off by the kill, it runs again after the restart
        a = await call(url, "POST", "/tasks", json={
            "name": "idempotent_run", "args": ["dep-a", 60.0, str(gate)]})
        b = await call(url, "POST", "/tasks", json={
            "name": "journal_run", "args": ["dep-b"], "depends_on": [a["id"]]})
        doomed = await call(url, "POST", "/tasks", json={  # cut off: it fails, B2 cancels
            "name": "journal_run", "args": ["dep-doomed", 60.0, str(gate)]})
        b2 = await call(url, "POST", "/tasks", json={
            "name": "journal_run", "args": ["dep-b2"], "depends_on": [doomed["id"]]})
        assert b["status"] == "waiting"
        await wait_until(lambda: {"dep-a", "dep-doomed"} <= set(starts_by_key(runs)),
                         "both dependencies started")
        first.kill()  # kill -9 of the whole server while the dependencies run

    second = start_sqlite(tmp_path, db, runs, name="after", OFFLOAD_LEASE="1")
    with serving(second):
        url = second.base_url
        waiting = await call(url, "GET", f"/tasks/{b['id']}")
        assert (waiting["status"], waiting["depends_on"]) == ("waiting", [a["id"]])
        cancelled = await call(url, "GET", f"/tasks/{b2['id']}", params={"wait": WAIT})
        assert cancelled["status"] == "cancelled"
        assert doomed["id"] in cancelled["error"]["message"]
        assert "Interrupted" in cancelled["error"]["message"]
        await wait_until(lambda: len(starts_by_key(runs).get("dep-a", [])) == 2,
                         "the idempotent dependency started again")
        assert (await call(url, "GET", f"/tasks/{b['id']}"))["status"] == "waiting"
        gate.touch()  # release A
        done = await call(url, "GET", f"/tasks/{b['id']}", params={"wait": WAIT})
        assert done["status"] == "succeeded", done
        assert (await call(url, "GET", f"/tasks/{a['id']}"))["status"] == "succeeded"
    started = starts_by_key(runs)
    assert len(started["dep-b"]) == 1
    assert "dep-b2" not in started


async def test_two_workers_share_dependencies(tmp_path: Path) -> None:
    db, runs, gate = tmp_path / "offload.db", tmp_path / "runs.jsonl", tmp_path / "gate"
    server = start_sqlite(tmp_path, db, runs, "--workers", "2", name="two-workers")
    with serving(server):
        await wait_for_workers(server, 2)
        async with pinned_clients(server) as pinned:
            one, two = pinned.values()
            a = await post(one, "journal_run", args=["w-a", 60.0, str(gate)])
            b = await post(two, "journal_run", args=["w-b"], depends_on=[a["id"]])
            c = await post(two, "journal_run", args=["w-c", 60.0, str(gate)])
            d = await post(one, "add", args=[1, 2], depends_on=[c["id"]])
            await wait_until(lambda: {"w-a", "w-c"} <= set(starts_by_key(runs)),
                             "both dependencies started")
            cancel = one.check(await one.http.post(f"/tasks/{c['id']}/cancel"))
            assert cancel.status_code == 202, cancel.text
            assert (await wait_on(two, d["id"]))["status"] == "cancelled"
            gate.touch()
            done, other = await asyncio.gather(wait_on(one, b["id"]), wait_on(two, b["id"]))
            assert done["status"] == other["status"] == "succeeded", done
    started = starts_by_key(runs)
    assert len(started["w-b"]) == 1


async def test_dependants_on_the_module_server(client: httpx.AsyncClient, runs: Path,
                                               tmp_path: Path) -> None:
    """The same rules on the module's server, embedded or in Celery mode (tasks on a
    worker): a dependant waits, then runs once after its dependency succeeds; a cancelled
    dependency cancels its dependant, which never runs."""
    key, gate = key_prefix(), tmp_path / "gate"
    a = await submit(client, "journal_run", f"{key}a", 60.0, str(gate))
    b = await submit(client, "journal_run", f"{key}b", depends_on=[a["id"]])
    c = await submit(client, "journal_run", f"{key}c", 60.0, str(gate))
    d = await submit(client, "add", 1, 2, depends_on=[c["id"]])
    assert (b["status"], d["status"]) == ("waiting", "waiting")
    await wait_until(lambda: {f"{key}a", f"{key}c"} <= set(starts_by_key(runs, key)),
                     "both dependencies started")
    assert (await client.post(f"/tasks/{c['id']}/cancel")).status_code == 202
    cancelled = await wait_terminal(client, d["id"])
    assert cancelled["status"] == "cancelled", cancelled
    assert c["id"] in cancelled["error"]["message"]
    assert (await client.get(f"/tasks/{b['id']}")).json()["status"] == "waiting"
    gate.touch()
    done = await wait_terminal(client, b["id"])
    assert (done["status"], done["result"]) == ("succeeded", f"{key}b")
    started = starts_by_key(runs, key)
    assert len(started[f"{key}b"]) == 1
    assert started[f"{key}b"][0].at >= max(run.at for run in read_runs(runs)
                                           if run.key == f"{key}a" and run.event == "end")
