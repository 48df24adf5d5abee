"""The README, run as it stands: every code block says how it is checked, in an HTML comment
on the line before it (``<!-- readme: KIND ARGS -->``), and is checked that way, so the
README cannot drift from the code.

Kinds: ``make`` (each line, as ``make -n``), ``shell`` (bash against a real server; the
README's ``127.0.0.1:8000`` becomes that server's address), ``file NAME`` (written for the
blocks after it), ``pytest NAME`` (written, then pytest runs it in a process of its own),
``python`` (run in a process of its own), ``same-as PATH`` (the file another test runs),
``fragment NAME`` (run inside the setting that
``FRAGMENTS`` gives it), ``json task`` and ``json problem of BODY`` (compared with a real
answer).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart

from service import Offload, Settings
from service.settings import setting_names

from .server import REPO, Server

README = REPO / "README.md"
DIRECTIVE = re.compile(r"^<!-- readme: (\S+)(?: ([^\n]*?))? -->\n```(\w*)\n(.*?)^```$",
                       re.DOTALL | re.MULTILINE)
FENCE = re.compile(r"^```\w*$", re.MULTILINE)
RUN_LIMIT = 120  # seconds a block may run: a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def mode() -> str:
    """The embedded server only (conftest.py's ``server`` runs the modules about the HTTP
    contract in Celery mode too; this one is about the README's blocks)."""
    return "embedded"


@dataclass(frozen=True)
class Block:
    kind: str
    args: str
    language: str
    code: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.args}".strip() + ": " + self.code.splitlines()[0][:60]


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    found = [Block(kind, args or "", language, code)
             for kind, args, language, code in DIRECTIVE.findall(text)]
    # Fences come in pairs: each opening fence must be one that a directive introduced.
    assert len(FENCE.findall(text)) == 2 * len(found), "a README code block has no directive"
    return found


def of_kind(kind: str) -> list[Block]:
    return [block for block in blocks() if block.kind == kind]


def run(command: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=RUN_LIMIT,
                          check=False, **kwargs)


def test_every_block_is_of_a_known_kind() -> None:
    known = {"make", "shell", "file", "pytest", "python", "fragment", "json", "same-as"}
    assert {block.kind for block in blocks()} <= known
    assert len(blocks()) >= 10


# -- make ---------------------------------------------------------------------------------------

def make_lines() -> Iterator[list[str]]:
    for block in of_kind("make"):
        for line in block.code.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                yield shlex.split(command)


@pytest.mark.parametrize("command", list(make_lines()), ids=" ".join)
def test_make_commands_do_what_the_readme_says(command: list[str]) -> None:
    assert command[0] == "make"
    done = run(["make", "-n", *command[1:]], REPO)
    assert done.returncode == 0, done.stderr
    settings = dict(arg.split("=", 1) for arg in command[2:])
    if command[1] == "run":
        assert "-m service --workers " + settings.get("WORKERS", "1") in done.stdout
    if command[1] == "test":
        assert "pytest" in done.stdout
    if settings.get("STORE") == "sqlite":
        assert "OFFLOAD_STORE=sqlite:///offload.db" in done.stdout
    elif "STORE" in settings:
        assert f"OFFLOAD_STORE={settings['STORE']} " in done.stdout
    extra = ("celery" if "OFFLOAD_CELERY_BROKER" in settings
             else "redis" if settings.get("STORE", "").startswith("redis://") else None)
    if extra is not None:  # installed with `make run`, unless it already was
        assert f"[{extra}]" in done.stdout or (REPO / f".venv/.installed-run-{extra}").exists()
    if "VENV" in settings:
        assert f"{settings['VENV']}/bin/python -m service" in done.stdout


# -- blocks run against the real server ---------------------------------------------------------

@pytest.mark.parametrize("block", of_kind("same-as"), ids=lambda b: b.label)
def test_blocks_are_the_files_other_tests_run(block: Block) -> None:
    assert block.code == (REPO / block.args).read_text(encoding="utf-8")


@pytest.mark.parametrize("block", of_kind("shell"), ids=lambda b: b.label)
def test_shell_blocks_run_as_pasted(block: Block, server: Server, tmp_path: Path) -> None:
    script = block.code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    # As in a shell where `make run` serves and the venv is active: the `offload` command
    # on the PATH, talking to that server.
    env = {**os.environ, "OFFLOAD_URL": server.base_url,
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("OFFLOAD_TOKEN", None)
    done = run(["bash", "-euo", "pipefail", "-c", script], tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\"code\":" not in done.stdout, done.stdout  # no problem answer anywhere
    expected = re.fullmatch(r'expect="(.*)"', block.args)
    assert expected is not None, "a shell block says what its output must show"
    assert re.search(expected.group(1), done.stdout, re.MULTILINE), done.stdout


def test_the_task_shown_has_the_fields_of_a_real_one(server: Server) -> None:
    [shown] = [json.loads(b.code) for b in of_kind("json") if b.args == "task"]
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        task = http.post("/tasks", json={"name": "count", "args": [5]}).json()
        assert shown.keys() == task.keys()
        assert shown["progress"].keys() == {"current", "total", "message"}
        assert http.get(f"/tasks/{shown['id']}").json()["code"] == "task-not-found"


def test_the_problem_shown_is_the_real_answer(server: Server) -> None:
    [block] = [b for b in of_kind("json") if b.args.startswith("problem of ")]
    body = json.loads(block.args.removeprefix("problem of "))
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        answer = http.post("/tasks", json=body)
    assert answer.json() == json.loads(block.code)


# -- Python blocks -------------------------------------------------------------------------------

def written_files(tmp_path: Path) -> None:
    for block in of_kind("file"):
        (tmp_path / block.args).write_text(block.code, encoding="utf-8")


def python_env(tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": str(Path(sys.executable).parent),
            "HOME": str(tmp_path)}


@pytest.mark.parametrize("block", of_kind("pytest"), ids=lambda b: b.label)
def test_pytest_blocks_pass(block: Block, tmp_path: Path) -> None:
    written_files(tmp_path)
    (tmp_path / block.args).write_text(block.code, encoding="utf-8")
    tests = block.code.count("\nasync def test_") + block.code.count("\ndef test_")

    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
                block.args], tmp_path, env=python_env(tmp_path))

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"\b{tests} passed\b", done.stdout), done.stdout


@pytest.mark.parametrize("block", of_kind("python"), ids=lambda b: b.label)
def test_python_blocks_run(block: Block, tmp_path: Path) -> None:
    written_files(tmp_path)
    done = run([sys.executable, "-c", block.code], tmp_path, env=python_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr


async def _blocking_tutorial(code: str) -> None:
    app = Quart(__name__)
    namespace: dict[str, Any] = {"app": app, "long_task": lambda: "done"}
    exec(code, namespace)
    response = await app.test_client().get("/process")
    assert await response.get_data(as_text=True) == "Result: done"


async def _offload_tutorial(code: str) -> None:
    app = Quart(__name__)
    offload = Offload(app, settings=Settings())

    @offload.task
    async def long_task() -> str:
        return "done"

    exec(code, {"app": app, "long_task": long_task})
    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/process")
        assert response.status_code == 202
        started = await response.get_json()
        assert started["status"] == "queued"
        done = await offload.service.handle(started["task_id"]).result(timeout=5)
    assert done == "done"


FRAGMENTS = {"blocking": _blocking_tutorial, "offload": _offload_tutorial}


@pytest.mark.parametrize("block", of_kind("fragment"), ids=lambda b: b.label)
def test_fragments_run_in_their_setting(block: Block) -> None:
    asyncio.run(FRAGMENTS[block.args](block.code))


# -- what the README lists ----------------------------------------------------------------------

def test_the_configuration_table_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(OFFLOAD_\w+)` \|", table, re.MULTILINE))
    assert listed == set(setting_names())


def test_no_word_for_those_who_wrote_it() -> None:
    text = README.read_text(encoding="utf-8")
    # No "SPEC" (a document users never see), no benchmark bar (B1, B9a…) or bars table.
    text = text.replace("progress bar", "progress")
    assert not re.search(r"\bSPEC\b|\bB\d{1,2}[a-z]?\b|\bbars?\b", text)
