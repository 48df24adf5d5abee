"""Opening an SQLite store's file: the settings every connection gets, and the checks that
turn a bad file into one clear error naming it, at start rather than at the first write.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .base import StoreUnavailable
from .sqlite_schema import create
from .sqlite_writer import error_code, is_busy

log = logging.getLogger("offload.store")

Synchronous = Literal["NORMAL", "FULL"]
PROBE_BYTES = 64 * 1024  # room a start must find for writes, or the disk counts as full
WAL_LIMIT = 16 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint


class StoreOpenError(StoreUnavailable):
    """The store's file cannot be used: it is not writable, not a database, corrupt, or
    on a full disk. The message names the file."""


@dataclass(frozen=True, slots=True)
class Options:
    """How connections are set up (see :class:`~service.stores.sqlite.SQLiteStore`)."""

    busy_timeout: int = 5000
    synchronous: Synchronous = "NORMAL"
    max_page_count: int | None = None
    min_free_bytes: int = 1024 * 1024

    @property
    def patience(self) -> float:
        """Seconds a write waits, in all, for a database other processes keep busy."""
        return max(4 * self.busy_timeout / 1000, 1.0)


def open_writer(path: str, options: Options) -> tuple[sqlite3.Connection, bytes]:
    """The write connection, the schema in place, and the store's cursor key."""
    _check_place(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreOpenError(describe(path, exc)) from exc
    try:
        key = _retrying(path, options, lambda: _prepare(conn, path, options))
        _check_room(conn, path, options)
    except BaseException:
        conn.close()
        raise
    return conn, key


def open_reader(path: str, options: Options) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout)}")
    conn.execute("PRAGMA query_only = ON")
    return conn


def describe(path: str, exc: BaseException) -> str:
    """What went wrong with the file, for a person to act on."""
    code = error_code(exc)
    reason = {
        sqlite3.SQLITE_NOTADB: "is not an SQLite database (or its header is damaged)",
        sqlite3.SQLITE_CORRUPT: f"is corrupt ({exc})",
        sqlite3.SQLITE_CANTOPEN: f"cannot be opened ({exc}): may this process create and "
                                 f"write files in its directory?",
        sqlite3.SQLITE_READONLY: "is read-only for this process",
        sqlite3.SQLITE_FULL: "cannot be written: the disk is full",
        sqlite3.SQLITE_IOERR: f"cannot be read or written ({exc})",
        sqlite3.SQLITE_PERM: f"cannot be accessed ({exc})",
    }.get(code or -1, f"cannot be used ({exc})")
    if is_busy(exc):
        reason = "is kept busy by another process for too long"
    return f"SQLite store {path} {reason}"


def _check_place(path: str) -> None:
    """Refuse early what SQLite would only half notice: it opens a read-only file read-only
    without a word, and needs to create ``-wal`` and ``-shm`` files beside the database."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreOpenError(f"SQLite store {path} cannot be created: its directory "
                             f"{directory} does not exist")
    if os.path.exists(path) and not os.path.isfile(path):
        raise StoreOpenError(f"SQLite store {path} is not a file")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreOpenError(f"SQLite store {path} cannot be written: this process may not "
                             f"create files in {directory} (SQLite keeps its -wal and -shm "
                             f"files there)")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise StoreOpenError(f"SQLite store {path} is read-only for this process")


def _retrying(path: str, options: Options, step: Callable[[], bytes]) -> bytes:
    """Run a step of opening, waiting out other processes that open the file at once."""
    deadline = time.monotonic() + options.patience
    while True:
        try:
            return step()
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise StoreOpenError(describe(path, exc)) from exc
            log.debug("SQLite store %s is busy while opening; retrying", path)
            time.sleep(0.01)


def _prepare(conn: sqlite3.Connection, path: str, options: Options) -> bytes:
    conn.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout)}")
    # Takes effect only before the first table exists: a new file gives free pages back.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise StoreOpenError(f"SQLite store {path} cannot use WAL mode (journal mode stays "
                             f"{mode}; a network file system?)")
    conn.execute(f"PRAGMA synchronous = {options.synchronous}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
    if options.max_page_count is not None:
        conn.execute(f"PRAGMA max_page_count = {int(options.max_page_count)}").fetchone()
    problems = [line for (line,) in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise StoreOpenError(f"SQLite store {path} is corrupt: {'; '.join(problems[:3])}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        create(conn)
        # Every process reads the key the first one wrote.
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('cursor_key', ?)",
                     (secrets.token_bytes(32),))
        (key,) = conn.execute("SELECT value FROM meta WHERE key = 'cursor_key'").fetchone()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return bytes(key)


def _check_room(conn: sqlite3.Connection, path: str, options: Options) -> None:
    """A start on a full disk fails now, not at the first submission: the file system must
    have room, and a trial write (rolled back) must find free pages."""
    stats = os.statvfs(os.path.dirname(os.path.abspath(path)))
    if stats.f_bavail * stats.f_frsize < options.min_free_bytes:
        raise StoreOpenError(f"SQLite store {path} cannot be written: the disk is full")

    def probe() -> bytes:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO meta VALUES ('probe', zeroblob(?))", (PROBE_BYTES,))
        finally:
            if conn.in_transaction:  # a full disk may have rolled it back already
                conn.execute("ROLLBACK")
        return b""

    _retrying(path, options, probe)
