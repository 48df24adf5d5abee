"""``depends_on`` over HTTP: waiting, release, failure propagation, cancel, batches with
indexes, cycles and bad ids refused, the status everywhere it shows."""

from __future__ import annotations

from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import bearer, error_fields, finished, get_task, ids_listed, problem, submit
from .test_events_sse import open_stream, parse, read_to_end, read_until


async def blocked(client: Client, key: str, **options: object) -> dict[str, object]:
    """A task that runs until its gate opens."""
    return await submit(client, "wait_for_release", key, **options)


async def test_a_dependant_waits_then_runs(client: Client) -> None:
    first = await blocked(client, "dep-a")
    then = await submit(client, "add", 2, 3, depends_on=[first["id"]])
    assert then["status"] == "waiting"
    assert then["depends_on"] == [first["id"]]
    await gate("dep-a").wait_started()
    assert (await get_task(client, str(then["id"])))["status"] == "waiting"
    gate("dep-a").open()
    done = await finished(client, str(then["id"]))
    assert done["status"] == "succeeded"
    assert done["result"] == 5  # no result passing over HTTP: its own arguments
    assert (await get_task(client, str(first["id"])))["depends_on"] == []


async def test_a_failed_dependency_cancels_its_dependants(client: Client) -> None:
    failing = await submit(client, "fail", "boom")
    child = await submit(client, "add", 1, 1, depends_on=[failing["id"]])
    grandchild = await submit(client, "add", 1, 2, depends_on=[child["id"]])
    for task, cause in ((child, failing), (grandchild, child)):
        ended = await finished(client, str(task["id"]))
        assert ended["status"] == "cancelled"
        assert ended["error"]["type"] == "DependencyFailed"
        assert cause["id"] in ended["error"]["message"]
    assert "RuntimeError: boom" in (await get_task(client, str(child["id"])))["error"]["message"]


async def test_cancelling_a_dependency_cancels_what_waits_for_it(client: Client) -> None:
    first = await blocked(client, "dep-cancel")
    then = await submit(client, "add", 1, 2, depends_on=[first["id"]])
    response = await client.post(f"/tasks/{then['id']}/cancel")
    assert response.status_code == 202
    assert (await response.get_json())["status"] == "cancelled"
    other = await submit(client, "add", 1, 2, depends_on=[first["id"]])
    await gate("dep-cancel").wait_started()
    assert (await client.post(f"/tasks/{first['id']}/cancel")).status_code == 202
    ended = await finished(client, str(other["id"]))
    assert ended["status"] == "cancelled"
    assert first["id"] in ended["error"]["message"]


async def test_a_batch_names_its_own_tasks_by_index(client: Client) -> None:
    tasks = [{"name": "add", "args": [1, 2], "depends_on": [1]},
             {"name": "wait_for_release", "args": ["dep-batch"]},
             {"name": "add", "args": [3, 4], "depends_on": [0, 1]}]
    response = await client.post("/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 202, await response.get_data(as_text=True)
    first, blocker, last = (await response.get_json())["items"]
    assert first["depends_on"] == [blocker["id"]]
    assert last["depends_on"] == [first["id"], blocker["id"]]
    assert [first["status"], last["status"]] == ["waiting", "waiting"]
    gate("dep-batch").open()
    assert (await finished(client, last["id"]))["result"] == 7


async def test_a_cycle_in_a_batch_is_refused(client: Client) -> None:
    tasks = [{"name": "add", "args": [1, 2]},
             {"name": "add", "args": [1, 2], "depends_on": [0, 2]},
             {"name": "add", "args": [1, 2], "depends_on": [1]}]
    body = await problem(await client.post("/tasks/batch", json={"tasks": tasks}), 422)
    assert error_fields(body)[0] in ("tasks.1.depends_on.1", "tasks.2.depends_on.0")
    assert "cycle" in body["errors"][0]["message"]
    own = [{"name": "add", "args": [1, 2], "depends_on": [0]}]
    body = await problem(await client.post("/tasks/batch", json={"tasks": own}), 422)
    assert error_fields(body) == ["tasks.0.depends_on.0"]
    assert await ids_listed(client) == []


async def test_too_long_a_chain_in_a_batch_is_refused(make_client: MakeClient) -> None:
    client = await make_client(max_chain=3)
    tasks = [{"name": "add", "args": [1, 2]}] + [
        {"name": "add", "args": [1, 2], "depends_on": [i]} for i in range(3)]
    body = await problem(await client.post("/tasks/batch", json={"tasks": tasks}), 422)
    assert error_fields(body) == ["tasks.3.depends_on.0"]
    response = await client.post("/tasks/batch", json={"tasks": tasks[:3]})
    assert response.status_code == 202


async def test_bad_dependencies_name_the_field(make_client: MakeClient) -> None:
    client = await make_client(max_depends_on=2)
    known = await blocked(client, "dep-bad")
    cases = [
        ([known["id"], "A" * 24], "depends_on.1"),  # no such task
        (["not an id"], "depends_on.0"),
        ([known["id"], known["id"]], "depends_on.1"),  # listed twice
        ([0], "depends_on.0"),  # an index outside a batch
        ([known["id"]] * 3, "depends_on"),  # too many
    ]
    for depends_on, field in cases:
        response = await client.post("/tasks", json={"name": "add", "args": [1, 2],
                                                     "depends_on": depends_on})
        assert error_fields(await problem(response, 422)) == [field], depends_on
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2], "delay": 5,
                                                 "depends_on": [known["id"]]})
    assert error_fields(await problem(response, 422)) == ["delay"]
    batch = [{"name": "add", "args": [1, 2]},
             {"name": "add", "args": [1, 2], "depends_on": [0, "B" * 24]}]
    body = await problem(await client.post("/tasks/batch", json={"tasks": batch}), 422)
    assert error_fields(body) == ["tasks.1.depends_on.1"]
    gate("dep-bad").open()


async def test_another_tokens_task_is_no_dependency(make_client: MakeClient) -> None:
    client = await make_client(api_tokens=("alice", "bob"))
    theirs = await submit(client, "add", 1, 2, headers=bearer("alice"))
    response = await client.post("/tasks", headers=bearer("bob"), json={
        "name": "add", "args": [1, 2], "depends_on": [theirs["id"]]})
    body = await problem(response, 422)
    assert error_fields(body) == ["depends_on.0"]
    mine = await submit(client, "add", 1, 2, headers=bearer("alice"),
                        depends_on=[theirs["id"]])
    assert (await finished(client, mine["id"], headers=bearer("alice")))["result"] == 3


async def test_waiting_shows_in_lists_stats_and_the_queue_bound(
        make_client: MakeClient) -> None:
    client = await make_client(max_queue=2)
    first = await blocked(client, "dep-stats")
    await gate("dep-stats").wait_started()
    then = await submit(client, "add", 1, 2, depends_on=[first["id"]])
    assert await ids_listed(client, "&status=waiting") == [then["id"]]
    stats = await (await client.get("/stats")).get_json()
    assert stats["counts"]["waiting"] == 1
    assert stats["queue_depth"] == 1
    await submit(client, "add", 1, 2, depends_on=[first["id"]])
    response = await client.post("/tasks", json={"name": "add", "args": [1, 2]})
    await problem(response, 429)  # two waiting: the bound of 2 is reached
    gate("dep-stats").open()
    assert (await finished(client, then["id"]))["status"] == "succeeded"


async def test_a_dependency_that_already_failed_cancels_at_once(client: Client) -> None:
    failing = await finished(client, str((await submit(client, "fail", "x"))["id"]))
    then = await submit(client, "add", 1, 2, depends_on=[failing["id"]])
    assert then["status"] == "cancelled"
    assert then["error"]["type"] == "DependencyFailed"


async def test_the_openapi_document_knows_waiting_and_depends_on(client: Client) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    schemas = document["components"]["schemas"]
    assert "waiting" in schemas["TaskOut"]["properties"]["status"]["enum"]
    assert "depends_on" in schemas["TaskOut"]["properties"]
    assert "depends_on" in schemas["Submission"]["properties"]


async def test_the_event_stream_of_a_dependant_shows_its_release(client: Client) -> None:
    first = await blocked(client, "dep-sse")
    then = await submit(client, "add", 1, 2, depends_on=[first["id"]])
    async with open_stream(client, str(then["id"])) as connection:
        await connection.send_complete()
        opening = await read_until(connection, "\n\n")
        gate("dep-sse").open()
        rest = await read_to_end(connection)
    statuses = [task["status"] for kind, task in parse(opening + rest)[0] if kind == "status"]
    assert statuses[0] == "waiting"
    assert statuses[-1] == "succeeded"
    assert "queued" in statuses or "running" in statuses
