"""Task records: the status rules, ids and the public task object."""

from __future__ import annotations

import base64
import re

import pytest

from service.models import (
    ACTIVE,
    ALLOWED_MOVES,
    PENDING,
    TERMINAL,
    InvalidTransition,
    Progress,
    Status,
    Submission,
    TaskError,
    TaskRecord,
    isoformat,
    looks_like_task_id,
    new_task_id,
)

LEGAL = [
    (Status.QUEUED, Status.RUNNING),
    (Status.QUEUED, Status.CANCELLED),
    (Status.QUEUED, Status.FAILED),
    (Status.SCHEDULED, Status.QUEUED),
    (Status.SCHEDULED, Status.CANCELLED),
    (Status.SCHEDULED, Status.FAILED),
    (Status.WAITING, Status.QUEUED),
    (Status.WAITING, Status.CANCELLED),
    (Status.WAITING, Status.FAILED),
    (Status.RUNNING, Status.SUCCEEDED),
    (Status.RUNNING, Status.FAILED),
    (Status.RUNNING, Status.CANCELLED),
    (Status.RUNNING, Status.SCHEDULED),
    (Status.RUNNING, Status.QUEUED),
]


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_allowed_moves(source: Status, target: Status) -> None:
    record = TaskRecord(name="t", status=source)
    assert record.move(target) is source
    assert record.status is target


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s in Status for t in Status if (s, t) not in LEGAL],
)
def test_every_other_move_is_refused(source: Status, target: Status) -> None:
    record = TaskRecord(name="t", status=source)
    with pytest.raises(InvalidTransition):
        record.move(target)
    assert record.status is source


def test_terminal_statuses_never_change() -> None:
    assert all(not ALLOWED_MOVES[status] for status in TERMINAL)
    assert {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED} == TERMINAL
    assert {Status.QUEUED, Status.SCHEDULED, Status.WAITING} == PENDING
    assert PENDING | {Status.RUNNING} == ACTIVE
    assert TaskRecord(name="t", status=Status.CANCELLED).terminal
    assert not TaskRecord(name="t", status=Status.RUNNING).terminal


def test_ids_are_url_safe_and_carry_at_least_122_random_bits() -> None:
    ids = {new_task_id() for _ in range(2000)}
    assert len(ids) == 2000
    for task_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", task_id)
        raw = base64.urlsafe_b64decode(task_id + "=" * (-len(task_id) % 4))
        assert len(raw) * 8 >= 122
        assert looks_like_task_id(task_id)


def test_no_id_starts_with_a_dash() -> None:
    """A leading "-" reads as an option on a command line (``offload watch -…``). In 20,000
    ids about 312 would start with one if nothing prevented it."""
    firsts = {new_task_id()[0] for _ in range(20_000)}
    assert "-" not in firsts
    assert "_" in firsts  # the other 63 characters all still come first


def test_a_forked_child_does_not_reuse_the_parents_ids() -> None:
    import os

    new_task_id()  # the parent now holds a partly used buffer
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write_end, " ".join(new_task_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = set(os.read(read_end, 4096).decode().split())
    os.close(read_end)
    assert len(child) == 10
    assert child.isdisjoint(new_task_id() for _ in range(10))


def test_records_get_distinct_ids() -> None:
    assert TaskRecord(name="t").id != TaskRecord(name="t").id


@pytest.mark.parametrize(
    "value",
    ["", "abc", "x" * 23, "x" * 25, "a" * 23 + "/", "a" * 23 + ".", "a" * 23 + " ",
     "é" * 24, "٣" * 24, "\uff41" * 24, "../../etc/passwd" + "a" * 8],
)
def test_looks_like_task_id_rejects_other_shapes(value: str) -> None:
    assert not looks_like_task_id(value)


def test_looks_like_task_id_accepts_dash_and_underscore() -> None:
    assert looks_like_task_id("-" * 12 + "_" * 12)


def test_isoformat_agrees_with_datetime_across_seconds_and_rounding() -> None:
    from datetime import UTC, datetime

    moments = [-0.5, -0.0000004, -1.0, 0.0, 0.9999996, 1e9 + 0.9999996, 1_700_000_000.25,
               4e9 + 0.123456, *(1_700_000_000 + i * 0.3217 for i in range(5000))]
    for moment in moments:
        expected = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert isoformat(moment) == expected, moment


def test_isoformat_is_utc_with_microseconds_and_z() -> None:
    assert isoformat(None) is None
    assert isoformat(0.0) == "1970-01-01T00:00:00.000000Z"
    assert isoformat(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"


def test_task_object_has_the_spec_fields_and_no_private_ones() -> None:
    record = TaskRecord(name="add", args=[1], kwargs={"b": 2}, max_attempts=3,
                        owner="secret-owner", idempotency_key="key", created_at=1.0)
    record.progress = Progress(3, 10, "page 3")
    record.error = TaskError("ValueError", "bad", "Traceback ...")
    body = record.to_json()
    for key in ("id", "name", "status", "args", "kwargs", "priority", "progress", "result",
                "error", "attempts", "max_attempts", "cancel_requested", "created_at",
                "scheduled_at", "started_at", "finished_at"):
        assert key in body
    assert body["status"] == "queued"
    assert body["progress"] == {"current": 3, "total": 10, "message": "page 3"}
    assert body["error"] == {"type": "ValueError", "message": "bad"}
    assert "owner" not in body
    assert "idempotency_key" not in body
    assert "secret-owner" not in repr(body)
    assert record.to_json(include_traceback=True)["error"]["traceback"] == "Traceback ..."


def test_submission_fingerprint_depends_on_every_field() -> None:
    base = Submission("add", [1, 2])
    assert base.fingerprint() == Submission("add", (1, 2)).fingerprint()
    others = [Submission("sub", [1, 2]), Submission("add", [2, 1]),
              Submission("add", [1], {"b": 2}), Submission("add", [1, 2], delay=1),
              Submission("add", [1, 2], priority=1), Submission("add", [1, 2], timeout=3)]
    assert len({s.fingerprint() for s in others} | {base.fingerprint()}) == len(others) + 1
    assert (Submission("f", kwargs={"a": 1, "b": 2}).fingerprint()
            == Submission("f", kwargs={"b": 2, "a": 1}).fingerprint())
