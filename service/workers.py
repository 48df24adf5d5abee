"""Refuse a process-local store when the server runs several worker processes."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import tempfile
from typing import IO


class SharedStoreRequired(RuntimeError):
    """Several server workers would each keep their own tasks: ids would 404 at random."""


_held: list[IO[bytes]] = []


def claim_single_worker(store_url: str) -> None:
    """Called at start-up with a non-shared store.

    Hypercorn starts its workers with multiprocessing as children of one parent (daemonic
    unless its ``daemon`` setting says otherwise); every worker tries to lock a file named
    after that parent, and only the first one can. The others raise, so Hypercorn stops the
    whole server with this message.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # not a server worker process (Hypercorn with workers=0, tests, scripts)
    parent_pid = parent.pid if parent.pid is not None else os.getppid()
    path = os.path.join(tempfile.gettempdir(), f"offload-single-worker-{parent_pid}.lock")
    handle = open(path, "wb")  # noqa: SIM115 (held open for the life of the process)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SharedStoreRequired(
            f"OFFLOAD_STORE={store_url} keeps tasks inside one process, but the server runs "
            "several worker processes. Run one worker (WORKERS=1) or use a shared store "
            "(sqlite:///path.db)."
        ) from None
    _held.append(handle)


STARTUP_REPORT = "QUART_OFFLOAD_STARTUP_REPORT"
"""Set by ``python -m service``: a file where a worker that refuses to start says why, so
that the server exits non-zero (Hypercorn alone may exit 0, pgjones/hypercorn#269)."""


def report_refusal(exc: BaseException) -> None:
    """Append why this worker refuses to start to the start-up report, if there is one."""
    path = os.environ.get(STARTUP_REPORT)
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(f"{type(exc).__name__}: {exc}\n")
