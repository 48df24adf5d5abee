"""Refuse a process-local store when the server runs several worker processes."""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import os
import socket
import stat
import sys
import tempfile

try:
    import fcntl
except ImportError:  # Windows: no flock, and no check there (see claim_single_worker)
    fcntl = None  # type: ignore[assignment]


class SharedStoreRequired(RuntimeError):
    """Several server workers would each keep their own tasks: ids would 404 at random."""


_held: dict[str, socket.socket | int] = {}  # what this process holds, by server key


def claim_single_worker(store_url: str) -> None:
    """Called at start-up with a non-shared store: refuse to be one of several workers.

    Workers of one server share its listening sockets, whichever way the server started
    them: Hypercorn's spawned children, gunicorn's forked ones, or servers sharing a port
    with ``SO_REUSEPORT``. So each worker claims a lock named after the addresses it
    listens on, and only the first one gets it; the others raise, and the server stops with
    this message. A process that listens on nothing (tests, scripts, a program that serves
    later) is no server worker and claims nothing.

    On Linux the lock is an abstract unix socket: no file at all, gone with its process.
    Elsewhere it is an ``flock`` on a file of the temporary directory, opened without
    following symlinks and removed when its holder exits. Without ``fcntl`` (Windows) the
    check is skipped.
    """
    key = server_key()
    if key is None or key in _held:
        return  # no server worker, or this process claimed it already (a second app)
    name = f"{_PREFIX[1:]}{_user()}-{key}"
    try:
        held = _claim(name)
    except BlockingIOError:
        raise SharedStoreRequired(
            f"OFFLOAD_STORE={store_url} keeps tasks inside one process, but the server runs "
            "several worker processes. Run one worker (WORKERS=1) or use a shared store "
            "(sqlite:///path.db or redis://host:6379/0)."
        ) from None
    if held is not None:
        _held[key] = held


def server_key() -> str | None:
    """A digest of the addresses this process listens on, or None if it listens on none."""
    addresses = sorted(_listening_addresses())
    if not addresses:
        return None
    return hashlib.sha256("\n".join(addresses).encode()).hexdigest()[:24]


def _listening_addresses() -> list[str]:
    found = []
    for fd in _open_fds():
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if _serves(sock):
                found.append(f"{sock.family.name} {sock.getsockname()!r}")
        finally:
            sock.detach()  # the descriptor stays the server's
    return found


def _serves(sock: socket.socket) -> bool:
    """A stream socket bound to an address and connected to nobody: a server's socket.

    Not "listening": Hypercorn's master binds, and each worker calls ``listen`` only once
    its app has started, after this check.
    """
    if sock.type != socket.SOCK_STREAM:
        return False
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if not name or (isinstance(name, tuple) and name[1] == 0):
        return False  # unbound, or an unnamed socket pair (the event loop's own)
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    if _PREFIX[1:] in text:
        return False  # a lock of ours
    try:
        sock.getpeername()
    except OSError:
        return True
    return False


def _open_fds() -> list[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):  # Linux; macOS and the BSDs
        with contextlib.suppress(OSError):
            return [int(name) for name in os.listdir(folder) if name.isdigit()]
    return []


def _claim(name: str) -> socket.socket | int | None:
    """Take the lock ``name``; BlockingIOError if another process holds it."""
    if sys.platform.startswith("linux"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind("\0" + name)  # the abstract namespace: nothing on disk
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise BlockingIOError(exc.errno, "held by another worker") from None
            raise
        return sock
    return _claim_file(os.path.join(tempfile.gettempdir(), name + ".lock"))


def _claim_file(path: str) -> int | None:
    if fcntl is None:
        return None
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)  # a symlink planted at the path is an error, not followed
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    atexit.register(_remove, path, fd)
    return fd


def _forget_in_child() -> None:
    # A forked child (a gunicorn worker of a master that claimed, a task that forks) holds
    # copies: close them, so that the lock stays its holder's alone and the child must claim.
    for held in _held.values():
        with contextlib.suppress(OSError):
            held.close() if isinstance(held, socket.socket) else os.close(held)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _remove(path: str, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still held: a worker starting now finds no stale file
    with contextlib.suppress(OSError):
        os.close(fd)


def _user() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid is not None else "user"


_PREFIX = "\0offload-single-worker-"


STARTUP_REPORT = "QUART_OFFLOAD_STARTUP_REPORT"
"""Set by ``python -m service``: a file where a worker that refuses to start says why, so
that the server exits non-zero (Hypercorn alone may exit 0, pgjones/hypercorn#269)."""


def report_refusal(exc: BaseException) -> None:
    """Append why this worker refuses to start to the start-up report, if there is one."""
    path = os.environ.get(STARTUP_REPORT)
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(f"{type(exc).__name__}: {exc}\n")
