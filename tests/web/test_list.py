"""GET /tasks: newest first, filters, limit and cursor pagination."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import error_fields, finished, ids_listed, problem, submit


async def page(client: Client, query: str) -> dict[str, Any]:
    response = await client.get(f"/tasks?{query}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def test_empty_list(client: Client) -> None:
    assert await page(client, "") == {"items": [], "next_cursor": None}


async def test_list_is_newest_first(client: Client) -> None:
    ids = [(await submit(client, "add", i, i, delay=30))["id"] for i in range(5)]

    body = await page(client, "")

    assert [t["id"] for t in body["items"]] == ids[::-1]
    assert body["next_cursor"] is None
    assert body["items"][0]["args"] == [4, 4]  # whole task objects


async def test_default_limit_is_50(client: Client) -> None:
    batch = {"tasks": [{"name": "add", "args": [i, i], "delay": 30} for i in range(51)]}
    assert (await client.post("/tasks/batch", json=batch)).status_code == 202

    body = await page(client, "")

    assert len(body["items"]) == 50
    assert body["next_cursor"] is not None


async def test_filter_by_one_status(client: Client) -> None:
    scheduled = await submit(client, "add", 1, 1, delay=30)
    done = await finished(client, (await submit(client, "add", 1, 1))["id"])

    assert await ids_listed(client, "&status=scheduled") == [scheduled["id"]]
    assert await ids_listed(client, "&status=succeeded") == [done["id"]]
    assert await ids_listed(client, "&status=failed") == []


async def test_status_filter_is_repeatable(client: Client) -> None:
    scheduled = await submit(client, "add", 1, 1, delay=30)
    failed = await finished(client, (await submit(client, "fail", "x"))["id"])
    await finished(client, (await submit(client, "add", 1, 1))["id"])
    running = await submit(client, "wait_for_release", "list-running")
    await gate("list-running").wait_started()

    listed = await ids_listed(client, "&status=scheduled&status=failed&status=running")

    assert listed == [running["id"], failed["id"], scheduled["id"]]


async def test_filter_by_name(client: Client) -> None:
    await submit(client, "add", 1, 1, delay=30)
    wanted = await submit(client, "sleep", 1, delay=30)

    assert await ids_listed(client, "&name=sleep") == [wanted["id"]]
    assert await ids_listed(client, "&name=no_such_task") == []


async def test_filters_combine(client: Client) -> None:
    scheduled_add = await submit(client, "add", 1, 1, delay=30)
    await submit(client, "sleep", 1, delay=30)
    await finished(client, (await submit(client, "add", 1, 1))["id"])

    assert await ids_listed(client, "&name=add&status=scheduled") == [scheduled_add["id"]]


async def test_pages_cover_every_task_once_in_order(client: Client) -> None:
    ids = [(await submit(client, "add", i, i, delay=30))["id"] for i in range(7)]
    seen: list[str] = []
    sizes: list[int] = []
    query = "limit=3"
    while True:
        body = await page(client, query)
        seen += [t["id"] for t in body["items"]]
        sizes.append(len(body["items"]))
        if body["next_cursor"] is None:
            break
        query = f"limit=3&cursor={body['next_cursor']}"

    assert seen == ids[::-1]
    assert sizes == [3, 3, 1]


async def test_exact_multiple_ends_without_an_empty_extra_page(client: Client) -> None:
    for i in range(4):
        await submit(client, "add", i, i, delay=30)

    first = await page(client, "limit=2")
    second = await page(client, f"limit=2&cursor={first['next_cursor']}")

    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


async def test_new_tasks_do_not_shift_later_pages(client: Client) -> None:
    ids = [(await submit(client, "add", i, i, delay=30))["id"] for i in range(4)]
    first = await page(client, "limit=2")
    await submit(client, "add", 9, 9, delay=30)  # newer: belongs before page one

    second = await page(client, f"limit=2&cursor={first['next_cursor']}")

    assert [t["id"] for t in first["items"] + second["items"]] == ids[::-1]


async def test_pagination_keeps_the_filters(client: Client) -> None:
    wanted = []
    for i in range(5):
        wanted.append((await submit(client, "sleep", 1, delay=30))["id"])
        await submit(client, "add", i, i, delay=30)

    first = await page(client, "name=sleep&limit=3")
    second = await page(client, f"name=sleep&limit=3&cursor={first['next_cursor']}")

    assert [t["id"] for t in first["items"] + second["items"]] == wanted[::-1]
    assert second["next_cursor"] is None


async def test_deleted_task_between_pages_leaves_no_gap(client: Client) -> None:
    ids = []
    for i in range(5):
        ids.append((await finished(client, (await submit(client, "add", i, i))["id"]))["id"])
    first = await page(client, "limit=2")
    await client.delete(f"/tasks/{ids[2]}")  # the first item of page two

    second = await page(client, f"limit=2&cursor={first['next_cursor']}")

    assert [t["id"] for t in second["items"]] == [ids[1], ids[0]]


@pytest.mark.parametrize("limit", ["1", "1000"])
async def test_limit_bounds_are_allowed(client: Client, limit: str) -> None:
    await submit(client, "add", 1, 1, delay=30)

    assert len((await page(client, f"limit={limit}"))["items"]) == 1


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "100000", "x", "1.5", ""])
async def test_limit_out_of_range_is_400(client: Client, limit: str) -> None:
    body = await problem(await client.get(f"/tasks?limit={limit}"), 400)

    assert "limit" in body["detail"] + str(error_fields(body))


@pytest.mark.parametrize("status", ["bogus", "", "QUEUED", "done"])
async def test_unknown_status_is_400_naming_the_field(client: Client, status: str) -> None:
    body = await problem(await client.get(f"/tasks?status={status}"), 400)

    assert error_fields(body) == ["status"]


async def test_one_bad_status_among_good_ones_is_400(client: Client) -> None:
    body = await problem(await client.get("/tasks?status=queued&status=nope"), 400)

    assert [f.split(".")[0] for f in error_fields(body)] == ["status"]


async def test_forged_cursor_is_400(client: Client) -> None:
    for i in range(3):
        await submit(client, "add", i, i, delay=30)
    cursor = (await page(client, "limit=1"))["next_cursor"]
    forged = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")

    await problem(await client.get(f"/tasks?cursor={forged}"), 400)


@pytest.mark.parametrize("cursor", ["abc", "", "%00", "x" * 65, "AAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                    "!!!!", "a" * 5000])
async def test_garbage_cursor_is_400(client: Client, cursor: str) -> None:
    await problem(await client.get(f"/tasks?cursor={cursor}"), 400)


async def test_cursor_of_another_service_is_400(make_client: MakeClient) -> None:
    one, other = await make_client(), await make_client()
    for i in range(2):
        await submit(one, "add", i, i, delay=30)
    cursor = (await page(one, "limit=1"))["next_cursor"]

    await problem(await other.get(f"/tasks?cursor={cursor}"), 400)


async def test_unknown_query_parameters_are_ignored(client: Client) -> None:
    await submit(client, "add", 1, 1, delay=30)

    assert len((await page(client, "foo=bar"))["items"]) == 1


async def test_configured_page_maximum_is_the_limit(make_client: MakeClient) -> None:
    client = await make_client(max_page=10)

    assert (await client.get("/tasks?limit=10")).status_code == 200
    await problem(await client.get("/tasks?limit=11"), 400)
