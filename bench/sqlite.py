"""B9: the durable SQLite store (issue 8's performance bars), scenarios of ``make bench``.

Every server here is ``make run``'s command (``python -m service``, hypercorn.toml) on a free
loopback port, started fresh for each run; an SQLite run gets a fresh database file in a
temporary directory of its own, removed after the server has stopped. After each run the
server's log is read for 5xx answers, ERROR/CRITICAL lines, tracebacks and "database is
locked"; any found is a note under the scenario (and in the JSON).

- B9a: ``POST /tasks`` 2xx/s, SQLite store ÷ memory store, one worker, B1's wrk load (the
  queue bound raised on both, so that no answer is a 429).
- B9b: end to end over HTTP (B2's driver, ``bench/e2e.py single``), SQLite with two workers
  ÷ SQLite with one.
- B9rss: RSS of the worker holding N pending (delayed) ``sleep`` tasks, SQLite and memory.
- B9wake: two workers on SQLite: a ``?wait=`` held by the worker not running the task, from
  the task's ``finished_at`` to the answer (``bench/wake.py``).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench import procs
from bench.common import (
    Outcome,
    Row,
    check_post,
    e2e,
    order,
    percentile,
    product_python,
    run_json,
    run_wrk,
    say,
    submit_batches,
    wait_idle,
)
from bench.procs import Proc

if TYPE_CHECKING:
    from bench.run import Sizes

ACCESS = re.compile(r'^\[[^]]+\] \[(\d+)\] \[INFO\] \S+ - - \[[^]]+\] "[^"]*" (\d{3}) ')
PROBLEM = re.compile(r"\[(?:ERROR|CRITICAL)\]|Traceback|database is locked", re.I)


# -- servers with a fresh database each ------------------------------------------------------

@dataclass
class Served:
    proc: Proc
    db: Path | None
    db_bytes: int = 0
    log: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def serve(logs: Path, name: str, store: str, workers: int = 1, **env: str) -> Iterator[Served]:
    """A fresh server on ``store`` ("memory" or "sqlite": a new file in a new temporary
    directory); stopped, its log read into ``Served.log``, and the directory removed on
    exit."""
    with contextlib.ExitStack() as stack:
        db = None
        if store == "sqlite":
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="offload-b9-"))
            db = Path(folder) / "offload.db"
            env["OFFLOAD_STORE"] = f"sqlite:///{db}"  # an absolute path: four slashes
        proc = procs.service(name, logs, workers, **env)
        served = Served(proc, db)
        try:
            with procs.running(proc):
                yield served
                served.db_bytes = db_bytes(db)
        finally:
            served.log = scan_log(proc.log)


def db_bytes(db: Path | None) -> int:
    """The database's size on disk: the file, its WAL and its shared-memory index."""
    if db is None:
        return 0
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return sum(f.stat().st_size for f in files if f.exists())


def scan_log(log: Path) -> dict[str, Any]:
    """Hypercorn's access lines (answers by worker PID and status) and any problem line."""
    by_worker: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    with contextlib.suppress(OSError), log.open(errors="replace") as lines:
        for line in lines:
            access = ACCESS.match(line)
            if access:
                by_worker[access.group(1)] += 1
                statuses[access.group(2)] += 1
            elif PROBLEM.search(line):
                problems.append(line.rstrip()[:300])
    server_errors = sum(n for status, n in statuses.items() if status.startswith("5"))
    return {"answers_by_worker": dict(by_worker), "statuses": dict(statuses),
            "server_errors": server_errors, "problem_count": len(problems),
            "problems": problems[:10]}


def log_notes(out: Outcome) -> None:
    """A note for every run whose server answered 5xx or logged a problem line."""
    for which, results in out.runs.items():
        for index, result in enumerate(results):
            log = result.get("log", {})
            if log.get("server_errors") or log.get("problem_count"):
                first = log["problems"][0] if log["problems"] else ""
                out.notes.append(f"{which} run {index + 1}: {log['server_errors']} 5xx, "
                                 f"{log['problem_count']} problem lines in the server log, "
                                 f"e.g. {first!r}")
    if not any("problem lines" in n for n in out.notes):
        out.notes.append("server logs: no 5xx, no ERROR, no traceback, no 'database is locked'")


# -- B9a: POST /tasks req/s, SQLite / memory ---------------------------------------------------

B9A_MAX_QUEUE = 1_000_000  # SQLite's runner falls behind its own front under this load


def b9a_run(s: Sizes, logs: Path, store: str) -> dict[str, Any]:
    with (serve(logs, f"B9a-{store}", store, OFFLOAD_MAX_QUEUE=str(B9A_MAX_QUEUE)) as served,
          httpx.Client(base_url=served.proc.url, timeout=30) as client):
        check_post(served.proc, True)
        run_wrk(served.proc.url, s.b1_connections, s.b1_warmup)  # warm-up, not counted
        before = client.get("/stats").json()["counts"]
        result = run_wrk(served.proc.url, s.b1_connections, s.b1_seconds)
        after = client.get("/stats").json()
    accepted = sum(after["counts"].values()) - sum(before.values())  # answered to wrk or not
    done = after["counts"]["succeeded"] - before["succeeded"]
    return {**result, "accepted": accepted, "completed": done,
            "completed_share": done / accepted if accepted else 0,
            "backlog_after": after["queue_depth"], "db_bytes": served.db_bytes,
            "log": served.log}


def b9a(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B9a", f"SQLite store, 1 worker: POST /tasks (add) 2xx/s against the memory "
                         f"store, {s.b1_connections} connections, {s.b1_seconds:g} s, wrk",
                  params={"connections": s.b1_connections, "seconds": s.b1_seconds,
                          "warmup_s": s.b1_warmup, "wrk_threads": 1, "workers": 1,
                          "max_queue": B9A_MAX_QUEUE})
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "sqlite": []}
    for index in range(s.rounds):
        for store in order(index, ["memory", "sqlite"]):
            result = b9a_run(s, logs, store)
            runs[store].append(result)
            bad = result["non_2xx"] or result["socket_errors"]
            say(f"  B9a round {index + 1} {store:7} {result['ok_per_s']:9.1f} 2xx/s  "
                f"p99 {result['latency_ms'].get('99', float('nan')):.1f} ms; completed "
                f"{result['completed_share']:.0%} of them by the end ("
                f"{result['backlog_after']:,} left)"
                + (f"  (non-2xx: {result['non_2xx']}, socket errors: "
                   f"{result['socket_errors']})" if bad else ""))
    out.runs = runs
    out.rows = b9a_rows(runs)
    ratio = out.ratio("SQLite store (group commit)", "memory store (memory://)")
    out.ratios = [("ratio SQLite / memory", ratio)]
    out.bar, out.met = ">= 0.8 x the memory store's 2xx/s", ratio >= 0.8
    out.notes.append(f"OFFLOAD_MAX_QUEUE={B9A_MAX_QUEUE:,} on both, so that no POST is a 429; "
                     "'completed' is the share of the accepted tasks done when wrk stopped")
    if any(r["non_2xx"] for rs in runs.values() for r in rs):
        out.notes.append("some requests were answered non-2xx (see JSON)")
    log_notes(out)
    return out


def b9a_rows(runs: dict[str, list[dict[str, Any]]]) -> list[Row]:
    def values(store: str, key: str, scale: float = 1.0) -> list[float]:
        return [r[key] * scale for r in runs[store]]

    def p99(store: str) -> list[float]:
        return [r["latency_ms"].get("99", 0.0) for r in runs[store]]

    return [Row("memory store (memory://)", values("memory", "ok_per_s"), "2xx/s"),
            Row("SQLite store (group commit)", values("sqlite", "ok_per_s"), "2xx/s"),
            Row("memory, wrk p99 latency (info)", p99("memory"), "ms", 1),
            Row("SQLite, wrk p99 latency (info)", p99("sqlite"), "ms", 1),
            Row("memory, completed by the end (info)",
                values("memory", "completed_share", 100), "%"),
            Row("SQLite, completed by the end (info)",
                values("sqlite", "completed_share", 100), "%")]


# -- B9b: end to end, SQLite 2 workers / 1 worker -----------------------------------------------

def b9b(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B9b", f"SQLite store, end to end over HTTP: {s.b2_tasks:,} add tasks, one "
                         f"POST /tasks each ({s.b2_connections} connections), first submit "
                         "to last result; 2 workers against 1",
                  params={"tasks": s.b2_tasks, "connections": s.b2_connections})
    runs: dict[str, list[dict[str, Any]]] = {"1 worker": [], "2 workers": []}
    for index in range(s.rounds):
        for which in order(index, list(runs)):
            workers = int(which.split()[0])
            with serve(logs, f"B9b-{workers}w", "sqlite", workers) as served:
                result = e2e("single", served.proc.port or 0, "offload", s.b2_tasks,
                             s.b2_connections)
            result["log"] = served.log
            runs[which].append(result)
            say(f"  B9b round {index + 1} {which:9} {result['tasks_per_s']:9.1f} tasks/s "
                f"({result['elapsed_s']:.1f} s; submits {result['submit_per_s']:.0f}/s; "
                f"answers by worker {served.log['answers_by_worker']})")
    out.runs = runs
    out.rows = [Row("SQLite, 1 worker", [r["tasks_per_s"] for r in runs["1 worker"]],
                    "tasks/s"),
                Row("SQLite, 2 workers", [r["tasks_per_s"] for r in runs["2 workers"]],
                    "tasks/s")]
    ratio = out.ratio("SQLite, 2 workers", "SQLite, 1 worker")
    out.ratios = [("ratio 2 workers / 1 worker", ratio)]
    out.bar, out.met = ">= 1.3 x one worker", ratio >= 1.3
    log_notes(out)
    return out


# -- B9rss: RSS of a worker holding N pending tasks ---------------------------------------------

def b9rss_run(s: Sizes, logs: Path, store: str) -> dict[str, Any]:
    n = s.b9_rss_tasks
    with (serve(logs, f"B9rss-{store}", store, OFFLOAD_MAX_QUEUE=str(n + 1000),
                OFFLOAD_SHUTDOWN_GRACE="0") as served,
          httpx.Client(base_url=served.proc.url, timeout=120) as client):
        pid = procs.worker_pid(served.proc)
        submit_batches(client, {"name": "add", "args": [1, 2]}, 2000)  # warm-up
        wait_idle(client, served.proc)
        time.sleep(0.5)
        before = procs.rss_kib(pid)
        started = time.perf_counter()
        submit_batches(client, {"name": "sleep", "args": [1], "delay": 3600}, n)

        def all_there() -> bool:
            return bool(client.get("/stats").json()["queue_depth"] >= n)
        procs.wait_until(all_there, f"{n} pending tasks", 120, served.proc, step=0.1)
        submit_s = time.perf_counter() - started
        time.sleep(1.0)
        after = procs.rss_kib(pid)
        stats = client.get("/stats").json()
    return {"store": store, "tasks": n, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_task": (after - before) * 1024 / n, "submit_s": submit_s,
            "scheduled": stats["counts"]["scheduled"], "running": stats["running"],
            "db_bytes": served.db_bytes, "log": served.log}


def b9rss(s: Sizes, logs: Path, b7_queued: Row | None) -> Outcome:
    n = s.b9_rss_tasks
    out = Outcome("B9rss", f"RSS of the worker holding {n:,} pending sleep tasks (delay 1 h, "
                           "via /tasks/batch), SQLite against memory (VmRSS after - before)",
                  params={"tasks": n, "delay_s": 3600})
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "sqlite": []}
    for index in range(s.rounds):
        for store in order(index, ["memory", "sqlite"]):
            result = b9rss_run(s, logs, store)
            runs[store].append(result)
            say(f"  B9rss round {index + 1} {store:7} {result['bytes_per_task']:7.0f} B/task "
                f"(RSS {result['rss_before_kib'] / 1024:.1f} -> "
                f"{result['rss_after_kib'] / 1024:.1f} MiB; {result['scheduled']} scheduled; "
                f"database {result['db_bytes'] / 2**20:.1f} MiB)")
    out.runs = runs
    out.rows = [Row(f"SQLite, worker RSS holding {n:,}",
                    [r["rss_after_kib"] / 1024 for r in runs["sqlite"]], "MiB", 1),
                Row("SQLite, per pending task", [r["bytes_per_task"] for r in runs["sqlite"]],
                    "B/task"),
                Row("SQLite, database file + WAL (info)",
                    [r["db_bytes"] / 2**20 for r in runs["sqlite"]], "MiB", 1),
                Row(f"memory, worker RSS holding {n:,}",
                    [r["rss_after_kib"] / 1024 for r in runs["memory"]], "MiB", 1),
                Row("memory, per pending task", [r["bytes_per_task"] for r in runs["memory"]],
                    "B/task")]
    out.ratios = [("ratio per task SQLite / memory",
                   out.ratio("SQLite, per pending task", "memory, per pending task"))]
    if b7_queued is not None:
        out.ratios.append(("ratio per task SQLite / B7 (memory, queued)",
                           out.row("SQLite, per pending task").median / b7_queued.median))
    out.bar = "none: records live on disk, the worker's RSS is reported"
    log_notes(out)
    return out


# -- B9wake: a waiter on another worker ---------------------------------------------------------

def b9wake(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B9wake", f"SQLite, 2 workers: GET /tasks/{{id}}?wait=10 answered by the "
                            f"worker not running the task, {s.b9_wake_tasks} sleep("
                            f"{s.b9_wake_hold:g}) tasks one at a time, answer time - "
                            "finished_at",
                  params={"tasks": s.b9_wake_tasks, "hold_s": s.b9_wake_hold,
                          "same_worker_every": 4})
    runs: dict[str, list[dict[str, Any]]] = {"sqlite 2 workers": []}
    for index in range(s.rounds):
        with serve(logs, "B9wake", "sqlite", 2) as served:
            result = run_json([product_python(), "-m", "bench.wake", "--port",
                               str(served.proc.port), "--n", str(s.b9_wake_tasks), "--hold",
                               str(s.b9_wake_hold), "--same-every", "4"], timeout=900)
        result = {**_wake_summary(result), "log": served.log}
        runs["sqlite 2 workers"].append(result)
        say(f"  B9wake round {index + 1} cross-worker p50 {result['cross_p50_ms']:.1f} ms  "
            f"p99 {result['cross_p99_ms']:.1f} ms  max {result['cross_max_ms']:.1f} ms; "
            f"same worker p50 {result['same_p50_ms']:.1f} ms  ({result['tasks']} tasks, "
            f"dropped {result['dropped']})")
    out.runs = runs
    done = runs["sqlite 2 workers"]
    out.rows = [Row("cross-worker wake, p50", [r["cross_p50_ms"] for r in done], "ms", 1),
                Row("cross-worker wake, p99", [r["cross_p99_ms"] for r in done], "ms", 1),
                Row("cross-worker wake, max", [r["cross_max_ms"] for r in done], "ms", 1),
                Row("same-worker wake, p50 (info)", [r["same_p50_ms"] for r in done], "ms", 1),
                Row("same-worker wake, p99 (info)", [r["same_p99_ms"] for r in done], "ms", 1)]
    p99 = out.row("cross-worker wake, p99").median
    out.bar, out.met = "cross-worker p99 <= 100 ms (on an idle machine)", p99 <= 100
    log_notes(out)
    return out


def _wake_summary(result: dict[str, Any]) -> dict[str, Any]:
    cross, same = result.pop("cross_s"), result.pop("same_s")
    if not cross:
        raise RuntimeError(f"no cross-worker sample: {result}")
    same = same or [float("nan")]
    return {**result, "cross_p50_ms": percentile(cross, 50) * 1000,
            "cross_p99_ms": percentile(cross, 99) * 1000, "cross_max_ms": max(cross) * 1000,
            "same_p50_ms": percentile(same, 50) * 1000,
            "same_p99_ms": percentile(same, 99) * 1000,
            "cross_ms": [round(x * 1000, 3) for x in cross],
            "same_ms": [round(x * 1000, 3) for x in same]}
