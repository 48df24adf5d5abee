"""The task record and its status rules: the vocabulary every other module speaks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

JSON = Any
"""A JSON value: None, bool, int, float, str, list of JSON, dict of str to JSON."""

Receives = Literal["result", "results"]
RECEIVES: tuple[Receives, ...] = ("result", "results")


class Status(StrEnum):
    """Where a task is in its life. Terminal statuses never change again."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    """Held until every task it ``depends_on`` has succeeded (then queued), or until one
    of them ends otherwise (then cancelled). Not due at any time: that is ``scheduled``."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


PENDING = frozenset({Status.QUEUED, Status.SCHEDULED, Status.WAITING})
"""Not started yet: what counts toward the queue bound."""
ACTIVE = PENDING | {Status.RUNNING}
TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

# The only moves a record may make. RUNNING -> SCHEDULED is a retry; RUNNING -> QUEUED is an
# idempotent task handed back to a durable store at shutdown.
ALLOWED_MOVES: dict[Status, frozenset[Status]] = {
    Status.SCHEDULED: frozenset({Status.QUEUED, Status.CANCELLED, Status.FAILED}),
    Status.WAITING: frozenset({Status.QUEUED, Status.CANCELLED, Status.FAILED}),
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
    Status.RUNNING: frozenset(TERMINAL | {Status.SCHEDULED, Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}

ID_BYTES = 18  # 144 random bits, 24 URL-safe characters
ID_LENGTH = 24
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]+")  # ASCII only: str.isalnum() accepts "é" and "٣"


class InvalidTransition(RuntimeError):
    """A status move the rules forbid: always a bug in Offload, never the user's input."""


class _RandomIds:
    """Ids cut from one read of the OS's CSPRNG per 256 ids (a read per id was a tenth of
    the cost of a submit). 18 bytes encode to exactly 24 characters, so the base64 of the
    whole read is the ids side by side. A forked child starts afresh, never with the
    parent's buffer."""

    IDS_PER_READ = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two threads must never cut the same id
        self._pool = ""
        self._at = 0

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at = "", 0

    def next(self) -> str:
        with self._lock:
            while True:
                if self._at >= len(self._pool):
                    raw = os.urandom(ID_BYTES * self.IDS_PER_READ)
                    self._pool, self._at = base64.urlsafe_b64encode(raw).decode(), 0
                task_id = self._pool[self._at:self._at + ID_LENGTH]
                self._at += ID_LENGTH
                # an id that starts with "-" reads as an option on a command line (the
                # `offload` CLI, shells): drawn again, so the first character has 63 values
                if task_id[0] != "-":
                    return task_id


_ids = _RandomIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reset)


def new_task_id() -> str:
    """An opaque, URL-safe, unguessable id (about 144 random bits from the OS's CSPRNG),
    never starting with ``-``."""
    return _ids.next()


def looks_like_task_id(value: str) -> bool:
    """Cheap shape check so that malformed ids are a plain 404 without a store look-up."""
    return len(value) == ID_LENGTH and _ID_SHAPE.fullmatch(value) is not None


def isoformat(timestamp: float | None) -> str | None:
    """Epoch seconds to RFC 3339 in UTC with microseconds and a trailing Z."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)  # rounds to the microsecond, as ever
    second = (moment.toordinal() * 86_400 + moment.hour * 3600 + moment.minute * 60
              + moment.second)
    prefix = _seconds.get(second)
    if prefix is None:  # a task's times, and a page of tasks, mostly share a few seconds
        if len(_seconds) >= SECONDS_KEPT:
            _seconds.clear()
        prefix = _seconds[second] = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{moment.microsecond:06d}Z"


SECONDS_KEPT = 4096
_seconds: dict[int, str] = {}


@dataclass(slots=True)
class TaskError:
    """Why a task failed (or, while it waits to retry, why the last attempt did)."""

    type: str
    message: str
    traceback: str | None = None

    def to_json(self, include_traceback: bool = False) -> dict[str, JSON]:
        body: dict[str, JSON] = {"type": self.type, "message": self.message}
        if include_traceback and self.traceback:
            body["traceback"] = self.traceback
        return body


@dataclass(slots=True)
class Progress:
    """What a running task last reported about itself."""

    current: float
    total: float | None = None
    message: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return {"current": self.current, "total": self.total, "message": self.message}


@dataclass(slots=True)
class TaskRecord:
    """Everything known about one submitted task. Stores persist it; the core moves it."""

    name: str
    args: list[JSON] = field(default_factory=list)
    kwargs: dict[str, JSON] = field(default_factory=dict)
    id: str = field(default_factory=new_task_id)
    status: Status = Status.QUEUED
    priority: int = 0
    progress: Progress | None = None
    result: JSON = None
    error: TaskError | None = None
    attempts: int = 0
    max_attempts: int = 1
    cancel_requested: bool = False
    timeout: float | None = None
    created_at: float = 0.0
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    seq: int = 0
    lease_owner: str | None = None  # the runner holding a running record (never shown)
    lease_expires: float | None = None
    depends_on: list[str] = field(default_factory=list)
    """Ids of the tasks this one waits for (``waiting`` until they have all succeeded)."""
    receives: Receives | None = None
    """What of its dependencies it gets, put before its ``args`` when it is released:
    ``"result"`` the one dependency's result (a chain), ``"results"`` the list of their
    results in ``depends_on`` order (a chord). None: nothing (HTTP's ``depends_on``)."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def move(self, to: Status) -> Status:
        """Change status if the rules allow it; returns the previous status."""
        previous = self.status
        if to not in ALLOWED_MOVES[previous]:
            raise InvalidTransition(f"task {self.id}: {previous} -> {to} is not allowed")
        self.status = to
        return previous

    def to_json(self, include_traceback: bool = False) -> dict[str, JSON]:
        """The public task object of the HTTP API (no owner, no idempotency data)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "args": self.args,
            "kwargs": self.kwargs,
            "priority": self.priority,
            "progress": self.progress.to_json() if self.progress else None,
            "result": self.result,
            "error": self.error.to_json(include_traceback) if self.error else None,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "cancel_requested": self.cancel_requested,
            "timeout": self.timeout,
            "created_at": isoformat(self.created_at),
            "scheduled_at": isoformat(self.scheduled_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "depends_on": self.depends_on,
        }


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice as much
class Submission:
    """One task to run: the task type's name, its arguments, and options."""

    name: str
    args: Sequence[JSON] = ()
    kwargs: dict[str, JSON] = field(default_factory=dict)
    delay: float | None = None
    priority: int = 0
    timeout: float | None = None
    depends_on: Sequence[str | int] = ()
    """Ids of tasks that must succeed first (see :attr:`TaskRecord.depends_on`); in
    :meth:`~service.core.TaskService.submit_many`, an integer is the index of another
    task of the same call."""
    receives: Receives | None = None
    """See :attr:`TaskRecord.receives` (the library's chains and chords set it)."""

    def fingerprint(self) -> str:
        body = {"name": self.name, "args": list(self.args), "kwargs": self.kwargs,
                "delay": self.delay, "priority": self.priority, "timeout": self.timeout}
        if self.depends_on or self.receives:  # unchanged for a submission without them
            body["depends_on"] = list(self.depends_on)
            body["receives"] = self.receives
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
