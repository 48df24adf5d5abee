"""Keeps a record's changes in order for this process's listener when this process changes
a record that another one changed last, before this process's feed reader has read that
change: a claim of a record that another worker released from its dependencies, say. The
listener would get ``running`` before ``queued``, and a stream that closes at the end
would never get ``queued``. So the claim reports those changes first, and the reader
skips them."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from ..models import TaskRecord
from .base import ChangeKind
from .feed_state import as_of
from .sqlite_schema import by_id
from .sqlite_writer import Event, Tx

FeedRow = tuple[int, ChangeKind, TaskRecord]
"""A change another writer made: its number in the feed, its kind, the record as of it."""


class FeedOrder:
    """Shared by the store's writer thread (:meth:`report_unread`) and its one feed reader
    (:meth:`skip_reported`, the service's follower), under one lock: a change is handed on
    by one of the two."""

    def __init__(self, writer_id: str) -> None:
        self._writer_id = writer_id
        self._lock = threading.Lock()
        self._cursor: int | None = None  # the reader has handed on the changes up to here
        self._reported: set[int] = set()  # changes after it that a write reported early

    def skip_reported(self, cursor: int, rows: Sequence[FeedRow]
                      ) -> list[tuple[ChangeKind, TaskRecord]]:
        """The changes a feed read found up to ``cursor``, less those reported early."""
        with self._lock:
            self._cursor = cursor
            found = [(kind, record) for n, kind, record in rows if n not in self._reported]
            self._reported = {n for n in self._reported if n > cursor}
        return found

    def report_unread(self, tx: Tx, task_ids: Sequence[str]) -> None:
        """In a write that changes ``task_ids``: the changes of theirs that other writers
        made and the reader has not handed on go before this write's own. Marked as
        reported once the write is committed (a transaction run again reports afresh; one
        that fails reports nothing), unless the reader has handed them on by then."""
        if not task_ids:
            return
        with self._lock:
            cursor = self._cursor
        if cursor is None:
            return
        rows = _unread(tx.conn, cursor, self._writer_id, task_ids)
        if not rows:
            return
        records = by_id(tx.conn, [task_id for _, task_id, _, _ in rows])
        early = [(n, (kind, as_of(records[task_id], state)))
                 for n, task_id, kind, state in rows if task_id in records]
        tx.events[:0] = [event for _, event in early]
        tx.committed.append(lambda: self._mark(tx, early))

    def _mark(self, tx: Tx, early: list[tuple[int, Event]]) -> None:
        with self._lock:
            handed = [event for n, event in early if n <= (self._cursor or 0)]
            self._reported.update(n for n, _ in early if n > (self._cursor or 0))
        for event in handed:  # the reader has handed these on already: not twice
            tx.events.remove(event)


def _unread(conn: sqlite3.Connection, cursor: int, writer_id: str, task_ids: Sequence[str]
            ) -> list[tuple[int, str, ChangeKind, str | None]]:
    marks = ", ".join("?" * len(task_ids))
    rows: list[tuple[int, str, ChangeKind, str | None]] = conn.execute(
        f"SELECT n, task_id, kind, state FROM changes WHERE n > ? AND writer != ? "
        f"AND task_id IN ({marks}) ORDER BY n", (cursor, writer_id, *task_ids)).fetchall()
    return rows
