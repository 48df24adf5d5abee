"""B10: Celery mode (issue 9's performance bars), scenarios of ``make bench``.

Offload in Celery mode is three kinds of process, started here as docs/celery.md shows and
as ``tests/celery/cluster.py`` starts them: a redis-server (``OFFLOAD_STORE`` on its db 0,
``OFFLOAD_CELERY_BROKER`` on its db 1), a web process (``python -m service``, ``make run``'s
command) and Celery workers (``python -m celery -A service.celery_app worker --pool
prefork -c N``), all with ``OFFLOAD_TASK_MODULES=bench.scaleout_tasks``. The baseline is the
seed's Flask under gunicorn + Celery 5 + Redis (``bench/flask_celery_app.py``,
``bench/celery_app.py``), the stack B2, B3 and B5 use. Both sides' workers get the same
flags (``--without-gossip --without-mingle --without-heartbeat``, log level WARNING).
Everything is fresh for each run, on 127.0.0.1, free ports, stopped by PID.

- B10a: end to end over HTTP (B2's driver, ``bench/e2e.py single``), one worker process
  (``-c 1``) each side: Offload ÷ Flask + Celery.
- B10b: Offload with two worker processes (one ``celery worker -c 2``) ÷ one (``-c 1``),
  measured in B10a's rounds; the seed's stack with ``-c 2`` for information.
- B10c: idle submit-to-start latency stamped inside the task: plain Celery ``.delay()``
  (``bench.inprocess b5-celery``) against the library's ``submit()`` in a process with the
  deployment's settings (``bench/scaleout_latency.py``), each to a ``-c 1`` prefork worker.

Each run also records the CPU time (user + system) of each part during the measurement:
the web side, the worker (its pool processes included), redis-server, and the driver.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench import procs
from bench.common import Outcome, Row, e2e, order, percentile, product_python, run_json, say
from bench.procs import BENCH_BIN, HOST, REPO, Proc
from bench.sqlite import ACCESS

if TYPE_CHECKING:
    from bench.run import Sizes

TASKS_MODULE = "bench.scaleout_tasks"
FLASK_WORKERS = 5  # B2's gunicorn sync workers (2 x cores + 1)
WORKER_FLAGS = ("--pool", "prefork", "--loglevel", "WARNING", "--without-gossip",
                "--without-mingle", "--without-heartbeat")  # procs.celery_worker's too
READY_S = 60.0  # a fresh deployment's first task: imports and pool processes on 2 cores
LATENCY_CONCURRENCY = 1  # B10c: one pool process each side
# Celery's "[time: ERROR/MainProcess]" and Hypercorn's "[ERROR]" lines, and tracebacks
PROBLEM = re.compile(r"(?:ERROR|CRITICAL)/|\[(?:ERROR|CRITICAL)\]|Traceback")
WARNING = re.compile(r"WARNING/|\[WARNING\]")


# -- the deployments ---------------------------------------------------------------------------

@dataclass
class Stack:
    """One deployment's processes, by part."""

    web: Proc | None
    parts: dict[str, list[Proc]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part (every process of its sessions)."""
        return {part: sum(cpu_seconds(p) for p in started)
                for part, started in self.parts.items()}

    def logs(self) -> dict[str, Any]:
        return {p.name: scan_log(p.log) for started in self.parts.values() for p in started
                if p.name != "redis"}


def scan_log(log: Path) -> dict[str, Any]:
    """5xx answers (Hypercorn's access lines), problem lines, and warnings, in a log."""
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    warnings: list[str] = []
    with contextlib.suppress(OSError), log.open(errors="replace") as lines:
        for line in lines:
            access = ACCESS.match(line)
            if access:
                statuses[access.group(2)] += 1
            elif PROBLEM.search(line):
                problems.append(line.rstrip()[:300])
            elif WARNING.search(line):
                warnings.append(line.rstrip()[:300])
    return {"server_errors": sum(n for code, n in statuses.items() if code.startswith("5")),
            "problem_count": len(problems), "problems": problems[:10],
            "warning_count": len(warnings), "warnings": warnings[:5]}


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU time of the processes in ``proc``'s session (it and its children:
    a pool's processes, a server's workers), from /proc/<pid>/stat."""
    ticks = 0
    for pid in procs.session_members(proc.pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def offload_env(redis: Proc) -> dict[str, str]:
    base = f"redis://{HOST}:{redis.port}"
    return {"OFFLOAD_STORE": f"{base}/0", "OFFLOAD_CELERY_BROKER": f"{base}/1",
            "OFFLOAD_TASK_MODULES": TASKS_MODULE}


def offload_worker(logs: Path, name: str, concurrency: int, env: dict[str, str]) -> Proc:
    """``celery -A service.celery_app worker`` (the product's venv), as a user starts it."""
    return procs.start(name, [product_python(), "-m", "celery", "-A", "service.celery_app",
                              "worker", *WORKER_FLAGS, f"--concurrency={concurrency}",
                              "--hostname", f"{name}-{os.getpid()}@%h"],
                       logs, env=procs.clean_env(PYTHONPATH=str(REPO), **env),
                       stop_deadline=30.0)


@contextlib.contextmanager
def offload_stack(logs: Path, name: str, concurrency: int, web: bool = True
                  ) -> Iterator[Stack]:
    """redis-server, one Offload Celery worker (``-c concurrency``) and, if ``web``, one web
    process; with ``web``, ready once a task submitted over HTTP has completed."""
    redis = procs.redis_server(logs)
    with procs.running(redis):
        env = offload_env(redis)
        worker = offload_worker(logs, f"{name}-worker", concurrency, env)
        with procs.running(worker):
            if not web:
                yield Stack(None, {"worker": [worker], "redis": [redis]}, env)
                return
            front = procs.service(f"{name}-web", logs, 1, PYTHONPATH=str(REPO), **env)
            with procs.running(front):
                wait_task_done(front, worker)
                yield Stack(front, {"web": [front], "worker": [worker], "redis": [redis]},
                            env)


def wait_task_done(web: Proc, worker: Proc) -> None:
    """Readiness: an ``add`` submitted over HTTP runs on a worker and succeeds."""
    with httpx.Client(base_url=web.url, timeout=15) as client:
        answer = client.post("/tasks", json={"name": "add", "args": [2, 3]})
        if answer.status_code != 202:
            raise RuntimeError(f"{web.name}: POST /tasks answered {answer.status_code}: "
                               f"{answer.text[:300]}")
        path = f"/tasks/{answer.json()['id']}"

        def done() -> bool:
            task = client.get(path, params={"wait": 2}).json()
            if task["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"the readiness task ended {task['status']}: {task}")
            return bool(task["status"] == "succeeded" and task["result"] == 5)
        procs.wait_until(done, f"a task run by {worker.name}", READY_S, worker, step=0.01)


@contextlib.contextmanager
def celery_stack(logs: Path, concurrency: int, flask: bool = True) -> Iterator[Stack]:
    """The seed's stack: redis-server, a Celery prefork worker (``-c concurrency``, ready
    once it has answered a task) and, if ``flask``, Flask under gunicorn."""
    redis = procs.redis_server(logs)
    with procs.running(redis):
        url = f"redis://{HOST}:{redis.port}/0"
        worker = procs.celery_worker(logs, url, concurrency)
        with procs.running(worker):
            if not flask:
                yield Stack(None, {"worker": [worker], "redis": [redis]},
                            {"BENCH_REDIS_URL": url})
                return
            web = procs.gunicorn("flask-celery", "bench.flask_celery_app:app", logs,
                                 FLASK_WORKERS, BENCH_REDIS_URL=url)
            with procs.running(web):
                yield Stack(web, {"web": [web], "worker": [worker], "redis": [redis]},
                            {"BENCH_REDIS_URL": url})


# -- B10a, B10b: end to end over HTTP ----------------------------------------------------------

# run key -> (side, worker concurrency)
CONFIGS = {"celery c1": ("celery", 1), "offload c1": ("offload", 1),
           "offload c2": ("offload", 2), "celery c2": ("celery", 2)}


def e2e_run(s: Sizes, logs: Path, key: str) -> dict[str, Any]:
    side, concurrency = CONFIGS[key]
    stacks = {"offload": lambda: offload_stack(logs, f"B10-c{concurrency}", concurrency),
              "celery": lambda: celery_stack(logs, concurrency)}
    with stacks[side]() as stack:
        assert stack.web is not None
        before, client_before = stack.cpu(), _children_cpu()
        result = e2e("single", stack.web.port or 0, side, s.b10_tasks, s.b2_connections)
        after, client_after = stack.cpu(), _children_cpu()
    cpu = {part: after[part] - before[part] for part in after}
    cpu["driver"] = client_after - client_before
    return {**result, "concurrency": concurrency, "cpu_s": cpu,
            "cpu_busy": sum(cpu.values()) / result["elapsed_s"], "logs": stack.logs()}


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the e2e driver)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@functools.cache
def e2e_runs(s: Sizes, logs: Path) -> dict[str, list[dict[str, Any]]]:
    """Every configuration of B10a and B10b, interleaved, ``s.rounds`` times (made once per
    invocation: whichever of B10a and B10b runs first measures both)."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in CONFIGS}
    for index in range(s.rounds):
        for key in order(index, list(CONFIGS)):
            result = e2e_run(s, logs, key)
            runs[key].append(result)
            cpu = "  ".join(f"{part} {seconds:.1f}" for part, seconds in
                            result["cpu_s"].items())
            say(f"  B10 round {index + 1} {key:10} {result['tasks_per_s']:8.1f} tasks/s "
                f"({result['elapsed_s']:.1f} s; submits {result['submit_per_s']:.0f}/s; "
                f"CPU s: {cpu}; {result['cpu_busy']:.2f} cores busy)")
    return runs


def _rate(runs: dict[str, list[dict[str, Any]]], key: str) -> list[float]:
    return [r["tasks_per_s"] for r in runs[key]]


def _cpu_note(runs: dict[str, list[dict[str, Any]]], key: str) -> str:
    """CPU per task of each part, and cores busy, medians over the runs."""
    parts = runs[key][0]["cpu_s"]
    per_task = {part: sorted(r["cpu_s"][part] / r["n"] * 1e6 for r in runs[key])
                for part in parts}
    busy = sorted(r["cpu_busy"] for r in runs[key])
    text = ", ".join(f"{part} {values[len(values) // 2]:,.0f}"
                     for part, values in per_task.items())
    return f"{key}: CPU µs per task: {text}; {busy[len(busy) // 2]:.2f} of 2 cores busy"


def _log_notes(out: Outcome) -> None:
    for which, results in out.runs.items():
        for index, result in enumerate(results):
            for name, log in result.get("logs", {}).items():
                if log["server_errors"] or log["problem_count"]:
                    out.notes.append(f"{which} run {index + 1}, {name}: "
                                     f"{log['server_errors']} 5xx, {log['problem_count']} "
                                     f"problem lines, e.g. {log['problems'][:1]!r}")


def b10a(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B10a", f"Celery mode, end to end over HTTP: {s.b10_tasks:,} add tasks, one "
                          f"POST /tasks each ({s.b2_connections} connections), first submit "
                          "to last result; 1 Celery worker process (-c 1) each side",
                  params={"tasks": s.b10_tasks, "connections": s.b2_connections,
                          "flask_workers": FLASK_WORKERS, "offload_web_workers": 1})
    runs = e2e_runs(s, logs)
    out.runs = {key: runs[key] for key in ("celery c1", "offload c1")}
    out.rows = [Row("Flask + Celery + redis, -c 1", _rate(runs, "celery c1"), "tasks/s"),
                Row("Offload Celery mode, -c 1", _rate(runs, "offload c1"), "tasks/s")]
    ratio = out.ratio("Offload Celery mode, -c 1", "Flask + Celery + redis, -c 1")
    out.ratios = [("ratio Offload / Flask+Celery", ratio)]
    out.bar, out.met = ">= 1.0 x Flask+Celery with the same worker", ratio >= 1.0
    out.notes += [_cpu_note(runs, key) for key in out.runs]
    out.notes.append(f"web: Offload's python -m service with 1 worker; Flask under gunicorn "
                     f"with {FLASK_WORKERS} sync workers (B2's)")
    _log_notes(out)
    return out


def b10b(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B10b", "Celery mode, end to end over HTTP as B10a: 2 worker processes "
                          "(one celery worker -c 2) against 1 (-c 1)",
                  params={"tasks": s.b10_tasks, "connections": s.b2_connections})
    runs = e2e_runs(s, logs)
    out.runs = {key: runs[key] for key in ("offload c1", "offload c2", "celery c2")}
    out.rows = [Row("Offload Celery mode, -c 1", _rate(runs, "offload c1"), "tasks/s"),
                Row("Offload Celery mode, -c 2", _rate(runs, "offload c2"), "tasks/s"),
                Row("Flask + Celery + redis, -c 2 (info)", _rate(runs, "celery c2"),
                    "tasks/s")]
    ratio = out.ratio("Offload Celery mode, -c 2", "Offload Celery mode, -c 1")
    out.ratios = [("ratio Offload 2 processes / 1", ratio),
                  ("ratio Flask+Celery -c 2 / -c 1 (info)",
                   out.row("Flask + Celery + redis, -c 2 (info)").median
                   / statistics.median(_rate(runs, "celery c1")))]
    out.bar, out.met = ">= 1.6 x one worker process", ratio >= 1.6
    out.notes.append("2 worker processes: one `celery worker -c 2` (two prefork pool "
                     "processes run tasks, one consumer feeds them), the seed's set-up (B2's "
                     "-c 2); on 2 cores a second `celery worker` would add a second "
                     "consumer process competing for the same cores. Measured in B10a's "
                     "rounds, interleaved with them")
    out.notes += [_cpu_note(runs, key) for key in ("offload c2", "celery c2")]
    _log_notes(out)
    return out


# -- B10c: idle submit-to-start latency --------------------------------------------------------

def latency_run(s: Sizes, logs: Path, side: str) -> dict[str, Any]:
    args = ["--n", str(s.b10c_tasks), "--rate", str(s.b10c_rate)]
    if side == "offload":
        with offload_stack(logs, "B10c", LATENCY_CONCURRENCY, web=False) as stack:
            result = run_json([product_python(), "-m", "bench.scaleout_latency", *args],
                              timeout=300, **stack.env)
    else:
        with celery_stack(logs, LATENCY_CONCURRENCY, flask=False) as stack:
            result = run_json([str(BENCH_BIN / "python"), "-m", "bench.inprocess",
                               "b5-celery", *args], timeout=300, **stack.env)
    summary: dict[str, Any] = {"logs": stack.logs()}
    for part in ("latencies", "submit_call", "created_to_started"):  # the last two: Offload
        values = result.pop(part, None)
        if values:
            name = "" if part == "latencies" else f"{part}_"
            summary.update({f"{name}p50_ms": percentile(values, 50) * 1000,
                            f"{name}p99_ms": percentile(values, 99) * 1000,
                            f"{name}max_ms": max(values) * 1000,
                            f"{part}_ms": [round(x * 1000, 4) for x in values]})
    return {**result, **summary}


def b10c(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B10c", f"Celery mode, submit->start latency, idle, {s.b10c_tasks} stamp "
                          f"tasks at {s.b10c_rate:g}/s (stamped inside the task), prefork "
                          f"-c {LATENCY_CONCURRENCY} each side",
                  params={"tasks": s.b10c_tasks, "rate": s.b10c_rate,
                          "concurrency": LATENCY_CONCURRENCY})
    runs: dict[str, list[dict[str, Any]]] = {"celery": [], "offload": []}
    for index in range(s.rounds):
        for side in order(index, list(runs)):
            result = latency_run(s, logs, side)
            runs[side].append(result)
            say(f"  B10c round {index + 1} {side:8} p50 {result['p50_ms']:7.3f} ms  "
                f"p99 {result['p99_ms']:7.3f} ms  max {result['max_ms']:7.3f} ms")
    out.runs = runs
    celery, offload = "Celery .delay() -> prefork worker", "Offload submit() in Celery mode"
    out.rows = [Row(f"{celery}, p50", [r["p50_ms"] for r in runs["celery"]], "ms", 3),
                Row(f"{celery}, p99", [r["p99_ms"] for r in runs["celery"]], "ms", 3),
                Row(f"{offload}, p50", [r["p50_ms"] for r in runs["offload"]], "ms", 3),
                Row(f"{offload}, p99", [r["p99_ms"] for r in runs["offload"]], "ms", 3),
                Row("Offload: the submit() call, p50 (info)",
                    [r["submit_call_p50_ms"] for r in runs["offload"]], "ms", 3),
                Row("Offload: the submit() call, p99 (info)",
                    [r["submit_call_p99_ms"] for r in runs["offload"]], "ms", 3),
                Row("Offload: created_at -> started_at, p50 (info)",
                    [r["created_to_started_p50_ms"] for r in runs["offload"]], "ms", 3),
                Row("Offload: created_at -> started_at, p99 (info)",
                    [r["created_to_started_p99_ms"] for r in runs["offload"]], "ms", 3)]
    ratio = out.ratio(f"{offload}, p99", f"{celery}, p99")
    out.ratios = [("ratio p99 Offload / Celery", ratio)]
    out.bar, out.met = "Offload p99 <= plain Celery's p99", ratio <= 1.0
    out.notes.append("Offload submits through the library (TaskService.submit in a process "
                     "with OFFLOAD_STORE and OFFLOAD_CELERY_BROKER set, bench/"
                     "scaleout_latency.py): no HTTP hop, like .delay(). Its parts (info): "
                     "the submit() call (the record planned and stored; the message goes out "
                     "in the background), and the record's created_at -> started_at (wall "
                     "clock, admission to a worker's claim)")
    _log_notes(out)
    return out
