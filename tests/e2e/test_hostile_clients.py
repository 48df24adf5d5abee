"""Hostile and slow clients against the real server with the shipped ``hypercorn.toml``:
raw sockets, so that nothing on our side tidies the bytes up first.

- a 100 MB body announced and trickled: 413 at once, before the body comes;
- CR, LF and NUL in header values; an oversized request head (431);
- 500 connections that dribble a request byte by byte: other clients are served meanwhile,
  and each dribbler is closed by the server after ``keep_alive_timeout``;
- a long ``?wait=`` and an idle event stream outlive ``keep_alive_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import tomllib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypercorn.asyncio.tcp_server import MAX_RECV

from .conftest import serving_in
from .helpers import submit, wait_terminal
from .server import HOST, REPO, Server
from .sse import events

pytestmark = pytest.mark.e2e

HYPERCORN = tomllib.loads((REPO / "hypercorn.toml").read_text())
KEEP_ALIVE = float(HYPERCORN["keep_alive_timeout"])
MAX_HEAD = int(HYPERCORN["h11_max_incomplete_size"])
# seconds: a deadline, not a speed bar: a server that waited for the rest of a hostile
# request would not answer at all (the trickled body below takes about 10 s to send)
ANSWER_DEADLINE = 5.0
DRIBBLERS = 500
FILES_NEEDED = 2 * DRIBBLERS + 500  # this process and the server, with room to spare
HUNDRED_MB = 100 * 1024 * 1024
READ_SIZE = MAX_RECV  # what Hypercorn reads from a socket at a time (64 KiB)


@pytest.fixture(scope="module")
def open_files() -> Iterator[None]:
    """Room for 500 more sockets here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.fail(f"the open-file limit is {hard}; this test needs {FILES_NEEDED}")
    wanted = FILES_NEEDED if hard == resource.RLIM_INFINITY else min(hard, 4 * FILES_NEEDED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def server(open_files: None, mode: str, request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server of the module's mode (embedded, or a Celery-mode web process)."""
    with serving_in(request, mode, tmp_path_factory.mktemp("hostile"),
                    OFFLOAD_SSE_KEEPALIVE="15") as running:
        yield running


@contextlib.asynccontextmanager
async def connection(server: Server) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                              asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of the answer (lower-case names)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}


async def assert_healthy(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    task = await wait_terminal(client, (await submit(client, "add", 2, 3))["id"])
    assert task["status"] == "succeeded", task
    assert task["result"] == 5


async def task_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/tasks", params={"limit": 1000})).json()["items"])


def post_head(extra: bytes, length: int) -> bytes:
    return (b"POST /tasks HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(length).encode()
            + b"\r\n" + extra + b"\r\n")


async def test_100_mb_body_trickled_is_413_before_it_is_sent(
    server: Server, client: httpx.AsyncClient,
) -> None:
    before = await task_count(client)
    async with connection(server) as (reader, writer):
        writer.write(post_head(b"", HUNDRED_MB))
        await writer.drain()

        body = b'{"name": "echo", "args": ["' + b"x" * 1000
        sent = 0  # bytes written and drained: what the server may have read

        async def trickle() -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionError):  # the 413 closes (or resets) it
                for i in range(len(body)):  # a byte every 10 ms: ~10 s for this much
                    writer.write(body[i:i + 1])
                    await writer.drain()
                    sent += 1
                    await asyncio.sleep(0.01)  # pacing the trickle, not waiting for a result

        trickling = asyncio.create_task(trickle())
        try:
            status, headers = await asyncio.wait_for(read_head(reader), ANSWER_DEADLINE)
            sent_when_answered = sent
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await trickling

    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert sent_when_answered < len(body)  # answered while the body was still coming
    assert await task_count(client) == before
    await assert_healthy(client)


async def test_an_answer_before_the_body_says_the_connection_closes(
    server: Server, client: httpx.AsyncClient,
) -> None:
    """A 415 comes before the body is read. Hypercorn then closes the connection; the
    answer must say so, or a client that reuses the connection (httpx does) sends its next
    request into a closed socket ("Server disconnected without sending a response")."""
    body = b'{"name": "add", "args": [1, 2]}'
    head = (b"POST /tasks HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
            b"Content-Type: text/plain\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n")
    async with connection(server) as (reader, writer):
        writer.write(head)  # the body only after the answer, as a slow network would
        await writer.drain()
        status, headers = await asyncio.wait_for(read_head(reader), ANSWER_DEADLINE)
        writer.write(body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        rest = await asyncio.wait_for(reader.read(), ANSWER_DEADLINE)  # then the server closes

    assert status == 415
    assert headers["connection"] == "close"
    assert len(rest) == int(headers["content-length"])  # the problem body, nothing more
    await assert_healthy(client)


@pytest.mark.parametrize("header", [
    b"Idempotency-Key: a\rb",            # bare CR inside a value
    b"Idempotency-Key: a\x00b",          # NUL inside a value
    b"Idempotency-Key : a",              # space before the colon
    b"Idempotency-Key a",                # no colon at all
    b"Idem\x01potency-Key: a",           # a control character in a name
])
async def test_malformed_header_line_is_400(server: Server, client: httpx.AsyncClient,
                                            header: bytes) -> None:
    before = await task_count(client)
    body = b'{"name": "add", "args": [1, 2]}'
    async with connection(server) as (reader, writer):
        writer.write(post_head(header + b"\r\n", len(body)) + body)
        await writer.drain()
        status, _ = await asyncio.wait_for(read_head(reader), ANSWER_DEADLINE)

    assert status == 400
    assert await task_count(client) == before
    await assert_healthy(client)


@pytest.mark.parametrize(("header", "key"), [
    (b"Idempotency-Key: k-crlf\r\nX-Injected: yes", "k-crlf"),  # CRLF ends the line
    (b"Idempotency-Key: k-lf\nX-Injected: yes", "k-lf"),        # a bare LF does too
])
async def test_a_line_break_in_a_header_ends_it_and_injects_nothing(
    server: Server, client: httpx.AsyncClient, header: bytes, key: str,
) -> None:
    """On the wire a line break cannot be inside a header value: CRLF ends the field, and
    so does a bare LF (RFC 9112 lets a recipient take LF as a line end, as h11 does). What
    follows is a separate header the service ignores; the key is what came before it, and
    nothing of it reaches the answer (no response splitting)."""
    body = b'{"name": "add", "args": [1, 2]}'
    async with connection(server) as (reader, writer):
        writer.write(post_head(header + b"\r\n", len(body)) + body)
        await writer.drain()
        status, headers = await asyncio.wait_for(read_head(reader), ANSWER_DEADLINE)

    assert status == 202
    assert "x-injected" not in headers
    first = headers["location"].rsplit("/", 1)[1]
    replay = await client.post("/tasks", json={"name": "add", "args": [1, 2]},
                               headers={"Idempotency-Key": key})
    assert replay.status_code == 200
    assert replay.json()["id"] == first
    await assert_healthy(client)


async def test_request_head_over_64_kib_is_431(server: Server,
                                               client: httpx.AsyncClient) -> None:
    """Hypercorn reads 64 KiB at a time and h11 checks its limit on an incomplete head: a
    head that cannot fit one read is refused whatever the packets."""
    async with connection(server) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Big: "
                     + b"a" * READ_SIZE + b"\r\n\r\n")
        await writer.drain()
        status, _ = await asyncio.wait_for(read_head(reader), ANSWER_DEADLINE)

    assert status == 431
    await assert_healthy(client)


async def test_request_head_growing_past_the_limit_is_431(server: Server,
                                                          client: httpx.AsyncClient) -> None:
    """Sent in pieces, a head is refused once more than h11_max_incomplete_size of it is
    waiting for its end."""
    async with connection(server) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Big: ")
        answer = asyncio.create_task(read_head(reader))
        for _ in range(2 * MAX_HEAD // 1024):
            writer.write(b"a" * 1024)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.wait({answer}, timeout=0.005)  # pacing: pieces, not one read
            if answer.done():
                break
        status, _ = await asyncio.wait_for(answer, ANSWER_DEADLINE)

    assert status == 431
    await assert_healthy(client)


async def test_500_dribbling_connections_do_not_stop_other_clients(
    server: Server, client: httpx.AsyncClient,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
    closed_after: list[float] = []
    answered: list[bytes] = []

    async def dribble() -> None:
        async with connection(server) as (reader, writer):
            opened = time.monotonic()
            reading = asyncio.create_task(reader.read(1024))
            for i in range(len(request) - 1):  # never the last byte: the head never ends
                if reading.done():
                    break
                try:
                    writer.write(request[i:i + 1])
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.wait({reading}, timeout=0.25)  # pacing: a byte per 250 ms
            with contextlib.suppress(ConnectionError):
                data = await asyncio.wait_for(reading, KEEP_ALIVE + 3)
                if data:
                    answered.append(data)
            closed_after.append(time.monotonic() - opened)

    dribblers = [asyncio.create_task(dribble()) for _ in range(DRIBBLERS)]
    try:
        # While they dribble (each for up to KEEP_ALIVE s), others are served.
        probes = served_while_held = 0
        deadline = time.monotonic() + KEEP_ALIVE - 1
        while time.monotonic() < deadline:
            health = await client.get("/healthz")
            task = await submit(client, "add", probes, 1)
            done = await client.get(f"/tasks/{task['id']}", params={"wait": 5})
            assert health.status_code == 200
            assert done.json()["status"] == "succeeded"
            if not any(d.done() for d in dribblers):  # every dribbler still connected
                served_while_held += 1
            probes += 1
        assert served_while_held >= 3
        await asyncio.gather(*dribblers)
    finally:
        for dribbler in dribblers:
            dribbler.cancel()
        await asyncio.gather(*dribblers, return_exceptions=True)

    # The server closed every dribbler, answering none, after its keep-alive timeout.
    assert answered == []
    assert len(closed_after) == DRIBBLERS
    assert min(closed_after) > KEEP_ALIVE - 0.5
    assert max(closed_after) < KEEP_ALIVE + 3
    await assert_healthy(client)


async def test_long_wait_and_idle_event_stream_outlive_the_keep_alive_timeout(
    client: httpx.AsyncClient, mode: str,
) -> None:
    """The client says nothing for longer than keep_alive_timeout while its answer is
    pending (a ?wait=) or streaming (an idle event stream): neither is cut."""
    seconds = KEEP_ALIVE + 1.5
    task = await submit(client, "sleep", seconds)

    async def long_wait() -> dict[str, object]:
        response = await client.get(f"/tasks/{task['id']}", params={"wait": 30})
        assert response.status_code == 200
        body: dict[str, object] = response.json()
        return body

    async def stream() -> list[str]:
        seen: list[str] = []
        async with client.stream("GET", f"/tasks/{task['id']}/events") as response:
            assert response.status_code == 200
            async for event in events(response):
                seen.append(str(event.task["status"]))
        return seen

    started = time.monotonic()
    waited, statuses = await asyncio.wait_for(asyncio.gather(long_wait(), stream()), 30)
    elapsed = time.monotonic() - started

    assert elapsed > KEEP_ALIVE  # both were held past the timeout, and neither was cut
    assert waited["status"] == "succeeded"
    # embedded: running from its submission on; in Celery mode queued until a worker
    # starts it (the web process runs no task: docs/celery.md)
    assert statuses[0] == "running" or (mode == "celery" and statuses[0] == "queued")
    assert "running" in statuses
    assert statuses[-1] == "succeeded"
