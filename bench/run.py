"""``make bench``: Offload against its baselines, B1-B8 of issue 3, and the SQLite store's B9
scenarios of issue 8 (``bench/sqlite.py``), and Celery mode's B10 of issue 9
(``bench/scaleout.py``), in one run on this machine.

Baselines (all in ``bench/``): the ceiling, a bare Quart app on the same Hypercorn config
(``baseline_app.py``); the seed's bad pattern, Flask under gunicorn sleeping in the handler
(``flask_sync_app.py``); the seed's good pattern, Flask under gunicorn + Celery 5 + a real
redis-server, ``.delay()`` to a prefork worker (``flask_celery_app.py``, ``celery_app.py``);
the in-process peer, taskiq's ``InMemoryBroker`` (``taskiq_tasks.py``).

Each scenario runs its baselines and Offload interleaved (the order alternates from round to
round), ``rounds`` times, each run on freshly started servers; the table gives medians with
(min-max) and ratios of medians, each scenario's bar and whether it is met. Everything, each
run's raw figures included, goes to ``bench/results/bench-<time>.json``.

Every server listens on 127.0.0.1 only, on a free port, and is stopped by the PID it was
started with, on failure too (``bench/procs.py``). ``--quick`` is a short smoke run.
``--only B9a,B9b`` runs only those scenarios (any case); each needs only what it uses (B9 runs
without bench/.venv). ``--profile`` instead records Offload's ``POST /tasks`` under wrk load
with py-spy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench import procs, scaleout, sqlite
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
from bench.procs import BENCH_BIN, CEILING_APP, OFFLOAD_APP, REPO, Proc

RESULTS = REPO / "bench" / "results"
CPU_N = 10**10  # a cpu task of this size runs for minutes: it outlasts any measurement
FLASK_WORKERS = 5  # gunicorn's advice for 2 cores: 2 x cores + 1 sync workers
CELERY_CONCURRENCY = 2  # prefork children: one per core


@dataclass(frozen=True)
class Sizes:
    rounds: int = 3
    b1_seconds: float = 10.0
    b1_connections: int = 64
    b1_warmup: float = 2.0
    b2_tasks: int = 5000
    b2_connections: int = 32
    b3_offload_tasks: int = 30_000
    b3_celery_tasks: int = 3000
    b3_batch: int = 1000
    b3_connections: int = 4
    b4_tasks: int = 100_000
    b5_tasks: int = 500
    b5_rate: float = 100.0
    b6_seconds: float = 6.0
    b6_rate: float = 50.0
    b6_clients: int = 16
    b6_cpu_tasks: int = 4
    b6_flask_hold: float = 2.0
    b7_tasks: int = 100_000
    b8_tasks: int = 1_000_000
    b8_every: int = 100_000
    b8_rounds: int = 1
    b8_max_records: int = 10_000
    b9_rss_tasks: int = 100_000
    b9_wake_tasks: int = 200
    b9_wake_hold: float = 0.15
    b10_tasks: int = 5000
    b10c_tasks: int = 500
    b10c_rate: float = 100.0


FULL = Sizes()
QUICK = Sizes(rounds=1, b1_seconds=3, b1_warmup=1, b2_tasks=1000, b3_offload_tasks=5000,
              b3_celery_tasks=1000, b4_tasks=10_000, b5_tasks=100, b6_seconds=3,
              b6_flask_hold=1.0, b7_tasks=10_000, b8_tasks=100_000, b8_every=10_000,
              b8_max_records=1000, b9_rss_tasks=10_000, b9_wake_tasks=50, b10_tasks=500,
              b10c_tasks=100)



def bench_python() -> str:
    return str(BENCH_BIN / "python")


@contextlib.contextmanager
def offload_server(logs: Path, name: str, **env: str) -> Iterator[Proc]:
    proc = procs.hypercorn(name, OFFLOAD_APP, logs, **env)
    with procs.running(proc):
        yield proc


@contextlib.contextmanager
def celery_stack(logs: Path, flask: bool = True) -> Iterator[tuple[Proc | None, str]]:
    """redis-server, a Celery prefork worker and (if ``flask``) Flask under gunicorn."""
    redis = procs.redis_server(logs)
    with procs.running(redis):
        url = f"redis://{procs.HOST}:{redis.port}/0"
        worker = procs.celery_worker(logs, url, CELERY_CONCURRENCY)
        with procs.running(worker):
            if not flask:
                yield None, url
                return
            web = procs.gunicorn("flask-celery", "bench.flask_celery_app:app", logs,
                                 FLASK_WORKERS, BENCH_REDIS_URL=url)
            with procs.running(web):
                yield web, url


# -- B1: POST req/s against the ceiling ---------------------------------------------------

# What each scenario needs beyond the product's venv: the baselines' venv (bench/.venv),
# and wrk and redis-server, installed from Debian's packages when missing.
NEEDS = {"B1": {"wrk"}, "B2": {"venv", "redis-server"}, "B3": {"venv", "redis-server"},
         "B4": {"venv"}, "B5": {"venv", "redis-server"}, "B6": {"venv"}, "B9a": {"wrk"},
         "B10a": {"venv", "redis-server"}, "B10b": {"venv", "redis-server"},
         "B10c": {"venv", "redis-server"},
         "profile": {"venv", "wrk"}}


def ensure_tools(wanted: list[str]) -> None:
    """What the ``wanted`` scenarios need: bench/.venv, and wrk and redis-server from Debian's
    packages, installed when missing."""
    needs = set().union(*(NEEDS.get(key, set()) for key in wanted))
    if "venv" in needs and not (BENCH_BIN / "python").exists():
        raise SystemExit("bench/.venv is missing: run `make bench`")
    missing = [tool for tool in ("wrk", "redis-server")
               if tool in needs and shutil.which(tool) is None]
    if not missing:
        return
    packages = " ".join(missing)
    say(f"missing {packages}: installing from Debian's packages (apt-get install {packages})")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"needed: {packages} (apt-get install -y {packages})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   timeout=600)
    for tool in missing:
        if shutil.which(tool) is None:
            raise SystemExit(f"apt-get installed {tool}, but it is not on PATH")



def b1(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B1", f"POST /tasks (add) req/s, {s.b1_connections} connections, "
                        f"{s.b1_seconds:g} s, wrk",
                  params={"connections": s.b1_connections, "seconds": s.b1_seconds,
                          "warmup_s": s.b1_warmup, "wrk_threads": 1})
    runs: dict[str, list[dict[str, Any]]] = {"ceiling": [], "offload": []}
    for index in range(s.rounds):
        for which in order(index, ["ceiling", "offload"]):
            offload = which == "offload"
            proc = procs.hypercorn(f"B1-{which}", OFFLOAD_APP if offload else CEILING_APP,
                                   logs)
            with procs.running(proc):
                check_post(proc, offload)
                run_wrk(proc.url, s.b1_connections, s.b1_warmup)  # warm-up, not counted
                result = run_wrk(proc.url, s.b1_connections, s.b1_seconds)
            runs[which].append(result)
            bad = result["non_2xx"] or result["socket_errors"]
            say(f"  B1 round {index + 1} {which:8} {result['requests_per_s']:9.1f} req/s"
                + (f"  (non-2xx: {result['non_2xx']}, socket errors: "
                   f"{result['socket_errors']})" if bad else ""))
    out.runs = runs
    out.rows = [Row("bare Quart, same Hypercorn (ceiling)",
                    [r["requests_per_s"] for r in runs["ceiling"]], "req/s"),
                Row("Offload POST /tasks",
                    [r["requests_per_s"] for r in runs["offload"]], "req/s")]
    ratio = out.ratio("Offload POST /tasks", "bare Quart, same Hypercorn (ceiling)")
    out.ratios = [("ratio Offload / ceiling", ratio)]
    out.bar, out.met = ">= 0.90 x the ceiling's req/s", ratio >= 0.90
    if any(r["non_2xx"] for r in runs["offload"]):
        out.notes.append("Offload answered some requests with non-2xx (see JSON)")
    return out


# -- B2, B3: end to end over HTTP against Flask + Celery -------------------------------------


def b2(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B2", f"end to end over HTTP: {s.b2_tasks:,} add tasks, one POST /tasks "
                        f"each ({s.b2_connections} connections), first submit to last result",
                  params={"tasks": s.b2_tasks, "connections": s.b2_connections,
                          "flask_workers": FLASK_WORKERS,
                          "celery_concurrency": CELERY_CONCURRENCY})
    runs: dict[str, list[dict[str, Any]]] = {"celery": [], "offload": []}
    for index in range(s.rounds):
        for which in order(index, ["celery", "offload"]):
            if which == "offload":
                with offload_server(logs, "B2-offload") as proc:
                    result = e2e("single", proc.port or 0, "offload", s.b2_tasks,
                                 s.b2_connections)
            else:
                with celery_stack(logs) as (web, _):
                    assert web is not None
                    result = e2e("single", web.port or 0, "celery", s.b2_tasks,
                                 s.b2_connections)
            runs[which].append(result)
            say(f"  B2 round {index + 1} {which:8} {result['tasks_per_s']:9.1f} tasks/s "
                f"({result['elapsed_s']:.1f} s; submits {result['submit_per_s']:.0f}/s)")
    out.runs = runs
    out.rows = [Row("Flask + gunicorn + Celery + redis",
                    [r["tasks_per_s"] for r in runs["celery"]], "tasks/s"),
                Row("Offload", [r["tasks_per_s"] for r in runs["offload"]], "tasks/s")]
    ratio = out.ratio("Offload", "Flask + gunicorn + Celery + redis")
    out.ratios = [("ratio Offload / Flask+Celery", ratio)]
    out.bar, out.met = ">= 4 x Flask+Celery", ratio >= 4
    return out


def b3(s: Sizes, logs: Path, celery_single: Row | None) -> Outcome:
    out = Outcome("B3", f"end to end with POST /tasks/batch ({s.b3_batch:,} tasks a request, "
                        f"{s.b3_connections} connections)",
                  params={"offload_tasks": s.b3_offload_tasks,
                          "celery_tasks": s.b3_celery_tasks, "batch": s.b3_batch,
                          "connections": s.b3_connections})
    runs: dict[str, list[dict[str, Any]]] = {"celery": [], "offload": []}
    for index in range(s.rounds):
        for which in order(index, ["celery", "offload"]):
            if which == "offload":
                with offload_server(logs, "B3-offload") as proc:
                    result = e2e("batch", proc.port or 0, "offload", s.b3_offload_tasks,
                                 s.b3_connections, s.b3_batch)
            else:
                with celery_stack(logs) as (web, _):
                    assert web is not None
                    result = e2e("batch", web.port or 0, "celery", s.b3_celery_tasks,
                                 s.b3_connections, s.b3_batch)
            runs[which].append(result)
            say(f"  B3 round {index + 1} {which:8} {result['tasks_per_s']:9.1f} tasks/s "
                f"({result['n']:,} tasks in {result['elapsed_s']:.1f} s)")
    out.runs = runs
    celery_label = "Flask+Celery, the same batch endpoint"
    out.rows = [Row(celery_label, [r["tasks_per_s"] for r in runs["celery"]], "tasks/s"),
                Row("Offload POST /tasks/batch",
                    [r["tasks_per_s"] for r in runs["offload"]], "tasks/s")]
    ratio = out.ratio("Offload POST /tasks/batch", celery_label)
    out.ratios = [("ratio Offload / Flask+Celery batch", ratio)]
    if celery_single is not None:
        single = out.row("Offload POST /tasks/batch").median / celery_single.median
        out.ratios.append(("ratio Offload / Flask+Celery one per request (B2)", single))
    out.bar, out.met = ">= 30 x Flask+Celery tasks/s (its batch endpoint)", ratio >= 30
    out.notes.append("Flask+Celery's /tasks/batch calls .delay() per item; its results are "
                     "read with ResultSet.join_native")
    return out


# -- B4, B5: library level ------------------------------------------------------------------

def b4(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B4", f"library API: {s.b4_tasks:,} no-op tasks submitted one by one and "
                        "completed in-process, every result read",
                  params={"tasks": s.b4_tasks})
    runs: dict[str, list[dict[str, Any]]] = {"taskiq": [], "offload": [], "offload_map": []}
    commands = {
        "taskiq": [bench_python(), "-m", "bench.inprocess", "b4-taskiq"],
        "offload": [product_python(), "-m", "bench.inprocess", "b4-offload"],
        "offload_map": [product_python(), "-m", "bench.inprocess", "b4-offload-map"],
    }
    for index in range(s.rounds):
        names = list(commands) if index == 0 else ["taskiq", "offload"]  # map: info, once
        for which in order(index, names):
            result = run_json([*commands[which], "--n", str(s.b4_tasks)], timeout=600)
            runs[which].append(result)
            say(f"  B4 round {index + 1} {which:12} {result['tasks_per_s']:9.0f} tasks/s")
    out.runs = runs
    out.rows = [Row("taskiq InMemoryBroker (kiq)",
                    [r["tasks_per_s"] for r in runs["taskiq"]], "tasks/s"),
                Row("Offload (submit)", [r["tasks_per_s"] for r in runs["offload"]], "tasks/s"),
                Row("Offload map(), 1,000 a call (info, 1 run)",
                    [r["tasks_per_s"] for r in runs["offload_map"]], "tasks/s")]
    ratio = out.ratio("Offload (submit)", "taskiq InMemoryBroker (kiq)")
    out.ratios = [("ratio Offload / taskiq", ratio)]
    rate = out.row("Offload (submit)").median
    out.bar, out.met = ">= 50,000 tasks/s and >= 2 x taskiq", rate >= 50_000 and ratio >= 2
    return out


def _latency_summary(result: dict[str, Any]) -> dict[str, Any]:
    latencies = result.pop("latencies")
    return {**result, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "max_ms": max(latencies) * 1000,
            "latencies_ms": [round(x * 1000, 4) for x in latencies]}


def b5(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B5", f"submit->start latency, idle, {s.b5_tasks} tasks at "
                        f"{s.b5_rate:g}/s (stamped inside the task)",
                  params={"tasks": s.b5_tasks, "rate": s.b5_rate})
    runs: dict[str, list[dict[str, Any]]] = {"celery": [], "offload": []}
    args = ["--n", str(s.b5_tasks), "--rate", str(s.b5_rate)]
    for index in range(s.rounds):
        for which in order(index, ["celery", "offload"]):
            if which == "offload":
                result = run_json([product_python(), "-m", "bench.inprocess", "b5-offload",
                                   *args], timeout=300)
            else:
                with celery_stack(logs, flask=False) as (_, url):
                    result = run_json([bench_python(), "-m", "bench.inprocess", "b5-celery",
                                       *args], timeout=300, BENCH_REDIS_URL=url)
            result = _latency_summary(result)
            runs[which].append(result)
            say(f"  B5 round {index + 1} {which:8} p50 {result['p50_ms']:7.3f} ms  "
                f"p99 {result['p99_ms']:7.3f} ms  max {result['max_ms']:7.3f} ms")
    out.runs = runs
    out.rows = [Row("Celery .delay() -> prefork worker, p50", [r["p50_ms"] for r in
                                                              runs["celery"]], "ms", 3),
                Row("Celery .delay() -> prefork worker, p99", [r["p99_ms"] for r in
                                                              runs["celery"]], "ms", 3),
                Row("Offload in-process submit(), p50", [r["p50_ms"] for r in
                                                         runs["offload"]], "ms", 3),
                Row("Offload in-process submit(), p99", [r["p99_ms"] for r in
                                                         runs["offload"]], "ms", 3)]
    p99 = out.row("Offload in-process submit(), p99").median
    out.ratios = [("ratio p99 Celery / Offload",
                   out.ratio("Celery .delay() -> prefork worker, p99",
                             "Offload in-process submit(), p99"))]
    out.bar, out.met = "Offload p99 <= 0.5 ms", p99 <= 0.5
    return out


# -- B6: /healthz while slow work runs --------------------------------------------------------

def run_probe(port: int, rate: float, seconds: float) -> dict[str, Any]:
    data = run_json([product_python(), "-m", "bench.probe", "--port", str(port),
                     "--path", "/healthz", "--rate", str(rate), "--duration", str(seconds)],
                    timeout=seconds + 90)
    latencies = data["latencies"]
    if not latencies:
        raise RuntimeError(f"the probe got no answer: {data['errors'][:5]}")
    return {"requests": len(latencies) + len(data["errors"]),
            "error_count": len(data["errors"]), "errors": data["errors"][:10],
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "max_ms": max(latencies) * 1000,
            "probe_late_p99_ms": percentile(data["late"], 99) * 1000}


def start_holders(port: int, mode: str, clients: int, duration: float,
                  hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [product_python(), "-m", "bench.holders", "--port", str(port), "--mode", mode,
         "--clients", str(clients), "--duration", str(duration), "--hold", str(hold)],
        cwd=REPO, env=procs.clean_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def end_holders(holders: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        stdout, stderr = holders.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        holders.kill()
        holders.communicate()
        raise RuntimeError("the holding clients did not finish in time") from None
    if holders.returncode != 0:
        raise RuntimeError(f"the holding clients failed:\n{stderr[-2000:]}")
    data: dict[str, Any] = json.loads(stdout)
    return data


def _b6_offload_round(s: Sizes, logs: Path, index: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with (offload_server(logs, "B6-offload", OFFLOAD_PROCESS_WORKERS=str(s.b6_cpu_tasks),
                         OFFLOAD_SHUTDOWN_GRACE="0") as proc,
          httpx.Client(base_url=proc.url, timeout=30) as client):
        port = proc.port or 0
        run_probe(port, s.b6_rate, 1)  # warm-up, not counted
        for phase in order(index, ["idle", "loaded"]):
            if phase == "idle":
                results["idle"] = run_probe(port, s.b6_rate, s.b6_seconds)
                continue
            hold = s.b6_seconds + 3
            holders = start_holders(port, "offload", s.b6_clients, 0.1, hold)
            try:
                ids = []
                for _ in range(s.b6_cpu_tasks):
                    response = client.post("/tasks", json={"name": "cpu", "args": [CPU_N]})
                    response.raise_for_status()
                    ids.append(response.json()["id"])
                want = s.b6_cpu_tasks + s.b6_clients

                def all_running(want: int = want) -> bool:
                    return bool(client.get("/stats").json()["running"] >= want)
                procs.wait_until(all_running, f"{want} running tasks", 30, proc)
                time.sleep(0.5)  # the cpu workers are burning by now
                result = run_probe(port, s.b6_rate, s.b6_seconds)
                states = [client.get(f"/tasks/{i}").json()["status"] for i in ids]
                if states != ["running"] * len(ids):
                    raise RuntimeError(f"a cpu task ended during the measurement: {states}")
                result["running_during"] = want
                for task_id in ids:
                    client.post(f"/tasks/{task_id}/cancel").raise_for_status()
            finally:
                held = end_holders(holders, hold + 30)
            result["holders"] = held
            results["loaded"] = result
    return results


def _b6_flask_round(s: Sizes, logs: Path, index: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    proc = procs.gunicorn("B6-flask-sync", "bench.flask_sync_app:app", logs, FLASK_WORKERS)
    with procs.running(proc):
        port = proc.port or 0
        run_probe(port, s.b6_rate, 1)  # warm-up, not counted
        for phase in order(index, ["idle", "loaded"]):
            if phase == "idle":
                results["idle"] = run_probe(port, s.b6_rate, s.b6_seconds)
                continue
            holders = start_holders(port, "flask", s.b6_clients, s.b6_seconds + 0.5,
                                    s.b6_flask_hold)
            try:
                time.sleep(0.5)  # every worker is asleep in a handler by now
                result = run_probe(port, s.b6_rate, s.b6_seconds)
            finally:
                held = end_holders(holders, s.b6_seconds + 60)
            result["holders"] = held
            results["loaded"] = result
    return results


def b6(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B6", f"GET /healthz p99 (open loop {s.b6_rate:g}/s, {s.b6_seconds:g} s) "
                        f"idle vs while {s.b6_clients} clients hold slow tasks "
                        f"and {s.b6_cpu_tasks} cpu tasks run",
                  params={"rate": s.b6_rate, "seconds": s.b6_seconds,
                          "clients": s.b6_clients, "cpu_tasks": s.b6_cpu_tasks,
                          "cpu_n": CPU_N, "flask_workers": FLASK_WORKERS,
                          "flask_hold_s": s.b6_flask_hold})
    runs: dict[str, list[dict[str, Any]]] = {"offload_idle": [], "offload_loaded": [],
                                             "flask_idle": [], "flask_loaded": []}
    for index in range(s.rounds):
        for which in order(index, ["flask", "offload"]):
            round_of = _b6_offload_round if which == "offload" else _b6_flask_round
            results = round_of(s, logs, index)
            for phase, result in results.items():
                runs[f"{which}_{phase}"].append(result)
                say(f"  B6 round {index + 1} {which:7} {phase:6} p50 {result['p50_ms']:8.2f} "
                    f"ms  p99 {result['p99_ms']:8.2f} ms  max {result['max_ms']:8.2f} ms  "
                    f"({result['requests']} requests, {result['error_count']} errors)")
    out.runs = runs
    out.rows = [Row("Offload idle, p99", [r["p99_ms"] for r in runs["offload_idle"]], "ms", 2),
                Row("Offload loaded, p99", [r["p99_ms"] for r in runs["offload_loaded"]],
                    "ms", 2),
                Row("Flask sync (bad pattern) idle, p99",
                    [r["p99_ms"] for r in runs["flask_idle"]], "ms", 2),
                Row(f"Flask sync, {s.b6_clients} handlers sleeping, p99",
                    [r["p99_ms"] for r in runs["flask_loaded"]], "ms", 2)]
    ratio = out.ratio("Offload loaded, p99", "Offload idle, p99")
    out.ratios = [("ratio Offload loaded / idle", ratio),
                  ("ratio Flask sync loaded / idle",
                   out.ratio(f"Flask sync, {s.b6_clients} handlers sleeping, p99",
                             "Flask sync (bad pattern) idle, p99"))]
    out.bar, out.met = "Offload loaded p99 <= 2 x its idle p99", ratio <= 2
    errors = sum(r["error_count"] for rs in runs.values() for r in rs)
    if errors:
        out.notes.append(f"{errors} probe requests failed (see JSON)")
    return out


# -- B7, B8: memory ---------------------------------------------------------------------------


def b7_run(s: Sizes, logs: Path, variant: str) -> dict[str, Any]:
    n = s.b7_tasks
    env = {"OFFLOAD_MAX_QUEUE": str(n + 1000), "OFFLOAD_SHUTDOWN_GRACE": "0"}
    if variant == "running":
        env["OFFLOAD_MAX_CONCURRENCY"] = str(n + 1000)
    with (offload_server(logs, f"B7-{variant}", **env) as proc,
          httpx.Client(base_url=proc.url, timeout=60) as client):
        pid = procs.worker_pid(proc)
        submit_batches(client, {"name": "add", "args": [1, 2]}, 2000)  # warm-up
        wait_idle(client, proc)
        time.sleep(0.5)
        before = procs.rss_kib(pid)
        started = time.perf_counter()
        submit_batches(client, {"name": "sleep", "args": [3600]}, n)

        def all_there() -> bool:
            stats = client.get("/stats").json()
            return bool(stats["queue_depth"] + stats["running"] >= n)
        procs.wait_until(all_there, f"{n} pending tasks", 120, proc, step=0.1)
        submit_s = time.perf_counter() - started
        time.sleep(1.0)
        after = procs.rss_kib(pid)
        stats = client.get("/stats").json()
        stopping = time.perf_counter()
    stop_s = time.perf_counter() - stopping
    return {"variant": variant, "tasks": n, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_task": (after - before) * 1024 / n, "submit_s": submit_s,
            "stop_s": stop_s, "queued": stats["queued"], "running": stats["running"]}


def b7(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B7", f"memory: RSS per pending sleep task, {s.b7_tasks:,} of them "
                        "(server worker's VmRSS after minus before, divided)",
                  params={"tasks": s.b7_tasks})
    runs: dict[str, list[dict[str, Any]]] = {"queued": [], "running": []}
    for index in range(s.rounds):
        variants = ["queued", "running"] if index == 0 else ["queued"]  # running: info, once
        for variant in order(index, variants):
            result = b7_run(s, logs, variant)
            runs[variant].append(result)
            say(f"  B7 round {index + 1} {variant:8} {result['bytes_per_task']:8.0f} B/task "
                f"(RSS {result['rss_before_kib'] / 1024:.0f} -> "
                f"{result['rss_after_kib'] / 1024:.0f} MiB; {result['queued']} queued, "
                f"{result['running']} running; stop {result['stop_s']:.1f} s)")
    out.runs = runs
    out.rows = [Row("queued (default concurrency 100)",
                    [r["bytes_per_task"] for r in runs["queued"]], "B/task"),
                Row("all running asleep (info, 1 run)",
                    [r["bytes_per_task"] for r in runs["running"]], "B/task")]
    queued, running = (r.median for r in out.rows)
    out.bar = "<= 2 KB (2,048 B) RSS per pending (queued) task, records included"
    out.met = queued <= 2048
    out.notes.append(f"pending is queued or scheduled (SPEC); tasks running asleep cost "
                     f"{running:,.0f} B each, "
                     f"{'also within' if running <= 2048 else 'over'} 2 KB")
    return out


def b8_run(s: Sizes, logs: Path) -> dict[str, Any]:
    with offload_server(logs, "B8", OFFLOAD_MAX_RECORDS=str(s.b8_max_records),
                        OFFLOAD_SHUTDOWN_GRACE="0") as proc:
        pid = procs.worker_pid(proc)
        start_rss = procs.rss_kib(pid)
        result = run_json([product_python(), "-m", "bench.e2e", "flood", "--port",
                           str(proc.port), "--pid", str(pid), "--n", str(s.b8_tasks),
                           "--every", str(s.b8_every), "--conns", "4", "--batch", "1000"],
                          timeout=900)
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            result["stats_at_end"] = client.get("/stats").json()
    samples = result["samples"]
    first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    result.update({"rss_start_kib": start_rss, "rss_first_kib": first, "rss_end_kib": last,
                   "growth": last / first - 1})
    return result


def b8(s: Sizes, logs: Path) -> Outcome:
    out = Outcome("B8", f"memory: {s.b8_tasks:,} add tasks through the service (batches), "
                        f"OFFLOAD_MAX_RECORDS={s.b8_max_records:,}",
                  params={"tasks": s.b8_tasks, "every": s.b8_every,
                          "max_records": s.b8_max_records, "rounds": s.b8_rounds})
    runs: list[dict[str, Any]] = []
    for index in range(s.b8_rounds):
        result = b8_run(s, logs)
        runs.append(result)
        say(f"  B8 round {index + 1} RSS after {s.b8_every:,}: "
            f"{result['rss_first_kib'] / 1024:.1f} MiB, after {s.b8_tasks:,}: "
            f"{result['rss_end_kib'] / 1024:.1f} MiB ({result['growth']:+.1%}); "
            f"{result['tasks_per_s']:.0f} tasks/s")
    out.runs = {"offload": runs}
    out.rows = [Row(f"RSS after the first {s.b8_every:,}",
                    [r["rss_first_kib"] / 1024 for r in runs], "MiB", 1),
                Row(f"RSS after all {s.b8_tasks:,}",
                    [r["rss_end_kib"] / 1024 for r in runs], "MiB", 1),
                Row("growth", [r["growth"] * 100 for r in runs], "%", 1),
                Row("throughput (info)", [r["tasks_per_s"] for r in runs], "tasks/s")]
    growth = statistics.median(abs(r["growth"]) for r in runs)
    out.bar = f"RSS at the end within 10 % of RSS after the first {s.b8_every:,}"
    out.met = growth <= 0.10
    if s.b8_rounds < 3:
        out.notes.append(f"{s.b8_rounds} run(s) only, to fit the time budget (no baseline to "
                         "interleave with); RSS after each chunk is in the JSON")
    return out


# -- the whole run -----------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    def version(command: list[str]) -> str:
        try:
            text = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return "?"
        return text.strip().splitlines()[0] if text.strip() else "?"

    baselines = version([bench_python(), "-c", "import importlib.metadata as m, json; "
                         "print(json.dumps({p: m.version(p) for p in ('flask', 'gunicorn', "
                         "'celery', 'redis', 'taskiq', 'py-spy')}))"])
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
        "python": platform.python_version(),
        "hypercorn": metadata.version("hypercorn"), "quart": metadata.version("quart"),
        "wrk": version(["wrk", "-v"]), "redis_server": version(["redis-server", "--version"]),
        "baselines": json.loads(baselines) if baselines.startswith("{") else {},
        "load_average_at_start": os.getloadavg(),
    }


SCENARIOS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9a", "B9b", "B9rss", "B9wake",
             "B10a", "B10b", "B10c")


def summary_table(outcomes: list[Outcome], sizes: Sizes, info: dict[str, Any],
                  elapsed: float) -> str:
    head = (f"Offload benchmark, {info['date']}, {info['cpus']} CPUs ({info['cpu_model']}), "
            f"Python {info['python']}; medians of {sizes.rounds} interleaved runs (min-max)")
    parts = [head, "=" * min(len(head), 100)]
    parts += [o.render() + "\n" for o in outcomes]
    parts.append("Bars: " + ", ".join(
        f"{o.key} {'met' if o.met else 'NOT met' if o.met is False else '-'}"
        for o in outcomes))
    parts.append(f"wall time {elapsed / 60:.1f} min")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios to run (default: all)")
    parser.add_argument("--rounds", type=int, default=0, help="override the rounds")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy profile of POST /tasks under load, nothing else")
    args = parser.parse_args()
    procs.install_cleanup()
    wanted = ["profile"] if args.profile else scenarios(args.only)
    ensure_tools(wanted)
    if args.profile:
        from bench.profile import profile_post
        profile_post()
        return
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    started = time.monotonic()
    info = machine()
    say(f"{info['date']}  {info['cpus']} CPUs  Python {info['python']}  Hypercorn "
        f"{info['hypercorn']}  {info['wrk']}  {info['redis_server']}  baselines "
        f"{info['baselines']}  ({'quick' if args.quick else 'full'} run)")
    outcomes: list[Outcome] = []
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as tmp:
        logs = Path(tmp)
        runners = _runners(sizes, logs, outcomes)
        for key in wanted:
            outcome = _run_one(key, runners[key], logs, failures)
            if outcome is not None:
                outcomes.append(outcome)
    elapsed = time.monotonic() - started
    say("\n" + summary_table(outcomes, sizes, info, elapsed))
    if failures:
        say("FAILED: " + ", ".join(f"{k} ({v[:200]})" for k, v in failures.items()))
    path = _save(outcomes, failures, sizes, info, elapsed, args.quick)
    say(f"\nwritten: {path.relative_to(REPO)}  ({elapsed:.0f} s)")
    if failures:
        sys.exit(1)


def _run_one(key: str, runner: Callable[[], Outcome], logs: Path,
             failures: dict[str, str]) -> Outcome | None:
    """One scenario, rendered; a failure is recorded in ``failures`` (the others go on)."""
    say(f"\n{key} ...")
    began = time.monotonic()
    try:
        outcome = runner()
    except Exception as exc:  # report it, go on with the others
        failures[key] = f"{type(exc).__name__}: {exc}"
        say(f"  {key} FAILED: {failures[key][:3000]}")
        _keep_logs(logs, key)
        return None
    outcome.elapsed_s = time.monotonic() - began
    say(outcome.render())
    return outcome


def _save(outcomes: list[Outcome], failures: dict[str, str], sizes: Sizes,
          info: dict[str, Any], elapsed: float, quick: bool) -> Path:
    """Everything, each run's raw figures included, to bench/results/bench-<time>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps({
        "machine": info, "sizes": dataclasses.asdict(sizes), "quick": quick,
        "elapsed_s": round(elapsed, 1), "failures": failures,
        "bars": {o.key: {"bar": o.bar, "met": o.met} for o in outcomes},
        "scenarios": {o.key: {**dataclasses.asdict(o),
                              "rows": [{**dataclasses.asdict(r), "median": r.median}
                                       for r in o.rows]} for o in outcomes},
        "table": summary_table(outcomes, sizes, info, elapsed),
    }, indent=1, default=str))
    return path


def scenarios(only: str) -> list[str]:
    """``--only``'s comma-separated keys, in any case, spelled as in SCENARIOS."""
    known = {key.upper(): key for key in SCENARIOS}
    wanted = [k.strip().upper() for k in only.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise SystemExit(f"unknown scenarios: {unknown} (known: {', '.join(SCENARIOS)})")
    return [known[k] for k in wanted]


def _runners(sizes: Sizes, logs: Path,
             outcomes: list[Outcome]) -> dict[str, Callable[[], Outcome]]:
    return {
        "B1": lambda: b1(sizes, logs), "B2": lambda: b2(sizes, logs),
        "B3": lambda: b3(sizes, logs, _earlier(outcomes, "B2",
                                               "Flask + gunicorn + Celery + redis")),
        "B4": lambda: b4(sizes, logs), "B5": lambda: b5(sizes, logs),
        "B6": lambda: b6(sizes, logs), "B7": lambda: b7(sizes, logs),
        "B8": lambda: b8(sizes, logs),
        "B9a": lambda: sqlite.b9a(sizes, logs), "B9b": lambda: sqlite.b9b(sizes, logs),
        "B9rss": lambda: sqlite.b9rss(sizes, logs, _earlier(
            outcomes, "B7", "queued (default concurrency 100)")),
        "B9wake": lambda: sqlite.b9wake(sizes, logs),
        "B10a": lambda: scaleout.b10a(sizes, logs), "B10b": lambda: scaleout.b10b(sizes, logs),
        "B10c": lambda: scaleout.b10c(sizes, logs),
    }


def _earlier(outcomes: list[Outcome], key: str, label: str) -> Row | None:
    """A row of a scenario run earlier in this run, if it was."""
    for outcome in outcomes:
        if outcome.key == key:
            return outcome.row(label)
    return None


def _keep_logs(logs: Path, key: str) -> None:
    """Copy the servers' logs of a failed scenario next to the results."""
    target = RESULTS / f"logs-{key}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    with contextlib.suppress(OSError):
        shutil.copytree(logs, target)
        say(f"  server logs kept in {target.relative_to(REPO)}")


if __name__ == "__main__":
    main()
