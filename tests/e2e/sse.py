"""A small Server-Sent Events reader for httpx streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    kind: str
    task: dict[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of an open ``text/event-stream`` response, until the server closes it."""
    kind: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Event(kind or "message", json.loads("\n".join(data)))
            kind, data = None, []
        elif line.startswith(":"):
            continue  # a comment: keep-alive
        elif line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))
