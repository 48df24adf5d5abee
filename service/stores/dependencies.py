"""What every store does with ``depends_on``: the rules, and the memory store's book of who
waits for whom.

A record added with ``depends_on`` is ``waiting``. The store releases it (``queued``) in
the same step as the last of its dependencies succeeds, or cancels it in the same step as
one of them ends otherwise; a dependant cancelled so cancels its own dependants in that
step too. So no record waits on one that has ended, and none waits forever: every
dependency is pending or running, and ends some day (a lease that runs out ends a task
whose runner died). Deleting or evicting needs a terminal record, whose dependants were
already released or cancelled.

When a record is added, each id it depends on must be a record of the same owner, stored
already or added in the same call; a dependency that has already succeeded counts as
done (with its result), one that has failed or was cancelled cancels the new record at
once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..models import JSON, Receives, Status, TaskError, TaskRecord

DEPENDENCY_FAILED = "DependencyFailed"


class UnknownDependency(Exception):
    """A record of an ``add`` names a dependency that is not stored (or belongs to another
    owner): ``index`` is the record's place in the call, ``position`` the id's in its
    ``depends_on``. Nothing of the call was added."""

    def __init__(self, index: int, position: int, task_id: str) -> None:
        super().__init__(f"record {index}: no task {task_id} to depend on")
        self.index = index
        self.position = position
        self.task_id = task_id


def dependency_error(dependency_id: str, name: str, status: Status,
                     error: TaskError | None) -> TaskError:
    """The error of a dependant cancelled because ``dependency_id`` ended ``status``."""
    why = f"{status.value}" if error is None else f"{status.value} ({error.type}: {error.message})"
    return TaskError(DEPENDENCY_FAILED, f"dependency {dependency_id} ({name}) {why}")


def released_args(receives: Receives | None, results: Sequence[JSON], args: list[JSON]
                  ) -> list[JSON]:
    """A released record's arguments: what it receives of its dependencies, then its own."""
    if receives == "result":
        return [results[0], *args]
    if receives == "results":
        return [list(results), *args]
    return args


def check_known(records: Sequence[TaskRecord], fresh: Sequence[int],
                find: Callable[[str], TaskRecord | None]) -> None:
    """Raise :class:`UnknownDependency` for the first id, among the ``fresh`` records'
    dependencies, that is neither such a record nor a stored one (``find``) of the same
    owner."""
    for index in fresh:
        if records[index].depends_on:
            break
    else:
        return
    added = {records[i].id: records[i] for i in fresh}
    for index in fresh:
        record = records[index]
        for position, task_id in enumerate(record.depends_on):
            found = added.get(task_id) or find(task_id)
            if found is None or found.owner != record.owner:
                raise UnknownDependency(index, position, task_id)


@dataclass(slots=True)
class _Wait:
    order: list[str]
    pending: set[str]
    results: dict[str, JSON] = field(default_factory=dict)


@dataclass(slots=True)
class Ending:
    """What one ended dependency does to the records waiting for it."""

    released: list[tuple[str, list[JSON]]] = field(default_factory=list)
    """Ids of records now free to run, each with its dependencies' results in order."""
    cancelled: list[tuple[str, TaskError]] = field(default_factory=list)
    """Ids of records that will never run, each with the error that says why."""


class DependencyBook:
    """The memory store's waits: per waiting record, the ids it still waits for and the
    results of those done; per dependency, the records waiting for it."""

    def __init__(self) -> None:
        self._waits: dict[str, _Wait] = {}
        self._dependants: dict[str, list[str]] = {}

    def admit(self, record: TaskRecord, records: Mapping[str, TaskRecord]
              ) -> tuple[Status, list[JSON] | TaskError | None]:
        """A new waiting record (its dependencies checked): ``queued`` with its results
        when all have succeeded already, ``cancelled`` with the error when one ended
        otherwise, else ``waiting`` (and booked)."""
        results: dict[str, JSON] = {}
        pending: set[str] = set()
        for task_id in record.depends_on:
            dependency = records[task_id]
            if dependency.status is Status.SUCCEEDED:
                results[task_id] = dependency.result
            elif dependency.terminal:
                return Status.CANCELLED, dependency_error(
                    task_id, dependency.name, dependency.status, dependency.error)
            else:
                pending.add(task_id)
        if not pending:
            return Status.QUEUED, [results[i] for i in record.depends_on]
        self._waits[record.id] = _Wait(list(record.depends_on), pending, results)
        for task_id in pending:
            self._dependants.setdefault(task_id, []).append(record.id)
        return Status.WAITING, None

    def awaited(self, task_id: str) -> bool:
        """Whether a record waits for ``task_id`` (most ended records have none)."""
        return task_id in self._dependants

    def ended(self, record: TaskRecord) -> Ending:
        """``record`` has just become terminal: the records it frees or cancels."""
        ending = Ending()
        for waiter in self._dependants.pop(record.id, ()):
            wait = self._waits.get(waiter)
            if wait is None:  # cancelled by another of its dependencies already
                continue
            if record.status is not Status.SUCCEEDED:
                self.forget(waiter)
                ending.cancelled.append((waiter, dependency_error(
                    record.id, record.name, record.status, record.error)))
                continue
            wait.pending.discard(record.id)
            wait.results[record.id] = record.result
            if not wait.pending:
                del self._waits[waiter]
                ending.released.append((waiter, [wait.results[i] for i in wait.order]))
        return ending

    def forget(self, waiter: str) -> None:
        """``waiter`` no longer waits (cancelled): its entries go."""
        wait = self._waits.pop(waiter, None)
        if wait is None:
            return
        for task_id in wait.pending:
            dependants = self._dependants.get(task_id)
            if dependants is not None and waiter in dependants:
                dependants.remove(waiter)
                if not dependants:
                    del self._dependants[task_id]
