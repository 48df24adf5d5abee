"""A task's Server-Sent Events (``GET /tasks/{id}/events``), decoded.

The stream is read with httpx-sse; each ``status`` or ``progress`` event carries the whole
task object. The stream ends after the terminal event (the service closes it then).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from httpx_sse import ServerSentEvent

from ..models import TaskRecord
from .errors import UnexpectedAnswer
from .wire import record_from_json

EventKind = Literal["status", "progress"]
KINDS: frozenset[str] = frozenset({"status", "progress"})


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One change of a task: a new ``status``, or a ``progress`` report, with the task as it
    was right after it."""

    kind: EventKind
    record: TaskRecord

    @property
    def terminal(self) -> bool:
        """The task's last event: its stream ends with it."""
        return self.kind == "status" and self.record.terminal


def decode_event(event: ServerSentEvent) -> TaskEvent | None:
    """The task event of an SSE message; None for a kind this client does not know (a
    newer service may send more kinds; skipping them is what SSE readers do)."""
    if event.event not in KINDS:
        return None
    try:
        body = json.loads(event.data)
    except ValueError as exc:
        raise UnexpectedAnswer(f"an event that is not JSON: {event.data[:200]!r}") from exc
    kind: EventKind = "status" if event.event == "status" else "progress"
    return TaskEvent(kind, record_from_json(body))
