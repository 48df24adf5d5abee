"""Tasks for the end-to-end tests, loaded by the real server through OFFLOAD_TASK_MODULES.

When ``E2E_JOURNAL`` names a file, the server appends one JSON line to it for every status
change its store commits (id, name, status, error): the memory store dies with the server
process, so a test that stops the server reads the journal to see how each task ended.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service import TaskFunction, report_progress, task
from service.models import TaskRecord
from service.stores.base import ChangeKind

if TYPE_CHECKING:
    from service import TaskService

JOURNAL_ENV = "E2E_JOURNAL"


def _install_journal(service: TaskService, path: str) -> None:
    """Wrap the store's change listener (every committed change goes through it) with a spy."""
    store = service.store
    if getattr(store, "_e2e_journal", None) == path:
        return
    listener = store.on_change

    def journaled(kind: ChangeKind, record: TaskRecord) -> None:
        if listener is not None:
            listener(kind, record)
        if kind != "status":
            return
        error = record.error
        entry: dict[str, Any] = {
            "id": record.id, "name": record.name, "status": record.status.value,
            "error": None if error is None else {"type": error.type, "message": error.message},
        }
        _append(path, json.dumps(entry))

    store.on_change = journaled
    store._e2e_journal = path  # type: ignore[attr-defined]


def _append(path: str, line: str) -> None:
    # Synchronous on purpose: a tiny append, in order, on disk before the process can exit.
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(line + "\n")


class _JournaledTask(TaskFunction):
    """A task whose registration also installs the journal on the registering service."""

    def bind(self, service: TaskService) -> None:
        super().bind(service)
        path = os.environ.get(JOURNAL_ENV)
        if path:
            _install_journal(service, path)


@task(executor="process")
def spin_reporting_pid() -> None:
    """Process: reports its worker's pid as a progress message, then burns CPU forever."""
    report_progress(0, None, str(os.getpid()))
    while True:
        pass


spin_reporting_pid = _JournaledTask(spin_reporting_pid.task_type)


@task(executor="process")
def spin_reporting_thread() -> None:
    """Process: reports ``<pid> <thread id>`` of the thread that runs it, then burns CPU."""
    report_progress(0, None, f"{os.getpid()} {threading.get_native_id()}")
    while True:
        pass


GATE_POLL = 0.02  # seconds between two looks at the gate file, inside the task


@task
def block_until_released(gate: str, limit: float = 60.0) -> str:
    """Thread: blocks its thread until the file ``gate`` exists, so the test decides when
    it ends (``limit`` seconds at most, so a failed test leaves no thread behind)."""
    deadline = time.monotonic() + limit
    while not Path(gate).exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{gate} was not released within {limit} s")
        time.sleep(GATE_POLL)
    return gate
