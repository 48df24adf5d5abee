"""Pydantic models of the HTTP API: they validate requests and document the OpenAPI spec."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

StatusName = Literal["queued", "scheduled", "waiting", "running", "succeeded", "failed",
                     "cancelled"]
STATUS_NAMES: tuple[str, ...] = get_args(StatusName)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubmitBody(_Strict):
    """One task to run."""

    name: str = Field(min_length=1, max_length=200, description="A registered task type.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    delay: float | None = Field(default=None, ge=0, description="Start no sooner than this "
                                "many seconds from now.")
    priority: int = Field(default=0, ge=-(2**31), lt=2**31, description="Higher runs first.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds before the task "
                                  "is stopped; overrides the task type's.")
    depends_on: list[str | int] = Field(
        default_factory=list, description="Ids of tasks (the caller's) that must succeed "
        "first: the task is `waiting` until they have, and ends `cancelled` if one fails or "
        "is cancelled. In a batch, an integer is the index of another task of the batch. "
        "At most OFFLOAD_MAX_DEPENDS_ON (100); not with `delay`.")

    @field_validator("priority", mode="before")
    @classmethod
    def _integral_number(cls, value: object) -> object:
        # JSON has one number type: 3.0 is the integer 3 (as JSON Schema's "integer" says).
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class BatchBody(_Strict):
    """Several tasks, accepted all together or not at all."""

    tasks: list[SubmitBody] = Field(min_length=1)


class ProgressOut(BaseModel):
    current: float
    total: float | None = None
    message: str | None = None


class ErrorOut(BaseModel):
    type: str
    message: str
    traceback: str | None = None


class TaskOut(BaseModel):
    """The task object."""

    id: str
    name: str
    status: StatusName
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    progress: ProgressOut | None
    result: Any
    error: ErrorOut | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    timeout: float | None
    created_at: str
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    depends_on: list[str] = Field(description="Ids of the tasks it waits for (`waiting` "
                                  "until they have all succeeded); empty for most tasks.")


class TaskListOut(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class BatchOut(BaseModel):
    items: list[TaskOut]


class ListQuery(BaseModel):
    """Filters of ``GET /tasks``; ``status`` may be repeated."""

    status: list[StatusName] = Field(default_factory=list, description="Only tasks with "
                                     "one of these statuses (repeat the parameter).")
    name: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, description="1 to OFFLOAD_MAX_PAGE (1000).")
    cursor: str | None = Field(default=None, max_length=64)

    @field_validator("status", mode="before")
    @classmethod
    def _one_or_more_statuses(cls, value: object) -> list[str]:
        # One ?status= arrives as a string, several as a list; either way the error names
        # the field "status", not pydantic's union branches.
        values = [value] if isinstance(value, str) else value
        if isinstance(values, list) and all(v in STATUS_NAMES for v in values):
            return values
        raise ValueError(f"status must be one of: {', '.join(STATUS_NAMES)}")


class WaitQuery(BaseModel):
    wait: float | None = Field(default=None, ge=0, le=60, allow_inf_nan=False,
                               description="Hold the request up to this many seconds until "
                               "the task is terminal.")


class RateOut(BaseModel):
    starts: int = Field(description="At most this many starts (retries included) ...")
    period: float = Field(description="... in any window of this many seconds, across "
                          "every worker of the deployment.")


class TaskTypeOut(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    executor: Literal["async", "thread", "process"]
    timeout: float | None
    retries: int
    idempotent: bool
    concurrency: int | None
    rate_limit: str | None = Field(description="As declared: '10/m', '5/s', '100/h', "
                                   "'1/5s'; null for none.", examples=["10/m"])
    rate: RateOut | None = Field(description="The rate limit parsed; null for none.")


class TaskTypesOut(BaseModel):
    items: list[TaskTypeOut]


class StatsOut(BaseModel):
    counts: dict[str, int]
    queue_depth: int
    queued: int
    running: int
    capacity: int
    max_queue: int
    uptime_seconds: float
    accepting: bool
    runner: str = "local"
    """What runs the tasks: ``local`` (this process: ``capacity`` is its own) or
    ``celery`` (Celery workers; ``capacity`` is 0 here)."""


class HealthOut(BaseModel):
    status: str


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details: ``type`` is always ``about:blank`` and ``title`` the status
    phrase; ``code`` names the problem for programs (e.g. ``task-not-found``, ``queue-full``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None
