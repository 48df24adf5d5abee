"""Where ``POST /tasks`` spends its time: py-spy on Offload's Hypercorn worker under wrk load.

``make bench PROFILE=1`` (or ``python -m bench.run --profile``): starts Offload like
``make run`` on a free loopback port, loads ``POST /tasks`` (``add``) with wrk (64
connections), and meanwhile records the worker process with py-spy (from ``bench/.venv``)
twice for ``--duration`` seconds: once as collapsed stacks, summarised here (self time per
function and per package, and inclusive time of Offload's own functions), once as a flame
graph, ``bench/results/post.svg``. Only samples holding the GIL count (``--gil``: Python
code running, in any thread). The summary is printed and written to
``bench/results/post-profile.txt``; the collapsed stacks stay in ``post-raw.txt``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import procs
from bench.procs import BENCH_BIN, OFFLOAD_APP, REPO

RESULTS = REPO / "bench" / "results"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PACKAGES = [("service/", "offload (service/)"), ("quart_schema/", "quart_schema"),
            ("quart/", "quart"), ("hypercorn/", "hypercorn"), ("h11/", "h11"),
            ("werkzeug/", "werkzeug"), ("pydantic_core/", "pydantic"),
            ("pydantic/", "pydantic"), ("prometheus_client/", "prometheus_client"),
            ("orjson", "orjson"), ("asyncio/", "asyncio (stdlib)"), ("bench/", "bench")]


def package_of(path: str) -> str:
    for marker, name in PACKAGES:
        if marker in path:
            return name
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in path or path.startswith("<frozen") or not path:
        return "other stdlib (logging, threading, abc, os, ...)"
    return f"other: {path}"


def short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize(raw: str, top: int = 25) -> str:
    self_time: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for text in stack.split(";"):
            if text.startswith(("thread (", "process ")):  # --threads adds these roots
                continue
            match = FRAME.match(text.strip())
            func, path = (match["func"], match["file"]) if match else (text.strip(), "")
            frames.append((func, path))
        if not frames:
            continue
        total += count
        func, path = frames[-1]
        self_time[(func, path)] += count
        by_package[package_of(path)] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "py-spy recorded no samples"
    lines = [f"{total} samples of the worker holding the GIL (py-spy --gil: time spent "
             "running Python, in any thread)", "",
             "self time by package:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in by_package.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    for (func, path), n in self_time.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {func}  ({short(path)})")
    lines += ["", "Offload's own functions by inclusive time (on the stack):"]
    own = [(k, n) for k, n in inclusive.most_common() if "service/" in k[1]]
    for (func, path), n in own[:top]:
        lines.append(f"  {100 * n / total:5.1f} %  {func}  ({short(path)})  "
                     f"self {100 * self_time[(func, path)] / total:.1f} %")
    return "\n".join(lines)


def profile_post(duration: float = 10.0, connections: int = 64) -> None:
    spy = BENCH_BIN / "py-spy"
    if not spy.exists():
        raise SystemExit("py-spy is missing from bench/.venv: run `make bench` once")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="offload-profile-") as tmp:
        logs = Path(tmp)
        server = procs.hypercorn("profile-offload", OFFLOAD_APP, logs)
        with procs.running(server):
            pid = procs.worker_pid(server)
            load_seconds = 2 * duration + 8
            wrk = procs.start("wrk", ["wrk", "-t1", f"-c{connections}",
                                      f"-d{load_seconds:g}s", "-s",
                                      str(REPO / "bench" / "post.lua"),
                                      f"{server.url}/tasks"], logs)
            with procs.running(wrk):
                time.sleep(2)  # warm
                raw_path = RESULTS / "post-raw.txt"
                svg_path = RESULTS / "post.svg"
                for output, fmt in ((raw_path, "raw"), (svg_path, "flamegraph")):
                    subprocess.run([str(spy), "record", "--pid", str(pid), "--duration",
                                    f"{duration:g}", "--rate", "200", "--function", "--gil",
                                    "--full-filenames", "--threads", "--format", fmt,
                                    "--output", str(output),
                                    "--nonblocking"],
                                   check=True, capture_output=True, timeout=duration + 60)
                wrk.process.wait(load_seconds + 30)
            print(wrk.tail(800))
            raw = raw_path.read_text()
    text = summarize(raw)
    (RESULTS / "post-profile.txt").write_text(text + "\n")
    print(text)
    print(f"\nflame graph: {svg_path.relative_to(REPO)}; summary: "
          f"{(RESULTS / 'post-profile.txt').relative_to(REPO)}")
