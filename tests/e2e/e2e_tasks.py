"""Tasks for the end-to-end tests, loaded by the real server through OFFLOAD_TASK_MODULES.

When ``E2E_JOURNAL`` names a file, the server appends one JSON line to it for every task
record it saves (id, name, status, error): the memory store dies with the server process, so
a test that stops the server reads the journal to see how each task ended.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from service import TaskFunction, report_progress, task
from service.models import TaskRecord

if TYPE_CHECKING:
    from service import TaskService

JOURNAL_ENV = "E2E_JOURNAL"


def _install_journal(service: TaskService, path: str) -> None:
    """Wrap the store's ``save`` (the seam every state change goes through) with a spy."""
    store = service.store
    if getattr(store, "_e2e_journal", None) == path:
        return
    save = store.save

    async def journaled_save(record: TaskRecord) -> None:
        await save(record)
        error = record.error
        entry: dict[str, Any] = {
            "id": record.id, "name": record.name, "status": record.status.value,
            "error": None if error is None else {"type": error.type, "message": error.message},
        }
        _append(path, json.dumps(entry))

    store.save = journaled_save  # type: ignore[method-assign]
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
