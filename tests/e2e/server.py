"""The real server, started the way ``make run`` starts it, on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STARTUP_DEADLINE = 30.0  # seconds: hypercorn.toml's startup_timeout
STOP_DEADLINE = 30.0  # seconds a SIGTERM gets before SIGKILL (hypercorn.toml's shutdown_timeout)


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(**overrides: str) -> dict[str, str]:
    """This environment without any OFFLOAD_* setting of the caller's, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@dataclass
class Server:
    """A Hypercorn process we started; its output goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def output_tail(self, chars: int = 8000) -> str:
        text = self.output()
        return text if len(text) <= chars else "…" + text[-chars:]

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if the process still runs after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        """SIGTERM to the server's main process (what a supervisor sends)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to every process of the session we started the server in, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # the server started its own session
        self.process.wait()

    def stop(self, deadline: float = STOP_DEADLINE) -> tuple[int | None, bool]:
        """SIGTERM, then SIGKILL after ``deadline`` seconds. Returns (exit code, killed)."""
        if self.process.poll() is not None:
            return self.process.returncode, False
        self.terminate()
        code = self.wait_exit(deadline)
        if code is not None:
            return code, False
        self.kill()
        return self.process.returncode, True


def spawn(tmp_dir: Path, env: dict[str, str], *extra_args: str, name: str = "server",
          config: Path | str = "hypercorn.toml") -> Server:
    """Start ``python -m service --config hypercorn.toml ...`` (``make run``'s command)."""
    port = free_port()
    log_path = tmp_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config),
             "--bind", f"{HOST}:{port}", *extra_args],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # a SIGKILL fallback can reach its workers too
        )
    return Server(process, port, log_path)


def wait_ready(server: Server, deadline: float = STARTUP_DEADLINE) -> None:
    """Poll ``/readyz`` until it answers 200; fail with the server's output otherwise."""
    end = time.monotonic() + deadline
    last = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < end:
            code = server.process.poll()
            if code is not None:
                raise RuntimeError(f"the server exited with code {code} before it was ready:\n"
                                   f"{server.output_tail()}")
            try:
                response = client.get("/readyz")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.05)  # polling a starting server's readiness, not waiting for a task
    server.kill()
    raise RuntimeError(f"the server was not ready within {deadline}s (last: {last}):\n"
                       f"{server.output_tail()}")


def start(tmp_dir: Path, name: str = "server", **overrides: str) -> Server:
    """Start a server with these OFFLOAD_* overrides and wait until it is ready."""
    server = spawn(tmp_dir, server_env(**overrides), name=name)
    wait_ready(server)
    return server


def finish(server: Server) -> None:
    """Stop a server at teardown; a server that needs SIGKILL or exits non-zero is an error."""
    code, killed = server.stop()
    if killed:
        raise AssertionError(f"the server ignored SIGTERM for {STOP_DEADLINE}s and was "
                             f"killed:\n{server.output_tail()}")
    if code != 0:
        raise AssertionError(f"the server exited with code {code}:\n{server.output_tail()}")
