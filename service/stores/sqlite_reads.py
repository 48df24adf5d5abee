"""The SQLite store's reads: plain functions of a connection, run in reader threads.

WAL lets them run beside the writer (of this process or another): each sees the database
as of its last commit.
"""

from __future__ import annotations

import sqlite3

from ..models import Status, TaskRecord
from .base import ChangeKind, ListQuery
from .feed_state import as_of
from .sqlite_schema import SELECT, TERMINAL_SQL, by_id, decode
from .sqlite_upkeep import finished

FEED_BATCH = 5000  # change rows read at once


def get(conn: sqlite3.Connection, task_id: str) -> TaskRecord | None:
    row = conn.execute(f"SELECT {SELECT} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else decode(row)


def page(conn: sqlite3.Connection, query: ListQuery) -> list[TaskRecord]:
    """Newest first. A filter reads, per status, only the index entries of that status
    (and name, and owner) below ``before_seq``, ``limit`` at most: a rare status or name
    costs as little as a common one."""
    statuses = sorted(Status if query.statuses is None else query.statuses)
    if query.limit <= 0 or not statuses:
        return []
    if query.statuses is None and query.name is None and query.owner is None:
        below = () if query.before_seq is None else (query.before_seq,)
        where = "WHERE seq < ?" if below else ""
        rows = conn.execute(f"SELECT {SELECT} FROM tasks {where} ORDER BY seq DESC LIMIT ?",
                            (*below, query.limit)).fetchall()
        return [decode(row) for row in rows]
    terms: list[str] = ["status = ?"]
    values: list[object] = []
    for column, value in (("name", query.name), ("owner", query.owner)):
        if value is not None:
            terms.append(f"{column} = ?")
            values.append(value)
    if query.before_seq is not None:
        terms.append("seq < ?")
        values.append(query.before_seq)
    one = (f"SELECT seq FROM (SELECT seq FROM tasks WHERE {' AND '.join(terms)} "
           f"ORDER BY seq DESC LIMIT ?)")
    params: list[object] = []
    for status in statuses:
        params += [status.value, *values, query.limit]
    rows = conn.execute(
        f"SELECT {SELECT} FROM tasks WHERE seq IN ({' UNION ALL '.join([one] * len(statuses))})"
        f" ORDER BY seq DESC LIMIT ?", (*params, query.limit)).fetchall()
    return [decode(row) for row in rows]


def count_by_status(conn: sqlite3.Connection, owner: str | None) -> dict[Status, int]:
    scope = "" if owner is None else "o:" + owner
    counts = dict.fromkeys(Status, 0)
    for status, n in conn.execute("SELECT status, n FROM counts WHERE scope = ?", (scope,)):
        counts[Status(status)] = n
    return counts


def next_due(conn: sqlite3.Connection) -> float | None:
    (due,) = conn.execute("SELECT min(scheduled_at) FROM tasks INDEXED BY tasks_due "
                          "WHERE status = 'scheduled'").fetchone()
    return None if due is None else float(due)


def changes_since(conn: sqlite3.Connection, cursor: int | None, writer_id: str
                  ) -> tuple[int, list[tuple[int, ChangeKind, TaskRecord]]]:
    """Changes other writers committed after ``cursor``, each in order with its number and
    the record as of that change (see :mod:`.feed_state`); deleted records are left out."""
    if cursor is None:
        (last,) = conn.execute("SELECT coalesce(max(n), 0) FROM changes").fetchone()
        return int(last), []
    conn.execute("BEGIN")  # one snapshot for the feed and the records
    try:
        # this process's own changes are skipped in SQL: under load they are most of them
        rows = conn.execute("SELECT n, task_id, kind, state FROM changes "
                            "WHERE n > ? AND writer != ? ORDER BY n LIMIT ?",
                            (cursor, writer_id, FEED_BATCH)).fetchall()
        if len(rows) == FEED_BATCH:
            last = rows[-1][0]
        else:  # every change up to the newest was seen
            (last,) = conn.execute("SELECT coalesce(max(n), ?) FROM changes",
                                   (cursor,)).fetchone()
        records = by_id(conn, list(dict.fromkeys(task_id for _, task_id, _, _ in rows)))
        return int(last), [(n, kind, as_of(records[task_id], state))
                           for n, task_id, kind, state in rows if task_id in records]
    finally:
        conn.execute("COMMIT")


def holds(conn: sqlite3.Connection, task_id: str, attempts: int, worker: str) -> bool:
    """Whether ``worker`` holds attempt ``attempts`` of a running record."""
    row = conn.execute("SELECT 1 FROM tasks WHERE id = ? AND status = 'running' "
                       "AND attempts = ? AND lease_owner = ?",
                       (task_id, attempts, worker)).fetchone()
    return row is not None


# -- what lets the writer skip a transaction (read before taking the write lock) --------

def nothing_startable(conn: sqlite3.Connection, now: float) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'queued') "
        "OR EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_due "
        "WHERE status = 'scheduled' AND scheduled_at <= ?)",
        (now,)).fetchone()
    return not row[0]


def no_expired_lease(conn: sqlite3.Connection, now: float) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_leases "
                       "WHERE status = 'running' AND lease_expires < ?)", (now,)).fetchone()
    return not row[0]


def nothing_to_evict(conn: sqlite3.Connection, finished_before: float, keep_at_most: int
                     ) -> bool:
    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_finished "
                       f"WHERE status IN {TERMINAL_SQL} AND finished_at < ?)",
                       (finished_before,)).fetchone()
    return not row[0] and finished(conn) <= keep_at_most
