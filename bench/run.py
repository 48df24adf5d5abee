"""``make bench``: the figures issue 2 asks for, measured on this machine in one run.

A. ``POST /tasks`` (``add``) requests/s, 64 connections, 10 s (wrk), Offload against a bare
   Quart endpoint on the same Hypercorn config, interleaved, ``--rounds`` times each.
B. ``/healthz`` latency (p50, p99) on an idle Offload and while 4 ``cpu`` tasks run (4 process
   workers, so all 4 really run), with an open-loop probe at a fixed rate
   (``bench/probe.py``; latency from the moment each request goes out), interleaved,
   ``--rounds`` times.

Every server is started here on 127.0.0.1 on a free port with ``make run``'s Hypercorn
command and stopped by its PID. Prints medians with min-max and ratios of medians, and
writes everything (each run's figures) to ``bench/results/bench-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
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

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
HYPERCORN = Path(sys.executable).parent / "hypercorn"
HOST = "127.0.0.1"
OFFLOAD_APP = "service.app:app"
BASELINE_APP = "bench.baseline_app:app"
CPU_N = 10**10  # a cpu task of this size runs for minutes: it outlasts the measurement


# -- servers ------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, deadline: float = 30.0) -> None:
        """SIGTERM to the PID we started; SIGKILL to its session if it does not exit."""
        if self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(deadline)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            print(f"  ! {self.name} ignored SIGTERM for {deadline}s and was killed", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(name: str, app: str, logs: Path, ready_path: str,
            **overrides: str) -> Iterator[Server]:
    """``hypercorn --config hypercorn.toml --workers 1 APP`` (``make run``), ready, then
    stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(overrides)
    port = free_port()
    log = logs / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(HYPERCORN), "--config", "hypercorn.toml", "--bind", f"{HOST}:{port}",
             "--workers", "1", app],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = Server(name, process, port, log)
    try:
        wait_ready(server, ready_path)
        yield server
    finally:
        server.stop()


def wait_ready(server: Server, path: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < end:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited at start:\n{server.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(path).status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError(f"{server.name} was not ready in {deadline}s:\n{server.tail()}")


# -- scenario A: POST req/s ---------------------------------------------------------------

def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing it from Debian's packages (apt-get install wrk)",
          flush=True)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit("wrk is needed: install it (apt-get install wrk) and run again")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk, but it is not on PATH")
    return found


def run_wrk(wrk: str, url: str, connections: int, seconds: float) -> dict[str, Any]:
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
               "-s", str(REPO / "bench" / "post.lua"), f"{url}/tasks"]
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    latency = {}
    for p in ("50", "99"):
        found = re.search(rf"^\s+{p}%\s+([\d.]+(?:us|ms|s))\s*$", out, re.M)
        if found:
            latency[p] = _ms(found.group(1))
    return {"requests_per_s": float(rps.group(1)),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
            "latency_ms": latency}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match is not None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def check_post(server: Server, offload: bool) -> None:
    """One POST answered as it should be (and, for Offload, the task really ran)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post("/tasks", json={"name": "add", "args": [2, 3]})
        if response.status_code != 202:
            raise RuntimeError(f"{server.name}: POST /tasks answered {response.status_code}: "
                               f"{response.text[:300]}")
        if offload:
            task = client.get(f"/tasks/{response.json()['id']}", params={"wait": 5}).json()
            if task["status"] != "succeeded" or task["result"] != 5:
                raise RuntimeError(f"{server.name}: the add task did not run: {task}")


def scenario_a(rounds: int, seconds: float, connections: int, logs: Path,
               wrk: str) -> dict[str, Any]:
    print(f"\nA. POST /tasks (add) req/s, {connections} connections, {seconds:g} s, "
          f"{rounds} rounds, interleaved", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "offload": []}
    for index in range(rounds):
        order = ["baseline", "offload"] if index % 2 == 0 else ["offload", "baseline"]
        for which in order:
            offload = which == "offload"
            app, ready = (OFFLOAD_APP, "/readyz") if offload else (BASELINE_APP, "/healthz")
            with serving(f"A{index}-{which}", app, logs, ready) as server:
                check_post(server, offload)
                run_wrk(wrk, server.url, connections, 2)  # warm-up, not counted
                result = run_wrk(wrk, server.url, connections, seconds)
                if offload:
                    result["stats"] = httpx.get(f"{server.url}/stats", timeout=10).json()
            runs[which].append(result)
            bad = result["non_2xx"] or result["socket_errors"]
            print(f"  round {index + 1} {which:8} {result['requests_per_s']:9.1f} req/s"
                  + (f"  (non-2xx: {result['non_2xx']}, socket errors: "
                     f"{result['socket_errors']})" if bad else ""), flush=True)
    return {"connections": connections, "seconds": seconds, "wrk_threads": 1, "runs": runs}


# -- scenario B: /healthz latency while cpu tasks run -------------------------------------

def run_probe(server: Server, rate: float, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.probe", "--port", str(server.port), "--path", "/healthz",
         "--rate", str(rate), "--duration", str(seconds)],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    data: dict[str, Any] = json.loads(out)
    latencies, late = sorted(data["latencies"]), sorted(data["late"])
    from_due = sorted(data["from_due"])
    return {"requests": len(latencies) + len(data["errors"]), "errors": data["errors"][:10],
            "error_count": len(data["errors"]),
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": latencies[-1] * 1000,
            # the same, counted from when each request was due (adds the probe's own delay)
            "from_due_p50_ms": percentile(from_due, 50) * 1000,
            "from_due_p99_ms": percentile(from_due, 99) * 1000,
            "probe_late_p50_ms": percentile(late, 50) * 1000,
            "probe_late_p99_ms": percentile(late, 99) * 1000}


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def start_cpu_tasks(client: httpx.Client, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = client.post("/tasks", json={"name": "cpu", "args": [CPU_N]})
        response.raise_for_status()
        ids.append(response.json()["id"])
    end = time.monotonic() + 30
    while client.get("/stats").json()["running"] < count:  # bench set-up, not a test
        if time.monotonic() > end:
            raise RuntimeError(f"the {count} cpu tasks did not all start")
        time.sleep(0.05)
    time.sleep(1.0)  # the worker processes start and begin to burn CPU
    return ids


def still_running(client: httpx.Client, ids: list[str]) -> bool:
    return all(client.get(f"/tasks/{i}").json()["status"] == "running" for i in ids)


def scenario_b(rounds: int, seconds: float, rate: float, cpu_tasks: int,
               logs: Path) -> dict[str, Any]:
    print(f"\nB. /healthz latency, open loop {rate:g} req/s for {seconds:g} s, idle vs "
          f"{cpu_tasks} cpu tasks running, {rounds} rounds, interleaved", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"idle": [], "cpu": []}
    for index in range(rounds):
        with (serving(f"B{index}", OFFLOAD_APP, logs, "/readyz",
                      OFFLOAD_PROCESS_WORKERS=str(cpu_tasks)) as server,
              httpx.Client(base_url=server.url, timeout=10) as client):
            run_probe(server, rate, 1)  # warm-up, not counted

            def idle() -> dict[str, Any]:
                return run_probe(server, rate, seconds)

            def loaded() -> dict[str, Any]:
                ids = start_cpu_tasks(client, cpu_tasks)
                result = run_probe(server, rate, seconds)
                if not still_running(client, ids):
                    raise RuntimeError("a cpu task ended during the measurement: raise CPU_N")
                for task_id in ids:
                    client.post(f"/tasks/{task_id}/cancel").raise_for_status()
                    client.get(f"/tasks/{task_id}", params={"wait": 10})
                return result

            phases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("idle", idle), ("cpu", loaded)]
            for which, measure in phases if index % 2 == 0 else reversed(phases):
                result = measure()
                runs[which].append(result)
                print(f"  round {index + 1} {which:5} p50 {result['p50_ms']:7.2f} ms  "
                      f"p99 {result['p99_ms']:7.2f} ms  max {result['max_ms']:7.2f} ms  "
                      f"({result['requests']} requests, {result['error_count']} errors)",
                      flush=True)
    return {"rate": rate, "seconds": seconds, "cpu_tasks": cpu_tasks, "cpu_n": CPU_N,
            "process_workers": cpu_tasks, "runs": runs}


# -- report -------------------------------------------------------------------------------

def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict[str, float], digits: int) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def summarize(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    base = spread([r["requests_per_s"] for r in a["runs"]["baseline"]])
    off = spread([r["requests_per_s"] for r in a["runs"]["offload"]])
    idle50 = spread([r["p50_ms"] for r in b["runs"]["idle"]])
    idle99 = spread([r["p99_ms"] for r in b["runs"]["idle"]])
    cpu50 = spread([r["p50_ms"] for r in b["runs"]["cpu"]])
    cpu99 = spread([r["p99_ms"] for r in b["runs"]["cpu"]])
    return {
        "A": {"baseline_rps": base, "offload_rps": off,
              "ratio_offload_to_baseline": off["median"] / base["median"]},
        "B": {"idle_p50_ms": idle50, "idle_p99_ms": idle99, "cpu_p50_ms": cpu50,
              "cpu_p99_ms": cpu99, "ratio_p99_cpu_to_idle": cpu99["median"] / idle99["median"]},
    }


def table(summary: dict[str, Any], a: dict[str, Any], b: dict[str, Any], rounds: int) -> str:
    sa, sb = summary["A"], summary["B"]
    loaded_label = f"{b['cpu_tasks']} cpu tasks running"
    rows = [
        f"Offload benchmark: medians of {rounds} interleaved runs, (min-max)",
        "",
        f"A. POST /tasks (add), {a['connections']} connections, {a['seconds']:g} s, wrk",
        f"   {'server':34} {'requests/s':>28}",
        f"   {'bare Quart (bench/baseline_app)':34} {fmt(sa['baseline_rps'], 0):>28}",
        f"   {'Offload (service.app)':34} {fmt(sa['offload_rps'], 0):>28}",
        f"   {'ratio of medians Offload/bare':34} {sa['ratio_offload_to_baseline']:>28.2f}",
        "",
        f"B. GET /healthz on Offload, open loop {b['rate']:g} req/s, {b['seconds']:g} s a run",
        f"   {'state':34} {'p50 ms':>20} {'p99 ms':>22}",
        f"   {'idle':34} {fmt(sb['idle_p50_ms'], 2):>20} {fmt(sb['idle_p99_ms'], 2):>22}",
        f"   {loaded_label:34} {fmt(sb['cpu_p50_ms'], 2):>20} "
        f"{fmt(sb['cpu_p99_ms'], 2):>22}",
        f"   {'ratio of p99 medians cpu/idle':34} {'':>20} "
        f"{sb['ratio_p99_cpu_to_idle']:>22.2f}",
    ]
    return "\n".join(rows)


def machine(wrk: str) -> dict[str, Any]:
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(),
        "hypercorn": metadata.version("hypercorn"), "quart": metadata.version("quart"),
        "wrk": wrk_version.splitlines()[0] if wrk_version else "?",
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--probe-seconds", type=float, default=8.0)
    parser.add_argument("--probe-rate", type=float, default=50.0)
    parser.add_argument("--cpu-tasks", type=int, default=4)
    args = parser.parse_args()

    wrk = ensure_wrk()
    started = time.monotonic()
    info = machine(wrk)
    print(f"{info['date']}  {info['cpus']} CPUs  Python {info['python']}  "
          f"Hypercorn {info['hypercorn']}  {info['wrk']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as tmp:
        logs = Path(tmp)
        a = scenario_a(args.rounds, args.seconds, args.connections, logs, wrk)
        b = scenario_b(args.rounds, args.probe_seconds, args.probe_rate, args.cpu_tasks, logs)
    summary = summarize(a, b)
    print("\n" + table(summary, a, b, args.rounds))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps({"machine": info, "summary": summary, "A": a, "B": b,
                                "elapsed_s": round(time.monotonic() - started, 1)}, indent=2))
    print(f"\nwritten: {path.relative_to(REPO)}  ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
