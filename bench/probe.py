"""Open-loop latency probe: GET a path at a fixed rate, whatever the answers take.

Run as ``python -m bench.probe --port P --path /healthz --rate 50 --duration 8``; prints JSON
with one latency (seconds) per request. Requests go out on schedule whether or not earlier
ones were answered (a slow answer never delays the next request: no coordinated omission).
``latencies`` count from the moment a request went out (a new connection's set-up included),
``from_due`` from the moment it was due (adding the probe's own scheduling delay, ``late``).
Plain HTTP/1.1 over asyncio streams with keep-alive connections: little client overhead; a
connection the server closes (``Connection: close``, as gunicorn's sync workers do) is not
reused, so each such request pays for a new connection, as any client would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Probe:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "User-Agent: offload-bench-probe\r\n\r\n").encode()
        self.idle: list[Connection] = []
        self.latencies: list[float] = []
        self.from_due: list[float] = []
        self.late: list[float] = []  # how late each request went out (the probe's own delay)
        self.errors: list[str] = []

    async def one(self, due: float) -> None:
        connection = self.idle.pop() if self.idle else None
        sent = time.perf_counter()
        try:
            if connection is None:  # a new connection's set-up counts in its latency
                connection = await asyncio.open_connection(self.host, self.port)
            status, close = await self._exchange(connection)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.errors.append(repr(exc))
            if connection is not None:
                connection[1].close()
            return
        done = time.perf_counter()
        self.latencies.append(done - sent)
        self.from_due.append(done - due)
        self.late.append(sent - due)
        if status != 200:
            self.errors.append(f"status {status}")
        if close:
            connection[1].close()
        else:
            self.idle.append(connection)

    async def _exchange(self, connection: Connection) -> tuple[int, bool]:
        reader, writer = connection
        writer.write(self.request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        await reader.readexactly(length)
        return status, close

    async def run(self, rate: float, duration: float) -> None:
        count = int(rate * duration)
        start = time.perf_counter() + 0.05
        pending = set()
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=30)
        for _, writer in self.idle:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    probe = Probe(args.host, args.port, args.path)
    asyncio.run(probe.run(args.rate, args.duration))
    print(json.dumps({"latencies": probe.latencies, "from_due": probe.from_due,
                      "late": probe.late, "errors": probe.errors}))


if __name__ == "__main__":
    main()
