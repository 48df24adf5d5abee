"""B10: Celery mode (issue 9's performance bars), scenarios of ``make bench``.

Offload in Celery mode is three kinds of process, started here as docs/celery.md shows and
as ``tests/celery/cluster.py`` starts them: a redis-server (``OFFLOAD_STORE`` on its db 0,
``OFFLOAD_CELERY_BROKER`` on its db 1), a web process (``python -m service``, ``make run``'s
command) and Celery workers (``python -m celery -A service.celery_app worker --pool
prefork -c N``), all with ``OFFLOAD_TASK_MODULES=bench.scaleout_tasks``. The baseline is the
seed's Flask under gunicorn + Celery 5 + Redis (``bench/flask_celery_app.py``,
``bench/celery_app.py``), the stack B2, B3 and B5 use. Both sides' workers get the same
flags (``--without-gossip --without-mingle --without-heartbeat``, log level WARNING).
Everything is fresh for each run, on 127.0.0.1, free ports, stopped by PID (the deployments
are in ``bench/scaleout_stacks.py``).

- B10a: end to end over HTTP (B2's driver, ``bench/e2e.py single``), one worker process
  (``-c 1``) each side: Offload ÷ Flask + Celery.
- B10b: Offload with two worker processes (one ``celery worker -c 2``) ÷ one (``-c 1``),
  measured in B10a's rounds; the seed's stack with ``-c 2`` for information; and, also for
  information, a backlog drained by ``-c 1`` and ``-c 2`` with the web process out of the
  way (``bench/scaleout_drain.py``).
- B10c: idle submit-to-start latency stamped inside the task: plain Celery ``.delay()``
  (``bench.inprocess b5-celery``) against the library's ``submit()`` in a process with the
  deployment's settings (``bench/scaleout_latency.py``), each to a ``-c 1`` prefork worker.

Each run also records the CPU time (user + system) of each part during the measurement:
the web side, the worker (its pool processes included), redis-server, and the driver.
"""

from __future__ import annotations

import functools
import resource
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import scaleout_drain
from bench.common import Outcome, Row, e2e, order, percentile, product_python, run_json, say
from bench.procs import BENCH_BIN
from bench.scaleout_stacks import FLASK_WORKERS, celery_stack, offload_stack

if TYPE_CHECKING:
    from bench.run import Sizes

LATENCY_CONCURRENCY = 1  # B10c: one pool process each side


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


def drain_runs(s: Sizes, logs: Path) -> dict[str, list[dict[str, Any]]]:
    """A backlog drained by -c 1 and -c 2 workers, interleaved (``bench/scaleout_drain.py``)."""
    runs: dict[str, list[dict[str, Any]]] = {"drain c1": [], "drain c2": []}
    for index in range(s.rounds):
        for key in order(index, list(runs)):
            result = scaleout_drain.drain_run(s, logs, int(key[-1]))
            runs[key].append(result)
            cpu = "  ".join(f"{part} {seconds:.1f}" for part, seconds in
                            result["cpu_s"].items())
            say(f"  B10b round {index + 1} {key:9} {result['tasks_per_s']:8.1f} tasks/s "
                f"({result['n']:,} tasks in {result['drain_s']:.1f} s; CPU s: {cpu}; "
                f"{result['cpu_busy']:.2f} cores busy)")
    return runs


def b10b(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B10b", "Celery mode, end to end over HTTP as B10a: 2 worker processes "
                          "(one celery worker -c 2) against 1 (-c 1)",
                  params={"tasks": s.b10_tasks, "connections": s.b2_connections})
    runs = {**e2e_runs(s, logs), **drain_runs(s, logs)}
    out.runs = {key: runs[key] for key in ("offload c1", "offload c2", "celery c2",
                                           "drain c1", "drain c2")}
    out.rows = [Row("Offload Celery mode, -c 1", _rate(runs, "offload c1"), "tasks/s"),
                Row("Offload Celery mode, -c 2", _rate(runs, "offload c2"), "tasks/s"),
                Row("Flask + Celery + redis, -c 2 (info)", _rate(runs, "celery c2"),
                    "tasks/s"),
                Row("Offload backlog drained by -c 1 (info)", _rate(runs, "drain c1"),
                    "tasks/s"),
                Row("Offload backlog drained by -c 2 (info)", _rate(runs, "drain c2"),
                    "tasks/s")]
    ratio = out.ratio("Offload Celery mode, -c 2", "Offload Celery mode, -c 1")
    out.ratios = [("ratio Offload 2 processes / 1", ratio),
                  ("ratio Flask+Celery -c 2 / -c 1 (info)",
                   out.row("Flask + Celery + redis, -c 2 (info)").median
                   / statistics.median(_rate(runs, "celery c1"))),
                  ("ratio Offload drain -c 2 / -c 1 (info)",
                   out.ratio("Offload backlog drained by -c 2 (info)",
                             "Offload backlog drained by -c 1 (info)"))]
    out.bar, out.met = ">= 1.6 x one worker process", ratio >= 1.6
    out.notes.append("2 worker processes: one `celery worker -c 2` (two prefork pool "
                     "processes run tasks, one consumer feeds them), the seed's set-up (B2's "
                     "-c 2); on 2 cores a second `celery worker` would add a second "
                     "consumer process competing for the same cores. Measured in B10a's "
                     "rounds, interleaved with them. The drain rows (info): the same tasks "
                     "submitted in batches before the worker starts, then run by it; rate "
                     "from the first started_at to the last finished_at "
                     "(bench/scaleout_drain.py)")
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
