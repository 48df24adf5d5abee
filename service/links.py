"""The front's checks of ``depends_on``: its shape and bounds, the links inside one batch
(an index names another task of the same batch), and no cycle among them.

A new task can only depend on ids that exist already, so a cycle can only arise inside
one batch, where tasks name each other by index: :func:`link` refuses it (and a path
longer than ``OFFLOAD_MAX_CHAIN``) with a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import FieldError, InvalidSubmission
from .models import JSON, Status, Submission, TaskRecord, looks_like_task_id
from .registry import BoundCall, TaskType
from .settings import Settings


def check_depends_on(submission: Submission, settings: Settings, batch_size: int | None
                     ) -> list[FieldError]:
    """What is wrong with a submission's ``depends_on`` on its own (``batch_size``: the
    size of its batch, None outside one, where an index names nothing)."""
    given = list(submission.depends_on)
    limit = settings.max_group if submission.receives == "results" else settings.max_depends_on
    if len(given) > limit:
        return [FieldError("depends_on", f"at most {limit} ids")]
    if given and submission.delay:
        return [FieldError("delay", "cannot be combined with depends_on: a dependant starts "
                                    "when its dependencies have succeeded")]
    if submission.receives and not given:
        return [FieldError("depends_on", "a task that receives results depends on a task")]
    if submission.receives == "result" and len(given) != 1:
        return [FieldError("depends_on", "a task that receives a result depends on one task")]
    errors: list[FieldError] = []
    seen: set[str | int] = set()
    for position, item in enumerate(given):
        field = f"depends_on.{position}"
        if item in seen:
            errors.append(FieldError(field, "listed twice"))
        elif isinstance(item, bool) or not isinstance(item, str | int):
            errors.append(FieldError(field, "a task id (or, in a batch, an index)"))
        elif isinstance(item, int) and batch_size is None:
            errors.append(FieldError(field, "an index names a task of the same batch: "
                                            "only in POST /tasks/batch"))
        elif isinstance(item, int) and not 0 <= item < batch_size:  # type: ignore[operator]
            errors.append(FieldError(field, f"no task {item} in this batch"))
        elif isinstance(item, str) and not looks_like_task_id(item):
            errors.append(FieldError(field, f"no task {item[:40]!r}"))
        seen.add(item)
    return errors


def link(records: Sequence[TaskRecord], submissions: Sequence[Submission], max_chain: int
         ) -> None:
    """Put the ids of the batch's tasks in place of indexes; refuse a cycle, or a path of
    more than ``max_chain`` tasks, with an error naming ``tasks.I.depends_on.J``."""
    edges: list[list[tuple[int, int]]] = [[] for _ in records]  # per task: (position, index)
    for index, (record, submission) in enumerate(zip(records, submissions, strict=True)):
        ids: list[str] = []
        for position, item in enumerate(submission.depends_on):
            if isinstance(item, int):
                edges[index].append((position, item))
                ids.append(records[item].id)
            else:
                ids.append(item)
        record.depends_on = ids
    depth = _depths(edges)
    if None in depth:
        index, position = _on_a_cycle(edges, depth)
        raise InvalidSubmission([FieldError(
            f"tasks.{index}.depends_on.{position}",
            "a cycle: this task would wait, through the batch, for itself")],
            "depends_on makes a cycle")
    for index, task_edges in enumerate(edges):
        for position, _ in task_edges:
            if (depth[index] or 0) > max_chain:
                raise InvalidSubmission([FieldError(
                    f"tasks.{index}.depends_on.{position}",
                    f"a chain of more than {max_chain} tasks (OFFLOAD_MAX_CHAIN)")],
                    "depends_on makes too long a chain")


def _on_a_cycle(edges: list[list[tuple[int, int]]], depth: list[int | None]
                ) -> tuple[int, int]:
    """A task on a cycle, and the position of its link to the next one. Every task left
    without a depth waits for another such task, so a walk along those links comes back
    to a task it has seen: that one is on a cycle."""
    seen: set[int] = set()
    index = depth.index(None)
    while index not in seen:
        seen.add(index)
        index = next(other for _, other in edges[index] if depth[other] is None)
    position = next(p for p, other in edges[index] if depth[other] is None)
    return index, position


def _depths(edges: list[list[tuple[int, int]]]) -> list[int | None]:
    """Per task, the most tasks on a path that ends with it (itself counted); None for a
    task on a cycle or after one (Kahn's algorithm: what is never freed is on one)."""
    waits_for = [len({i for _, i in task_edges}) for task_edges in edges]
    freed_by: list[list[int]] = [[] for _ in edges]
    for index, task_edges in enumerate(edges):
        for other in {i for _, i in task_edges}:
            freed_by[other].append(index)
    depth: list[int | None] = [None] * len(edges)
    ready = [i for i, n in enumerate(waits_for) if n == 0]
    for i in ready:
        depth[i] = 1
    while ready:
        done = ready.pop()
        for index in freed_by[done]:
            depth[index] = max(depth[index] or 0, (depth[done] or 0) + 1)
            waits_for[index] -= 1
            if waits_for[index] == 0:
                ready.append(index)
    return [d if waits_for[i] == 0 else None for i, d in enumerate(depth)]


def wait_for(record: TaskRecord, submission: Submission) -> None:
    """A record that depends on others starts ``waiting``."""
    if submission.depends_on:
        record.status = Status.WAITING
        record.depends_on = [i for i in submission.depends_on if isinstance(i, str)]
        record.receives = submission.receives


def bind_receiving(task_type: TaskType, args: list[JSON], kwargs: dict[str, JSON]
                   ) -> BoundCall | None:
    """Check the arguments of a task that will get its dependency's result (or results)
    first: bound with a stand-in for it, whose own type is checked only when it runs."""
    try:
        return task_type.bind([None, *args], kwargs)
    except InvalidSubmission as exc:
        errors = [shifted for error in exc.errors if (shifted := _shifted(error)) is not None]
        if errors:
            raise InvalidSubmission(errors) from None
    return None


def _shifted(error: FieldError) -> FieldError | None:
    head, _, rest = error.field.partition(".")
    if head != "args" or not rest:
        return error
    number, _, tail = rest.partition(".")
    if not number.isdigit():
        return error
    if number == "0":  # the stand-in for the result
        if error.message.startswith("unexpected positional argument"):
            return FieldError("args", "takes no positional argument, so it cannot receive "
                                      "its dependency's result")
        return None
    return FieldError(".".join(["args", str(int(number) - 1), *([tail] if tail else [])]),
                      error.message)
