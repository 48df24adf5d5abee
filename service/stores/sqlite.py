"""The durable store: one SQLite file that every process of a deployment shares.

Records live on disk, not in memory. Writes go to one thread per store object that commits
them in groups (:mod:`.sqlite_writer`); reads go to reader threads, which WAL lets run
beside any writer. Nothing here blocks the event loop.

What survives: a write returns once its transaction is committed. With
``synchronous="NORMAL"`` (the default) a committed write survives a crash of the process
(``kill -9``) but the last transactions may be lost to a power cut or an OS crash (the
database stays consistent); ``synchronous="FULL"`` survives both, at the cost of an fsync
per commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..models import Progress, Status, TaskRecord
from ..rate_limits import RateLimit
from . import sqlite_ops as ops
from . import sqlite_rates
from . import sqlite_reads as reads
from . import sqlite_upkeep as upkeep
from .base import ChangeKind, ClaimRequest, ListQuery, Outcome, StoreUnavailable, TaskStore
from .sqlite_feed_order import FeedOrder
from .sqlite_lock import WriterLock
from .sqlite_open import Options, StoreOpenError, Synchronous, open_reader, open_writer
from .sqlite_writer import Tx, Writer, is_busy, unavailable

log = logging.getLogger("offload.store")

T = TypeVar("T")
EVICT_CHUNK = 2000  # records deleted per transaction, so other writes get their turn


class SQLiteStore(TaskStore):
    """Task records in an SQLite file (WAL mode), shared by every process that opens it.

    ``busy_timeout`` (ms): how long a statement waits for another process's lock before
    the store retries (writes retry with backoff for up to four times as long, then raise
    :class:`StoreUnavailable`). ``synchronous``: see the module's docstring.
    ``progress_interval`` (s): progress is written at most this often per batch (listeners
    in this process see it at once). ``max_page_count`` caps the file (SQLite's pragma; a
    write beyond it fails as on a full disk). ``readers``: reader threads.
    """

    durable = True
    shared = True
    supports_meta = True

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: int = 5000,
                 synchronous: Synchronous = "NORMAL", progress_interval: float = 0.05,
                 max_page_count: int | None = None, readers: int = 2,
                 min_free_bytes: int = 1024 * 1024) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = os.fspath(path)
        self.options = Options(busy_timeout, synchronous, max_page_count, min_free_bytes)
        self.progress_interval = progress_interval
        self._reader_count = readers
        self._writer_id = secrets.token_hex(8)
        self._feed_order = FeedOrder(self._writer_id)
        self._writer: Writer | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._lock: WriterLock | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()
        self._key = b""
        # The attempts this store object handed out, by task id: (attempts, worker).
        self._held: dict[str, tuple[int, str]] = {}
        # per task: the attempt, the worker, and each update since the last write (in
        # order, each with the record it was saved for: the feed gets one entry apiece)
        self._progress: dict[str, tuple[int, str, list[TaskRecord]]] = {}
        self._flush_timer: asyncio.TimerHandle | None = None

    @property
    def commits(self) -> int:
        """Write transactions this store object committed (shared by concurrent writes)."""
        return 0 if self._writer is None else self._writer.commits

    @property
    def busy_retries(self) -> int:
        """Write transactions tried again because another process held the database."""
        return 0 if self._writer is None else self._writer.busy_retries

    async def open(self) -> None:
        conn, self._key = await asyncio.to_thread(open_writer, self.path, self.options)
        try:
            self._lock = WriterLock(self.path + "-lock")
        except OSError as exc:
            conn.close()
            raise StoreOpenError(f"SQLite store {self.path} cannot be written: its lock "
                                 f"file {self.path}-lock cannot be opened ({exc})") from exc
        self._write_conn = conn
        self._writer = Writer(conn, self.path, self._writer_id, self._changed,
                              self.options.patience, self._lock)
        self._pool = ThreadPoolExecutor(self._reader_count,
                                        thread_name_prefix="offload-sqlite-read")

    async def close(self) -> None:
        if self._writer is None:
            return
        try:
            await self.flush()
        except StoreUnavailable:
            log.warning("progress not written at close: %s is unavailable", self.path)
        await self._writer.close()
        assert self._pool is not None
        assert self._write_conn is not None
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        with self._read_conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()
        self._write_conn.close()
        if self._lock is not None:
            self._lock.close()
        self._writer = self._pool = self._write_conn = self._lock = None

    # -- plumbing -------------------------------------------------------------------------

    def _write(self, fn: Callable[[Tx], T], *,
               idle: Callable[[sqlite3.Connection], bool] | None = None,
               idle_value: T | None = None,
               abandoned: Callable[[T], None] | None = None) -> asyncio.Future[T]:
        if self._writer is None:
            raise StoreUnavailable(f"SQLite store {self.path} is not open")
        return self._writer.submit(fn, idle=idle, idle_value=idle_value, abandoned=abandoned)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise StoreUnavailable(f"SQLite store {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._reading, fn)

    def _reading(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """In a reader thread: its own connection, and a busy database waited out."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        deadline = time.monotonic() + self.options.patience
        while True:
            try:
                if conn is None:
                    conn = self._local.conn = open_reader(self.path, self.options)
                    with self._read_conns_lock:
                        self._read_conns.append(conn)
                return fn(conn)
            except sqlite3.Error as exc:
                if conn is not None and conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise unavailable(self.path, exc) from exc
                time.sleep(0.005)

    # -- the front ------------------------------------------------------------------------

    async def add(self, records: Sequence[TaskRecord], max_pending: int | None = None
                  ) -> list[TaskRecord]:
        if not records:
            return []
        batch = list(records)
        return await self._write(lambda tx: ops.add(tx, batch, max_pending))

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self._read(lambda conn: reads.get(conn, task_id))

    async def page(self, query: ListQuery) -> list[TaskRecord]:
        return await self._read(lambda conn: reads.page(conn, query))

    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        return await self._read(lambda conn: reads.count_by_status(conn, owner))

    async def request_cancel(self, task_id: str, now: float) -> TaskRecord | None:
        return await self._write(lambda tx: ops.request_cancel(tx, task_id, now))

    async def delete(self, task_id: str) -> bool:
        return await self._write(lambda tx: ops.delete(tx, task_id))

    async def cursor_key(self) -> bytes:
        return self._key

    async def get_meta(self, key: str) -> bytes | None:
        return await self._read(lambda conn: ops.get_meta(conn, key))

    async def put_meta(self, key: str, value: bytes) -> None:
        value = bytes(value)
        await self._write(lambda tx: ops.put_meta(tx, key, value))

    async def compare_and_set_meta(self, key: str, expected: bytes | None, value: bytes
                                   ) -> bool:
        expected = None if expected is None else bytes(expected)
        value = bytes(value)
        return await self._write(lambda tx: ops.compare_and_set_meta(tx, key, expected, value))

    async def changes_since(self, cursor: int | None
                            ) -> tuple[int, list[tuple[ChangeKind, TaskRecord]]]:
        last, rows = await self._read(lambda conn: reads.changes_since(conn, cursor,
                                                                       self._writer_id))
        return last, self._feed_order.skip_reported(last, rows)

    # -- the runner -----------------------------------------------------------------------

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        request = dataclasses.replace(  # copies: the thread reads them later
            request, limits=dict(request.limits), excluded=frozenset(request.excluded),
            rates=dict(request.rates),
            pools=tuple((frozenset(names), free) for names, free in request.pools))

        def run(tx: Tx) -> list[TaskRecord]:
            records = ops.claim(tx, request)
            # the records it started, and those it made due: their others' changes first
            self._feed_order.report_unread(tx, list(dict.fromkeys(r.id for _, r in tx.events)))
            tx.after.append(lambda: self._hold(records))
            return records

        def abandoned(records: list[TaskRecord]) -> None:
            if records:  # the caller stopped waiting: the records go back, unstarted
                self._background(lambda tx: ops.unclaim(tx, records, request.worker))

        return await self._write(run, idle=lambda conn: reads.nothing_startable(
            conn, request.now), idle_value=[], abandoned=abandoned)

    async def next_due(self) -> float | None:
        return await self._read(reads.next_due)

    async def next_start(self, rates: Mapping[str, RateLimit], now: float) -> float | None:
        if not rates:
            return None
        rates = dict(rates)
        return await self._read(lambda conn: sqlite_rates.next_start(conn, rates, now))

    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        task_id, attempts = record.id, record.attempts
        outcome = dataclasses.replace(outcome)
        waiting = self._progress.pop(task_id, None)  # written with the settle, never after
        unwritten = [] if waiting is None or waiting[:2] != (attempts, worker) else [
            (task_id, *waiting)]

        def run(tx: Tx) -> TaskRecord | None:
            ops.write_progress(tx, unwritten)  # a no-op when it no longer holds it
            settled = ops.settle(tx, task_id, attempts, worker, outcome, None)
            tx.after.append(lambda: self._release(task_id, attempts, worker))
            return settled

        return await self._write(run)

    async def save_progress(self, record: TaskRecord, worker: str, progress: Progress) -> bool:
        held = self._held.get(record.id)
        if held != (record.attempts, worker):
            if held is not None or not await self._read(
                    lambda conn: reads.holds(conn, record.id, record.attempts, worker)):
                return False
            self._held[record.id] = (record.attempts, worker)
        saved = dataclasses.replace(record, progress=progress)
        waiting = self._progress.get(record.id)
        if waiting is not None and waiting[:2] == (record.attempts, worker):
            waiting[2].append(saved)
        else:
            self._progress[record.id] = (record.attempts, worker, [saved])
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.progress_interval, self._flush_later)
        self._changed("progress", saved)
        return True

    async def flush(self) -> None:
        """Write the progress saved so far now, and return once it (and every write queued
        before it) is committed."""
        await self._write_progress()

    def _flush_later(self) -> None:
        self._flush_timer = None
        if self._writer is not None:
            self._background_future(self._write_progress())

    def _write_progress(self) -> asyncio.Future[None]:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        waiting = list(self._progress.items())
        self._progress.clear()

        def run(tx: Tx) -> None:  # the feed's states are encoded in the writer's thread
            lost = ops.write_progress(tx, [(task_id, *saved) for task_id, saved in waiting])
            tx.after.append(lambda: self._release_all(lost))

        # With nothing to write the writer still answers in turn, after earlier writes.
        return self._write(run, idle=lambda conn: not waiting)

    async def renew(self, worker: str, task_ids: Collection[str], now: float, lease: float
                    ) -> dict[str, bool]:
        wanted = list(task_ids)

        def run(tx: Tx) -> dict[str, bool]:
            held = ops.renew(tx, worker, wanted, now, lease)
            tx.after.append(lambda: self._release_lost(wanted, held, worker))
            return held

        return await self._write(run, idle=lambda conn: not wanted, idle_value={})

    async def reclaim(self, worker: str, now: float, lease: float) -> list[TaskRecord]:
        def run(tx: Tx) -> list[TaskRecord]:
            records = ops.reclaim(tx, worker, now, lease)
            tx.after.append(lambda: self._hold(records))
            return records

        return await self._write(run, idle=lambda conn: reads.no_expired_lease(conn, now),
                                 idle_value=[])

    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        evicted = 0
        while True:
            done = await self._write(
                lambda tx: upkeep.evict_some(tx, finished_before, keep_at_most, EVICT_CHUNK),
                idle=lambda conn: reads.nothing_to_evict(conn, finished_before, keep_at_most),
                idle_value=0)
            evicted += done
            if done < EVICT_CHUNK:
                break
        await self._write(upkeep.tidy, idle=lambda conn: not upkeep.untidy(conn))
        return evicted

    # -- what this store object knows of the attempts it handed out -----------------------

    def _hold(self, records: Sequence[TaskRecord]) -> None:
        for record in records:
            assert record.lease_owner is not None
            self._held[record.id] = (record.attempts, record.lease_owner)

    def _release(self, task_id: str, attempts: int, worker: str) -> None:
        if self._held.get(task_id) == (attempts, worker):
            del self._held[task_id]

    def _release_all(self, attempts: Sequence[tuple[str, int, str]]) -> None:
        for task_id, attempt, worker in attempts:
            self._release(task_id, attempt, worker)

    def _release_lost(self, wanted: Sequence[str], kept: Collection[str], worker: str
                      ) -> None:
        for task_id in wanted:
            held = self._held.get(task_id)
            if task_id not in kept and held is not None and held[1] == worker:
                del self._held[task_id]

    def _background(self, fn: Callable[[Tx], object]) -> None:
        self._background_future(self._write(fn))

    def _background_future(self, future: asyncio.Future[object] | asyncio.Future[None]
                           ) -> None:
        future.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[object] | asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a background write to the task store failed: %s", future.exception())
