"""The ``offload`` command, run as a user runs it (a subprocess), against a real server:
every exit code, text and JSON output, ``watch``'s progress bar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.cli.parser import json_or_string, parse_args
from service.client import OffloadClient
from service.models import Status

from ..e2e.server import REPO, Server, free_port
from .conftest import TOKENS, WAIT

RUN_LIMIT = 60  # seconds: a hung command fails its test instead of blocking the suite
OK, FAILED, USAGE, CANCELLED = 0, 1, 2, 3


def offload(*args: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m service.cli`` with ``args`` (after ``--url url`` if given), in an
    environment without the caller's OFFLOAD_* variables plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    environ.update(env, COLUMNS="120")
    command = [sys.executable, "-m", "service.cli", *(["--url", url] if url else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT,
                          env=environ, cwd=REPO, stdin=subprocess.DEVNULL)


def json_out(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def submitted_id(server: Server, *args: str) -> str:
    done = offload("--json", "submit", *args, url=server.base_url)
    assert done.returncode == OK, done.stderr
    task_id: str = json_out(done)["id"]
    return task_id


def test_submit_wait_succeeded_is_0(server: Server) -> None:
    done = offload("submit", "add", "--arg", "a=2", "--arg", "b=3", "--wait",
                   url=server.base_url)
    assert done.returncode == OK, done.stderr
    assert "succeeded" in done.stdout
    assert "result    5" in done.stdout


def test_submit_prints_the_id_at_once(server: Server) -> None:
    done = offload("submit", "sleep", "--arg", "seconds=60", url=server.base_url)
    assert done.returncode == OK, done.stderr
    line = done.stdout.splitlines()[0]
    assert line.startswith("submitted sleep ")
    task_id = line.split()[2]
    with OffloadClient(server.base_url) as client:
        handle = client.get(task_id)
        assert not handle.ready()  # --wait was not given: the command did not wait
        handle.cancel()


def test_json_output_and_json_arguments(server: Server) -> None:
    done = offload("--json", "submit", "add", "--json", '{"a": 1, "b": 2}', "--arg", "b=40",
                   "--wait", url=server.base_url)
    assert done.returncode == OK, done.stderr
    task = json_out(done)
    assert task["kwargs"] == {"a": 1, "b": 40}  # --arg wins over --json
    assert task["result"] == 41
    status = offload("status", task["id"], "--json", url=server.base_url)
    assert json_out(status)["status"] == "succeeded"


@pytest.mark.parametrize(("raw", "value"), [
    ("3", 3), ("2.5", 2.5), ("true", True), ("null", None), ("[1, 2]", [1, 2]),
    ('{"k": "v"}', {"k": "v"}), ('"3"', "3"), ("007", "007"), ("/tmp/x", "/tmp/x"),
    ("yes", "yes"), ("NaN", "NaN"), ("Infinity", "Infinity"), ("", ""), ("a=b", "a=b"),
])
def test_arg_values_are_json_when_they_parse_else_text(raw: str, value: Any) -> None:
    assert json_or_string(raw) == value


DASHED = "-" + "a" * 23  # an id made before ids stopped starting with "-"


@pytest.mark.parametrize("argv", [
    ["watch", DASHED], ["watch", DASHED, "--json"], ["--json", "cancel", DASHED],
    ["status", "--", DASHED], ["--url", "http://h:1", "status", DASHED],
])
def test_an_id_that_starts_with_a_dash_is_still_the_id(argv: list[str]) -> None:
    args = parse_args(argv)
    assert args.id == DASHED
    assert args.command in ("watch", "cancel", "status")


def test_a_dash_that_is_no_id_is_still_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["watch", "-x"])
    assert exited.value.code == USAGE


def test_a_text_argument_reaches_the_task_as_text(server: Server) -> None:
    done = offload("--json", "submit", "fail", "--arg", "message=not json, [bold]kept[/]",
                   "--wait", url=server.base_url)
    assert done.returncode == FAILED
    assert json_out(done)["error"]["message"] == "not json, [bold]kept[/]"


def test_a_failed_task_is_1_and_its_error_shows_as_text(server: Server) -> None:
    done = offload("submit", "fail", "--arg", "message=[red]boom", "--wait",
                   url=server.base_url)
    assert done.returncode == FAILED, done.stderr
    assert "RuntimeError: [red]boom" in done.stdout  # task data is never rich markup
    assert "failed" in done.stdout


def test_a_cancelled_task_is_3(server: Server) -> None:
    task_id = submitted_id(server, "sleep", "--arg", "seconds=60")
    cancel = offload("cancel", task_id, url=server.base_url)
    assert cancel.returncode == OK, cancel.stderr
    assert task_id in cancel.stdout
    watch = offload("watch", task_id, url=server.base_url)  # until it has ended
    assert watch.returncode == CANCELLED, watch.stderr
    assert "cancelled" in watch.stdout
    status = offload("status", task_id, url=server.base_url)
    assert status.returncode == CANCELLED
    again = offload("cancel", task_id, url=server.base_url)  # already ended: a 409
    assert again.returncode == USAGE
    assert "409" in again.stderr


def test_status_of_an_active_task_is_0(server: Server, tmp_path: Path) -> None:
    task_id = submitted_id(server, "journal_run", "--arg", "key=cli",
                           "--arg", "seconds=60", "--arg", f"gate={tmp_path / 'gate'}")
    done = offload("status", task_id, url=server.base_url)
    assert done.returncode == OK, done.stderr
    assert task_id in done.stdout
    (tmp_path / "gate").touch()
    with OffloadClient(server.base_url) as client:
        assert client.get(task_id).result(WAIT) == "cli"


def test_watch_draws_progress_to_the_end(server: Server) -> None:
    task_id = submitted_id(server, "count", "--arg", "n=5", "--arg", "delay=0.05")
    done = offload("watch", task_id, url=server.base_url)
    assert done.returncode == OK, done.stderr
    assert f"count {task_id} succeeded" in done.stdout
    bar = [line for line in done.stdout.splitlines() if "━" in line]
    assert bar, done.stdout
    assert "5/5" in bar[-1]
    assert "step 5 of 5" in bar[-1]
    assert "result 5" in done.stdout


def test_watch_json_is_one_line_per_event(server: Server) -> None:
    task_id = submitted_id(server, "count", "--arg", "n=3", "--arg", "delay=0.05")
    done = offload("--json", "watch", task_id, url=server.base_url)
    assert done.returncode == OK, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "status"
    assert events[-1]["task"]["status"] == "succeeded"
    assert events[-1]["task"]["progress"]["current"] == 3


def test_watch_of_a_failing_task_is_1(server: Server) -> None:
    task_id = submitted_id(server, "fail", "--arg", "message=watched")
    done = offload("watch", task_id, url=server.base_url)
    assert done.returncode == FAILED
    assert "RuntimeError: watched" in done.stdout


def test_ls_and_its_pages(server: Server) -> None:
    with OffloadClient(server.base_url) as client:
        mine = [client.submit("add", i, 1000).id for i in range(3)]
        for task_id in mine:
            client.get(task_id).wait(WAIT)
    page = offload("ls", "--name", "add", "--limit", "2", url=server.base_url)
    assert page.returncode == OK, page.stderr
    assert mine[2] in page.stdout  # newest first
    assert mine[1] in page.stdout
    assert "more: offload ls --cursor " in page.stdout
    cursor = page.stdout.split("--cursor ")[1].split()[0]
    after = offload("--json", "ls", "--name", "add", "--limit", "2", "--cursor", cursor,
                    url=server.base_url)
    assert mine[0] in [task["id"] for task in json_out(after)["items"]]
    every = json_out(offload("ls", "--all", "--name", "add", "--limit", "2", "--json",
                             url=server.base_url))
    assert [t["id"] for t in every["items"] if t["id"] in mine] == mine[::-1]
    assert every["next_cursor"] is None
    failed = json_out(offload("--json", "ls", "--status", "failed", url=server.base_url))
    assert {t["status"] for t in failed["items"]} <= {"failed"}


def test_types_and_stats(server: Server) -> None:
    types = offload("types", url=server.base_url)
    assert types.returncode == OK, types.stderr
    assert "a: integer, b: integer" in types.stdout
    names = [t["name"] for t in json_out(offload("--json", "types", url=server.base_url))
             ["items"]]
    assert {"add", "count", "long_task"} <= set(names)
    stats = offload("stats", "--json", url=server.base_url)
    assert "queue_depth" in json_out(stats)


def test_usage_errors_are_2(server: Server) -> None:
    for args in (["submit", "add", "--arg", "no-equals-sign"], ["frobnicate"], [],
                 ["submit", "add", "--json", "[1, 2]"], ["ls", "--status", "sleeping"]):
        done = offload(*args, url=server.base_url)
        assert done.returncode == USAGE, (args, done.stdout, done.stderr)
        assert "usage: offload" in done.stderr


def test_a_422_is_2_with_its_field_errors(server: Server) -> None:
    done = offload("submit", "add", "--arg", "a=x", url=server.base_url)
    assert done.returncode == USAGE
    assert "422" in done.stderr
    assert "kwargs.a" in done.stderr
    assert "kwargs.b" in done.stderr
    as_json = offload("--json", "submit", "add", "--arg", "a=x", url=server.base_url)
    problem = json.loads(as_json.stderr)
    assert problem["status"] == 422
    assert {e["field"] for e in problem["errors"]} == {"kwargs.a", "kwargs.b"}


def test_an_unknown_id_is_2(server: Server) -> None:
    done = offload("status", "D" * 24, url=server.base_url)
    assert done.returncode == USAGE
    assert "404" in done.stderr
    assert offload("watch", "D" * 24, url=server.base_url).returncode == USAGE


def test_no_service_is_2() -> None:
    done = offload("ls", url=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == USAGE
    assert "cannot reach the Offload service" in done.stderr
    assert offload("ls", url="127.0.0.1:8000").returncode == USAGE  # no scheme


def test_url_and_token_from_the_environment(token_server: Server) -> None:
    refused = offload("ls", OFFLOAD_URL=token_server.base_url)
    assert refused.returncode == USAGE
    assert "401" in refused.stderr
    done = offload("submit", "add", "--arg", "a=1", "--arg", "b=1", "--wait",
                   OFFLOAD_URL=token_server.base_url, OFFLOAD_TOKEN=TOKENS[0])
    assert done.returncode == OK, done.stderr
    wrong = offload("--token", "wrong", "ls", OFFLOAD_URL=token_server.base_url,
                    OFFLOAD_TOKEN=TOKENS[0])  # --token wins
    assert wrong.returncode == USAGE


def test_the_console_script_is_installed(server: Server) -> None:
    script = Path(sys.executable).with_name("offload")
    assert script.exists(), "reinstall the package (pip install -e '.[dev]') for `offload`"
    done = subprocess.run([str(script), "--url", server.base_url, "submit", "add", "--arg",
                           "a=1", "--arg", "b=2", "--wait", "--json"],
                          capture_output=True, text=True, timeout=RUN_LIMIT)
    assert done.returncode == OK, done.stderr
    assert Status(json_out(done)["status"]) is Status.SUCCEEDED
