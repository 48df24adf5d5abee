"""The SQLite store's log of starts of rate-limited names (see :mod:`service.rate_limits`).

Written in the claim's own transaction (``BEGIN IMMEDIATE``: one writer at a time across
every process), so two workers never both take the last start a window allows. The table
``rate_starts`` is made with the others (:mod:`.sqlite_schema`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from ..models import TaskRecord
from ..rate_limits import RateLimit
from .rate_room import earliest_start


def recent_starts(conn: sqlite3.Connection, name: str, newest: int) -> list[float]:
    """The ``newest`` latest start times of a name, oldest first."""
    rows = conn.execute("SELECT at FROM rate_starts WHERE name = ? ORDER BY at DESC LIMIT ?",
                        (name, newest)).fetchall()
    return [at for (at,) in reversed(rows)]


def log_starts(conn: sqlite3.Connection, records: Sequence[TaskRecord],
               rates: Mapping[str, RateLimit], now: float) -> None:
    """Log the starts of the claimed records whose names are limited; keep each name's
    newest N (older ones can no longer hold a start back)."""
    limited = [record.name for record in records if record.name in rates]
    if not limited:
        return
    conn.executemany("INSERT INTO rate_starts VALUES (?, ?)", [(name, now) for name in limited])
    for name in set(limited):
        starts = rates[name].starts
        conn.execute(
            "DELETE FROM rate_starts WHERE name = ? AND rowid NOT IN (SELECT rowid FROM "
            "rate_starts WHERE name = ? ORDER BY at DESC LIMIT ?)", (name, name, starts))


def next_start(conn: sqlite3.Connection, rates: Mapping[str, RateLimit], now: float
               ) -> float | None:
    return earliest_start(rates, lambda name, n: _nth_newest(conn, name, n), now)


def _nth_newest(conn: sqlite3.Connection, name: str, n: int) -> float | None:
    row = conn.execute("SELECT at FROM rate_starts WHERE name = ? ORDER BY at DESC "
                       "LIMIT 1 OFFSET ?", (name, n - 1)).fetchone()
    return None if row is None else float(row[0])
