"""A client of a running Offload service over HTTP, for any Python program (Flask included).

::

    from service.client import OffloadClient

    with OffloadClient() as offload:        # OFFLOAD_URL, OFFLOAD_TOKEN
        task = offload.submit("add", 2, 3)
        print(task.result(timeout=10))      # 5

:class:`AsyncOffloadClient` is the same, awaited. Errors are the library's where it has one
(``TaskNotFound``, ``InvalidSubmission``, ``QueueFull``, ``TaskFailed``, ``TaskCancelled``…),
subclassed by :class:`ApiError` to carry the problem's status, title, detail and field
errors. Needs the ``client`` extra: ``pip install 'quart-offload[client]'``.
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401
    import httpx_sse  # noqa: F401
except ImportError as missing:  # pragma: no cover - the extra is part of the dev install
    raise ImportError("service.client needs httpx and httpx-sse: "
                      "pip install 'quart-offload[client]'") from missing

from ..errors import (
    InvalidSubmission,
    OffloadError,
    QueueFull,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownTaskType,
)
from .aio import AsyncOffloadClient, AsyncRemoteTaskHandle
from .errors import (
    ApiError,
    BadRequestError,
    ClientError,
    ConnectionFailed,
    IdempotencyConflictError,
    InvalidSubmissionError,
    QueueFullError,
    ServiceUnavailable,
    ShuttingDownError,
    StoreUnavailableError,
    TaskAlreadyTerminalError,
    TaskNotFoundError,
    TaskStillActiveError,
    Unauthorized,
    UnexpectedAnswer,
    UnknownTaskTypeError,
)
from .events import TaskEvent
from .sync import OffloadClient, RemoteTaskHandle
from .wire import DEFAULT_URL, TOKEN_ENV, URL_ENV, RetryPolicy, TaskPage, TaskType

__all__ = [
    "DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "ApiError", "AsyncOffloadClient",
    "AsyncRemoteTaskHandle", "BadRequestError", "ClientError", "ConnectionFailed",
    "IdempotencyConflictError", "InvalidSubmission", "InvalidSubmissionError", "OffloadClient",
    "OffloadError", "QueueFull", "QueueFullError", "RemoteTaskHandle", "RetryPolicy",
    "ServiceUnavailable", "ShuttingDownError", "StoreUnavailableError",
    "TaskAlreadyTerminalError", "TaskCancelled", "TaskEvent", "TaskFailed", "TaskNotFound",
    "TaskNotFoundError", "TaskPage", "TaskStillActiveError", "TaskType", "Unauthorized",
    "UnexpectedAnswer", "UnknownTaskType", "UnknownTaskTypeError",
]
