"""What running tasks on another engine (Celery workers) needs of a store, beside
:class:`~.base.TaskStore`: starting one named record, and a dispatch plan.

A Celery message names one record and the number of attempts it had when the message was
sent (its *generation*). The worker that receives it calls :meth:`claim_by_id`, which
starts the record only if that message may start it now, so that a duplicate, a
redelivered or a stale message never runs a task twice (and never twice at once).

The dispatch plan (:meth:`plan_dispatch`, :meth:`take_dispatch`, :meth:`dispatched`) is an
outbox: before a record becomes startable, the process that makes it so writes when its
message must be sent; it removes the entry once the message is out. An entry whose time
passed (a process died between the two steps, the broker was down, or a delay or retry
wait came due) is taken by one process and sent then. So no crash leaves a startable
record without a message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..models import TaskRecord
from ..rate_limits import RateLimit

ClaimVerdict = Literal["claimed", "taken_over", "held", "not_due", "limited", "gated",
                       "stale", "ended", "missing"]
"""What :meth:`DispatchStore.claim_by_id` found:

- ``claimed``: it was queued (or scheduled and due) at that generation: now running here.
- ``taken_over``: the attempt this message belongs to (or the one before it) was running
  under a lease that has expired (its worker died): now held here, at the same attempt,
  for the caller to settle by the interruption rule.
- ``held``: that attempt is running under a live lease: never start it twice at once;
  look again later (at the latest when the lease ends).
- ``not_due``: scheduled, not yet due: send the message again for ``scheduled_at``.
- ``limited``: the type's concurrency limit is reached in the whole deployment, or its
  rate limit allows no start now (then ``ClaimById.retry_at`` says when it will). The
  type's *gate* closes: its records start in their queue's order (priority, then first
  in first out). While it is closed, a record starts only if fewer records are ahead of
  it in line than may start now, and the gate sends the messages of those that may: a
  start that leaves room wakes the next in line (``ClaimById.hand_on``, for its claimer
  to send); else the next are woken through the dispatch plan when a start may be
  allowed, or by :meth:`DispatchStore.open_gate` when a task of the type ends. The
  message is done with: the gate stands for it.
- ``gated``: the type's gate is closed and the record is not among those that may start
  now: the message is done with, and the record is woken when its turn comes. If some
  may start now, those with no message out are woken (``ClaimById.hand_on``).
- ``stale``: the record has moved on past this message (another message stands for it).
- ``ended``: terminal (or cancelled): nothing to do.
- ``missing``: no such record (deleted, evicted, or never stored).
"""


@dataclass(frozen=True, slots=True)
class ClaimById:
    """The verdict, and the record as it is after the call (None if there is none)."""

    verdict: ClaimVerdict
    record: TaskRecord | None
    retry_at: float | None = None
    """For a record its rate limit holds back: the first time a start is allowed."""
    hand_on: tuple[TaskRecord, ...] = ()
    """For a start (or a message ``gated``) under a closed gate that leaves room for
    others now: the records in line, woken, whose messages the claimer sends (see
    ``limited``)."""


@dataclass(frozen=True, slots=True)
class DueDispatch:
    """What :meth:`DispatchStore.take_dispatch` took."""

    ids: list[str]
    """The ids whose time came, oldest first: sent again (or looked at) now."""
    woken: list[TaskRecord]
    """Records that closed gates woke as their time came (each the first in its line
    with no message out), to send now; planned for ``again_at``."""


RECHECK = 5.0
"""Seconds before a gate closed by a concurrency limit looks again: a worker whose task of
that type ends opens it at once, so this only covers a missed opening (a worker killed)."""
RESEND = 60.0  # the default of a woken message's resend (OFFLOAD_CELERY_RESEND)


class DispatchStore(ABC):
    """The optional half of the store contract that Celery mode uses (the Redis store)."""

    @abstractmethod
    async def claim_by_id(self, task_id: str, attempts: int, worker: str, now: float,
                          lease: float, limit: int | None = None,
                          rate: RateLimit | None = None, *, recheck: float = RECHECK,
                          resend: float = RESEND) -> ClaimById:
        """Start the record ``task_id`` for a message sent when it had ``attempts``
        attempts: if it is queued, or scheduled and due, with that many attempts (and
        fewer than ``limit`` of its name run in the deployment, and its ``rate`` allows
        a start at ``now``, counting the starts of every claim), it moves to running
        under ``worker``'s lease until ``now + lease``, as :meth:`~.base.TaskStore.claim`
        does. If that attempt or the one before it is running under an expired lease,
        the caller takes the lease over. Anything else changes nothing, but for the
        type's gate: a gate closed by ``limit`` looks again ``recheck`` seconds later,
        and a woken record's message (``ClaimById.hand_on``) is sent again ``resend``
        seconds later if no worker has started it by then."""

    @abstractmethod
    async def add_planned(self, records: Sequence[TaskRecord], max_pending: int | None,
                          plan: Mapping[str, float]) -> list[TaskRecord]:
        """:meth:`~.base.TaskStore.add`, and in the same step, for each record it stores
        (not one an idempotency key finds), the dispatch plan's entry ``plan[id]``."""

    @abstractmethod
    async def plan_dispatch(self, due: Mapping[str, float], *, planned_only: bool = False
                            ) -> None:
        """Record, per task id, the time its message must be sent by (replacing any
        time already planned for it). ``planned_only``: only for ids that still have a
        plan entry (a message sent that a worker has since taken or gated needs none)."""

    @abstractmethod
    async def take_dispatch(self, now: float, limit: int, again_at: float) -> DueDispatch:
        """Up to ``limit`` ids whose time came by ``now``, oldest first, each planned
        again for ``again_at`` in the same step (so that one process sends it, and
        another does if that one dies before calling :meth:`dispatched`); and the records
        that closed gates whose time came wake."""

    @abstractmethod
    async def dispatched(self, task_ids: Collection[str]) -> None:
        """Forget the plan of these ids: their messages are sent (or need none)."""

    @abstractmethod
    async def next_dispatch(self) -> float | None:
        """The earliest planned time (of a message or of a gate), or None."""

    @abstractmethod
    async def open_gate(self, name: str, now: float, resend_at: float,
                        limit: int | None = None, rate: RateLimit | None = None
                        ) -> list[TaskRecord]:
        """A task of ``name`` ended (or a queued one was cancelled), so some waiting may
        be allowed to start: if the type's gate is closed, those of the first records in
        line that may start at ``now`` under ``limit`` and ``rate`` (their *room*) that
        have no message out, for the caller to send now (each planned for ``resend_at``
        in case it never does)."""
