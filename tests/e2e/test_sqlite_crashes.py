"""``kill -9`` of real servers on an SQLite file: nothing accepted is lost, nothing stays
running, what was cut off re-runs only if its type is idempotent, and a live peer's tasks
are never touched.

Which process ran what, and how often, comes from the runs journal of ``durable_tasks``
(appended by the tasks themselves, so it survives any kill); what the store says comes over
HTTP from the next server; the file itself is checked with ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from .durable_tasks import read_runs, starts, starts_by_key
from .helpers import TERMINAL
from .server import Server, spawn
from .sqlite_helpers import (
    CLIENT_TIMEOUT,
    WAIT,
    group_pids,
    serving,
    sqlite_env,
    start_sqlite,
    wait_until,
)

pytestmark = pytest.mark.e2e
ROUNDS = 24  # kill -9 of the whole server, this many times in one test
SUBMITTERS = 4


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (answer,) = conn.execute("PRAGMA integrity_check").fetchone()
    conn.close()
    return str(answer)


async def get_on(server: Server, task_id: str, wait: float = WAIT) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
        response = await http.get(f"/tasks/{task_id}", params={"wait": wait})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def submit_to(server: Server, name: str, *args: Any, **options: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
        response = await http.post("/tasks", json={"name": name, "args": list(args),
                                                   **options})
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


# -- kill -9 at random moments, again and again ---------------------------------------------


def submission(rng: random.Random, key: str) -> tuple[str, str, dict[str, Any]]:
    """What kind of task, its key, and a random body for POST /tasks."""
    roll = rng.random()
    body: dict[str, Any]
    if roll < 0.2:
        kind, body = "add", {"name": "add", "args": [1, 2]}
    elif roll < 0.5:
        kind, body = "once", {"name": "journal_run", "args": [key, rng.uniform(0, 0.5)]}
    elif roll < 0.8:
        kind, body = "idem", {"name": "idempotent_run", "args": [key, rng.uniform(0, 0.5)]}
    else:
        kind, body = "once", {"name": "progress_run", "args": [key, 3, 0.05]}
    if rng.random() < 0.25:
        body["delay"] = rng.uniform(0.1, 1.5)
    return kind, key, body


async def storm(server: Server, rng: random.Random, label: str,
                accepted: dict[str, tuple[str, str]], refused: Counter[int]) -> None:
    """Submit from several clients at once; ``kill -9`` the server at a random moment."""

    async def submitter(n: int) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
            for i in range(10_000):
                batch = [submission(rng, f"{label}-{n}-{i}-{j}")
                         for j in range(3 if rng.random() < 0.1 else 1)]
                try:
                    if len(batch) == 1:
                        response = await http.post("/tasks", json=batch[0][2])
                    else:  # all or nothing
                        response = await http.post("/tasks/batch", json={
                            "tasks": [body for _, _, body in batch]})
                except httpx.TransportError:
                    return  # killed: this one may or may not be stored, and was not promised
                if response.status_code != 202:
                    refused[response.status_code] += 1
                    continue
                body = response.json()  # promised: on disk
                for (kind, key, _), task in zip(batch, body.get("items", [body]), strict=True):
                    accepted[task["id"]] = (kind, key)

    clients = [asyncio.create_task(submitter(n)) for n in range(SUBMITTERS)]
    await asyncio.sleep(rng.uniform(0.0, 0.8))  # the random moment of the kill
    server.kill()
    await asyncio.gather(*clients)


async def test_kill_9_at_random_moments_loses_no_accepted_task(tmp_path: Path) -> None:
    seed = int(os.environ.get("E2E_SEED") or random.randrange(2**32))
    print(f"\nrandom seed {seed} (E2E_SEED={seed} makes the same choices again)")
    rng = random.Random(seed)
    db, runs = tmp_path / "offload.db", tmp_path / "runs.jsonl"
    accepted: dict[str, tuple[str, str]] = {}  # id: (kind, key)
    refused: Counter[int] = Counter()
    for r in range(ROUNDS):
        workers = "1" if r % 2 else "2"
        if rng.random() < 0.2:  # killed while it starts: opening the file, taking leases back
            server = spawn(tmp_path, sqlite_env(db, runs, OFFLOAD_LEASE="1"),
                           "--workers", workers, name=f"round-{r}")
            await asyncio.sleep(rng.uniform(0.0, 0.6))  # the random moment of the kill
            assert server.process.poll() is None, server.output_tail()
            server.kill()
            continue
        server = start_sqlite(tmp_path, db, runs, "--workers", workers, name=f"round-{r}",
                              OFFLOAD_LEASE="1")
        await storm(server, rng, f"r{r}", accepted, refused)
    assert not refused, f"answers other than 202 while the server ran: {dict(refused)}"
    assert len(accepted) > 100, "the storm submitted little"

    final = start_sqlite(tmp_path, db, runs, name="final", OFFLOAD_LEASE="1")
    with serving(final):
        ends: dict[str, dict[str, Any]] = {}

        async def settle(chunk: list[str]) -> None:
            async with httpx.AsyncClient(base_url=final.base_url,
                                         timeout=CLIENT_TIMEOUT) as http:
                for task_id in chunk:
                    response = await http.get(f"/tasks/{task_id}", params={"wait": WAIT})
                    assert response.status_code == 200, f"{task_id}: {response.text}"
                    ends[task_id] = response.json()

        ids = list(accepted)
        await asyncio.gather(*(settle(ids[c::8]) for c in range(8)))
        output = final.output()
    assert integrity(db) == "ok"
    assert "[ERROR]" not in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]

    runs_of = {key: len(found) for key, found in starts_by_key(runs).items()}
    ended = {run.key for run in read_runs(runs) if run.event == "end"}
    outcomes: Counter[str] = Counter()
    for task_id, (kind, key) in accepted.items():
        task = ends[task_id]
        ran = runs_of.get(key, 0)
        assert task["status"] in TERMINAL, task
        assert ran <= task["attempts"], f"{key} started {ran} times in {task['attempts']}"
        error = task["error"]
        if task["status"] == "succeeded":
            assert task["attempts"] >= 1
            assert kind == "add" or key in ended, f"{key} succeeded, never ran to its end"
        else:
            assert (task["status"], error["type"]) == ("failed", "Interrupted"), task
        if kind == "idem":
            assert task["attempts"] <= task["max_attempts"] + 1, task
            if task["status"] == "failed":  # cut off every time it was allowed to run
                assert task["attempts"] == task["max_attempts"] + 1, task
        else:
            assert task["attempts"] == 1, f"{key} was started again: {task}"
            assert ran <= 1, f"{key} ran {ran} times"
        outcomes[f"{kind} {task['status']} after {task['attempts']} attempt(s)"
                 f" ran {ran}"] += 1
    print(f"{len(accepted)} accepted tasks over {ROUNDS} kills: "
          f"{dict(sorted(outcomes.items()))}")
    assert any(f"idem succeeded after {n}" in outcome for outcome in outcomes
               for n in (2, 3)), "some idempotent task was cut off and ran again"
    assert any(outcome.startswith("once failed") for outcome in outcomes), (
        "some task was cut off while it ran")


# -- one crash, looked at closely -----------------------------------------------------------


async def test_after_kill_9_the_next_start_runs_re_runs_and_fails_by_the_rules(
    tmp_path: Path,
) -> None:
    db, runs, gate = tmp_path / "offload.db", tmp_path / "runs.jsonl", tmp_path / "gate"
    first = start_sqlite(tmp_path, db, runs, name="first", OFFLOAD_LEASE="1",
                         OFFLOAD_MAX_CONCURRENCY="2")
    with serving(first):
        idem = await submit_to(first, "idempotent_run", "idem", 60.0, str(gate))
        once = await submit_to(first, "journal_run", "once", 60.0, str(gate))
        await wait_until(lambda: len(starts(runs)) == 2, "both long tasks run")
        queued = await submit_to(first, "journal_run", "queued")  # no room left to run it
        scheduled = await submit_to(first, "journal_run", "scheduled", delay=2.0)
        first_pids = group_pids(first)
        first.kill()
    with sqlite3.connect(db) as conn:  # what the file holds after the crash
        statuses = dict(conn.execute("SELECT id, status FROM tasks").fetchall())
    conn.close()
    assert statuses == {idem["id"]: "running", once["id"]: "running",
                        queued["id"]: "queued", scheduled["id"]: "scheduled"}

    gate.touch()  # a re-run ends at once
    second = start_sqlite(tmp_path, db, runs, name="second", OFFLOAD_LEASE="1")
    with serving(second):
        rerun = await get_on(second, idem["id"])
        failed = await get_on(second, once["id"])
        ran = await get_on(second, queued["id"])
        due = await get_on(second, scheduled["id"])
        second_pids = group_pids(second)
    assert integrity(db) == "ok"

    assert (rerun["status"], rerun["attempts"], rerun["result"]) == ("succeeded", 2, "idem")
    (before, after) = starts(runs, "idem")
    assert before.pid in first_pids
    assert after.pid in second_pids
    assert (before.attempt, after.attempt) == (1, 2)

    assert (failed["status"], failed["attempts"]) == ("failed", 1), failed
    assert failed["error"]["type"] == "Interrupted"
    assert len(starts(runs, "once")) == 1

    assert (ran["status"], ran["attempts"], ran["result"]) == ("succeeded", 1, "queued")
    assert (due["status"], due["attempts"], due["result"]) == ("succeeded", 1, "scheduled")
    assert due["started_at"] >= due["scheduled_at"]
    for key in ("queued", "scheduled"):
        (run,) = starts(runs, key)
        assert run.pid in second_pids


# -- a worker dies while another lives ------------------------------------------------------


async def test_the_tasks_of_a_dead_server_move_to_the_live_one(tmp_path: Path) -> None:
    db, runs = tmp_path / "offload.db", tmp_path / "runs.jsonl"
    gate_a, gate_b = tmp_path / "gate-a", tmp_path / "gate-b"
    # two servers on one file, as on two hosts; A can run 4 tasks at once, no more
    a = start_sqlite(tmp_path, db, runs, name="a", OFFLOAD_LEASE="2",
                     OFFLOAD_MAX_CONCURRENCY="4")
    with serving(a):
        held_by_a = {key: await submit_to(a, name, key, 60.0, str(gate_a))
                     for key, name in (("a-idem-0", "idempotent_run"),
                                       ("a-idem-1", "idempotent_run"),
                                       ("a-once-0", "journal_run"),
                                       ("a-once-1", "journal_run"))}
        await wait_until(lambda: len(starts(runs, "a-")) == 4, "A runs its four tasks")
        a_pids = group_pids(a)
        assert {run.pid for run in starts(runs, "a-")} <= a_pids

        b = start_sqlite(tmp_path, db, runs, name="b", OFFLOAD_LEASE="2")
        with serving(b):
            held_by_b = await submit_to(b, "idempotent_run", "b-held", 60.0, str(gate_b))
            await wait_until(lambda: len(starts(runs, "b-held")) == 1, "B runs its task")
            b_pids = group_pids(b)
            assert starts(runs, "b-held")[0].pid in b_pids, "A is full: B runs it"

            a.kill()
            gate_a.touch()  # a re-run ends at once
            ends = {key: await get_on(b, task["id"]) for key, task in held_by_a.items()}
            for key in ("a-idem-0", "a-idem-1"):
                assert (ends[key]["status"], ends[key]["attempts"]) == ("succeeded", 2)
                before, after = starts(runs, key)
                assert before.pid in a_pids
                assert after.pid in b_pids
            for key in ("a-once-0", "a-once-1"):
                assert (ends[key]["status"], ends[key]["attempts"]) == ("failed", 1)
                assert ends[key]["error"]["type"] == "Interrupted"
                assert len(starts(runs, key)) == 1

            still = await get_on(b, held_by_b["id"], wait=0)
            assert (still["status"], still["attempts"]) == ("running", 1), still
            gate_b.touch()
            done = await get_on(b, held_by_b["id"])
            assert (done["status"], done["attempts"]) == ("succeeded", 1), done
            assert len(starts(runs, "b-held")) == 1
    assert integrity(db) == "ok"


async def test_a_starting_server_never_touches_a_task_a_live_peer_holds(tmp_path: Path) -> None:
    db, runs, gate = tmp_path / "offload.db", tmp_path / "runs.jsonl", tmp_path / "gate"
    lease = 3.0  # A renews every second; a noisy machine does not make it miss one
    a = start_sqlite(tmp_path, db, runs, name="a", OFFLOAD_LEASE=str(lease))
    with serving(a):
        long = await submit_to(a, "idempotent_run", "long", 60.0, str(gate))
        await wait_until(lambda: len(starts(runs, "long")) == 1, "A runs the task")
        a_pids = group_pids(a)

        b = start_sqlite(tmp_path, db, runs, name="b", OFFLOAD_LEASE=str(lease))
        with serving(b):
            # B looks for expired leases as it starts and every lease/3 seconds after: give
            # it more than one whole lease to (wrongly) take the task
            held = await get_on(b, long["id"], wait=lease + 1)
            assert (held["status"], held["attempts"]) == ("running", 1), held
            works = await submit_to(b, "add", 2, 3)
            assert (await get_on(b, works["id"]))["result"] == 5
            gate.touch()
            done = await get_on(b, long["id"])
    assert (done["status"], done["attempts"], done["result"]) == ("succeeded", 1, "long")
    (run,) = starts(runs, "long")
    assert run.pid in a_pids

