"""The SQLite store's writes, each a function of one transaction (see :mod:`.sqlite_writer`);
eviction and tidying are in :mod:`.sqlite_upkeep`.

They only read and write through the :class:`Tx` they are given, so the writer may run
them again after a busy database or a rolled back batch.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence

from ..models import ALLOWED_MOVES, TERMINAL, Status, TaskRecord
from . import sqlite_deps as deps
from . import sqlite_rates
from .base import ClaimRequest, Outcome, QueueBoundReached
from .feed_state import state_of
from .rate_room import StartRoom
from .sqlite_schema import (
    CHUNK,
    INSERT,
    SELECT,
    TERMINAL_SQL,
    decode,
    encode,
    encode_error,
    encode_progress,
    encode_result,
)
from .sqlite_writer import Tx

CLAIM_SLACK = 16  # extra candidates read past the limit, for names that cannot start now


# -- the front --------------------------------------------------------------------------

def add(tx: Tx, records: Sequence[TaskRecord], max_pending: int | None) -> list[TaskRecord]:
    conn = tx.conn
    answer: list[TaskRecord | None] = [None] * len(records)
    fresh: list[int] = []
    first_of_key: dict[tuple[str | None, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for index, record in enumerate(records):
        key = record.idempotency_key
        if key is not None:
            first = first_of_key.get((record.owner, key))
            if first is not None:  # the same key twice in one call: one record
                repeats.append((index, first))
                continue
            answer[index] = find_idempotent(conn, record.owner, key)
            if answer[index] is not None:
                continue
            first_of_key[(record.owner, key)] = index
        fresh.append(index)
    if max_pending is not None and pending(conn) + len(fresh) > max_pending:
        raise QueueBoundReached(f"{max_pending} tasks are queued or scheduled")
    booked = deps.admit(conn, records, fresh)
    seqs = [int(conn.execute(INSERT, encode(records[index])).lastrowid or 0)
            for index in fresh]
    deps.book(tx, booked)
    for index in fresh:  # cancelled at once: records of this call may wait for it
        if records[index].status is Status.CANCELLED:
            deps.ended(tx, records[index], records[index].created_at)
    for index in fresh:  # so that other processes' runners hear of new work at once
        tx.log(records[index].id, "status", state_of(records[index]))
    for index in fresh:
        answer[index] = records[index]  # the caller's own record, numbered once committed
    tx.after.append(lambda: _number(records, fresh, seqs))
    for index, first in repeats:
        answer[index] = answer[first]
    return [record for record in answer if record is not None]


def _number(records: Sequence[TaskRecord], fresh: list[int], seqs: list[int]) -> None:
    for index, seq in zip(fresh, seqs, strict=True):
        records[index].seq = seq


def find_idempotent(conn: sqlite3.Connection, owner: str | None, key: str
                    ) -> TaskRecord | None:
    if owner is None:
        row = conn.execute(f"SELECT {SELECT} FROM tasks WHERE owner IS NULL "
                           "AND idempotency_key = ?", (key,)).fetchone()
    else:
        row = conn.execute(f"SELECT {SELECT} FROM tasks WHERE owner = ? "
                           "AND idempotency_key = ?", (owner, key)).fetchone()
    return None if row is None else decode(row)


def pending(conn: sqlite3.Connection) -> int:
    """Queued and scheduled records in the whole store (every process's)."""
    (count,) = conn.execute("SELECT coalesce(sum(n), 0) FROM counts WHERE scope = '' "
                            "AND status IN ('queued', 'scheduled', 'waiting')").fetchone()
    return int(count)


def request_cancel(tx: Tx, task_id: str, now: float) -> TaskRecord | None:
    row = tx.conn.execute(f"SELECT {SELECT} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        return None
    record = decode(row)
    if record.terminal:
        return record
    if record.status is Status.WAITING:
        cancelled = deps.cancel_waiting(tx, task_id, None, now, requested=True)
        assert cancelled is not None
        deps.ended(tx, cancelled, now)
        return cancelled
    if record.status is Status.RUNNING:
        row = tx.conn.execute(f"UPDATE tasks SET cancel_requested = 1 WHERE id = ? "
                              f"RETURNING {SELECT}", (task_id,)).fetchone()
    else:
        row = tx.conn.execute(f"UPDATE tasks SET status = 'cancelled', cancel_requested = 1, "
                              f"finished_at = ? WHERE id = ? RETURNING {SELECT}",
                              (now, task_id)).fetchone()
    record = decode(row)
    tx.changed("status", record)
    if record.terminal:
        deps.ended(tx, record, now)
    return record


def delete(tx: Tx, task_id: str) -> bool:
    cursor = tx.conn.execute(f"DELETE FROM tasks WHERE id = ? AND status IN {TERMINAL_SQL}",
                             (task_id,))
    return cursor.rowcount == 1


# -- small named values ------------------------------------------------------------------

META_PREFIX = "kv:"  # callers' keys, apart from the store's own rows (schema, cursor_key)


def put_meta(tx: Tx, key: str, value: bytes) -> None:
    tx.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value", (META_PREFIX + key, value))


def compare_and_set_meta(tx: Tx, key: str, expected: bytes | None, value: bytes) -> bool:
    if get_meta(tx.conn, key) != expected:
        return False
    put_meta(tx, key, value)
    return True


def get_meta(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_PREFIX + key,)).fetchone()
    return None if row is None else bytes(row[0])


# -- the runner -------------------------------------------------------------------------

class _Room:
    """Which names may start now: not excluded, with room in their pool and rate, and below
    their limit counting the running records of every process plus those picked in this
    claim."""

    def __init__(self, conn: sqlite3.Connection, request: ClaimRequest) -> None:
        self._conn = conn
        self._limits = request.limits
        self._excluded = request.excluded
        self._pools = StartRoom(request, lambda name, newest: sqlite_rates.recent_starts(
            conn, name, newest))
        self._left: dict[str, int] = {}

    def allows(self, name: str) -> bool:
        if name in self._excluded or not self._pools.allows(name):
            return False
        limit = self._limits.get(name)
        if limit is None:
            return True
        left = self._left.get(name)
        if left is None:
            (running,) = self._conn.execute(
                "SELECT count(*) FROM tasks WHERE name = ? AND status = 'running'",
                (name,)).fetchone()
            left = self._left[name] = limit - running
        return left > 0

    def take(self, name: str) -> None:
        self._pools.take(name)
        if name in self._left:
            self._left[name] -= 1


def claim(tx: Tx, request: ClaimRequest) -> list[TaskRecord]:
    promote_due(tx, request.now)
    if request.limit <= 0:
        return []
    window = request.limit + CLAIM_SLACK
    rows = tx.conn.execute(
        "SELECT seq, name, cancel_requested FROM tasks INDEXED BY tasks_ready "
        "WHERE status = 'queued' "
        "ORDER BY priority DESC, seq LIMIT ?", (window,)).fetchall()
    picked = _pick(rows, _Room(tx.conn, request), request.limit)
    if len(picked) < request.limit and len(rows) == window:
        # Names that cannot start fill the head of the queue: look at each name's best.
        room = _Room(tx.conn, request)
        picked = _pick(_heads_by_name(tx.conn, room, request.limit), room, request.limit)
    return _start(tx, picked, request) if picked else []


def _pick(rows: Iterable[tuple[int, str, int]], room: _Room, limit: int) -> list[int]:
    picked: list[int] = []
    for seq, name, cancel_requested in rows:
        if cancel_requested or not room.allows(name):
            continue
        room.take(name)
        picked.append(seq)
        if len(picked) == limit:
            break
    return picked


def _heads_by_name(conn: sqlite3.Connection, room: _Room, limit: int
                   ) -> list[tuple[int, str, int]]:
    """The best queued records of each name that may start, best first. The names come
    from a skip scan of an index (a seek per name), never from reading every queued row."""
    names = [name for (name,) in conn.execute(
        "WITH RECURSIVE names(name) AS ("
        " SELECT min(name) FROM tasks INDEXED BY tasks_ready_by_name WHERE status = 'queued'"
        " UNION ALL SELECT (SELECT min(name) FROM tasks INDEXED BY tasks_ready_by_name"
        "  WHERE status = 'queued'"
        "  AND name > names.name) FROM names WHERE names.name IS NOT NULL)"
        " SELECT name FROM names WHERE name IS NOT NULL")]
    heads: list[tuple[int, int, str, int]] = []
    for name in names:
        if room.allows(name):
            heads.extend(conn.execute(
                "SELECT -priority, seq, name, cancel_requested "
                "FROM tasks INDEXED BY tasks_ready_by_name WHERE status = 'queued' "
                "AND name = ? ORDER BY priority DESC, seq LIMIT ?",
                (name, limit + CLAIM_SLACK)))
    heads.sort()
    return [(seq, name, cancel) for _, seq, name, cancel in heads]


def _start(tx: Tx, picked: list[int], request: ClaimRequest) -> list[TaskRecord]:
    rows = tx.conn.execute(
        f"UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?, "
        f"progress = NULL, lease_owner = ?, lease_expires = ? "
        f"WHERE seq IN ({_marks(picked)}) AND status = 'queued' RETURNING {SELECT}",
        (request.now, request.worker, request.now + request.lease, *picked)).fetchall()
    by_seq = {record.seq: record for record in map(decode, rows)}
    records = [by_seq[seq] for seq in picked]
    for record in records:
        tx.changed("status", record)
    sqlite_rates.log_starts(tx.conn, records, request.rates, request.now)
    return records


def promote_due(tx: Tx, now: float) -> None:
    """Scheduled records whose time has come become queued (or, defensively, cancelled if a
    cancel was requested: such a record never starts)."""
    rows = tx.conn.execute(
        f"UPDATE tasks INDEXED BY tasks_due SET "
        f"status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, "
        f"finished_at = CASE WHEN cancel_requested THEN ? ELSE finished_at END "
        f"WHERE status = 'scheduled' AND scheduled_at <= ? RETURNING {SELECT}",
        (now, now)).fetchall()
    for row in rows:
        record = decode(row)
        tx.changed("status", record)
        if record.terminal:
            deps.ended(tx, record, now)


def unclaim(tx: Tx, records: Sequence[TaskRecord], worker: str) -> None:
    """Hand back records claimed for a caller that stopped waiting (they never ran)."""
    for record in records:
        row = tx.conn.execute(
            f"UPDATE tasks SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, "
            f"lease_expires = NULL WHERE id = ? AND status = 'running' AND attempts = ? "
            f"AND lease_owner = ? RETURNING {SELECT}",
            (record.id, record.attempts, worker)).fetchone()
        if row is not None:
            tx.changed("status", decode(row))


def settle(tx: Tx, task_id: str, attempts: int, worker: str, outcome: Outcome,
           progress: str | None) -> TaskRecord | None:
    """End an attempt the worker holds; ``progress`` (JSON) is its last unwritten one."""
    row = tx.conn.execute("SELECT status, attempts, lease_owner, cancel_requested FROM tasks "
                          "WHERE id = ?", (task_id,)).fetchone()
    if row is None or tuple(row[:3]) != ("running", attempts, worker):
        return None
    status = outcome.status
    if status not in TERMINAL and row[3]:
        status = Status.CANCELLED
    if status not in ALLOWED_MOVES[Status.RUNNING]:
        raise ValueError(f"a running task cannot settle as {status}")
    common = ("status = ?, error = ?, progress = coalesce(?, progress), lease_owner = NULL, "
              "lease_expires = NULL")
    values: tuple[object, ...] = (status.value, encode_error(outcome.error), progress)
    if status in TERMINAL:
        common += ", result = ?, finished_at = ?"
        values += (encode_result(outcome.result), outcome.at)
    elif status is Status.SCHEDULED:
        common += ", scheduled_at = ?"
        values += (outcome.scheduled_at,)
    row = tx.conn.execute(f"UPDATE tasks SET {common} WHERE id = ? RETURNING {SELECT}",
                          (*values, task_id)).fetchone()
    record = decode(row)
    tx.changed("status", record)
    if record.terminal:
        deps.ended(tx, record, outcome.at)
    return record


def write_progress(tx: Tx, items: Sequence[tuple[str, int, str, Sequence[TaskRecord]]]
                   ) -> list[tuple[str, int, str]]:
    """Write each ``(task_id, attempts, worker, saved)`` the worker still holds: the record
    gets the latest progress saved, the feed an entry per update (in order). The ones it
    no longer holds are returned."""
    lost = []
    for task_id, attempts, worker, saved in items:
        row = tx.conn.execute(
            "UPDATE tasks SET progress = ? WHERE id = ? AND status = 'running' "
            "AND attempts = ? AND lease_owner = ? RETURNING cancel_requested",
            (encode_progress(saved[-1].progress) or "null", task_id, attempts, worker)
        ).fetchone()
        if row is None:
            lost.append((task_id, attempts, worker))
            continue
        for record in saved:  # a cancel request the runner has not heard of yet is kept
            if record.cancel_requested != bool(row[0]):
                record = dataclasses.replace(record, cancel_requested=bool(row[0]))
            tx.log(task_id, "progress", state_of(record))
    return lost


def renew(tx: Tx, worker: str, task_ids: Sequence[str], now: float, lease: float
          ) -> dict[str, bool]:
    held: dict[str, bool] = {}
    for start in range(0, len(task_ids), CHUNK):
        chunk = task_ids[start:start + CHUNK]
        rows = tx.conn.execute(
            f"UPDATE tasks SET lease_expires = ? WHERE status = 'running' AND lease_owner = ? "
            f"AND id IN ({_marks(chunk)}) RETURNING id, cancel_requested",
            (now + lease, worker, *chunk)).fetchall()
        held.update((task_id, bool(cancel)) for task_id, cancel in rows)
    return held


def reclaim(tx: Tx, worker: str, now: float, lease: float) -> list[TaskRecord]:
    rows = tx.conn.execute(
        f"UPDATE tasks INDEXED BY tasks_leases SET lease_owner = ?, lease_expires = ? "
        f"WHERE status = 'running' AND lease_expires < ? RETURNING {SELECT}",
        (worker, now + lease, now)).fetchall()
    return sorted(map(decode, rows), key=lambda record: record.seq)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))
