"""A small HTTP/1.1 client over asyncio streams, for load that needs the answers' bodies.

wrk measures raw request rates (B1); the end-to-end scenarios must read the task ids out of
the answers and then fetch each result, which wrk cannot do. This client is lean (no
parsing beyond the status line, ``Content-Length``, chunked bodies and ``Connection``), keeps
connections alive, and opens a new one when the server closes it (gunicorn's sync workers
close after every answer). The same client drives every server it is compared on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

try:  # the product's environment has orjson; the bench's may not
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)
except ImportError:  # pragma: no cover - depends on the environment
    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)

HOST = "127.0.0.1"


class HTTPError(Exception):
    pass


class Connection:
    """One keep-alive connection; reconnects when the server closed the previous one."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send one request (``body`` as JSON if given); the status and the body."""
        payload = b"" if body is None else dumps(body)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        for attempt in range(2):  # a kept-alive connection the server has just closed
            fresh = self._writer is None
            try:
                if self._writer is None:
                    self._reader, self._writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), self.timeout)
                return await asyncio.wait_for(self._exchange(data), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                self.close()
                if fresh or attempt:
                    raise HTTPError(f"{method} {path}: {exc!r}") from exc
            except (TimeoutError, OSError) as exc:
                self.close()
                raise HTTPError(f"{method} {path}: {exc!r}") from exc
        raise AssertionError("unreachable")

    def local_port(self) -> int | None:
        """The client side's port of the open connection (None if none is open): it tells
        a reconnect apart from the same connection."""
        if self._writer is None:
            return None
        sockname = self._writer.get_extra_info("sockname")
        return int(sockname[1]) if sockname else None

    async def _exchange(self, data: bytes) -> tuple[int, bytes]:
        assert self._reader is not None
        assert self._writer is not None
        reader = self._reader
        self._writer.write(data)
        await self._writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, chunked, close = None, False, lines[0].startswith("HTTP/1.0")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection":
                close = value == "close"
        if chunked:
            body = await _read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        else:  # no length: the body runs to the end of the connection
            body, close = await reader.read(), True
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def json_request(conn: Connection, method: str, path: str, body: Any = None,
                       expect: tuple[int, ...] = (200,)) -> Any:
    status, data = await conn.request(method, path, body)
    if status not in expect:
        raise HTTPError(f"{method} {path} answered {status}: {data[:300]!r}")
    return loads(data) if data else None
