"""Where accepted work goes: this process's runner (the default), or Celery workers.

:class:`TaskService` admits records through a :class:`Dispatch`. The default one only
adds them to the store, where this process's runner claims them. With
``OFFLOAD_CELERY_BROKER`` set, :class:`~service.scaleout.dispatcher.CeleryDispatch` also
sends each startable record a Celery message, and the runner here claims nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol

from .models import TaskRecord
from .registry import Registry
from .runner.runner import Runner
from .settings import Settings
from .stores.base import TaskStore


class Add(Protocol):
    """Adds the records being admitted to the store; with ``plan`` (task id -> time),
    their dispatch plan's entries too, in the same step (a store that is a
    :class:`~service.stores.dispatch.DispatchStore`)."""

    def __call__(self, plan: Mapping[str, float] | None = None
                 ) -> Awaitable[list[TaskRecord]]: ...


class Dispatch:
    """Records run by this process's runner: adding them to the store is all it takes."""

    name = "local"
    """What ``/stats`` says runs the tasks (``runner``)."""

    runner_claims = True
    """Whether this process's runner claims work from the store."""

    async def start(self, runner: Runner) -> None:
        """Called once the store is open, before the runner starts."""

    async def admit(self, records: Sequence[TaskRecord], add: Add) -> list[TaskRecord]:
        """Add the records (``add`` calls the store) and see that each gets run."""
        return await add()

    def cancelled(self, record: TaskRecord) -> None:
        """A cancel was requested (the store has it already; ``record`` as it left it)."""

    async def stop(self) -> None:
        """Stop at shutdown, after the runner has drained."""


def make_dispatch(settings: Settings, store: TaskStore, registry: Registry) -> Dispatch:
    """Celery's when ``OFFLOAD_CELERY_BROKER`` is set (Celery is imported only then)."""
    if not settings.celery_broker:
        return Dispatch()
    from .scaleout.dispatcher import CeleryDispatch

    return CeleryDispatch(settings, store, registry)
