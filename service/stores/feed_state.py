"""A change feed entry's own state: the part of a record that a change can alter, as of the
change (the SQLite store's ``changes.state``).

A reader in another process rebuilds the record as of each change from the record as it
is now and this state, so that changes made between two reads of the feed are each seen
in order, with their own values, not only the latest. The large fields (arguments,
result) are not copied: a record that is not terminal has no result, and a terminal
record never changes again, so its entry carries no state and the record as it is now is
the record as of that change.
"""

from __future__ import annotations

import dataclasses
import json

from .. import jsonutil
from ..models import Progress, Status, TaskError, TaskRecord


def state_of(record: TaskRecord) -> str | None:
    """The state to store with a change of ``record`` (None when it is terminal)."""
    if record.terminal:
        return None
    error = record.error
    return jsonutil.dumps([
        record.status.value, record.attempts, record.started_at, record.scheduled_at,
        record.finished_at,
        None if error is None else [error.type, error.message, error.traceback],
        record.cancel_requested, record.lease_owner,
        None if record.progress is None else record.progress.to_json()]).decode()


def as_of(current: TaskRecord, state: str | None) -> TaskRecord:
    """The record as of a change: ``current`` with the entry's ``state`` laid over it."""
    if state is None:
        return current
    # The standard parser: orjson reads integers beyond 64 bits as floats.
    (status, attempts, started_at, scheduled_at, finished_at, error, cancel, lease_owner,
     progress) = json.loads(state)
    return dataclasses.replace(
        current, status=Status(status), attempts=attempts, started_at=started_at,
        scheduled_at=scheduled_at, finished_at=finished_at,
        error=None if error is None else TaskError(*error), cancel_requested=cancel,
        lease_owner=lease_owner, result=None,
        progress=None if progress is None else Progress(**progress))
