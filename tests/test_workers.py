"""The single-worker lock: several workers of one server with a process-local store refuse
to start, however the server made them (spawned, forked); nothing is left on disk."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import workers
from service.workers import SharedStoreRequired, claim_single_worker, server_key

# forking is what these tests are about (gunicorn forks its workers); each child only claims
# the lock, answers through a pipe and exits
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def lock_files() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if "offload-single-worker" in n}


def forked_claims(count: int, own_socket: bool = False) -> list[str]:
    """Fork ``count`` children of this process (as gunicorn forks its workers); each claims
    the lock and says how it went, and all hold on until every one has answered."""
    release_r, release_w = os.pipe()
    answers = []
    children = []
    for _ in range(count):
        answer_r, answer_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: claim, answer, hold the lock until released
            os.close(release_w)
            try:
                if own_socket:
                    socket.create_server(("127.0.0.1", 0))  # a server of its own
                claim_single_worker("memory://")
                os.write(answer_w, b"claimed")
            except SharedStoreRequired:
                os.write(answer_w, b"refused")
            finally:
                os.read(release_r, 1)  # EOF once the parent closes its end
                os._exit(0)
        os.close(answer_w)
        children.append(pid)
        answers.append(os.read(answer_r, 100).decode())
        os.close(answer_r)
    os.close(release_w)
    os.close(release_r)
    for pid in children:
        os.waitpid(pid, 0)
    return answers


def test_a_process_that_listens_on_nothing_claims_nothing() -> None:
    assert server_key() is None
    claim_single_worker("memory://")  # tests, scripts: never refused
    assert forked_claims(2) == ["claimed", "claimed"]


def test_forked_workers_sharing_a_listening_socket_refuse_but_the_first(
    listening: socket.socket,
) -> None:
    assert server_key() is not None
    before = lock_files()
    assert sorted(forked_claims(3)) == ["claimed", "refused", "refused"]
    assert lock_files() == before  # on Linux, an abstract socket: nothing on disk


def test_forked_servers_of_their_own_do_not_refuse(listening: socket.socket) -> None:
    listening.close()
    assert forked_claims(2, own_socket=True) == ["claimed", "claimed"]


def test_a_second_app_in_the_same_process_may_claim_again(listening: socket.socket) -> None:
    claim_single_worker("memory://")
    claim_single_worker("memory://")
    # a worker started after this process has gone away gets the lock
    assert forked_claims(1) == ["refused"]  # held by this process meanwhile


def test_the_file_lock_does_not_follow_symlinks_and_goes_with_its_holder(
    tmp_path: Path,
) -> None:
    # the lock of platforms without an abstract namespace (macOS)
    target = tmp_path / "target"
    target.write_text("x")
    trap = tmp_path / "trap.lock"
    trap.symlink_to(target)
    with pytest.raises(OSError, match=r"symbolic links|Too many levels"):
        workers._claim_file(str(trap))
    path = tmp_path / "real.lock"
    code = (f"from service import workers; workers._claim_file({str(path)!r}); "
            f"import os; print(os.path.exists({str(path)!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "True"
    assert not path.exists()  # removed when its holder exited


def test_the_file_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "held.lock")
    fd = workers._claim_file(path)
    assert fd is not None
    code = f"from service import workers; workers._claim_file({path!r})"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0
    assert "BlockingIOError" in out.stderr
    workers._remove(path, fd)


def test_without_fcntl_service_imports_and_the_file_lock_is_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from service.stores import sqlite_lock

    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows
    try:
        assert importlib.reload(workers).fcntl is None
        assert importlib.reload(sqlite_lock).fcntl is None
        assert workers._claim_file(str(tmp_path / "x.lock")) is None
        assert not (tmp_path / "x.lock").exists()
    finally:
        monkeypatch.undo()
        importlib.reload(workers)
        importlib.reload(sqlite_lock)
    assert workers.fcntl is not None


@pytest.mark.e2e
def test_hypercorns_own_command_with_two_workers_and_the_memory_store_refuses(
    tmp_path: Path,
) -> None:
    # `hypercorn service.app:app --workers 2`, past python -m service's up-front check
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    before = lock_files()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.run(
        [sys.executable, "-m", "hypercorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "service.app:app"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    output = process.stdout + process.stderr
    assert "OFFLOAD_STORE=memory:// keeps tasks inside one process" in output, output[-3000:]
    assert lock_files() == before
