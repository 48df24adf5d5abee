"""Processes the benchmark starts: each on 127.0.0.1, each stopped by the PID it was given.

Every process goes through :func:`start`, which records it; :func:`stop_all` (registered
with ``atexit`` and run on SIGTERM/SIGINT too) stops whatever is still alive, so a failed
or interrupted run leaves nothing behind. A process is sent SIGTERM by its own PID; if it has
not exited after a deadline, SIGKILL goes to the session it was started in (its own, made
with ``start_new_session``: it holds the server's workers, and nothing else).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PRODUCT_BIN = REPO / ".venv" / "bin"
BENCH_BIN = REPO / "bench" / ".venv" / "bin"


def product_bin() -> Path:
    """The product's virtual environment (the one running this script, normally)."""
    here = Path(sys.executable).parent
    return here if (here / "hypercorn").exists() else PRODUCT_BIN


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    stop_signal: int = signal.SIGTERM
    stop_deadline: float = 30.0
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def children(self) -> list[int]:
        """PIDs of this process's direct children (e.g. Hypercorn's worker)."""
        found: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                text = (task / "children").read_text()
                found += [int(p) for p in text.split()]
        return found

    def stop(self) -> None:
        """The stop signal to the PID we started; SIGKILL if it lingers, and to any process it
        left in its session."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            try:
                self.process.wait(self.stop_deadline)
            except subprocess.TimeoutExpired:
                self.notes.append(f"ignored its stop signal for {self.stop_deadline:g}s: killed")
                print(f"  ! {self.name} did not stop in {self.stop_deadline:g}s: SIGKILL",
                      flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(10)
        # Whatever it left behind in the session we made for it (a killed master's
        # workers): each by its PID
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _RUNNING.pop(self.pid, None)


_RUNNING: dict[int, Proc] = {}


def session_members(sid: int) -> list[int]:
    """PIDs whose session id is ``sid`` (the sessions we made: one per started process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid:  # state ppid pgrp session
            found.append(int(entry.name))
    return found


def start(name: str, command: Sequence[str], logs: Path, *, port: int | None = None,
          env: dict[str, str] | None = None, stop_signal: int = signal.SIGTERM,
          stop_deadline: float = 30.0) -> Proc:
    """Start ``command`` in a session of its own, output to a log file; recorded for
    :func:`stop_all`."""
    log = logs / f"{name}{'' if port is None else f'-{port}'}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(list(command), cwd=REPO, env=env or clean_env(),
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    proc = Proc(name, process, log, port, stop_signal, stop_deadline)
    _RUNNING[process.pid] = proc
    return proc


def stop_all() -> None:
    for proc in list(_RUNNING.values())[::-1]:
        with contextlib.suppress(Exception):
            proc.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # finally-blocks and atexit run


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without any OFFLOAD_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OFFLOAD_", "CELERY_", "BENCH_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], what: str, deadline: float = 30.0,
               proc: Proc | None = None, step: float = 0.05) -> None:
    """Poll ``check`` (bench set-up, bounded) until it is true."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        with contextlib.suppress(OSError, httpx.HTTPError):
            if check():
                return
        time.sleep(step)
    tail = f":\n{proc.tail()}" if proc is not None else ""
    raise RuntimeError(f"timed out after {deadline:g}s waiting for {what}{tail}")


def wait_http(proc: Proc, path: str, deadline: float = 30.0) -> None:
    with httpx.Client(base_url=proc.url, timeout=2) as client:
        wait_until(lambda: client.get(path).status_code == 200, f"{proc.name} {path}",
                   deadline, proc)


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- the servers --------------------------------------------------------------------------

OFFLOAD_APP = "service.app:app"
CEILING_APP = "bench.baseline_app:app"


def hypercorn(name: str, app: str, logs: Path, **env: str) -> Proc:
    """``make run``'s command (hypercorn.toml, one worker) on a free loopback port."""
    port = free_port()
    proc = start(name, [str(product_bin() / "hypercorn"), "--config", "hypercorn.toml",
                        "--bind", f"{HOST}:{port}", "--workers", "1", app],
                 logs, port=port, env=clean_env(**env), stop_deadline=45.0)
    try:
        wait_http(proc, "/readyz" if app == OFFLOAD_APP else "/healthz")
    except BaseException:
        proc.stop()
        raise
    return proc


def service(name: str, logs: Path, workers: int = 1, **env: str) -> Proc:
    """``make run``'s command (``python -m service``, hypercorn.toml, ``workers`` workers) on a
    free loopback port; ready once every worker answers ``/readyz``."""
    port = free_port()
    proc = start(name, [str(product_bin() / "python"), "-m", "service", "--config",
                        "hypercorn.toml", "--bind", f"{HOST}:{port}", "--workers", str(workers)],
                 logs, port=port, env=clean_env(**env), stop_deadline=45.0)
    try:
        worker_pids(proc, workers)
        wait_until(lambda: proc.tail(10**6).count("Running on http") >= workers,
                   f"{workers} workers serving", 60, proc, step=0.1)  # each past its start-up
        wait_http(proc, "/readyz")
    except BaseException:
        proc.stop()
        raise
    return proc


def worker_pid(proc: Proc) -> int:
    """Hypercorn serves from a child process (its one worker, started by multiprocessing's
    ``spawn``; the other child is multiprocessing's resource tracker); its PID."""
    return worker_pids(proc, 1)[0]


def worker_pids(proc: Proc, count: int, deadline: float = 30.0) -> list[int]:
    """The PIDs of the server's ``count`` worker processes (see :func:`worker_pid`), once
    that many have started."""
    end = time.monotonic() + deadline
    found: list[int] = []
    while time.monotonic() < end:
        found = []
        for pid in proc.children():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        if len(found) >= count:
            return sorted(found)
        if not proc.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} has {len(found)} of {count} worker processes:\n"
                       f"{proc.tail()}")


def redis_server(logs: Path) -> Proc:
    """A throw-away redis-server: loopback, free port, no persistence."""
    port = free_port()
    proc = start("redis", ["redis-server", "--bind", HOST, "--port", str(port), "--save", "",
                           "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                           "--loglevel", "warning"], logs, port=port, stop_deadline=10.0)

    def ping() -> bool:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    try:
        wait_until(ping, "redis-server", 15, proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def celery_worker(logs: Path, redis_url: str, concurrency: int = 2) -> Proc:
    """A Celery 5 prefork worker for ``bench.celery_app``; ready once it answers a ping."""
    env = clean_env(BENCH_REDIS_URL=redis_url)
    proc = start("celery-worker", [str(BENCH_BIN / "celery"), "-A", "bench.celery_app",
                                   "worker", "--pool", "prefork",
                                   f"--concurrency={concurrency}", "--loglevel", "WARNING",
                                   "--without-gossip", "--without-mingle",
                                   "--without-heartbeat", "-n", f"bench-{os.getpid()}@%h"],
                 logs, env=env, stop_deadline=20.0)
    try:
        ping = [str(BENCH_BIN / "python"), "-m", "bench.celery_app", "ping"]
        wait_until(lambda: subprocess.run(ping, cwd=REPO, env=env, capture_output=True,
                                          timeout=20).returncode == 0,
                   "the Celery worker", 60, proc, step=0.2)
    except BaseException:
        proc.stop()
        raise
    return proc


def gunicorn(name: str, app: str, logs: Path, workers: int, **env: str) -> Proc:
    """Flask under gunicorn (sync workers), loopback, free port."""
    port = free_port()
    proc = start(name, [str(BENCH_BIN / "gunicorn"), "--bind", f"{HOST}:{port}",
                        "--workers", str(workers), "--worker-class", "sync",
                        "--graceful-timeout", "5", "--timeout", "120",
                        "--log-level", "warning", app],
                 logs, port=port, env=clean_env(**env), stop_deadline=20.0)
    try:
        wait_http(proc, "/healthz")
    except BaseException:
        proc.stop()
        raise
    return proc
