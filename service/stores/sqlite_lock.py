"""Taking turns at writing: a lock that the writer of every store object on one database
file takes around each of its transactions, in every process.

SQLite alone makes a writer that finds the database busy sleep and try again, in steps that
grow to 100 ms: one process that writes often keeps the lock almost always, and the others
starve (their submissions wait for many of its commits). This lock is an ``flock`` on a file
beside the database (``<database>-lock``): a waiting writer is woken by the kernel as soon
as it is free. It dies with its process (a killed worker leaves no stale lock), and a
forked child closes its copy at once (else the child would keep it held if the parent were
killed mid-transaction). SQLite's own locking still guards the file against any other
program that writes it.

The kernel offers no timed wait on an ``flock``: a helper thread waits for it, so that a
writer can give up after its patience instead of hanging behind a frozen process.
"""

from __future__ import annotations

import contextlib
import os

try:
    import fcntl
except ImportError:  # Windows: the SQLite store is not supported there (no flock)
    fcntl = None  # type: ignore[assignment]
import threading
import weakref

_open: weakref.WeakSet[WriterLock] = weakref.WeakSet()


class WriterLock:
    """An exclusive lock shared by every process that opens the same lock file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        self._cond = threading.Condition()
        self._asking = False  # the helper is waiting for the kernel
        self._wanted = False  # a writer waits for the helper's answer
        self._granted = False  # the helper holds it for that writer
        self._closed = False
        self._helper: threading.Thread | None = None
        _open.add(self)

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds; False if it stayed taken."""
        with self._cond:
            # not while the helper asks: it shares this file descriptor, so a lock it got
            # for a writer that gave up would look free here, and its release would free it
            if not self._asking:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
            self._wanted = True
            if not self._asking:
                self._asking = True
                self._start_helper()
                self._cond.notify_all()
            granted = self._cond.wait_for(lambda: self._granted, max(timeout, 0.0))
            self._wanted = False
            self._granted = False
            return granted

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            if not self._asking:  # else the helper, stuck in flock, still uses the file
                os.close(self._fd)
        _open.discard(self)

    def _start_helper(self) -> None:
        if self._helper is None:
            self._helper = threading.Thread(target=self._help, daemon=True,
                                            name=f"offload-sqlite-lock:{self.path}")
            self._helper.start()

    def _help(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._asking or self._closed)
                if not self._asking:
                    return
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # the GIL is free while it waits
            except OSError:
                return
            with self._cond:
                self._asking = False
                if self._wanted:
                    self._granted = True
                    self._cond.notify_all()
                else:  # its writer gave up waiting: let the others have it
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                if self._closed:
                    os.close(self._fd)
                    return


def _forget_in_child() -> None:
    for lock in list(_open):
        with contextlib.suppress(OSError):
            os.close(lock._fd)
        lock._fd, lock._closed, lock._helper = -1, True, None  # never close a reused fd
    _open.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
