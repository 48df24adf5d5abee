"""Hostile requests, in process: each is answered by a 4xx at once (well under a second)
and the service is healthy after it (/healthz answers and a normal task runs).

Deep nesting, NaN/Infinity, huge integers, invalid UTF-8, 10,000 keys in kwargs, 10 KB ids
and path traversal in ids are in test_problems.py; the real server's side (a 100 MB body
trickled over a socket, CR/LF and NUL in headers, oversized heads) in
tests/e2e/test_hostile_clients.py.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from quart import Response
from quart.typing import TestClientProtocol as Client

from .conftest import MakeClient, web_app
from .helpers import (
    HANG_GUARD,
    answered,
    assert_healthy,
    bearer,
    error_fields,
    ids_listed,
    problem,
    submit,
)

HUNDRED_MB = 100 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 60.0  # seconds: Quart's BODY_TIMEOUT


async def test_100_mb_content_length_is_413_before_the_body_is_sent(client: Client) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(HUNDRED_MB)}
    async with client.request("/tasks", method="POST", headers=headers) as connection:
        await connection.send(b'{"name": "echo", "args": ["')  # then nothing more comes
        # the body never ends: any answer at all came before it
        first = await asyncio.wait_for(connection.receive(), HANG_GUARD)
    response = Response(first + bytes(connection.response_data), connection.status_code,
                        connection.headers)

    await problem(response, 413)
    assert await ids_listed(client) == []
    await assert_healthy(client)


async def test_body_that_stops_coming_is_408_after_the_body_timeout() -> None:
    """A body slower than Quart's BODY_TIMEOUT (60 s by default; 0.3 s here) is a 408."""
    app = web_app()
    app.config["BODY_TIMEOUT"] = 0.3
    headers = {"Content-Type": "application/json", "Content-Length": "100"}
    async with app.test_app() as started_app:
        client = started_app.test_client()
        async with client.request("/tasks", method="POST", headers=headers) as connection:
            await connection.send(b'{"name": "add", ')  # 16 of the 100 bytes, then silence
            # not a timing test: an answer by then is the set timeout's, not the default's
            first = await asyncio.wait_for(connection.receive(), DEFAULT_BODY_TIMEOUT / 2)
        response = Response(first + bytes(connection.response_data), connection.status_code,
                            connection.headers)

        await problem(response, 408)
        await assert_healthy(client)


@pytest.mark.parametrize("name", [
    "os.system", "__import__", "builtins.eval", "eval", "subprocess.Popen",
    "service.demo.add", "tests.sample_tasks.echo", "../add", "add\x00", "ADD", " add",
    "__class__", "__init__", "sleep.__globals__",
])
async def test_task_names_that_are_not_registered_types_are_422(client: Client,
                                                                 name: str) -> None:
    response = await answered(client.post("/tasks", json={"name": name, "args": ["id"]}))

    body = await problem(response, 422)
    assert error_fields(body) == ["name"]
    assert await ids_listed(client) == []
    await assert_healthy(client)


@pytest.mark.parametrize("limit", [
    "1" + "0" * 100, "9" * 5000, "-1", "-" + "9" * 30, "0", "1e3", "NaN", "inf", "0x10",
    "%00",
])
async def test_huge_negative_or_malformed_limit_is_400(client: Client, limit: str) -> None:
    response = await answered(client.get(f"/tasks?limit={limit}"))

    await problem(response, 400)
    await assert_healthy(client)


def _cursor_for(seq: int, signature: bytes = bytes(12)) -> str:
    """The shape of a real cursor (8-byte position, 12-byte signature) with a made-up
    signature: a forgery."""
    return base64.urlsafe_b64encode(seq.to_bytes(8, "big") + signature).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    _cursor_for(2**64 - 1), _cursor_for(0), _cursor_for(1, b"\xff" * 12), "-1",
    "x" * 10_000, "../../etc/passwd", "%FF%FE", "A" * 27 + "=",
])
async def test_forged_huge_or_negative_cursor_is_400(client: Client, cursor: str) -> None:
    for i in range(2):
        await submit(client, "add", i, i, delay=30)

    response = await answered(client.get("/tasks", query_string={"cursor": cursor}))

    await problem(response, 400)
    assert len(await response.get_data()) < 2000  # a 10 KB cursor is not echoed
    await assert_healthy(client)


async def test_10000_bad_status_filters_are_400_with_the_problems_capped(client: Client
                                                                         ) -> None:
    query = "&".join(f"status=x{i}" for i in range(10_000))

    response = await answered(client.get(f"/tasks?{query}"))

    await problem(response, 400)
    assert len(await response.get_data()) < 20_000
    await assert_healthy(client)


async def test_10_kb_idempotency_key_is_400(client: Client) -> None:
    response = await answered(client.post(
        "/tasks", json={"name": "add", "args": [1, 2]}, headers={"Idempotency-Key": "k" * 10_240}))

    await problem(response, 400)
    assert await ids_listed(client) == []
    await assert_healthy(client)


async def test_body_in_another_encoding_is_400(client: Client) -> None:
    body = '{"name": "add", "args": [1, 2]}'.encode("utf-16")
    response = await answered(client.post(
        "/tasks", data=body, headers={"Content-Type": "application/json; charset=utf-16"}))

    await problem(response, 400)
    await assert_healthy(client)


async def test_megabyte_bearer_token_is_401(make_client: MakeClient) -> None:
    client = await make_client(api_tokens=("good-token",))

    response = await answered(client.get("/tasks", headers=bearer("x" * 1_048_576)))

    await problem(response, 401)
    assert (await client.get("/healthz")).status_code == 200
    created = await client.post("/tasks", json={"name": "add", "args": [2, 3]},
                                headers=bearer("good-token"))
    assert created.status_code == 202


async def test_batch_of_hostile_entries_is_rejected_whole(client: Client) -> None:
    entries = [{"name": "add", "args": [i, i]} for i in range(999)]
    entries.append({"name": "os.system", "args": ["rm -rf /"]})

    response = await answered(client.post("/tasks/batch", json={"tasks": entries}))

    body = await problem(response, 422)
    assert error_fields(body) == ["tasks.999.name"]
    assert await ids_listed(client) == []
    await assert_healthy(client)


# -- answers given before the body is read close the connection, and say so -------------------

BODY = b'{"name": "add", "args": [1, 2]}'


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/tasks", {"Content-Type": "text/plain"}, 415),
    ("/tasks", {"Content-Type": "application/json", "Content-Length": str(HUNDRED_MB)}, 413),
    ("/tasks", {"Content-Type": "application/json", "Authorization": "Bearer wrong"}, 401),
    ("/no/such/route", {"Content-Type": "application/json"}, 404),
    ("/tasks/batch/x", {"Content-Type": "application/json"}, 404),
    ("/healthz", {"Content-Type": "application/json"}, 405),
])
async def test_answer_before_the_body_is_read_says_connection_close(
    make_client: MakeClient, path: str, headers: dict[str, str], status: int,
) -> None:
    client = await make_client(api_tokens=("good-token",))
    # Quart's test client sends no Content-Length of its own; a real client does.
    headers = {"Authorization": "Bearer good-token", "Content-Length": str(len(BODY)),
               **headers}

    response = await answered(client.post(path, data=BODY, headers=headers))

    assert response.status_code == status
    assert response.headers["Connection"] == "close"


@pytest.mark.parametrize(("body", "status"), [
    (BODY, 202), (b'{"name": "add", "args": [1]}', 422), (b"{", 400),
])
async def test_answer_after_the_body_is_read_keeps_the_connection(client: Client, body: bytes,
                                                                  status: int) -> None:
    response = await client.post("/tasks", data=body, headers={
        "Content-Type": "application/json", "Content-Length": str(len(body))})

    assert response.status_code == status
    assert "Connection" not in response.headers
