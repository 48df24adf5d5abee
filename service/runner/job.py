"""A job: one task record plus what the scheduler needs while the task is alive."""

from __future__ import annotations

import asyncio
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

from ..models import TaskRecord
from ..registry import BoundCall, TaskType

StopReason = Literal["cancel", "timeout", "shutdown"]


@dataclass(eq=False, slots=True)
class Job:
    """Lives from submit to the terminal status; the record is what is stored."""

    record: TaskRecord
    task_type: TaskType
    call: InitVar[BoundCall]
    # The call's parts, not the call: a tuple of plain values is one object the garbage
    # collector stops scanning, and a queue of 100,000 jobs is scanned again and again.
    args: tuple[Any, ...] = field(init=False)
    kwargs: dict[str, Any] = field(init=False)
    runner: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    stop_reason: StopReason | None = None
    dequeued: bool = False  # taken out of the ready queue (cancelled, or shutting down)
    settled: bool = False  # the record reached a terminal status for this run
    attempting: bool = False  # in the task's own code, where a cancel may land
    cancels_sent: int = 0  # times the runner was cancelled to stop this attempt

    def __post_init__(self, call: BoundCall) -> None:
        self.args, self.kwargs = call.args, call.kwargs

    @property
    def sort_key(self) -> tuple[int, int]:
        return (-self.record.priority, self.record.seq)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
