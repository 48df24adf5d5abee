"""Server-Sent Events for one task."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Response

from .. import jsonutil
from ..events import Subscription
from ..models import TaskRecord
from ..settings import Settings


def _frame(kind: str, task: object) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + jsonutil.dumps(task) + b"\n\n"


async def event_stream(record: TaskRecord, subscription: Subscription | None,
                       settings: Settings) -> Response:
    """The task's state now as a ``status`` event, then every change until the terminal one.

    A stream opened on a finished task sends its one ``status`` event and closes.
    """
    tracebacks = settings.expose_tracebacks

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n" + _frame("status", record.to_json(tracebacks))
            while subscription is not None:
                event = await subscription.next(settings.sse_keepalive)
                if event is None:
                    yield b": keep-alive\n\n"
                    continue
                yield _frame(event.kind, event.task)
                if event.terminal:
                    return
        finally:
            if subscription is not None:
                subscription.close()

    response = Response(frames(), 200, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long stream
    return response
