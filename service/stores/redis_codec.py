"""How a task record maps to the fields of its Redis hash, and back.

Every value is text: JSON for ``args``, ``kwargs``, ``progress``, ``result`` and ``error``
(never pickle), decimal for integers, and ``repr`` for floats, which reads back to the very
same float (a lease's end compares equal after the round trip). A field that is None is
absent. The Lua scripts read the plain fields (status, attempts, lease owner, ...) and pass
the JSON ones through untouched, so an integer beyond 64 bits survives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import jsonutil
from ..models import Progress, Status, TaskError, TaskRecord
from .base import ChangeKind

_FLOATS = ("timeout", "created_at", "scheduled_at", "started_at", "finished_at",
           "lease_expires")


def encode(record: TaskRecord) -> list[str]:
    """The record as field, value, field, value, ... (``seq`` left out: the store numbers
    it)."""
    fields = ["id", record.id, "name", record.name, "status", record.status.value,
              "priority", str(record.priority), "args", text(record.args),
              "kwargs", text(record.kwargs), "attempts", str(record.attempts),
              "max_attempts", str(record.max_attempts),
              "cancel", "1" if record.cancel_requested else "0",
              "created_at", number(record.created_at)]
    for name in _FLOATS:
        value = getattr(record, name)
        if value is not None and name != "created_at":
            fields += [name, number(value)]
    for name, value in (("owner", record.owner), ("ikey", record.idempotency_key),
                        ("rhash", record.request_hash), ("lease_owner", record.lease_owner),
                        ("progress", encode_progress(record.progress)),
                        ("result", encode_result(record.result)),
                        ("error", encode_error(record.error)),
                        ("deps", " ".join(record.depends_on) or None),
                        ("receives", record.receives)):
        if value is not None:
            fields += [name, value]
    return fields


def decode(fields: Mapping[bytes, bytes]) -> TaskRecord:
    """A fresh record from its hash (as ``HGETALL`` answers)."""
    f = {key.decode(): value.decode() for key, value in fields.items()}
    progress, result, error = f.get("progress"), f.get("result"), f.get("error")
    return TaskRecord(
        name=f["name"], args=_loads(f["args"]), kwargs=_loads(f["kwargs"]), id=f["id"],
        status=Status(f["status"]), priority=int(f["priority"]),
        progress=None if progress is None else Progress(**_loads(progress)),
        result=None if result is None else _loads(result),
        error=None if error is None else TaskError(**_loads(error)),
        attempts=int(f["attempts"]), max_attempts=int(f["max_attempts"]),
        cancel_requested=f.get("cancel") == "1", timeout=_float(f.get("timeout")),
        created_at=float(f["created_at"]), scheduled_at=_float(f.get("scheduled_at")),
        started_at=_float(f.get("started_at")), finished_at=_float(f.get("finished_at")),
        owner=f.get("owner"), idempotency_key=f.get("ikey"), request_hash=f.get("rhash"),
        seq=int(f["seq"]), lease_owner=f.get("lease_owner"),
        lease_expires=_float(f.get("lease_expires")),
        depends_on=f["deps"].split(" ") if "deps" in f else [],
        receives=f.get("receives"))  # type: ignore[arg-type]


def decode_flat(flat: Sequence[bytes]) -> TaskRecord:
    """A record from a script's answer: the hash as field, value, field, value, ..."""
    return decode(dict(zip(flat[::2], flat[1::2], strict=True)))


_SNAPSHOT = (b"status", b"attempts", b"started_at", b"scheduled_at", b"finished_at",
             b"error", b"cancel", b"lease_owner", b"progress", b"result")
_KINDS: dict[bytes, ChangeKind] = {b"status": "status", b"progress": "progress"}


def as_of_changes(records: Sequence[Sequence[bytes]],
                  changes: Sequence[tuple[bytes, int, Sequence[bytes]]]
                  ) -> list[tuple[ChangeKind, TaskRecord]]:
    """The FEED script's answer as changes, each with the record as of that change: the
    hash as it is now with the entry's state laid over it (an entry without one is of a
    terminal record, which is the same now)."""
    hashes = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in records]
    now: dict[int, TaskRecord] = {}
    answer: list[tuple[ChangeKind, TaskRecord]] = []
    for kind, at, state in changes:
        if not state:
            record = now.get(at)
            if record is None:
                record = now[at] = decode(hashes[at - 1])
        else:
            fields = {k: v for k, v in hashes[at - 1].items() if k not in _SNAPSHOT}
            fields.update(zip(state[::2], state[1::2], strict=True))
            record = decode(fields)
        answer.append((_KINDS[kind], record))
    return answer


def number(value: float) -> str:
    return repr(float(value))


def text(value: Any) -> str:
    return jsonutil.dumps(value).decode()  # falls back for integers beyond 64 bits


def encode_progress(progress: Progress | None) -> str | None:
    return None if progress is None else text(progress.to_json())


def encode_result(result: Any) -> str | None:
    return None if result is None else text(result)


def encode_error(error: TaskError | None) -> str | None:
    if error is None:
        return None
    return text({"type": error.type, "message": error.message, "traceback": error.traceback})


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _loads(value: str) -> Any:
    # The standard parser, not orjson: orjson reads integers beyond 64 bits as floats.
    return json.loads(value)
