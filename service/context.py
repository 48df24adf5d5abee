"""What a running task can ask of Offload: report progress, see whether it was cancelled."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token

from .errors import TaskCancelled
from .models import Progress

ProgressSink = Callable[[Progress], None]
LoopCaller = Callable[[Callable[[], None]], object]


class TaskContext:
    """Handed to the running task through a context variable; see :func:`current_task`.

    Safe to use from the event loop (async tasks) and from worker threads (thread tasks).
    """

    __slots__ = ("_call_in_loop", "_cancel_flag", "_loop_thread", "_sink", "attempt", "task_id",
                 "task_name")

    def __init__(
        self,
        task_id: str,
        attempt: int,
        sink: ProgressSink,
        cancel_flag: Callable[[], bool],
        call_in_loop: LoopCaller,
        task_name: str = "",
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.task_name = task_name
        self._sink = sink
        self._cancel_flag = cancel_flag
        self._call_in_loop = call_in_loop
        self._loop_thread = threading.get_ident()

    @property
    def cancel_requested(self) -> bool:
        """True once somebody asked to cancel (or a timeout or shutdown cut the task off)."""
        return self._cancel_flag()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if cancellation was requested; a cheap check."""
        if self._cancel_flag():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report how far the task is; listeners of the task's event stream see it at once."""
        update = make_progress(current, total, message)
        if threading.get_ident() == self._loop_thread:
            self._sink(update)
        else:
            self._call_in_loop(lambda: self._sink(update))


def make_progress(current: object, total: object = None, message: object = None) -> Progress:
    """A checked :class:`Progress`; a wrong type is the task's bug, raised in the task."""
    if not _is_number(current) or not (total is None or _is_number(total)):
        raise TypeError("progress: current and total must be finite numbers")
    if message is not None and not isinstance(message, str):
        raise TypeError("progress: message must be a string")
    return Progress(current, total, message)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


_current: ContextVar[TaskContext | None] = ContextVar("offload_task", default=None)


def current_task() -> TaskContext:
    """The context of the task running in this asyncio task or thread.

    Raises :class:`RuntimeError` outside a task.
    """
    context = _current.get()
    if context is None:
        raise RuntimeError("current_task() called outside a running Offload task")
    return context


def report_progress(current: float, total: float | None = None, message: str | None = None) -> None:
    """Shortcut for ``current_task().progress(...)``."""
    current_task().progress(current, total, message)


def cancel_requested() -> bool:
    """Shortcut for ``current_task().cancel_requested``."""
    return current_task().cancel_requested


def set_current(context: TaskContext | None) -> Token[TaskContext | None]:
    """Install ``context`` for the running task (used by the executors)."""
    return _current.set(context)


def reset_current(token: Token[TaskContext | None]) -> None:
    """Undo :func:`set_current` once the task's code has returned."""
    _current.reset(token)
