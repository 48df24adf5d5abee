"""A job: one task record plus what the scheduler needs while the task is alive."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from ..models import TaskRecord
from ..registry import BoundCall, TaskType

StopReason = Literal["cancel", "timeout", "shutdown"]


@dataclass(eq=False, slots=True)
class Job:
    """Lives from submit to the terminal status; the record is what is stored."""

    record: TaskRecord
    task_type: TaskType
    call: BoundCall
    runner: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    stop_reason: StopReason | None = None
    dequeued: bool = False  # taken out of the ready queue (cancelled, or shutting down)
    settled: bool = False  # the record reached a terminal status for this run
    attempting: bool = False  # in the task's own code, where a cancel may land
    cancel_sent: bool = False  # the runner was cancelled (once) to stop this attempt

    @property
    def sort_key(self) -> tuple[int, int]:
        return (-self.record.priority, self.record.seq)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
