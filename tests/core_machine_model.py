"""What the core's state machine (tests/test_core_state_machine.py) knows about each task:
the sorts of task it submits, what it observed of each one, and which ends are possible."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from service.events import Subscription, TaskEvent
from service.models import ALLOWED_MOVES, TERMINAL, Status, Submission, TaskRecord, isoformat
from service.settings import Settings

CORE = Settings(
    task_modules=("tests.state_tasks",), max_concurrency=3, thread_workers=2,
    process_workers=1, max_queue=5, max_records=4, result_ttl=3600.0, shutdown_grace=0.0,
    retry_backoff=0.001, sweep_interval=3600.0,  # the machine evicts itself
)
SHORT = 0.002  # a delay or timeout that passes while the machine waits for rest
LONG = 3600.0  # one that never passes during a test
AT_REST_AHEAD = 60.0  # a task scheduled further ahead than this is at rest
SETTLE_LIMIT = 5.0  # seconds tasks get to come to rest before that is a failure
PAGE = 3  # list() page size: small, so that paging with the cursor is exercised
OWNERS = (None, "alice")
STOP_LIMIT = 30.0


@dataclass(frozen=True)
class Kind:
    """A sort of task the machine submits."""

    name: str
    held: bool = False
    thread: bool = False
    idempotent: bool = False

    def args(self, key: str, n: int) -> list[Any]:
        if self.held:
            return [key]
        if self.name == "quick_fail":
            return [f"boom {key}"]
        return [n, n + 1]


KINDS = (
    Kind("quick_add"), Kind("thread_add", thread=True), Kind("quick_fail"),
    Kind("held", held=True), Kind("held_thread", held=True, thread=True),
    Kind("held_idempotent", held=True, idempotent=True),
    Kind("held_thread_idempotent", held=True, thread=True, idempotent=True),
)
HELD_KINDS = tuple(k for k in KINDS if k.held)
RANK = {Status.SCHEDULED: 0, Status.QUEUED: 1, Status.RUNNING: 2}


@dataclass(frozen=True)
class Snap:
    """One observation of a task, from its record or from an event."""

    status: Status
    attempts: int
    finished: str | None  # RFC 3339, as in events
    result: Any = None
    error: str | None = None  # the error's type
    message: str = ""  # the error's message

    @classmethod
    def of_record(cls, record: TaskRecord) -> Snap:
        error = record.error
        return cls(record.status, record.attempts, isoformat(record.finished_at),
                   record.result, error.type if error else None, error.message if error else "")

    @classmethod
    def of_event(cls, event: TaskEvent) -> Snap:
        task = event.task
        error = task["error"]
        return cls(Status(task["status"]), task["attempts"], task["finished_at"],
                   task["result"], error["type"] if error else None,
                   error["message"] if error else "")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def progress_key(self) -> tuple[float, int]:
        """Grows with every status move: a retry or a re-queue belongs to the next attempt."""
        if self.terminal:
            return (math.inf, 0)
        ahead = 0 if self.status is Status.RUNNING else 1
        return (self.attempts + ahead, RANK[self.status])


@dataclass
class Tracked:
    id: str
    kind: Kind
    key: str
    submission: Submission
    owner: str | None
    idempotency_key: str | None
    max_attempts: int
    generation: int
    fate: str = "present"  # present | deleted | evicted (by max_records or TTL) | lost
    records: list[Snap] = field(default_factory=list)
    events: list[Snap] = field(default_factory=list)
    subscription: Subscription | None = None
    verdicts: list[str] = field(default_factory=list)
    cancelled: bool = False
    retry_refused: bool = False  # a retry was refused because the queue was full
    interrupted: bool = False  # a stop cut it off where that may fail it (Interrupted)
    requeued: int = 0  # times a stop handed it back to the queue (durable, idempotent)

    @property
    def last(self) -> Snap:
        return self.records[-1]

    @property
    def short_timeout(self) -> bool:
        return self.submission.timeout is not None and self.submission.timeout < LONG

    def seen_terminal(self) -> Snap | None:
        for snap in (*self.records, *self.events):
            if snap.terminal:
                return snap
        return None


def _reachable() -> dict[Status, frozenset[Status]]:
    closure = {}
    for start in Status:
        seen: set[Status] = set()
        todo = [start]
        while todo:
            for nxt in ALLOWED_MOVES[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closure[start] = frozenset(seen)
    return closure


REACHABLE = _reachable()


def expected_result(tracked: Tracked) -> Any:
    if tracked.kind.held:
        assert tracked.verdicts[-1:] == ["succeed"], tracked.verdicts
        return tracked.key
    a, b = tracked.submission.args
    return a + b


def possible_errors(tracked: Tracked, last: Snap) -> set[str]:
    errors = set()
    if tracked.interrupted:
        errors.add("Interrupted")
    if tracked.short_timeout:
        errors.add("TimeoutError")
    if tracked.kind.name == "quick_fail":
        errors.add("RuntimeError")
    if "fail" in tracked.verdicts:
        errors.add("ValueError")
    out_of_attempts = last.attempts >= tracked.max_attempts or tracked.retry_refused
    if tracked.verdicts[-1:] == ["retry"] and out_of_attempts:
        errors.add("ConnectionError")
    return errors
