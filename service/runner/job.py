"""A job: a claimed record plus what this runner needs while it runs the attempt."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models import Progress, TaskRecord
from ..registry import TaskType

PROGRESS_BACKLOG = 1024  # updates reported faster than the store takes them: oldest dropped
StopReason = Literal["cancel", "timeout", "shutdown", "lost"]


@dataclass(eq=False, slots=True)
class Job:
    """One attempt of one task, from its claim to its settle, in an asyncio task of its own."""

    record: TaskRecord
    task_type: TaskType
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    stop_reason: StopReason | None = None
    in_code: bool = False  # in the task's own code, where a cancel may land
    cancels_sent: int = 0
    settled: bool = False  # written by someone (shutdown may settle a thread that runs on)
    progress: deque[Progress] = field(default_factory=lambda: deque(maxlen=PROGRESS_BACKLOG))
    progress_writer: asyncio.Task[None] | None = None
    ended: TaskRecord | None = None  # the record as its settle left it

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
