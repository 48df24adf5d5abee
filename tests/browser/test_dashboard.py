"""The dashboard in real headless Chromium against the real server: it loads clean under its
CSP, follows tasks live from GET /events (no reload, no polling), submits from the form made
from a task type's JSON Schema (422 errors by field), cancels and deletes, shows hostile task
data as text, and stays usable 375 px wide."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.server import Server

from .conftest import Watched, loaded, settled
from .proxy import CuttableProxy

pytestmark = pytest.mark.e2e
WAIT = {"wait": 20}  # seconds a ?wait= may hold
HOSTILE = ('<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
           "<b>bold</b> & </pre>")


def open_dashboard(watched: Watched, server: Server, fragment: str = "") -> Page:
    page = watched.page
    response = page.goto(f"{server.base_url}/{fragment}")
    assert response is not None
    assert response.status == 200
    expect(page.locator("#connection")).to_have_text("Live")
    loaded(page)
    return page


def submit(api: httpx.Client, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    response = api.post("/tasks", json={"name": name, "args": list(args), "kwargs": kwargs})
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


def finished(api: httpx.Client, task: dict[str, Any]) -> dict[str, Any]:
    done: dict[str, Any] = api.get(f"/tasks/{task['id']}", params=WAIT).json()
    assert done["status"] in {"succeeded", "failed", "cancelled"}, done
    return done


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#task-rows tr[data-task-id="{task_id}"]')


def wait_midway(page: Page, bar: Locator, total: int) -> None:
    """Until the progress bar shows some of ``total`` steps done, not all."""
    page.wait_for_function(
        "([bar, total]) => bar.max === total && bar.value > 0 && bar.value < total",
        arg=[bar.element_handle(), total])


def test_the_page_loads_live_from_its_own_origin_with_no_console_errors(
        server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = watched.page
    response = page.goto(f"{server.base_url}/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#task-type option")).not_to_have_count(0)

    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "default-src 'self'" in csp
    assert page.get_by_role("heading", level=1).inner_text() == "Offload"
    for region in ("Overview", "Throughput", "Tasks", "Submit a task"):
        expect(page.get_by_role("region", name=region)).to_be_visible()
    assert all(url.startswith(f"{server.base_url}/") for url in watched.requests), (
        watched.requests)
    events = [url for url in watched.requests if url.endswith("/events")]
    assert events == [f"{server.base_url}/events"]
    watched.assert_clean()


def test_a_task_submitted_through_the_form_appears_and_its_progress_moves_to_done(
        server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    page.evaluate("window.__sameDocument = true")
    form = page.get_by_role("region", name="Submit a task")
    form.get_by_label("Task type").select_option("count")
    form.locator("input[name=n]").fill("6")
    form.locator("input[name=delay]").fill("0.4")
    form.get_by_role("button", name="Submit").click()

    link = form.locator("#submit-result a")
    expect(link).to_be_visible()
    task_id = (link.get_attribute("href") or "").removeprefix("#task/")
    task_row = row(page, task_id)
    expect(task_row).to_be_visible()
    bar = task_row.locator("progress")
    wait_midway(page, bar, 6)
    expect(task_row.locator(".badge")).to_have_text("succeeded")

    assert bar.evaluate("bar => [bar.value, bar.max]") == [1, 1]
    expect(task_row.locator(".progress-text")).to_have_text("done")
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    watched.assert_clean()


def test_the_detail_view_follows_a_task_and_shows_its_arguments_and_result(
        server: Server, api: httpx.Client, make_page: Any) -> None:
    task = submit(api, "count", 5, delay=0.4)
    watched: Watched = make_page()
    page = open_dashboard(watched, server, f"#task/{task['id']}")
    detail = page.get_by_role("dialog", name="Task count")
    expect(detail).to_be_visible()
    wait_midway(page, detail.locator("progress"), 5)
    expect(detail.locator(".badge")).to_have_text("succeeded")

    body = detail.locator("#detail-body")
    expect(body.locator("pre").nth(0)).to_have_text(re.compile(r"^\[\s*5\s*\]$"))
    expect(body.locator("pre").nth(1)).to_contain_text('"delay": 0.4')
    expect(body.get_by_role("heading", name="Result")).to_be_visible()
    expect(body.locator("pre").nth(2)).to_have_text("5")
    expect(body.locator("dd", has_text="1 of 1")).to_be_visible()
    assert detail.get_by_role("button", name="Delete task").is_visible()
    assert not detail.get_by_role("button", name="Cancel task").is_visible()
    detail.get_by_role("button", name="Close").click()
    expect(detail).to_be_hidden()
    watched.assert_clean()


def test_the_apis_422_errors_show_next_to_their_fields(server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    form = page.get_by_role("region", name="Submit a task")
    form.get_by_label("Task type").select_option("add")
    form.locator("input[name=a]").fill("not a number")
    form.get_by_role("button", name="Submit").click()

    a_error = form.locator("#param-0-error")
    expect(a_error).to_contain_text("valid integer")
    expect(form.locator("#param-1-error")).to_contain_text("required")
    assert form.locator("input[name=a]").get_attribute("aria-invalid") == "true"
    assert "param-0-error" in (form.locator("input[name=a]").get_attribute(
        "aria-describedby") or "")
    expect(form.locator("#submit-result")).to_be_empty()
    watched.assert_clean(422)


def test_cancel_stops_an_active_task(server: Server, api: httpx.Client, make_page: Any) -> None:
    task = submit(api, "sleep", 60)
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    task_row = row(page, task["id"])
    expect(task_row.locator(".badge")).to_have_text("running")
    task_row.get_by_role("button", name=re.compile("^Cancel sleep")).click()

    expect(task_row.locator(".badge")).to_have_text("cancelled")
    expect(task_row.get_by_role("button", name=re.compile("^Delete sleep"))).to_be_visible()
    assert finished(api, task)["status"] == "cancelled"
    watched.assert_clean()


def test_delete_forgets_a_finished_task(server: Server, api: httpx.Client,
                                        make_page: Any) -> None:
    task = finished(api, submit(api, "add", 2, 3))
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    task_row = row(page, task["id"])
    expect(task_row.locator(".badge")).to_have_text("succeeded")
    task_row.get_by_role("button", name=re.compile("^Delete add")).click()

    expect(task_row).to_have_count(0)
    assert api.get(f"/tasks/{task['id']}").status_code == 404
    watched.assert_clean()


def test_hostile_task_data_shows_as_text_and_runs_nothing(
        server: Server, api: httpx.Client, make_page: Any) -> None:
    echoed = finished(api, submit(api, "echo", HOSTILE))
    failed = finished(api, submit(api, "fail", HOSTILE))
    watched: Watched = make_page()
    page = open_dashboard(watched, server, f"#task/{echoed['id']}")
    detail = page.get_by_role("dialog", name="Task echo")
    body = detail.locator("#detail-body")
    expect(body.locator("pre").nth(2)).to_have_text(json.dumps(HOSTILE))
    expect(body.locator("pre").nth(0)).to_contain_text("<script>window.__pwned = 1</script>")
    detail.get_by_role("button", name="Close").click()
    page.locator(f'a[href="#task/{failed["id"]}"]').click()
    error = page.get_by_role("dialog", name="Task fail").locator(".error-text")
    expect(error).to_have_text(f"RuntimeError: {HOSTILE}")

    assert page.locator("#detail-body script, #detail-body img, #detail-body b").count() == 0
    assert page.locator("#task-rows script, #task-rows img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert not [url for url in watched.requests if url.endswith("/x")]
    watched.assert_clean()


def test_the_page_is_usable_375_px_wide(server: Server, api: httpx.Client,
                                        make_page: Any) -> None:
    finished(api, submit(api, "fail", "a long message " * 20))
    watched: Watched = make_page(width=375, height=740)
    page = open_dashboard(watched, server)
    expect(page.locator("#task-rows tr").first).to_be_visible()
    form = page.get_by_role("region", name="Submit a task")
    form.get_by_label("Task type").select_option("add")
    form.locator("input[name=a]").fill("2")
    form.locator("input[name=b]").fill("3")
    button = form.get_by_role("button", name="Submit")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    button.click()
    link = form.locator("#submit-result a")
    expect(link).to_be_visible()
    task_id = (link.get_attribute("href") or "").removeprefix("#task/")
    expect(row(page, task_id).locator(".badge")).to_have_text("succeeded")

    overflow = page.evaluate("document.documentElement.scrollWidth"
                             " - document.documentElement.clientWidth")
    assert overflow == 0
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 375
    watched.assert_clean()


def test_the_event_stream_parser_reads_events_split_anywhere(
        server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    parsed = page.evaluate("""async () => {
      const { EventStreamParser } = await import(new URL("dashboard/sse.js", document.baseURI));
      const events = [];
      const parser = new EventStreamParser((event) => events.push(event));
      for (const chunk of ["retry: 1500\\r", "\\n: keep-alive\\r\\n\\r\\nid: 7\\nevent: st",
                           "atus\\ndata: {\\"a\\"", ":1}\\r", "\\n\\r", "\\ndata: x\\ndata:y\\n\\n",
                           "event: reset\\ndata: {}\\n\\nevent: empty\\n\\n"]) parser.push(chunk);
      return { events, retry: parser.retry, last: parser.lastEventId };
    }""")

    assert parsed == {
        "events": [{"type": "status", "data": '{"a":1}', "id": "7"},
                   {"type": "message", "data": "x\ny", "id": "7"},
                   {"type": "reset", "data": "{}", "id": "7"}],
        "retry": 1500, "last": "7"}
    watched.assert_clean()


def test_a_broken_feed_reconnects_and_resumes_with_last_event_id(
        server: Server, api: httpx.Client, make_page: Any) -> None:
    proxy = CuttableProxy(server.port)
    try:
        watched: Watched = make_page()
        page = watched.page
        feed_requests: list[dict[str, str]] = []
        page.on("request", lambda request: feed_requests.append(request.all_headers())
                if request.url.endswith("/events") else None)
        page.goto(f"{proxy.base_url}/")
        expect(page.locator("#connection")).to_have_text("Live")
        loaded(page)  # a cut in the middle of the first read would make the page read again
        before = finished(api, submit(api, "add", 1, 1))
        expect(row(page, before["id"]).locator(".badge")).to_have_text("succeeded")

        proxy.cut()
        expect(page.locator("#connection")).not_to_have_text("Live")
        during = finished(api, submit(api, "add", 2, 2))  # while the page is cut off
        proxy.resume()
        expect(page.locator("#connection")).to_have_text("Live")
        expect(row(page, during["id"]).locator(".badge")).to_have_text("succeeded")
    finally:
        proxy.close()

    assert len(feed_requests) >= 2
    assert "last-event-id" not in feed_requests[0]
    assert feed_requests[-1]["last-event-id"]
    # resumed from the server's buffer: no `reset`, so the page read the tasks only at first
    # (its table's page and the chart's finished tasks)
    assert len([url for url in watched.requests if "/tasks?" in url]) == 2
    watched.assert_clean(network_errors=True)


def shown_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("#task-rows tr").evaluate_all(
        "rows => rows.map(row => row.dataset.taskId)")
    return ids


def test_the_table_filters_by_status_and_name_and_pages_with_the_cursor(
        server: Server, api: httpx.Client, make_page: Any) -> None:
    batch = api.post("/tasks/batch", json={"tasks": [
        {"name": "echo", "args": [f"page test {n}"]} for n in range(25)]})
    assert batch.status_code == 202, batch.text
    for task in batch.json()["items"]:
        finished(api, task)
    failed = finished(api, submit(api, "fail", "for the filter"))
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    tasks = page.get_by_role("region", name="Tasks")

    tasks.get_by_label("Task type").select_option("echo")
    settled(page)
    expect(page.locator("#task-rows tr")).to_have_count(20)
    first_page = shown_ids(page)
    tasks.get_by_role("button", name="Older").click()
    expect(page.locator("#page-label")).to_have_text("Page 2")
    settled(page)
    second_page = shown_ids(page)
    tasks.get_by_role("button", name="Newer").click()
    expect(page.locator("#page-label")).to_have_text("Page 1")
    settled(page)
    assert shown_ids(page) == first_page
    assert not set(first_page) & set(second_page)
    assert {task["id"] for task in batch.json()["items"]} <= {*first_page, *second_page}
    names = page.locator("#task-rows td.name a").all_inner_texts()
    assert set(names) == {"echo"}

    tasks.get_by_label("Task type").select_option("")
    tasks.get_by_label("Status").select_option("failed")  # before the first answer is in
    settled(page)
    expect(row(page, failed["id"])).to_be_visible()
    statuses = page.locator("#task-rows tr").evaluate_all(
        "rows => rows.map(row => row.dataset.status)")
    assert set(statuses) == {"failed"}
    watched.assert_clean()


def test_statuses_a_newer_service_counts_are_learnt_in_its_order(
        server: Server, make_page: Any) -> None:
    watched: Watched = make_page()
    page = open_dashboard(watched, server)
    learnt = page.evaluate("""async () => {
      const format = await import(new URL("dashboard/format.js", document.baseURI));
      const known = [...format.STATUSES];
      const names = ["paused", ...known];  // a status no service has today
      const changed = [format.learnStatuses(names), format.learnStatuses(names)];
      return { known, changed, statuses: [...format.STATUSES], active: [...format.ACTIVE],
               pausedIsActive: format.ACTIVE.has("paused") };
    }""")

    known = learnt["known"]
    assert {"queued", "running", "succeeded", "failed", "cancelled"} <= set(known)
    assert learnt["changed"] == [True, False]
    assert learnt["statuses"] == ["paused", *known]
    assert learnt["active"] == ["paused", *[s for s in known
                                            if s not in {"succeeded", "failed", "cancelled"}]]
    assert learnt["pausedIsActive"] is True
    watched.assert_clean()
