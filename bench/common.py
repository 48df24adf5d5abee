"""What the benchmark's scenario modules share: result rows and outcomes, the round order,
percentiles, helper processes (``run_json``), wrk's POST load, and small HTTP set-up steps.

``bench/run.py`` (B1-B8, the whole run) and ``bench/sqlite.py`` (B9, the SQLite store) both
build on it.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import procs
from bench.procs import REPO, Proc

# -- results ------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    values: list[float]
    unit: str
    digits: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def text(self) -> str:
        if not self.values:
            return "-"
        d = self.digits
        return (f"{self.median:,.{d}f} ({min(self.values):,.{d}f}-{max(self.values):,.{d}f}) "
                f"{self.unit}")


@dataclass
class Outcome:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    ratios: list[tuple[str, float]] = field(default_factory=list)
    bar: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def ratio(self, top: str, bottom: str) -> float:
        a, b = self.row(top).median, self.row(bottom).median
        return a / b if b else math.inf

    def render(self) -> str:
        took = f"  [{self.elapsed_s:.0f} s]" if self.elapsed_s else ""
        lines = [f"{self.key}  {self.title}{took}"]
        lines += [f"    {r.label:44} {r.text()}" for r in self.rows]
        lines += [f"    {label:44} {value:,.2f}" for label, value in self.ratios]
        verdict = {True: "MET", False: "NOT MET", None: "no bar: reported"}[self.met]
        lines.append(f"    bar: {self.bar}  ->  {verdict}")
        lines += [f"    note: {n}" for n in self.notes]
        return "\n".join(lines)


def order(index: int, names: list[str]) -> list[str]:
    """Round ``index``'s order: rotated each round, so no system always goes first."""
    shift = index % len(names)
    return names[shift:] + names[:shift]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def say(text: str) -> None:
    print(text, flush=True)


def run_json(command: list[str], timeout: float, **env: str) -> dict[str, Any]:
    """Run a bench helper in its own process; its stdout is one JSON object."""
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env=procs.clean_env(PYTHONPATH=str(REPO), **env))
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} failed ({out.returncode}):\n"
                           f"{out.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def product_python() -> str:
    return str(procs.product_bin() / "python")


def run_wrk(url: str, connections: int, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
               "-s", str(REPO / "bench" / "post.lua"), f"{url}/tasks"]
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    total = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s))", out)
    latency = {}
    for p in ("50", "99"):
        found = re.search(rf"^\s+{p}%\s+([\d.]+(?:us|ms|s))\s*$", out, re.M)
        if found:
            latency[p] = _ms(found.group(1))
    bad = int(non2xx.group(1)) if non2xx else 0
    result: dict[str, Any] = {
        "requests_per_s": float(rps.group(1)), "non_2xx": bad,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
        "latency_ms": latency}
    if total is not None:  # the 2xx answers alone, a 429 (queue full) being cheaper
        requests = int(total.group(1))
        result.update(requests=requests,
                      ok_per_s=(requests - bad) / (_ms(total.group(2)) / 1000))
    return result


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match is not None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def check_post(server: Proc, offload: bool) -> None:
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


def e2e(mode: str, port: int, target: str, tasks: int, connections: int,
        batch: int = 1000) -> dict[str, Any]:
    return run_json([product_python(), "-m", "bench.e2e", mode, "--port", str(port),
                     "--target", target, "--n", str(tasks), "--conns", str(connections),
                     "--batch", str(batch)], timeout=600)


def submit_batches(client: httpx.Client, body: dict[str, Any], count: int,
                    size: int = 1000) -> None:
    for first in range(0, count, size):
        tasks = [body] * min(size, count - first)
        response = client.post("/tasks/batch", json={"tasks": tasks})
        if response.status_code != 202:
            raise RuntimeError(f"POST /tasks/batch answered {response.status_code}: "
                               f"{response.text[:300]}")


def wait_idle(client: httpx.Client, proc: Proc) -> None:
    def idle() -> bool:
        stats = client.get("/stats").json()
        return bool(stats["queue_depth"] == 0 and stats["running"] == 0)
    procs.wait_until(idle, "an idle service", 60, proc, step=0.1)
