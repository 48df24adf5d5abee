"""The lifecycle contract: the store owns each task's life, every backend behind one seam.

The front (HTTP, handles) and the runner never share memory; they talk only through a
store. A store adds records (idempotency is its uniqueness rule, the queue bound its
admission rule), hands startable work to runners under a lease, applies conditional
transitions, takes cancel requests, renews and reclaims leases, evicts, and reports every
change it commits to ``on_change`` (and, for a store that other processes share, the
changes those processes made through :meth:`TaskStore.changes_since`).

Records handed back by a store are the caller's to read; to change one, call a method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import StoreUnavailable
from ..models import JSON, Progress, Status, TaskError, TaskRecord
from ..rate_limits import RateLimit

ChangeKind = Literal["status", "progress"]
ChangeListener = Callable[[ChangeKind, TaskRecord], None]
__all__ = ["ChangeKind", "ChangeListener", "ClaimRequest", "ListQuery", "Outcome",
           "PoolRoom", "QueueBoundReached", "StoreUnavailable", "TaskStore"]


class QueueBoundReached(Exception):
    """Adding would take the store's queued + scheduled count past the bound it was given."""



@dataclass(frozen=True, slots=True)
class ListQuery:
    """A page of tasks, newest first. ``before_seq`` continues after a previous page."""

    statuses: frozenset[Status] | None = None
    name: str | None = None
    owner: str | None = None
    limit: int = 50
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """What a runner may take now.

    ``limit``: at most this many records. ``limits``: per task name, the most that may run at
    once in the whole deployment (every process of a shared store counted). ``excluded``:
    names this runner cannot start now (their executor is full here). ``pools``: names
    that share this runner's free slots (those of one executor) and how many of them this
    claim may take in all. ``rates``: per task name, at most so many starts in any window
    of its length (every process counted, retries included: each claim is a start).
    """

    worker: str
    now: float
    lease: float
    limit: int = 1
    limits: Mapping[str, int] = field(default_factory=dict)
    excluded: Collection[str] = frozenset()
    pools: Sequence[tuple[Collection[str], int]] = ()
    rates: Mapping[str, RateLimit] = field(default_factory=dict)


class PoolRoom:
    """What is left of a claim's ``pools`` while it picks records (for the stores)."""

    __slots__ = ("_left", "_pool_of")

    def __init__(self, pools: Sequence[tuple[Collection[str], int]]) -> None:
        self._pool_of = {name: i for i, (names, _) in enumerate(pools) for name in names}
        self._left = [free for _, free in pools]

    def allows(self, name: str) -> bool:
        pool = self._pool_of.get(name)
        return pool is None or self._left[pool] > 0

    def take(self, name: str) -> None:
        pool = self._pool_of.get(name)
        if pool is not None:
            self._left[pool] -= 1


@dataclass(slots=True)
class Outcome:
    """How an attempt ends, written by :meth:`TaskStore.settle`.

    ``status`` is terminal (the attempt's end), ``SCHEDULED`` (a retry at ``scheduled_at``)
    or ``QUEUED`` (handed back to run again, e.g. an idempotent task cut off by shutdown).
    """

    status: Status
    at: float
    result: JSON = None
    error: TaskError | None = None
    scheduled_at: float | None = None


class TaskStore(ABC):
    """Where task records live and how their life moves. One contract, one test suite,
    every backend (tests/stores/test_store_contract.py).

    The rules every backend keeps:

    - ``add`` is all or nothing; ``seq`` grows with every record added.
    - Only ``claim`` moves a record to running, and only a startable one: queued, or
      scheduled and due. Best first: higher ``priority``, then lower ``seq``.
    - ``settle``, ``save_progress`` and ``renew`` change a running record only while the
      caller still holds it: same status, same attempt, same lease owner. Anything else is
      a no-op that says so (None, False, or left out of the answer).
    - A record with ``cancel_requested`` never starts again: ``claim`` skips it, and a
      retry or hand-back of it settles as cancelled instead.
    - Terminal records never change again, except that they are deleted or evicted.
    """

    durable: bool = False
    """True when a record survives the process (a 202 means the record is stored)."""

    shared: bool = False
    """True when several processes may use the store at once (one deployment)."""

    on_change: ChangeListener | None = None
    """Called after each change this store object commits (set by the service)."""

    supports_meta: bool = False
    """True when the store keeps small named values (:meth:`get_meta`, :meth:`put_meta`,
    :meth:`compare_and_set_meta`), shared by every process that uses it: what schedules
    keep their state in."""

    async def open(self) -> None:
        """Connect, create tables, etc. Called once before use."""

    async def close(self) -> None:
        """Release resources. Called once at shutdown."""

    def _changed(self, kind: ChangeKind, record: TaskRecord) -> None:
        if self.on_change is not None:
            self.on_change(kind, record)

    # -- the front ------------------------------------------------------------------------

    @abstractmethod
    async def add(self, records: Sequence[TaskRecord], max_pending: int | None = None
                  ) -> list[TaskRecord]:
        """Store new records, all or none, assigning each a growing ``seq``.

        A record whose ``(owner, idempotency_key)`` is already stored is not added: the
        stored record stands in its place in the answer (compare ``id`` to tell). Raises
        :class:`QueueBoundReached` when the queued, scheduled and waiting records would then
        number more than ``max_pending``.

        A record added ``waiting`` has ``depends_on``: it is released (queued, given what it
        ``receives``) in the same step as the last of them succeeds, and cancelled, with an
        error naming the dependency, in the same step as one ends otherwise; the rules are
        in :mod:`.dependencies`. An id that is no record of the same owner, stored or in
        the call, raises :class:`~.dependencies.UnknownDependency`.
        """

    @abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The record with that id, or None."""

    @abstractmethod
    async def page(self, query: ListQuery) -> list[TaskRecord]:
        """Up to ``query.limit`` records matching the query, newest (highest seq) first."""

    @abstractmethod
    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        """How many records have each status (every status present, zeros included)."""

    @abstractmethod
    async def request_cancel(self, task_id: str, now: float) -> TaskRecord | None:
        """Cancel: a queued or scheduled record becomes cancelled at once (``finished_at``
        ``now``); a running one gets ``cancel_requested`` for its runner to see; a terminal
        one is left as it is. Returns the record after, or None if there is none."""

    @abstractmethod
    async def delete(self, task_id: str) -> bool:
        """Forget a terminal record; False if there is none (or it is not terminal)."""

    @abstractmethod
    async def cursor_key(self) -> bytes:
        """The key list cursors are signed with: the same for every process of the store."""

    # -- the runner -----------------------------------------------------------------------

    @abstractmethod
    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        """Move up to ``request.limit`` startable records to running, best first, each
        with ``attempts`` + 1, ``started_at`` now, no progress, and a lease held by
        ``request.worker`` until ``now + lease``. Skips names in ``excluded``, names at
        their ``limits``, names whose pool is used up and names that their ``rates``
        hold back (each start logged with the claim, in the same step). Records with
        ``cancel_requested`` are never started."""

    @abstractmethod
    async def next_due(self) -> float | None:
        """The earliest ``scheduled_at`` of a scheduled record, or None."""

    @abstractmethod
    async def next_start(self, rates: Mapping[str, RateLimit], now: float) -> float | None:
        """The earliest time after ``now`` at which a name that its rate holds back at
        ``now`` may start again (by the starts claims logged), or None if none is held
        back: when a runner with rate-limited work waiting should claim again."""

    @abstractmethod
    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        """End the attempt ``record.attempts`` of a running record that ``worker`` holds.
        A retry or hand-back of a record with ``cancel_requested`` ends cancelled instead.
        Returns the record after, or None (and changes nothing) if the worker no longer
        holds that attempt."""

    @abstractmethod
    async def save_progress(self, record: TaskRecord, worker: str, progress: Progress) -> bool:
        """Record a running attempt's progress (a backend may write it late, coalesced,
        but never out of order). False if the worker no longer holds the attempt."""

    @abstractmethod
    async def renew(self, worker: str, task_ids: Collection[str], now: float, lease: float
                    ) -> dict[str, bool]:
        """Extend the worker's leases on these running records to ``now + lease``. Returns,
        for each one it still holds, whether a cancel was requested."""

    @abstractmethod
    async def reclaim(self, worker: str, now: float, lease: float) -> list[TaskRecord]:
        """Take over every running record whose lease expired before ``now`` (its runner
        died): the caller then holds it, and settles it by the interruption rule."""

    async def abandon_pending(self, now: float, error: TaskError) -> None:
        """Fail every queued and scheduled record with ``error``: what a store that does
        not outlive its process does at its end. A durable store keeps them (the default)."""

    @abstractmethod
    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        """Drop terminal records finished before a time, then the oldest beyond a count."""

    # -- small named values (optional: see ``supports_meta``) ------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None. Keys are the caller's: name them by
        what owns them (``schedule:nightly``); the store's own values are kept apart."""
        raise NotImplementedError(self._no_meta())

    async def put_meta(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        raise NotImplementedError(self._no_meta())

    async def compare_and_set_meta(self, key: str, expected: bytes | None, value: bytes
                                   ) -> bool:
        """Store ``value`` under ``key`` only if what is there now is ``expected`` (None:
        nothing). One atomic step for every process of the store: True if it was stored."""
        raise NotImplementedError(self._no_meta())

    def _no_meta(self) -> str:
        return (f"{type(self).__name__} keeps no named values (supports_meta is False): "
                "schedules need a store that does, such as memory:// or sqlite://")

    async def changes_since(self, cursor: int | None
                            ) -> tuple[int, list[tuple[ChangeKind, TaskRecord]]]:
        """Changes committed by *other* processes after ``cursor`` (None: from now on,
        reporting nothing yet), each with the record as it is now, and the cursor to pass
        next. A store that one process owns has none."""
        return 0, []
