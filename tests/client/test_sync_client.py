"""The blocking client against a real server: every handle method, lists, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from service.client import (
    ApiError,
    ConnectionFailed,
    InvalidSubmissionError,
    OffloadClient,
    RemoteTaskHandle,
    TaskNotFoundError,
    UnknownTaskTypeError,
)
from service.errors import (
    InvalidSubmission,
    TaskAlreadyTerminal,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskStillActive,
    UnknownTaskType,
)
from service.models import Status

from ..e2e.server import Server, free_port
from .conftest import WAIT

MISSING_ID = "A" * 24  # the shape of an id, of no task


def test_submit_then_result(client: OffloadClient) -> None:
    handle = client.submit("add", 2, 3)
    assert isinstance(handle, RemoteTaskHandle)
    assert len(handle.id) == 24
    assert handle.record.name == "add"
    assert handle.record.args == [2, 3]
    assert handle.result(WAIT) == 5
    assert handle.status is Status.SUCCEEDED
    assert handle.ready()
    assert handle.successful()
    assert not handle.failed()


def test_keyword_arguments_and_options(client: OffloadClient) -> None:
    handle = client.submit_with("count", kwargs={"n": 2, "delay": 0.01}, priority=5,
                                timeout=30)
    assert handle.record.kwargs == {"n": 2, "delay": 0.01}
    assert handle.record.priority == 5
    assert handle.record.timeout == 30
    assert handle.result(WAIT) == 2
    assert handle.record.progress is not None
    assert (handle.record.progress.current, handle.record.progress.total) == (2, 2)


def test_delay_schedules_the_task(client: OffloadClient) -> None:
    handle = client.submit_with("add", [1, 1], delay=600)
    assert handle.status is Status.SCHEDULED
    assert handle.record.scheduled_at is not None
    assert handle.cancel().status is Status.CANCELLED


def test_status_is_a_snapshot_until_refresh(client: OffloadClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    handle = client.submit("journal_run", "snapshot", 60.0, str(gate))
    before = handle.status
    assert before in (Status.QUEUED, Status.RUNNING)
    gate.touch()
    done = client.get_record(handle.id, wait=WAIT)  # another look, not through the handle
    assert done.status is Status.SUCCEEDED
    assert handle.status is before  # what the handle last saw
    assert not handle.ready()
    assert handle.refresh().status is Status.SUCCEEDED
    assert handle.status is Status.SUCCEEDED
    assert handle.ready()


def test_a_failed_task_raises_the_library_task_failed(client: OffloadClient) -> None:
    handle = client.submit("fail", "boom")
    with pytest.raises(TaskFailed) as caught:
        handle.result(WAIT)
    assert caught.value.error.type == "RuntimeError"
    assert caught.value.error.message == "boom"
    assert handle.failed()
    assert handle.ready()
    assert not handle.successful()


def test_wait_times_out_then_cancel_raises_task_cancelled(client: OffloadClient) -> None:
    handle = client.submit("sleep", 60)
    with pytest.raises(TimeoutError, match="still"):
        handle.wait(0.2)
    with pytest.raises(TimeoutError):
        handle.wait(0)
    record = handle.cancel()
    assert record.cancel_requested or record.status is Status.CANCELLED
    with pytest.raises(TaskCancelled):
        handle.result(WAIT)
    assert handle.status is Status.CANCELLED


def test_wait_long_polls_instead_of_asking_again_and_again(server: Server) -> None:
    # One ?wait= request holds until the end: a client polling in a loop would show up as
    # many GETs of the task in the server's access log.
    with OffloadClient(server.base_url, poll_wait=30) as client:
        handle = client.submit("sleep", 0.5)
        assert handle.wait(WAIT).status is Status.SUCCEEDED
    assert server.output().count(f'"GET /tasks/{handle.id} 1.1"') == 1


def test_wait_holds_one_request_until_the_task_ends(client: OffloadClient,
                                                    tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    handle = client.submit("journal_run", "held", 60.0, str(gate))
    seen: list[Status] = []
    waiter = threading.Thread(target=lambda: seen.append(client.get_record(
        handle.id, wait=WAIT).status))
    waiter.start()
    gate.touch()
    waiter.join(WAIT + 10)
    assert seen == [Status.SUCCEEDED]


def test_events_follow_progress_to_the_end(client: OffloadClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    handle = client.submit("gated_count", 3, str(gate))
    events = handle.events()
    first = next(events)  # the stream is open: every change from now on comes through it
    assert first.kind == "status"
    assert first.record.status in (Status.QUEUED, Status.RUNNING)
    gate.touch()
    rest = list(events)
    assert rest[-1].kind == "status"
    assert rest[-1].terminal
    assert rest[-1].record.status is Status.SUCCEEDED
    progress = [e.record.progress.current for e in rest
                if e.kind == "progress" and e.record.progress is not None]
    assert progress == [1, 2, 3]
    assert handle.status is Status.SUCCEEDED  # the handle keeps the last event's record


def test_events_of_a_finished_task_are_its_last_status(client: OffloadClient) -> None:
    handle = client.submit("add", 1, 1)
    handle.wait(WAIT)
    events = list(client.get(handle.id).events())
    assert [(e.kind, e.record.status) for e in events] == [("status", Status.SUCCEEDED)]


def test_get_and_delete(client: OffloadClient) -> None:
    handle = client.submit("add", 4, 4)
    handle.wait(WAIT)
    again = client.get(handle.id)
    assert again.id == handle.id
    assert again.result() == 8
    again.delete()
    with pytest.raises(TaskNotFound):
        client.get(handle.id)


def test_list_pages_through_every_task(client: OffloadClient) -> None:
    mine = [client.submit("add", i, 100).id for i in range(5)]
    pages, cursor = [], None
    while True:
        page = client.list(name="add", limit=2, cursor=cursor)
        assert len(page.items) <= 2
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    listed = [r.id for page in pages for r in page.items]
    assert len(listed) == len(set(listed))
    assert [i for i in listed if i in mine] == mine[::-1]  # newest first
    assert {r.name for page in pages for r in page.items} == {"add"}
    every = [r.id for r in client.iter_tasks(name="add", page_size=2)]
    assert [i for i in every if i in mine] == mine[::-1]


def test_list_filters_by_status(client: OffloadClient) -> None:
    failed = client.submit("fail", "listed")
    with pytest.raises(TaskFailed):
        failed.result(WAIT)
    page = client.list(status="failed", limit=1000)
    assert failed.id in [r.id for r in page.items]
    assert {r.status for r in page.items} == {Status.FAILED}
    both = client.list(status=[Status.FAILED, Status.CANCELLED], limit=1000)
    assert {r.status for r in both.items} <= {Status.FAILED, Status.CANCELLED}


def test_task_types_and_stats(client: OffloadClient) -> None:
    types = {t.name: t for t in client.task_types()}
    assert {"add", "count", "long_task", "sleep", "fail"} <= types.keys()
    assert types["add"].parameters["required"] == ["a", "b"]
    assert types["blocking_sleep"].executor == "thread"
    stats = client.stats()
    assert {"counts", "queue_depth", "running", "capacity"} <= stats.keys()


def test_422_carries_field_errors(client: OffloadClient) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        client.submit("add", 1, "two")
    error = caught.value
    assert isinstance(error, InvalidSubmissionError)
    assert error.status == 422
    assert error.title == "Unprocessable Content"  # RFC 9110's name, on every Python
    assert error.code == "invalid-submission"
    assert [e.field for e in error.errors] == ["args.1"]
    assert "integer" in error.errors[0].message


def test_unknown_task_type(client: OffloadClient) -> None:
    with pytest.raises(UnknownTaskType) as caught:
        client.submit("no_such_task")
    assert isinstance(caught.value, UnknownTaskTypeError)
    assert caught.value.name == "no_such_task"
    assert [e.field for e in caught.value.errors] == ["name"]


def test_404_is_the_library_task_not_found(client: OffloadClient) -> None:
    with pytest.raises(TaskNotFound) as caught:
        client.get(MISSING_ID)
    assert isinstance(caught.value, TaskNotFoundError)
    assert caught.value.status == 404
    assert caught.value.detail == "no task with this id"
    with pytest.raises(TaskNotFound):
        client.get("not/an id?x=1")  # quoted into one path segment: an id, never a route
    with pytest.raises(TaskNotFound):
        list(client.task_events(MISSING_ID))


def test_409s(client: OffloadClient, tmp_path: Path) -> None:
    done = client.submit("add", 1, 2)
    done.wait(WAIT)
    with pytest.raises(TaskAlreadyTerminal) as terminal:
        done.cancel()
    assert isinstance(terminal.value, ApiError)
    assert terminal.value.status == 409
    held = client.submit("journal_run", "active", 60.0, str(tmp_path / "gate"))
    with pytest.raises(TaskStillActive):
        held.delete()
    held.cancel()


def test_idempotency_key_returns_the_first_task(client: OffloadClient) -> None:
    first = client.submit_with("add", [1, 2], idempotency_key="client-test-key")
    second = client.submit_with("add", [1, 2], idempotency_key="client-test-key")
    assert second.id == first.id
    with pytest.raises(ApiError) as caught:
        client.submit_with("add", [2, 2], idempotency_key="client-test-key")
    assert caught.value.status == 422
    assert caught.value.code == "idempotency-conflict"


def test_a_bad_wait_is_a_400(client: OffloadClient) -> None:
    handle = client.submit("add", 1, 2)
    with pytest.raises(ApiError) as caught:
        client.get_record(handle.id, wait=61)
    assert caught.value.status == 400


def test_connections_are_reused(client: OffloadClient) -> None:
    handle = client.submit("add", 1, 2)
    for _ in range(5):
        handle.refresh()
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1


def test_url_and_token_come_from_the_environment(server: Server,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_URL", server.base_url + "/")
    with OffloadClient() as client:
        assert client.url == server.base_url
        assert client.submit("add", 2, 2).result(WAIT) == 4
    with OffloadClient("http://127.0.0.1:1") as other:  # an argument wins
        assert other.url == "http://127.0.0.1:1"


def test_the_default_url_is_where_make_run_serves() -> None:
    with OffloadClient() as client:
        assert client.url == "http://127.0.0.1:8000"


def test_nobody_listening_is_connection_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with OffloadClient(url) as client, pytest.raises(ConnectionFailed, match="cannot reach"):
        client.submit("add", 1, 2)


def test_a_url_without_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OffloadClient("127.0.0.1:8000")


def test_depends_on_waits_for_the_dependency(client: OffloadClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = client.submit("journal_run", "client-dep", 60.0, str(gate))
    then = client.submit_with("add", [1, 2], depends_on=[first.id])
    assert then.status is Status.WAITING
    assert then.record.depends_on == [first.id]
    gate.touch()
    assert then.result(WAIT) == 3


def test_every_submission_carries_its_own_idempotency_key(client: OffloadClient) -> None:
    """So that a submission retried after a lost answer (a 503) finds its first task."""
    keys: list[str | None] = []
    client._http.event_hooks["request"].append(  # type: ignore[attr-defined]
        lambda request: keys.append(request.headers.get("Idempotency-Key")))
    first = client.submit("add", 1, 2)
    second = client.submit("add", 1, 2)
    assert first.id != second.id
    assert keys[0] is not None
    assert keys[0].startswith("offload-client-")
    assert keys[0] != keys[1]

    resent = client.submit_with("add", [1, 2], idempotency_key=keys[0])  # as a retry sends it

    assert resent.id == first.id
