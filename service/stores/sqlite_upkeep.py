"""The SQLite store's housekeeping writes: evicting old terminal records, pruning the
change feed and giving free pages back. Like :mod:`.sqlite_ops`, each is a function of one
transaction (see :mod:`.sqlite_writer`), which the writer may run again."""

from __future__ import annotations

import sqlite3

from .sqlite_schema import TERMINAL_SQL
from .sqlite_writer import Tx

KEEP_CHANGES = 10_000  # newest rows of the change feed kept for slow readers
VACUUM_MIN_PAGES = 256  # free pages worth giving back (else they wait to be reused)
VACUUM_STEP = 1000  # pages given back per eviction


def evict_some(tx: Tx, finished_before: float, keep_at_most: int, limit: int) -> int:
    """Delete up to ``limit`` terminal records: those finished before a time, then the
    oldest finished beyond ``keep_at_most``. Fewer than ``limit`` means done."""
    oldest = (f"DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks INDEXED BY "
              f"tasks_finished WHERE status IN {TERMINAL_SQL} {{}} "
              f"ORDER BY finished_at, seq LIMIT ?)")
    done = tx.conn.execute(oldest.format("AND finished_at < ?"),
                           (finished_before, limit)).rowcount
    if done < limit:
        excess = min(finished(tx.conn) - keep_at_most, limit - done)
        if excess > 0:
            done += tx.conn.execute(oldest.format(""), (excess,)).rowcount
    return done


def finished(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute(f"SELECT coalesce(sum(n), 0) FROM counts WHERE scope = '' "
                            f"AND status IN {TERMINAL_SQL}").fetchone()
    return int(count)


def tidy(tx: Tx) -> None:
    """Prune the change feed to its newest rows, and give free pages back to the file
    system once they are a good part of the file (they are reused first otherwise)."""
    tx.conn.execute("DELETE FROM changes WHERE n <= (SELECT max(n) FROM changes) - ?",
                    (KEEP_CHANGES,))
    free, pages = free_pages(tx.conn)
    if free > max(VACUUM_MIN_PAGES, pages // 4):
        # One page per statement: Python's sqlite3 steps this pragma only once. Bounded,
        # so that other writes wait little; the next evictions give back the rest.
        for _ in range(min(free - pages // 8, VACUUM_STEP)):
            tx.conn.execute("PRAGMA incremental_vacuum(1)")


def free_pages(conn: sqlite3.Connection) -> tuple[int, int]:
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    return int(free), int(pages)


def untidy(conn: sqlite3.Connection) -> bool:
    """Whether :func:`tidy` has work (read before taking the write lock)."""
    # Two subqueries: SQLite reads min() or max() off the index only when alone.
    (span,) = conn.execute("SELECT coalesce((SELECT max(n) FROM changes) "
                           "- (SELECT min(n) FROM changes), 0)").fetchone()
    free, pages = free_pages(conn)
    return bool(span > KEEP_CHANGES or free > max(VACUUM_MIN_PAGES, pages // 4))
