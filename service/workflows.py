"""Workflows, as Celery has them: signatures, chains, groups and chords.

Every step is a normal task with its own record, id, status and progress; the links are
``depends_on`` (see :mod:`service.stores.dependencies`), kept by the store, so they
survive a restart with a durable store and hold across workers. A whole workflow is
submitted in one store write (all or nothing)::

    handle = await chain(add.s(2, 3), add.s(10)).submit()     # add(2, 3), then add(5, 10)
    assert await handle.result() == 15
    group_handle = await group(add.s(1, 1), add.s(2, 2)).submit()
    assert await group_handle.result() == [2, 4]
    total = await chord([add.s(1, 1), add.s(2, 2)], tsum.s()).submit()  # tsum([2, 4])

A chain or a chord is represented by its last task (the chord's callback): the handle's
``id`` is that task's, its ``status`` and ``result`` are that task's, and since a step
that fails or is cancelled cancels every step after it, the last task ends exactly when
the workflow does. So ``GET /tasks/{id}?wait=`` waits for the whole workflow too. A group
gets such a last task of its own: its members, then ``offload.group`` (a built-in that
returns the list of their results), which makes the group a chord.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .builtin_tasks import GROUP_JOIN
from .errors import (
    FieldError,
    InvalidSubmission,
    TaskAlreadyTerminal,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
)
from .handles import TaskFunction, TaskHandle
from .models import JSON, Receives, Status, Submission, TaskRecord

if TYPE_CHECKING:
    from .core import TaskService


@dataclass(frozen=True, slots=True)
class Signature:
    """A task with its arguments and options, not submitted yet (``add.s(2, 3)``).
    ``immutable`` (``add.si(...)``): in a chain it does not get the previous result."""

    task: TaskFunction
    args: tuple[JSON, ...] = ()
    kwargs: dict[str, JSON] = field(default_factory=dict)
    priority: int = 0
    timeout: float | None = None
    immutable: bool = False

    def submission(self, depends_on: Sequence[int] = (), receives: Receives | None = None
                   ) -> Submission:
        """What to submit, depending on the tasks at these indexes of its call."""
        return Submission(self.task.name, list(self.args), dict(self.kwargs),
                          priority=self.priority, timeout=self.timeout,
                          depends_on=list(depends_on),
                          receives=None if self.immutable else receives)

    async def submit(self) -> TaskHandle:
        """Submit it alone (Celery's ``apply_async``)."""
        return await self.task.submit_with(self.args, self.kwargs, priority=self.priority,
                                           timeout=self.timeout)

    apply_async = delay = submit

    def __or__(self, other: Signature | Chain) -> Chain:
        """``a.s() | b.s()`` is ``chain(a.s(), b.s())``."""
        return Chain(self, other)


class Chain:
    """Steps one after the other, each getting the previous one's result as its first
    argument (unless it is immutable). Steps may be chains (flattened) or signatures."""

    def __init__(self, *steps: Signature | Chain) -> None:
        self.steps: list[Signature] = []
        for step in steps:
            self.steps.extend(step.steps if isinstance(step, Chain) else [_signature(step)])
        if not self.steps:
            raise ValueError("a chain needs at least one step")

    def __or__(self, other: Signature | Chain) -> Chain:
        return Chain(self, other)

    async def submit(self) -> WorkflowHandle:
        """Submit every step at once; the handle follows the last one."""
        service = self.steps[0].task.service
        _bound("chain", len(self.steps), service.settings.max_chain, "OFFLOAD_MAX_CHAIN")
        submissions = [self.steps[0].submission()] + [
            step.submission([index], "result") for index, step in enumerate(self.steps[1:])]
        return WorkflowHandle(service, await _submit(service, submissions))

    apply_async = delay = submit


class Group:
    """Tasks that run side by side; their results come back together, in order."""

    def __init__(self, *tasks: Signature | Iterable[Signature]) -> None:
        self.tasks: list[Signature] = []
        for item in tasks:
            self.tasks.extend([item] if isinstance(item, Signature) else list(item))
        for task in self.tasks:
            _signature(task)
        if not self.tasks:
            raise ValueError("a group needs at least one task")

    async def submit(self) -> GroupHandle:
        """Submit every member, and the group's own task (``offload.group``), which
        waits for them all and returns the list of their results."""
        service = self.tasks[0].task.service
        size = len(self.tasks)
        _bound("group", size, service.settings.max_group, "OFFLOAD_MAX_GROUP")
        submissions = [task.submission() for task in self.tasks]
        submissions.append(Submission(  # not behind anything its members were ahead of
            GROUP_JOIN, priority=max(task.priority for task in self.tasks),
            depends_on=list(range(size)), receives="results"))
        return GroupHandle(service, await _submit(service, submissions))

    apply_async = delay = submit


class Chord:
    """A group, then a callback that gets the list of the group's results first (it runs
    only if every member succeeds; otherwise it ends cancelled, naming the member)."""

    def __init__(self, header: Group | Iterable[Signature], body: Signature) -> None:
        self.header = header if isinstance(header, Group) else Group(*header)
        self.body = _signature(body)

    async def submit(self) -> WorkflowHandle:
        service = self.body.task.service
        size = len(self.header.tasks)
        _bound("group", size, service.settings.max_group, "OFFLOAD_MAX_GROUP")
        submissions = [task.submission() for task in self.header.tasks]
        submissions.append(self.body.submission(range(size), "results"))
        return WorkflowHandle(service, await _submit(service, submissions))

    apply_async = delay = submit


def chain(*steps: Signature | Chain) -> Chain:
    """``chain(add.s(2, 3), add.s(10))``: add(2, 3), then add(5, 10)."""
    return Chain(*steps)


def group(*tasks: Signature | Iterable[Signature]) -> Group:
    """``group(add.s(1, 1), add.s(2, 2))`` or ``group(add.s(i, i) for i in range(10))``."""
    return Group(*tasks)


def chord(header: Group | Iterable[Signature], body: Signature) -> Chord:
    """``chord([add.s(1, 1), add.s(2, 2)], tsum.s())``: tsum([2, 4]) once both are done."""
    return Chord(header, body)


class WorkflowHandle(TaskHandle):
    """A submitted chain or chord: a handle on its last task (``id``, ``status``,
    ``wait``, ``refresh``), with every step's handle in ``steps``."""

    def __init__(self, service: TaskService, steps: list[TaskHandle]) -> None:
        super().__init__(service, steps[-1].id, steps[-1].record)
        self.steps = steps

    async def result(self, timeout: float | None = None) -> JSON:
        """The last task's result. Raises :class:`TaskFailed` with the error of the step
        that failed (the steps after it were cancelled), or :class:`TaskCancelled`."""
        record = await self.wait(timeout)
        if record.status is Status.SUCCEEDED:
            return record.result
        for step in self.steps:
            with contextlib.suppress(TaskNotFound):
                found = await step.refresh()
                if found.status is Status.FAILED and found.error is not None:
                    raise TaskFailed(found.error)
        raise TaskCancelled(f"workflow {self.id} was cancelled"
                            + (f": {record.error.message}" if record.error else ""))

    async def cancel(self) -> TaskRecord:
        """Cancel every step that has not ended (a running one is asked to stop); the
        last task's record after."""
        await _cancel_all(self.steps)
        return await self.refresh()

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id} {self.status} ({len(self.steps)} steps)>"


class GroupHandle(WorkflowHandle):
    """A submitted group: a handle on its own task (``offload.group``: ``id``,
    ``status``, ``wait``, ``ready``, ``refresh``), which ends when the group does; the
    members' handles are in ``handles`` (``steps`` has the group's task last)."""

    def __init__(self, service: TaskService, steps: list[TaskHandle]) -> None:
        super().__init__(service, steps)
        self.handles = steps[:-1]

    @property
    def ids(self) -> list[str]:
        """The members' ids, in order."""
        return [handle.id for handle in self.handles]

    async def result(self, timeout: float | None = None) -> list[JSON]:
        """The members' results, in order. If one did not succeed, raises as
        :meth:`TaskHandle.result` does for the first member, in order, that did not
        (waiting, within ``timeout``, for the members before it), as Celery's ``get()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        record = await self.wait(timeout)
        if record.status is Status.SUCCEEDED:
            assert isinstance(record.result, list)
            return record.result
        for handle in self.handles:
            with contextlib.suppress(TaskNotFound):
                member = await handle.wait(_left(deadline))
                if member.status is not Status.SUCCEEDED:
                    await handle.result()  # raises this member's own error
        raise TaskCancelled(f"group {self.id} was cancelled"
                            + (f": {record.error.message}" if record.error else ""))

    def __repr__(self) -> str:
        return f"<GroupHandle {self.id} {self.status} ({len(self.handles)} tasks)>"


async def _submit(service: TaskService, submissions: list[Submission]) -> list[TaskHandle]:
    records = await service.submit_many(submissions, most=len(submissions))
    return [TaskHandle(service, record.id, record) for record in records]


async def _cancel_all(handles: Sequence[TaskHandle]) -> None:
    for handle in handles:  # the first ones first: what waits for them is cancelled too
        with contextlib.suppress(TaskAlreadyTerminal, TaskNotFound):
            await handle.cancel()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _bound(what: str, size: int, most: int, setting: str) -> None:
    if size > most:
        raise InvalidSubmission([FieldError(what, f"at most {most} tasks ({setting})")],
                                f"too large a {what}")


def _signature(item: object) -> Signature:
    if not isinstance(item, Signature):
        raise TypeError(f"expected a signature such as add.s(2, 3), not {item!r}")
    return item


__all__ = ["Chain", "Chord", "Group", "GroupHandle", "Signature", "WorkflowHandle", "chain",
           "chord", "group"]
