"""Offload: background tasks for Quart apps, in the same process.

The core (:class:`TaskService`) has no Quart import and runs in any asyncio program; the
:class:`Offload` extension serves it over HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import TaskContext, cancel_requested, current_task, report_progress
from .core import TaskService
from .errors import (
    InvalidSubmission,
    OffloadError,
    QueueFull,
    ShuttingDown,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownTaskType,
)
from .handles import TaskFunction, TaskHandle, task
from .models import Status, Submission, TaskRecord
from .settings import Settings
from .workflows import (
    Chain,
    Chord,
    Group,
    GroupHandle,
    Signature,
    WorkflowHandle,
    chain,
    chord,
    group,
)

if TYPE_CHECKING:
    from .web import Offload

__all__ = [
    "Chain",
    "Chord",
    "Group",
    "GroupHandle",
    "InvalidSubmission",
    "Offload",
    "OffloadError",
    "QueueFull",
    "Settings",
    "ShuttingDown",
    "Signature",
    "Status",
    "Submission",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskNotFound",
    "TaskRecord",
    "TaskService",
    "UnknownTaskType",
    "WorkflowHandle",
    "cancel_requested",
    "chain",
    "chord",
    "current_task",
    "group",
    "report_progress",
    "task",
]


def __getattr__(name: str) -> Any:
    # The Quart layer is imported only when asked for, so the core stays framework-free
    # (process workers and plain asyncio programs never import Quart).
    if name == "Offload":
        from .web import Offload

        return Offload
    raise AttributeError(f"module 'service' has no attribute {name!r}")
