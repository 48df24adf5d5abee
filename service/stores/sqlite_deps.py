"""The SQLite store's ``depends_on``: admitting waiting records, and releasing or cancelling
them in the transaction that ends a dependency (the rules are in :mod:`.dependencies`).

A waiting record has a row per id of its ``depends_on`` in ``dependencies``; a row is
marked done, with the result, when that dependency succeeds, and the rows go when the
record is released or cancelled.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ..models import Status, TaskError, TaskRecord
from .dependencies import check_known, dependency_error, released_args
from .sqlite_schema import SELECT, by_id, decode, encode_error, encode_result
from .sqlite_writer import Tx


def admit(conn: sqlite3.Connection, records: Sequence[TaskRecord], fresh: Sequence[int]
          ) -> list[tuple[TaskRecord, list[tuple[str, str | None, bool]]]]:
    """Before the fresh records are inserted: check every id they depend on, and settle
    each waiting record's status (queued with what it receives, cancelled, or waiting).
    Returns the waiting ones with the rows to book: ``(needs, result, done)`` in order."""
    wanted = sorted({i for index in fresh for i in records[index].depends_on})
    stored = by_id(conn, wanted)
    check_known(records, fresh, stored.get)
    in_call = {records[index].id for index in fresh}
    booked = []
    for index in fresh:
        record = records[index]
        if record.status is not Status.WAITING:
            continue
        rows = _rows(record, stored, in_call)
        if isinstance(rows, TaskError):
            record.status, record.error = Status.CANCELLED, rows
            record.finished_at = record.created_at
        elif all(done for _, _, done in rows):
            record.status = Status.QUEUED
            record.args = released_args(record.receives, [_loads(r) for _, r, _ in rows],
                                        record.args)
        else:
            booked.append((record, rows))
    return booked


def _rows(record: TaskRecord, stored: dict[str, TaskRecord], in_call: set[str]
          ) -> list[tuple[str, str | None, bool]] | TaskError:
    rows: list[tuple[str, str | None, bool]] = []
    for task_id in record.depends_on:
        dependency = None if task_id in in_call else stored[task_id]
        if dependency is None or not dependency.terminal:
            rows.append((task_id, None, False))
        elif dependency.status is Status.SUCCEEDED:
            rows.append((task_id, encode_result(dependency.result), True))
        else:
            return dependency_error(task_id, dependency.name, dependency.status,
                                    dependency.error)
    return rows


def book(tx: Tx, booked: Sequence[tuple[TaskRecord, list[tuple[str, str | None, bool]]]]
         ) -> None:
    """Write the rows of the records :func:`admit` left waiting (once they are inserted)."""
    tx.conn.executemany(
        "INSERT INTO dependencies VALUES (?, ?, ?, ?, ?)",
        [(record.id, position, needs, int(done), result)
         for record, rows in booked for position, (needs, result, done) in enumerate(rows)])


def ended(tx: Tx, record: TaskRecord, now: float) -> None:
    """``record`` has just become terminal (in this transaction): release or cancel the
    records waiting for it, and theirs in turn."""
    todo = [record]
    while todo:
        dependency = todo.pop()
        waiters = [task_id for (task_id,) in tx.conn.execute(
            "SELECT DISTINCT task_id FROM dependencies WHERE needs = ?", (dependency.id,))]
        if not waiters:
            continue
        if dependency.status is Status.SUCCEEDED:
            tx.conn.execute("UPDATE dependencies SET done = 1, result = ? WHERE needs = ?",
                            (encode_result(dependency.result), dependency.id))
            for task_id in waiters:
                _release_if_done(tx, task_id)
            continue
        error = encode_error(dependency_error(dependency.id, dependency.name,
                                              dependency.status, dependency.error))
        for task_id in waiters:
            cancelled = cancel_waiting(tx, task_id, error, now)
            if cancelled is not None:
                todo.append(cancelled)


def _release_if_done(tx: Tx, task_id: str) -> None:
    rows = tx.conn.execute("SELECT done, result FROM dependencies WHERE task_id = ? "
                           "ORDER BY position", (task_id,)).fetchall()
    if not all(done for done, _ in rows):
        return
    row = tx.conn.execute(f"SELECT {SELECT} FROM tasks WHERE id = ? AND status = 'waiting'",
                          (task_id,)).fetchone()
    tx.conn.execute("DELETE FROM dependencies WHERE task_id = ?", (task_id,))
    if row is None:
        return
    waiter = decode(row)
    args = released_args(waiter.receives, [_loads(result) for _, result in rows], waiter.args)
    row = tx.conn.execute(f"UPDATE tasks SET status = 'queued', args = ? WHERE id = ? "
                          f"RETURNING {SELECT}", (encode_result(args), task_id)).fetchone()
    tx.changed("status", decode(row))


def cancel_waiting(tx: Tx, task_id: str, error: str | None, now: float,
                   requested: bool = False) -> TaskRecord | None:
    """A waiting record ends cancelled (``requested``: by a cancel request); None if it
    was not waiting. Its rows go; the caller cascades."""
    tx.conn.execute("DELETE FROM dependencies WHERE task_id = ?", (task_id,))
    row = tx.conn.execute(
        f"UPDATE tasks SET status = 'cancelled', error = coalesce(?, error), "
        f"finished_at = ?, cancel_requested = cancel_requested OR ? "
        f"WHERE id = ? AND status = 'waiting' RETURNING {SELECT}",
        (error, now, int(requested), task_id)).fetchone()
    if row is None:
        return None
    record = decode(row)
    tx.changed("status", record)
    return record


def _loads(text: str | None) -> object:
    return None if text is None else json.loads(text)

