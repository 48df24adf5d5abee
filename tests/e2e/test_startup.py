"""Start-up checks on the real server: several workers with the memory store, and the
timeouts in hypercorn.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx
import pytest
from hypercorn.config import Config

from service.runner.runner import STOP_WAIT
from service.settings import Settings

from .server import REPO, Server, server_env, spawn

pytestmark = pytest.mark.e2e
REFUSAL_DEADLINE = 30.0  # seconds; a refusing server is gone in about one


def exit_of(server: Server) -> tuple[int | None, str]:
    """The exit code of a server expected to refuse to start (None, and killed, if it did
    not exit in time), and its output."""
    code = server.wait_exit(REFUSAL_DEADLINE)
    if code is None:
        server.kill()
    return code, server.output()


@pytest.mark.parametrize("daemonic", [True, False], ids=["hypercorn.toml", "daemon=false"])
def test_two_workers_with_the_memory_store_refuse_to_start(tmp_path: Path, daemonic: bool
                                                            ) -> None:
    # `make run WORKERS=2` with the default store (memory://); also when Hypercorn is told
    # to start its workers as non-daemonic processes
    config = REPO / "hypercorn.toml"
    if not daemonic:
        config = tmp_path / "hypercorn.toml"
        config.write_text((REPO / "hypercorn.toml").read_text() + "\ndaemon = false\n")
    server = spawn(tmp_path, server_env(), "--workers", "2", name="two-workers",
                   config=config)
    code, output = exit_of(server)

    assert code == 2, f"exit code {code}:\n{output[-4000:]}"
    assert "OFFLOAD_STORE=memory:// keeps tasks inside one process" in output, output[-4000:]
    assert "2 worker processes" in output
    assert "WORKERS=1" in output
    assert "Running on" not in output  # refused before any worker served a request
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/healthz", timeout=1)


def test_an_unsupported_store_url_refuses_to_start(tmp_path: Path) -> None:
    server = spawn(tmp_path, server_env(OFFLOAD_STORE="postgres://db/tasks"), name="bad-url")
    code, output = exit_of(server)
    assert code == 2, f"exit code {code}:\n{output[-4000:]}"
    assert "unsupported store URL 'postgres://db/tasks'" in output


def test_a_worker_that_refuses_to_start_makes_the_server_exit_non_zero(tmp_path: Path) -> None:
    # Past the up-front checks (one worker, memory store) but refused inside the worker: a
    # task module that does not import. Hypercorn alone would exit 0 (hypercorn#269).
    server = spawn(tmp_path, server_env(OFFLOAD_TASK_MODULES="no_such_module_here"),
                   name="bad-module")
    code, output = exit_of(server)
    assert code not in (None, 0), f"exit code {code}:\n{output[-4000:]}"
    assert "no_such_module_here" in output


def test_hypercorn_toml_leaves_room_for_the_task_grace_and_sets_its_timeouts() -> None:
    raw = tomllib.loads((REPO / "hypercorn.toml").read_text())
    config = Config.from_toml(REPO / "hypercorn.toml")
    grace = Settings().shutdown_grace  # OFFLOAD_SHUTDOWN_GRACE's default

    # the app's shutdown waits `grace` for running tasks, then up to STOP_WAIT for the ones it
    # stopped to unwind; it must fit inside shutdown_timeout with room to close the executors
    assert "shutdown_timeout" in raw
    assert config.shutdown_timeout >= grace + STOP_WAIT + 5
    # graceful_timeout bounds how long open connections (event streams) delay the shutdown
    assert "graceful_timeout" in raw
    assert 0 < config.graceful_timeout < config.shutdown_timeout
    # a read timeout would cut long-polls (`?wait=` up to 60 s) and every event stream
    assert config.read_timeout is None
    assert config.bind == ["127.0.0.1:8000"]
    assert config.workers == 1


def test_a_bad_setting_value_refuses_to_start_without_a_traceback(tmp_path: Path) -> None:
    server = spawn(tmp_path, server_env(OFFLOAD_MAX_QUEUE="lots"), name="bad-value")
    code, output = exit_of(server)
    assert code == 2, f"exit code {code}:\n{output[-4000:]}"
    assert "refusing to start: OFFLOAD_MAX_QUEUE: 'lots' is not a valid int" in output
    assert "Traceback" not in output
