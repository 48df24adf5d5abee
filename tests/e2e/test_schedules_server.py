"""Schedules on the real server: two Hypercorn workers on one SQLite file, both running the
scheduler, an ``every: 1`` schedule.

Which task belongs to which tick is read from the workers' JSON log lines (each tick is
logged with its time and task id, ``new_task`` true in the process whose submission made
it), and checked against the tasks the API lists: exactly one task per tick, every task
accounted for. Then the server stops, stays down a few seconds, starts again, and the
missed-tick policy decides what the downtime left: ``skip`` runs none of its ticks,
``latest`` runs exactly one, the latest.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import Server, finish, server_env, spawn
from .sqlite_helpers import start_sqlite

pytestmark = pytest.mark.e2e

TICKS = 10  # full ticks the first run must make
DOWNTIME = 3.0  # seconds the server stays down between the runs
DEADLINE = 60.0  # seconds given to the ticks asked for (each takes one)
REFUSAL_DEADLINE = 30.0  # seconds; a refusing server is gone in about one


def _schedules(missed: str) -> str:
    # overlap: every tick runs even if a busy machine has not finished the last one yet
    return json.dumps([{"name": "sec", "task": "add", "every": 1, "args": [1, 1],
                        "missed": missed, "overlap": True}])


def _log_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue  # a line cut by the end of the file, read while being written
    return lines


def _events(server: Server, event: str) -> list[dict[str, Any]]:
    return [line for line in _log_lines(server) if line.get("event") == event]


def _made(server: Server) -> dict[float, list[str]]:
    """The ticks whose task this server's workers made, each with the task ids they made."""
    made: dict[float, list[str]] = defaultdict(list)
    for line in _events(server, "schedule_tick"):
        if line.get("new_task"):
            made[_seconds(line["tick"])].append(line["task_id"])
    return dict(made)


def _starts(server: Server) -> list[float]:
    return [_seconds(line["at"]) for line in _events(server, "schedules_started")]


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _wait_for_ticks(server: Server, count: int) -> None:
    """Poll the log until this server's workers made ``count`` ticks' tasks."""
    end = time.monotonic() + DEADLINE
    while len(_made(server)) < count:
        assert server.process.poll() is None, server.output_tail()
        assert time.monotonic() < end, f"{count} ticks not made in {DEADLINE}s"
        time.sleep(0.1)  # a look at a log file; the ticks come once a second


def _run(tmp: Path, db: Path, missed: str, name: str, ticks: int) -> Server:
    """Start the server with two workers, let it make ``ticks`` ticks, stop it cleanly."""
    server = start_sqlite(tmp, db, tmp / "runs.jsonl", "--workers", "2", name=name,
                          OFFLOAD_SCHEDULES=_schedules(missed), OFFLOAD_LOG_FORMAT="json")
    try:
        _wait_for_ticks(server, ticks)
        assert len(_starts(server)) == 2, "both workers run the scheduler"
        listed = httpx.get(f"{server.base_url}/schedules", timeout=30).json()["items"]
        assert [(s["name"], s["every"], s["missed"]) for s in listed] == [("sec", 1, missed)]
    except BaseException:
        server.kill()
        print(server.output_tail())
        raise
    finish(server)
    return server


def _coalesced(server: Server) -> set[float]:
    """Ticks a worker says it slept through (its loop stalled past them): those and only
    those may be missing, when every worker stalled over them."""
    skipped: set[float] = set()
    for line in _events(server, "schedule_coalesced"):
        first, due = _seconds(line["missed_from"]), _seconds(line["tick"])
        skipped.update(first + n for n in range(int(due - first)))
    return skipped


def _one_task_per_tick(made: dict[float, list[str]], server: Server) -> list[float]:
    """Each tick made once, and none missing between the first and the last unless a
    worker logged that it slept through it; the ticks."""
    ticks = sorted(made)
    assert all(len(ids) == 1 for ids in made.values()), made
    # The first tick is the first after a scheduler started; the last one before the
    # stop; the ticks after it fell while both workers were stopping.
    missing = {ticks[0] + n for n in range(int(ticks[-1] - ticks[0]) + 1)} - set(ticks)
    assert missing <= _coalesced(server), (ticks, missing)
    return ticks


@pytest.mark.parametrize("missed", ["skip", "latest"])
def test_one_task_per_tick_over_two_workers_and_the_missed_policy_after_a_restart(
        tmp_path: Path, missed: str) -> None:
    db = tmp_path / "offload.db"
    first = _run(tmp_path, db, missed, "first", TICKS + 1)
    made_before = _made(first)
    before = _one_task_per_tick(made_before, first)
    assert len(before) >= TICKS + 1
    assert before[0] == math.floor(min(_starts(first))) + 1  # the first tick after a start

    time.sleep(DOWNTIME)  # the downtime itself (ticks fall while nothing runs), no wait

    second = start_sqlite(tmp_path, db, tmp_path / "runs.jsonl", "--workers", "2",
                          name="second", OFFLOAD_SCHEDULES=_schedules(missed),
                          OFFLOAD_LOG_FORMAT="json")
    try:
        _wait_for_ticks(second, 3)
        tasks = httpx.get(f"{second.base_url}/tasks", params={"name": "add", "limit": 1000},
                          timeout=30).json()["items"]
    except BaseException:
        second.kill()
        print(second.output_tail())
        raise
    finish(second)

    made_after = _made(second)
    after = _one_task_per_tick(made_after, second)
    restarted = min(_starts(second))
    in_the_gap = [tick for tick in after if tick <= restarted]
    if missed == "skip":
        assert in_the_gap == [], "a tick of the downtime ran"
        assert after[0] == math.floor(restarted) + 1
    else:
        # the latest tick missed, once; then the ticks after the start, as usual
        assert in_the_gap == [math.floor(restarted)]
        assert after[0] == math.floor(restarted)
        assert _events(second, "schedule_catch_up")
    assert after[0] - before[-1] >= DOWNTIME  # none of the missed ticks in between ran

    # Every task the store holds is one of the ticks', made once: no task of its own.
    made = {**made_before, **made_after}
    tick_of = {ids[0]: tick for tick, ids in made.items()}
    assert sorted(task["id"] for task in tasks) == sorted(tick_of)
    for task in tasks:
        assert task["args"] == [1, 1]
        assert _seconds(task["created_at"]) >= tick_of[task["id"]]  # made at its tick


@pytest.mark.parametrize(("schedules", "message"), [
    ('[{"name": "nightly", "task": "add", "cron": "0 25 * * *"}]',
     "schedule 'nightly': bad cron expression '0 25 * * *'"),
    ('[{"name": "nightly", "task": "add", "cron": "0 3 * * *", "timezone": "Paris"}]',
     "schedule 'nightly': unknown time zone 'Paris'"),
    ('[{"name": "nightly", "task": "report", "every": 60}]',
     "schedule 'nightly': no task named 'report' is registered"),
    ('[{"name": "nightly", "task": "add", "every": 60, "args": [1]}]',
     "schedule 'nightly': bad arguments for 'add'"),
    ('[{"name": "nightly"', "OFFLOAD_SCHEDULES: not valid JSON"),
], ids=["cron", "timezone", "task", "args", "json"])
def test_a_bad_schedule_stops_the_server_from_starting_naming_it(
        tmp_path: Path, schedules: str, message: str) -> None:
    server = spawn(tmp_path, server_env(OFFLOAD_SCHEDULES=schedules), name="bad-schedule")
    code = server.wait_exit(REFUSAL_DEADLINE)
    if code is None:
        server.kill()
    output = server.output()
    assert code not in (None, 0), f"exit code {code}:\n{output[-4000:]}"
    assert message in output, output[-4000:]
