"""Bad input: every one is a problem+json answer with the right status, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from .conftest import MakeClient
from .helpers import answered, assert_healthy, error_fields, ids_listed, problem, submit

JSON_HEADERS = {"Content-Type": "application/json"}


async def post_raw(client: Client, body: bytes, content_type: str = "application/json",
                   path: str = "/tasks") -> Any:
    return await client.post(path, data=body, headers={"Content-Type": content_type})


# -- 400: the body is not JSON ----------------------------------------------------------------

async def test_malformed_json_is_400_saying_so(client: Client) -> None:
    body = await problem(await post_raw(client, b'{"name": "add", "args": [1, 2'), 400)

    assert "JSON" in body["detail"]


async def test_empty_body_is_400(client: Client) -> None:
    await problem(await post_raw(client, b""), 400)


# Hostile bodies (issue 4): each is turned away at once (answered) and the service
# is healthy after it (assert_healthy). More attacks are in test_attacks.py.

async def test_json_nested_100000_deep_is_400_not_500(client: Client) -> None:
    body = b'{"name": "echo", "args": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"

    await problem(await answered(post_raw(client, body)), 400)
    await assert_healthy(client)


async def test_deeply_nested_objects_are_400(client: Client) -> None:
    body = b'{"a":' * 50_000 + b"1" + b"}" * 50_000

    await problem(await answered(post_raw(client, body)), 400)
    await assert_healthy(client)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinity_are_400(client: Client, constant: bytes) -> None:
    body = b'{"name": "echo", "args": [' + constant + b"]}"

    await problem(await answered(post_raw(client, body)), 400)
    await assert_healthy(client)


async def test_number_overflowing_to_infinity_is_400(client: Client) -> None:
    response = post_raw(client, b'{"name": "echo", "args": [1e400]}')

    await problem(await answered(response), 400)


async def test_overflowing_number_does_not_break_the_list(client: Client) -> None:
    await post_raw(client, b'{"name": "echo", "args": [1e400]}')
    await submit(client, "echo", 10**30)

    response = await client.get("/tasks")

    assert response.status_code == 200


@pytest.mark.parametrize("digits", [5000, 5001])  # 10**5000 has 5001
async def test_integer_with_too_many_digits_is_400(client: Client, digits: int) -> None:
    body = b'{"name": "echo", "args": [' + b"1" + b"0" * (digits - 1) + b"]}"

    await problem(await answered(post_raw(client, body)), 400)
    await assert_healthy(client)


async def test_invalid_utf8_is_400(client: Client) -> None:
    response = post_raw(client, b'{"name": "add\xff\xfe", "args": [1, 2]}')

    body = await problem(await answered(response), 400)
    assert "UTF-8" in body["detail"]
    await assert_healthy(client)


async def test_lone_surrogate_escape_is_400(client: Client) -> None:
    response = await post_raw(client, b'{"name": "echo", "args": ["\\ud800"]}')

    await problem(response, 400)
    assert (await client.get("/tasks")).status_code == 200


# -- 413 and 415 ------------------------------------------------------------------------------

async def test_body_over_max_body_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body=100)
    body = b'{"name": "echo", "args": ["' + b"x" * 200 + b'"]}'

    answer = await problem(await post_raw(client, body), 413)

    assert answer["title"] == "Content Too Large"  # RFC 9110's name, on every Python


async def test_body_at_max_body_is_accepted(make_client: MakeClient) -> None:
    client = await make_client(max_body=100)
    head, tail = b'{"name": "echo", "args": ["', b'"]}'
    body = head + b"x" * (100 - len(head) - len(tail)) + tail

    response = await post_raw(client, body)

    assert len(body) == 100
    assert response.status_code == 202


async def test_chunked_body_over_max_body_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body=100)
    async with client.request("/tasks", method="POST", headers=JSON_HEADERS) as connection:
        for _ in range(4):  # no Content-Length: the limit must hold while reading
            await connection.send(b" " * 40)
        await connection.send_complete()
    response = await connection.as_response()

    await problem(response, 413)


async def test_batch_over_max_body_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body=200)
    tasks = [{"name": "add", "args": [i, i]} for i in range(20)]

    response = await client.post("/tasks/batch", json={"tasks": tasks})

    await problem(response, 413)


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml",
])
async def test_body_that_is_not_json_is_415(client: Client, content_type: str) -> None:
    await problem(await post_raw(client, b'{"name": "add"}', content_type), 415)


async def test_missing_content_type_is_415(client: Client) -> None:
    await problem(await client.post("/tasks", data=b'{"name": "add", "args": [1, 2]}'), 415)


async def test_json_with_charset_is_accepted(client: Client) -> None:
    response = await post_raw(client, b'{"name": "add", "args": [1, 2]}',
                              "application/json; charset=utf-8")

    assert response.status_code == 202


# -- 422: the JSON does not make a task -------------------------------------------------------

async def test_unknown_task_name_is_422_naming_the_field(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "no_such_task"})

    body = await problem(response, 422)
    assert error_fields(body) == ["name"]
    assert "no_such_task" in body["detail"]


async def test_wrong_keyword_argument_type_names_kwargs_field(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "kwargs": {"a": 1, "b": "x"}})

    body = await problem(response, 422)
    assert error_fields(body) == ["kwargs.b"]
    assert body["errors"][0]["message"]


async def test_wrong_positional_argument_type_names_args_index(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, [2]]})

    assert error_fields(await problem(response, 422)) == ["args.1"]


async def test_missing_argument_is_422_naming_it(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1]})

    body = await problem(response, 422)
    assert error_fields(body) == ["args.1"]  # as the caller would have passed it
    assert "args.1" in body["detail"]
    assert "required" in body["errors"][0]["message"].lower()


async def test_extra_positional_argument_is_422_naming_its_index(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2, 3]})

    assert error_fields(await problem(response, 422)) == ["args.2"]


async def test_unexpected_keyword_argument_is_422_naming_it(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2],
                                                 "kwargs": {"c": 3}})

    assert error_fields(await problem(response, 422)) == ["kwargs.c"]


async def test_argument_given_twice_is_422(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2],
                                                 "kwargs": {"a": 1}})

    assert error_fields(await problem(response, 422)) == ["kwargs.a"]


async def test_several_bad_arguments_are_all_named(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": ["x", "y"]})

    assert sorted(error_fields(await problem(response, 422))) == ["args.0", "args.1"]


async def test_unknown_top_level_field_is_422(client: Client) -> None:
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2], "when": 1})

    assert error_fields(await problem(response, 422)) == ["when"]


@pytest.mark.parametrize("body", [[{"name": "add"}], "add", 5, None])
async def test_body_that_is_not_an_object_is_422(client: Client, body: Any) -> None:
    response = await post_raw(client, json.dumps(body).encode())

    await problem(response, 422)


@pytest.mark.parametrize(("field", "value"), [
    ("name", ""), ("name", "x" * 201), ("name", 5), ("args", {"a": 1}), ("kwargs", [1]),
    ("delay", -1), ("delay", "soon"), ("delay", 10**9),
    ("priority", 1.5), ("priority", True), ("priority", 2**31), ("priority", -(2**31) - 1),
    ("priority", "high"), ("timeout", 0), ("timeout", -5), ("timeout", "long"),
])
async def test_bad_option_is_422_naming_it(client: Client, field: str, value: Any) -> None:
    body: dict[str, Any] = {"name": "add", "args": [1, 2], field: value}

    response = await client.post("/tasks", json=body)

    assert error_fields(await problem(response, 422)) == [field]


async def test_rejected_submissions_create_no_task(client: Client) -> None:
    await client.post("/tasks", json={"name": "add", "args": [1]})
    await client.post("/tasks", json={"name": "nope"})
    await post_raw(client, b"{")

    assert await ids_listed(client) == []


# -- 404 and 405 ------------------------------------------------------------------------------

@pytest.mark.parametrize("task_id", [
    "a" * 24,                      # the right shape, but no such task
    "abc",                         # too short
    "a" * 10_000,                  # 10 KB
    "..%2F..%2Fetc%2Fpasswd",      # path traversal, encoded
    "%2e%2e",                      # ".."
    "%C3%A9" * 12,                 # 12 non-ASCII letters
    "aaaaaaaaaaaaaaaaaaaaaa%00",   # NUL
])
@pytest.mark.parametrize("method", ["GET", "POST cancel", "DELETE", "GET events"])
async def test_unknown_or_malformed_id_is_404(client: Client, task_id: str, method: str) -> None:
    verb, _, action = method.partition(" ")
    path = f"/tasks/{task_id}" + (f"/{action}" if action else "")

    response = await answered(client.open(path, method=verb, json=None))

    await problem(response, 404)


async def test_404_does_not_echo_a_huge_id(client: Client) -> None:
    response = await answered(client.get("/tasks/" + "a" * 10_000))

    await problem(response, 404)
    assert len(await response.get_data()) < 1000
    await assert_healthy(client)


async def test_unknown_route_is_a_problem(client: Client) -> None:
    await problem(await client.get("/no/such/route"), 404)


async def test_wrong_method_is_a_405_problem(client: Client) -> None:
    response = await client.put("/tasks", json={})

    await problem(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_10000_keys_in_kwargs_are_422_with_the_problems_capped(client: Client) -> None:
    kwargs = {f"k{i}": i for i in range(10_000)}

    response = await answered(client.post("/tasks", json={
        "name": "add", "args": [1, 2], "kwargs": kwargs}))

    body = await problem(response, 422)
    assert 0 < len(body["errors"]) <= 100
    assert len(await response.get_data()) < 20_000
    await assert_healthy(client)


# -- one style: type about:blank, title the status phrase, code for programs ------------------

async def test_each_problem_has_a_stable_code(client: Client) -> None:
    """The codes the README documents, one per way a request can fail here."""
    seen = {
        "bad-request": await post_raw(client, b"{"),
        "unsupported-media-type": await post_raw(client, b"x", "text/plain"),
        "invalid-body": await client.post("/tasks", json={"name": "add", "bogus": 1}),
        "unknown-task-type": await client.post("/tasks", json={"name": "no_such_task"}),
        "invalid-submission": await client.post("/tasks", json={"name": "add", "args": [1]}),
        "bad-query": await client.get("/tasks?limit=0"),
        "task-not-found": await client.get("/tasks/" + "A" * 24),
        "not-found": await client.get("/no/such/route"),
        "method-not-allowed": await client.put("/tasks", json={}),
    }
    for code, response in seen.items():
        body = await problem(response, response.status_code)
        assert body["code"] == code, body
        assert body["title"]  # the status phrase
