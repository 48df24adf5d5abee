"""Turning a submission into a record: its task type, its arguments checked against the
function's signature, its options and links checked (:class:`InvalidSubmission` names each
field), the bound of the queue."""

from __future__ import annotations

import math
import time

from . import jsonutil
from .errors import FieldError, InvalidSubmission
from .links import bind_receiving, check_depends_on, wait_for
from .models import JSON, Status, Submission, TaskRecord
from .registry import Registry
from .settings import Settings

PRIORITY_LIMIT = 2**31


def prepare(registry: Registry, settings: Settings, submission: Submission,
            owner: str | None, idempotency_key: str | None = None,
            request_hash: str | None = None, batch_size: int | None = None) -> TaskRecord:
    """The record of a checked submission (not stored yet)."""
    task_type = registry.submittable(submission.name, submission.receives == "results")
    args, kwargs = list(submission.args), dict(submission.kwargs)  # the record's own
    check_json(args, kwargs)
    if submission.receives:
        bind_receiving(task_type, args, kwargs)
    else:
        task_type.bind(args, kwargs)
    check_options(submission, settings.max_delay)
    if submission.depends_on or submission.receives:
        errors = check_depends_on(submission, settings, batch_size)
        if errors:
            raise InvalidSubmission(errors, "invalid depends_on")
    if idempotency_key is not None:  # fingerprint only what is known to be JSON
        request_hash = request_hash or submission.fingerprint()
    now = time.time()
    record = TaskRecord(
        name=task_type.name, args=args, kwargs=kwargs,
        priority=submission.priority, max_attempts=task_type.max_attempts,
        timeout=submission.timeout or task_type.timeout, created_at=now, owner=owner,
        idempotency_key=idempotency_key, request_hash=request_hash)
    if submission.delay:
        record.status = Status.SCHEDULED
        record.scheduled_at = now + submission.delay
    wait_for(record, submission)
    return record


def pending(counts: dict[Status, int]) -> int:
    """What counts toward the queue bound: tasks not started yet (waiting ones too)."""
    return counts[Status.QUEUED] + counts[Status.SCHEDULED] + counts[Status.WAITING]


def check_json(args: list[JSON], kwargs: dict[str, JSON]) -> None:
    errors = []
    for field, value in (("args", args), ("kwargs", kwargs)):
        try:
            jsonutil.check(value)
        except jsonutil.NotJSON as exc:
            errors.append(FieldError(field, f"not a JSON value: {exc}"))
    if errors:
        raise InvalidSubmission(errors)


def check_options(submission: Submission, max_delay: float) -> None:
    delay, timeout = submission.delay, submission.timeout
    if delay is None and timeout is None and submission.priority == 0:
        return  # no options: nothing to check
    errors = []
    if delay is not None and not (math.isfinite(delay) and 0 <= delay <= max_delay):
        errors.append(FieldError("delay", f"must be between 0 and {max_delay:g} seconds"))
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        errors.append(FieldError("timeout", "must be a positive number of seconds"))
    if not -PRIORITY_LIMIT <= submission.priority < PRIORITY_LIMIT:
        errors.append(FieldError("priority", f"must be between {-PRIORITY_LIMIT} and "
                                             f"{PRIORITY_LIMIT - 1}"))
    if errors:
        raise InvalidSubmission(errors, "invalid task options")
