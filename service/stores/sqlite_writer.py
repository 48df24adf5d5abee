"""Group commit: one thread owns the store's write connection and commits in batches.

Every write is an operation queued to the thread. The thread takes everything queued, runs
it in one ``BEGIN IMMEDIATE`` transaction, each operation inside a savepoint of its own (so
that one that fails, a full queue say, leaves the others in), commits once, and only then
resolves each caller's future on the event loop. Concurrent submissions share a commit; each
caller still returns only after its own.

"database is locked" never reaches a caller: a busy database is waited for (SQLite's busy
timeout, then retries with backoff, bounded), and what still fails, or a full disk, is a
:class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..models import TaskRecord
from .base import ChangeKind, StoreUnavailable
from .feed_state import state_of
from .sqlite_lock import WriterLock

log = logging.getLogger("offload.store")

T = TypeVar("T")
Event = tuple[ChangeKind, TaskRecord]

MAX_BATCH = 1024  # operations in one transaction: bounds the latency of the last one
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNAVAILABLE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                          sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT,
                          sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PROTOCOL} | _BUSY)


def error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of an exception, or None if it is not SQLite's."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_busy(exc: BaseException) -> bool:
    return error_code(exc) in _BUSY


def unavailable(path: str, exc: BaseException) -> BaseException:
    """The exception a caller sees for a failed write: :class:`StoreUnavailable` when the
    database cannot take writes now (full, locked, read-only, I/O), else ``exc`` itself."""
    code = error_code(exc)
    if code not in _UNAVAILABLE:
        return exc
    reason = str(exc)
    if code == sqlite3.SQLITE_FULL:
        reason = "the disk is full"
    elif code in _BUSY:
        reason = "other processes kept it busy for too long"
    failure = StoreUnavailable(f"SQLite store {path}: {reason}")
    failure.__cause__ = exc
    return failure


class Tx:
    """What one operation writes with: the connection, the change feed, and what to do on
    the event loop once the transaction is committed."""

    __slots__ = ("after", "committed", "conn", "events", "writer_id")

    def __init__(self, conn: sqlite3.Connection, writer_id: str) -> None:
        self.conn = conn
        self.writer_id = writer_id
        self.events: list[Event] = []
        self.after: list[Callable[[], None]] = []
        self.committed: list[Callable[[], None]] = []
        """Run on the writer's thread once the transaction is committed, before
        :attr:`after` and the events."""

    def log(self, task_id: str, kind: ChangeKind, state: str | None = None) -> None:
        """Append to the change feed that other processes read; ``state`` is the record's
        as of the change (see :mod:`.feed_state`)."""
        self.conn.execute("INSERT INTO changes (task_id, kind, writer, state) "
                          "VALUES (?, ?, ?, ?)", (task_id, kind, self.writer_id, state))

    def changed(self, kind: ChangeKind, record: TaskRecord) -> None:
        """A change for the feed and, after the commit, for this store's listener."""
        self.log(record.id, kind, state_of(record))
        self.events.append((kind, record))


class _Op(Generic[T]):
    __slots__ = ("abandoned", "error", "fn", "future", "idle", "idle_value", "tx", "value")

    def __init__(self, fn: Callable[[Tx], T], future: asyncio.Future[T],
                 idle: Callable[[sqlite3.Connection], bool] | None, idle_value: T | None,
                 abandoned: Callable[[T], None] | None) -> None:
        self.fn = fn
        self.future = future
        self.idle = idle
        self.idle_value = idle_value
        self.abandoned = abandoned
        self.tx: Tx | None = None
        self.value: T | None = None
        self.error: BaseException | None = None


_STOP = object()


class _LockedTooLong(sqlite3.OperationalError):
    """The turn to write did not come within the writer's patience."""

    sqlite_errorcode = sqlite3.SQLITE_BUSY


class Writer:
    """The write thread of one store object (see the module's docstring)."""

    def __init__(self, conn: sqlite3.Connection, path: str, writer_id: str,
                 emit: Callable[[ChangeKind, TaskRecord], None], patience: float,
                 lock: WriterLock) -> None:
        self._conn = conn
        self._lock = lock
        self._path = path
        self._writer_id = writer_id
        self._emit = emit
        self._patience = patience
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self.commits = 0
        """Transactions committed: fewer than operations when commits are shared."""
        self.busy_retries = 0
        """Transactions tried again because another process held the database."""
        self._thread = threading.Thread(target=self._run, name=f"offload-sqlite-writer:{path}",
                                        daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Tx], T], *,
               idle: Callable[[sqlite3.Connection], bool] | None = None,
               idle_value: T | None = None,
               abandoned: Callable[[T], None] | None = None) -> asyncio.Future[T]:
        """Queue a write (from the event loop). ``fn`` runs in the transaction and may run
        more than once (a busy database, a rolled back batch): it must only read and write
        the database through its :class:`Tx`. When ``idle`` says so, before any
        transaction, the write is skipped and its answer is ``idle_value`` (only when every
        write of its batch may be skipped). ``abandoned``
        gets the answer of a write committed after its caller stopped waiting."""
        if self._closed:
            raise StoreUnavailable(f"SQLite store {self._path} is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Op(fn, future, idle, idle_value, abandoned))
        return future

    async def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ops = [op for op in batch if op is not _STOP]
            if ops:
                self._process(ops)
            if len(ops) != len(batch):
                return

    def _process(self, ops: list[_Op[Any]]) -> None:
        # A future cancelled before its write starts is skipped (its caller has gone);
        # reading its state from this thread can only be late, never wrong.
        live = [op for op in ops if not op.future.cancelled()]
        try:
            if live and not self._all_idle(live):
                self._transact(live)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("the SQLite writer of %s failed", self._path)
            for op in live:
                if op.error is None:
                    op.error, op.tx = exc, None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._resolve, live)

    def _all_idle(self, ops: list[_Op[Any]]) -> bool:
        """Whether every operation says it has nothing to do (then no transaction, so no
        write lock, is taken). All or none: an operation queued after another one that
        writes sees that write, as its caller may expect."""
        for op in ops:
            try:
                if op.idle is None or not op.idle(self._conn):
                    return False
            except sqlite3.Error:
                return False  # let the transaction meet the error, and retry or report it
        for op in ops:
            op.value = op.idle_value
        return True

    def _transact(self, ops: list[_Op[Any]]) -> None:
        deadline = time.monotonic() + self._patience
        delay = 0.001
        while True:
            if not self._lock.acquire(deadline - time.monotonic()):
                self._fail(ops, _LockedTooLong())
                return
            try:
                if self._attempt(ops):
                    return
                continue  # SQLite rolled back the batch: run the rest again
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                failure = exc
            finally:
                self._lock.release()
            if not is_busy(failure) or time.monotonic() >= deadline:
                self._fail(ops, failure)
                return
            # Another program (one that does not take turns by the lock) holds SQLite's.
            self.busy_retries += 1
            log.debug("SQLite store %s is busy; retrying (%s)", self._path, failure)
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)

    def _attempt(self, ops: list[_Op[Any]]) -> bool:
        """One transaction over the operations not failed yet. True once committed (or all
        failed); False when SQLite rolled the whole transaction back and the rest must run
        again. Busy errors propagate for :meth:`_transact` to retry."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        for op in ops:
            if op.error is not None:
                continue
            op.tx = Tx(conn, self._writer_id)
            conn.execute("SAVEPOINT op")
            try:
                op.value = op.fn(op.tx)
                conn.execute("RELEASE op")
            except Exception as exc:
                if is_busy(exc):
                    raise
                op.error, op.tx = unavailable(self._path, exc), None
                if not conn.in_transaction:  # a full disk may end the whole transaction
                    return False
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
        self.commits += 1
        for op in ops:
            if op.error is None and op.tx is not None:
                for hook in op.tx.committed:
                    hook()
        return True

    def _fail(self, ops: list[_Op[Any]], exc: BaseException) -> None:
        failure = unavailable(self._path, exc)
        for op in ops:
            if op.error is None:
                op.error, op.tx = failure, None

    def _resolve(self, ops: list[_Op[Any]]) -> None:
        """On the event loop: bookkeeping and listeners first, then the callers."""
        for op in ops:
            try:
                self._report(op)
            except Exception:  # a failing hook must not keep the callers waiting
                log.exception("after a write to the SQLite store %s", self._path)
            if op.future.cancelled():
                if op.error is None and op.abandoned is not None:
                    try:
                        op.abandoned(op.value)
                    except Exception:
                        log.exception("handing back an abandoned write failed")
            elif op.error is not None:
                op.future.set_exception(op.error)
            else:
                op.future.set_result(op.value)

    def _report(self, op: _Op[Any]) -> None:
        if op.error is None and op.tx is not None:
            for hook in op.tx.after:
                hook()
            for kind, record in op.tx.events:
                try:
                    self._emit(kind, record)
                except Exception:
                    log.exception("a listener of the SQLite store %s failed", self._path)
