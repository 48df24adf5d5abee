"""The SQLite store's tables and indexes, and how a task record maps to a row.

Every query the store runs is served by an index (tests/stores/test_sqlite.py checks the
plans): a page of a rare status or name reads only its own entries, counts come from a
small table that triggers keep, and the claim, due, lease and eviction orders each have a
partial index that holds only the rows they can touch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from .. import jsonutil
from ..models import TERMINAL, Progress, Status, TaskError, TaskRecord

SCHEMA_VERSION = 2  # 2: the waiting status, depends_on and receives, dependencies

COLUMNS = ("seq", "id", "name", "args", "kwargs", "status", "priority", "progress", "result",
           "error", "attempts", "max_attempts", "cancel_requested", "timeout", "created_at",
           "scheduled_at", "started_at", "finished_at", "owner", "idempotency_key",
           "request_hash", "lease_owner", "lease_expires", "depends_on", "receives")
SELECT = ", ".join(COLUMNS)
CHUNK = 500  # ids in one IN (...) list
INSERT = (f"INSERT INTO tasks ({', '.join(COLUMNS[1:])}) "
          f"VALUES ({', '.join('?' for _ in COLUMNS[1:])})")

TERMINAL_SQL = "(" + ", ".join(f"'{s.value}'" for s in sorted(TERMINAL)) + ")"

_COUNT_IN = """    INSERT INTO counts VALUES ('', NEW.status, 1)
        ON CONFLICT (scope, status) DO UPDATE SET n = n + 1;
    INSERT INTO counts SELECT 'o:' || NEW.owner, NEW.status, 1 WHERE NEW.owner IS NOT NULL
        ON CONFLICT (scope, status) DO UPDATE SET n = n + 1;"""
_COUNT_OUT = """    UPDATE counts SET n = n - 1 WHERE scope = '' AND status = OLD.status;
    UPDATE counts SET n = n - 1 WHERE scope = 'o:' || OLD.owner AND status = OLD.status;"""
_STATUSES = ", ".join(f"'{s.value}'" for s in Status)

# Partial indexes: SQLite uses one only when the query's WHERE implies the index's WHERE,
# so the queries repeat these conditions word for word.
TABLES = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS {{table}} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({_STATUSES})),
    priority INTEGER NOT NULL,
    progress TEXT,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL,
    timeout REAL,
    created_at REAL NOT NULL,
    scheduled_at REAL,
    started_at REAL,
    finished_at REAL,
    owner TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    lease_owner TEXT,
    lease_expires REAL,
    depends_on TEXT,
    receives TEXT
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, status, seq);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, status, seq) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_owner_name ON tasks (owner, name, status, seq)
    WHERE owner IS NOT NULL;
-- NULLs are distinct in a UNIQUE index: records without an owner get an index of their own.
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency ON tasks (owner, idempotency_key)
    WHERE owner IS NOT NULL AND idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency_anonymous ON tasks (idempotency_key)
    WHERE owner IS NULL AND idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (priority DESC, seq, name, cancel_requested)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS tasks_ready_by_name
    ON tasks (name, priority DESC, seq, cancel_requested) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS tasks_leases ON tasks (lease_expires) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at, seq)
    WHERE status IN {TERMINAL_SQL};

-- What each waiting record waits for (stores/sqlite_deps.py): a row per id of its
-- depends_on, done (with the result) once that one succeeded; gone once it is released.
CREATE TABLE IF NOT EXISTS dependencies (
    task_id TEXT NOT NULL, position INTEGER NOT NULL, needs TEXT NOT NULL,
    done INTEGER NOT NULL, result TEXT, PRIMARY KEY (task_id, position)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dependencies_needs ON dependencies (needs);

-- scope '' counts every record, scope 'o:' || owner one owner's.
CREATE TABLE IF NOT EXISTS counts (
    scope TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, status)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS tasks_counted_in AFTER INSERT ON tasks BEGIN
{_COUNT_IN}
END;
CREATE TRIGGER IF NOT EXISTS tasks_counted_out AFTER DELETE ON tasks BEGIN
{_COUNT_OUT}
END;
CREATE TRIGGER IF NOT EXISTS tasks_counted_moves AFTER UPDATE OF status ON tasks
    WHEN OLD.status IS NOT NEW.status BEGIN
{_COUNT_OUT}
{_COUNT_IN}
END;

-- The newest starts of each rate-limited name (stores/sqlite_rates.py), at most its N.
CREATE TABLE IF NOT EXISTS rate_starts (name TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_starts_by_name ON rate_starts (name, at);

-- The change feed other processes read: appended with every status change, cancel
-- request and progress update, pruned to the newest rows by evict(). state: the record
-- as of the change (stores/feed_state.py), NULL for a terminal one.
CREATE TABLE IF NOT EXISTS changes (
    n INTEGER PRIMARY KEY, task_id TEXT NOT NULL, kind TEXT NOT NULL, writer TEXT NOT NULL,
    state TEXT);
"""


def create(conn: sqlite3.Connection) -> None:
    """Create what is missing, upgrade a file of version 1, and check the version (inside
    the caller's transaction)."""
    for statement in _statements(TABLES.format(table="tasks")):
        conn.execute(statement)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is not None and row[0] == 1:
        _upgrade_from_1(conn)
    if "state" not in {column for _, column, *_ in conn.execute("PRAGMA table_info(changes)")}:
        # a file of an earlier version 2: older readers and writers name their columns,
        # so the column is added in place and both keep working on the file
        conn.execute("ALTER TABLE changes ADD COLUMN state TEXT")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if version != SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"its schema version is {version!r}, this Offload reads version {SCHEMA_VERSION}")


def _upgrade_from_1(conn: sqlite3.Connection) -> None:
    """Version 1 to 2: the status check gains ``waiting`` and the table two columns. A
    check cannot be altered, so the table is made again (SQLite's documented way: a new
    table, the rows copied, the old one dropped, the new one renamed), keeping ``seq``."""
    (last_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence "
                               "WHERE name = 'tasks'").fetchone()
    tasks_table = next(s for s in _statements(TABLES.format(table="tasks_v2"))
                       if s.startswith("CREATE TABLE IF NOT EXISTS tasks_v2"))
    conn.execute(tasks_table)
    old = ", ".join(COLUMNS[:-2])
    conn.execute(f"INSERT INTO tasks_v2 ({old}) SELECT {old} FROM tasks")
    conn.execute("DROP TABLE tasks")  # its indexes and triggers go with it (no trigger fires)
    conn.execute("ALTER TABLE tasks_v2 RENAME TO tasks")
    conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'tasks'",
                 (last_seq,))
    for statement in _statements(TABLES.format(table="tasks")):
        conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit the transaction)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements, current = [], ""
    for line in lines:
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def encode(record: TaskRecord) -> tuple[Any, ...]:
    """The row of a record, without ``seq`` (in ``INSERT``'s column order)."""
    return (record.id, record.name, _text(record.args), _text(record.kwargs),
            record.status.value, record.priority, encode_progress(record.progress),
            encode_result(record.result), encode_error(record.error), record.attempts,
            record.max_attempts, int(record.cancel_requested), record.timeout,
            record.created_at, record.scheduled_at, record.started_at, record.finished_at,
            record.owner, record.idempotency_key, record.request_hash, record.lease_owner,
            record.lease_expires, _text(record.depends_on) if record.depends_on else None,
            record.receives)


def decode(row: Sequence[Any]) -> TaskRecord:
    """A fresh record from a row of ``SELECT`` (the columns in ``COLUMNS`` order)."""
    (seq, task_id, name, args, kwargs, status, priority, progress, result, error, attempts,
     max_attempts, cancel_requested, timeout, created_at, scheduled_at, started_at,
     finished_at, owner, idempotency_key, request_hash, lease_owner, lease_expires,
     depends_on, receives) = row
    return TaskRecord(
        name=name, args=_loads(args), kwargs=_loads(kwargs), id=task_id,
        status=Status(status), priority=priority,
        progress=None if progress is None else Progress(**_loads(progress)),
        result=None if result is None else _loads(result),
        error=None if error is None else TaskError(**_loads(error)),
        attempts=attempts, max_attempts=max_attempts,
        cancel_requested=bool(cancel_requested), timeout=timeout, created_at=created_at,
        scheduled_at=scheduled_at, started_at=started_at, finished_at=finished_at,
        owner=owner, idempotency_key=idempotency_key, request_hash=request_hash, seq=seq,
        lease_owner=lease_owner, lease_expires=lease_expires,
        depends_on=[] if depends_on is None else _loads(depends_on), receives=receives)


def by_id(conn: sqlite3.Connection, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
    """The records of these ids that exist, by id (read ``CHUNK`` ids at a time)."""
    found: dict[str, TaskRecord] = {}
    for start in range(0, len(task_ids), CHUNK):
        chunk = task_ids[start:start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(f"SELECT {SELECT} FROM tasks WHERE id IN ({marks})", chunk):
            record = decode(row)
            found[record.id] = record
    return found


def encode_progress(progress: Progress | None) -> str | None:
    return None if progress is None else _text(progress.to_json())


def encode_result(result: Any) -> str | None:
    return None if result is None else _text(result)


def encode_error(error: TaskError | None) -> str | None:
    if error is None:
        return None
    return _text({"type": error.type, "message": error.message, "traceback": error.traceback})


def _text(value: Any) -> str:
    return jsonutil.dumps(value).decode()  # falls back for integers beyond 64 bits


def _loads(text: str) -> Any:
    # The standard parser, not orjson: orjson reads integers beyond 64 bits as floats.
    return json.loads(text)
