"""``GET /events``: the service-wide event feed as Server-Sent Events (see docs/events.md).

Importing this module adds the route to the API blueprint.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator

from quart import Response
from quart_schema import operation_id
from werkzeug.exceptions import TooManyRequests

from .. import jsonutil
from ..feed import FeedReader, Reset, TooManyReaders
from .api import api, offload, owner
from .headers import optional_header
from .openapi import Answer, Schema, answers, problems, refine

RETRY_MS = 2000  # the reconnection delay a client is told (the per-task streams' too)
FULL_RETRY_AFTER = 5  # seconds a client refused for too many streams is told to wait
RETRY_LINE = f"retry: {RETRY_MS}\n\n".encode()
KEEP_ALIVE = b": keep-alive\n\n"

# One Server-Sent Event of the feed (OpenAPI 3.1: the schema of an event stream describes
# each event).
FEED_EVENT: Schema = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "description": "Opaque, increasing within one stream: "
                                                "send it back as `Last-Event-ID` to resume."},
        "event": {"enum": ["status", "progress", "reset"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"anyOf": [
                     {"$ref": "#/components/schemas/TaskOut"},
                     {"type": "object", "required": ["reason"],
                      "properties": {"reason": {"enum": ["cannot-resume", "fell-behind"]}}},
                 ]},
                 "description": "`status`, `progress`: the whole task, as JSON. `reset`: "
                                "events were missed (`reason`); read the state again."},
        "retry": {"type": "integer", "minimum": 0},
    },
}
LAST_EVENT_ID: Schema = {
    "name": "Last-Event-ID", "in": "header", "required": False,
    "description": "The id of the last event seen: the stream starts with what followed "
                   "it, if this process still holds it, else with a `reset` event.",
    "schema": {"type": "string"},
}


def _document_last_event_id(operation: Schema, _offload: object) -> None:
    operation.setdefault("parameters", []).append(dict(LAST_EVENT_ID))


@api.get("/events")
@operation_id("streamEvents")
@answers(Answer(200, "text/event-stream", FEED_EVENT,
                "Server-Sent Events of every task the caller may see: `status` and "
                "`progress`, each with the whole task as `data` and an `id`; `reset` when "
                "the stream cannot resume or the reader fell behind. Ends when the "
                "service shuts down."))
@refine(_document_last_event_id)
@problems(401, 429, 503)
async def stream_events() -> Response:
    """Server-Sent Events of every task change the caller may see.

    Resumable with ``Last-Event-ID``; a ``reset`` event says when events were missed.
    """
    service = offload().service
    try:
        reader = service.hub.feed.subscribe(owner(), optional_header("Last-Event-ID"))
    except TooManyReaders as exc:
        raise TooManyRequests(str(exc), retry_after=FULL_RETRY_AFTER) from None
    body = _frames(reader, service.settings.sse_keepalive)
    # a body never started (the client left before it) must still let its reader go
    weakref.finalize(body, reader.close)
    response = Response(body, 200, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long stream
    return response


async def _frames(reader: FeedReader, keepalive: float) -> AsyncIterator[bytes]:
    try:
        yield RETRY_LINE
        while not reader.finished:
            item = await reader.next(keepalive)
            if isinstance(item, Reset):
                yield b'event: reset\ndata: ' + jsonutil.dumps({"reason": item.reason}) + b"\n\n"
            elif item is not None:
                yield (b"id: " + item.id.encode() + b"\nevent: " + item.kind.encode()
                       + b"\ndata: " + item.data + b"\n\n")
            elif not reader.finished:
                yield KEEP_ALIVE
    finally:
        reader.close()
