"""Clients generated from the running service's ``/openapi.json``, as an API consumer makes
them: openapi-python-client (pinned in the dev extra) writes a Python package, which is
imported module by module and used to submit ``add(a=2, b=3)``, wait for it and read 5
(and, with tokens set, to be refused without one and served with one); openapi-typescript
(pinned, installed with npm into a cache folder) writes TypeScript types that ``tsc``
compiles together with a little code that uses them.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .conftest import E2E_MODULES
from .helpers import WAIT
from .server import Server, finish, start

pytestmark = pytest.mark.e2e

PYTHON_GENERATOR = "0.29.1"  # openapi-python-client; the dev extra pins the same
OPENAPI_TYPESCRIPT = "7.13.0"
TYPESCRIPT = "5.9.3"
TOKEN = "generated-client-token"
GENERATE_TIMEOUT = 120  # seconds
NPM_TIMEOUT = 300


@pytest.fixture(scope="module")
def mode() -> str:
    """The embedded server only (conftest.py's ``server`` runs the modules about the HTTP
    contract in Celery mode too; this one is about clients generated from the OpenAPI
    document)."""
    return "embedded"


def fetch_document(server: Server, folder: Path) -> Path:
    response = httpx.get(f"{server.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    path = folder / "openapi.json"
    path.write_text(json.dumps(response.json()), encoding="utf-8")
    return path


def generate_python_client(server: Server, folder: Path) -> str:
    """Generate a client package into ``folder`` (a name of its own, so that no earlier
    import stands in for it) and return its name."""
    package = f"offload_generated_{uuid.uuid4().hex[:8]}"
    config = folder / "generator.json"  # YAML's superset: JSON
    config.write_text(json.dumps({"project_name_override": package,
                                  "package_name_override": package, "post_hooks": []}))
    done = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate",
         "--path", str(fetch_document(server, folder)), "--output-path",
         str(folder / package), "--config", str(config), "--meta", "none"],
        capture_output=True, text=True, timeout=GENERATE_TIMEOUT, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "warning" not in output.lower(), output  # nothing left out of the client
    return package


@pytest.fixture
def import_generated(tmp_path: Path) -> Iterator[Any]:
    """Generate a client from a server's document and import every module of it; the
    modules are forgotten again at the end."""
    packages: list[str] = []

    def generate_and_import(server: Server) -> dict[str, ModuleType]:
        package = generate_python_client(server, tmp_path)
        packages.append(package)
        root = importlib.import_module(package)
        modules = {package: root}
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            modules[info.name] = importlib.import_module(info.name)
        return modules

    sys.path.insert(0, str(tmp_path))
    try:
        yield generate_and_import
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[name]


def test_a_generated_python_client_submits_add_waits_and_reads_5(
    server: Server, import_generated: Any,
) -> None:
    modules = import_generated(server)
    package = min(modules, key=len)
    api = f"{package}.api.default"
    submit_task, get_task = modules[f"{api}.submit_task"], modules[f"{api}.get_task"]
    models = modules[f"{package}.models"]

    assert {f"{api}.{name}" for name in (
        "submit_task", "submit_batch", "get_task", "list_tasks", "cancel_task", "delete_task",
        "task_events", "list_task_types", "get_stats", "get_metrics", "check_liveness",
        "check_readiness")} <= modules.keys()
    arguments = models.AddParameters(a=2, b=3)  # each task type's parameters: a model
    body = models.Submission(name=models.SubmissionName.ADD,
                             kwargs=models.SubmissionKwargs.from_dict(arguments.to_dict()))
    with modules[package].Client(base_url=server.base_url, timeout=httpx.Timeout(60)) as client:
        submitted = submit_task.sync_detailed(client=client, body=body)
        assert submitted.status_code == 202, submitted.content
        task = get_task.sync(submitted.parsed.id, client=client, wait=WAIT)
        wrong = submit_task.sync(client=client, body=models.Submission(
            name=models.SubmissionName.ADD,
            kwargs=models.SubmissionKwargs.from_dict({"a": 2})))

    assert isinstance(task, models.TaskOut)
    assert task.status == models.TaskOutStatus.SUCCEEDED
    assert task.result == 5
    assert isinstance(wrong, models.Problem)  # the documented 422, parsed
    assert wrong.status == 422
    assert [e.field for e in wrong.errors] == ["kwargs.b"]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start(tmp_path_factory.mktemp("secured"), OFFLOAD_TASK_MODULES=E2E_MODULES,
                    OFFLOAD_API_TOKENS=TOKEN, OFFLOAD_SHUTDOWN_GRACE="2")
    try:
        yield running
    finally:
        finish(running)


def test_with_tokens_the_generated_client_sends_its_bearer_token(
    secured: Server, import_generated: Any,
) -> None:
    modules = import_generated(secured)
    package = min(modules, key=len)
    submit_task = modules[f"{package}.api.default.submit_task"]
    get_task = modules[f"{package}.api.default.get_task"]
    models = modules[f"{package}.models"]
    body = models.Submission(name=models.SubmissionName.ADD,
                             kwargs=models.SubmissionKwargs.from_dict({"a": 2, "b": 3}))

    with modules[package].Client(base_url=secured.base_url) as anonymous:
        refused = submit_task.sync_detailed(client=anonymous, body=body)
    with modules[package].AuthenticatedClient(base_url=secured.base_url, token=TOKEN,
                                              timeout=httpx.Timeout(60)) as client:
        task = submit_task.sync(client=client, body=body)
        done = get_task.sync(task.id, client=client, wait=WAIT)

    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.Problem)
    assert done.result == 5


# -- TypeScript ---------------------------------------------------------------------------

USE_THE_TYPES = """
import type { components, operations } from "./offload";

type Submission = components["schemas"]["Submission"];
const body: Submission = { name: "add", kwargs: { a: 2, b: 3 } };
// @ts-expect-error: not a registered task type
const unknown: Submission = { name: "no_such_task" };
const add: components["schemas"]["AddParameters"] = { a: 2, b: 3 };
// @ts-expect-error: b is missing
const half: components["schemas"]["AddParameters"] = { a: 2 };
type Accepted = operations["submitTask"]["responses"][202]["content"]["application/json"];
const status: Accepted["status"] = "succeeded";
export { body, unknown, add, half, status };
"""


def npm_tools() -> Path:
    """openapi-typescript and TypeScript, pinned, installed once into a cache folder."""
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm is not on this machine, and CI has it: install Node.js")
        pytest.skip("npm is not on this machine")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tools = cache / "offload-tests" / f"openapi-typescript-{OPENAPI_TYPESCRIPT}-ts-{TYPESCRIPT}"
    if not (tools / "installed").exists():
        shutil.rmtree(tools, ignore_errors=True)  # what an interrupted install left
        tools.mkdir(parents=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(tools), "--no-audit", "--no-fund",
             "--loglevel=error", f"openapi-typescript@{OPENAPI_TYPESCRIPT}",
             f"typescript@{TYPESCRIPT}"],
            capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        (tools / "installed").touch()
    return tools / "node_modules" / ".bin"


def run(command: list[str | Path], cwd: Path) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=GENERATE_TIMEOUT, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_openapi_typescript_makes_types_that_compile(server: Server, tmp_path: Path) -> None:
    tools = npm_tools()
    document = fetch_document(server, tmp_path)

    run([tools / "openapi-typescript", document, "--output", tmp_path / "offload.d.ts"],
        tmp_path)
    (tmp_path / "use.ts").write_text(USE_THE_TYPES, encoding="utf-8")
    run([tools / "tsc", "--noEmit", "--strict", "use.ts"], tmp_path)

    types = (tmp_path / "offload.d.ts").read_text(encoding="utf-8")
    assert "submitTask: {" in types
    assert "AddParameters: {" in types
