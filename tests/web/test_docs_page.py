"""``/docs`` works offline: Swagger UI is served from the package (vendored, with its
license), the page loads nothing from another host and runs no inline script, and says so
with a Content-Security-Policy; the same under an embedding app's prefix. The wheel carries
the files. tests/browser/test_docs_page.py renders the page in Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service import Offload
from service.web.docs import SWAGGER_UI_FILES, SWAGGER_UI_VERSION

from ..conftest import settings

REPO = Path(__file__).resolve().parents[2]
VENDORED = {"swagger-ui-bundle.js", "swagger-ui.css", "offload-docs.js", "LICENSE", "NOTICE",
            "swagger-ui-bundle.js.LICENSE.txt"}
CONTENT_TYPES = {".js": {"text/javascript", "application/javascript"}, ".css": {"text/css"}}


class Page(HTMLParser):
    """What a page loads (``src``, ``href``) and the text of its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.loads += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def policy(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


async def assert_offline_page(client: Client, page_path: str) -> None:
    response = await client.get(page_path)
    text = await response.get_data(as_text=True)
    page = Page()
    page.feed(text)
    csp = policy(response.headers["Content-Security-Policy"])

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "http://" not in text
    assert "https://" not in text
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["default-src"] == ["'none'"]
    assert page.scripts
    assert all(s.strip() == "" for s in page.scripts)
    assets = [urljoin(page_path, url) for url in page.loads if not url.startswith("data:")]
    assert {a.rsplit("/", 1)[1] for a in assets} == {
        "swagger-ui.css", "swagger-ui-bundle.js", "offload-docs.js"}
    for asset in assets:
        answer = await client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.mimetype in CONTENT_TYPES[Path(asset).suffix], asset
        assert await answer.get_data() == (SWAGGER_UI_FILES / Path(asset).name).read_bytes()


async def test_the_docs_page_loads_only_its_own_files(client: Client) -> None:
    await assert_offline_page(client, "/docs")


async def test_under_an_embedding_apps_prefix_too() -> None:
    app = Quart("host")
    Offload(app, settings=settings(task_modules=()))

    async with app.test_app() as started:
        client = started.test_client()
        await assert_offline_page(client, "/offload/docs")
        spec = await (await client.get("/offload/openapi.json")).get_json()

    assert not [p for p in spec["paths"] if "/docs" in p]  # the page is not an operation


async def test_the_cdn_only_pages_of_quart_schema_are_gone(client: Client) -> None:
    for page in ("/redocs", "/scalar"):
        assert (await client.get(page)).status_code == 404, page


@pytest.mark.parametrize("path", ["../docs.py", "..%2Fdocs.py", "nope.js"])
async def test_nothing_else_is_served_from_there(client: Client, path: str) -> None:
    assert (await client.get(f"/docs/swagger-ui/{path}")).status_code == 404


def test_the_vendored_swagger_ui_is_pinned_and_licensed() -> None:
    notice = (SWAGGER_UI_FILES / "NOTICE").read_text(encoding="utf-8")

    assert {p.name for p in SWAGGER_UI_FILES.iterdir()} == VENDORED
    assert f"swagger-ui-dist {SWAGGER_UI_VERSION}" in notice
    assert "Apache License" in (SWAGGER_UI_FILES / "LICENSE").read_text(encoding="utf-8")


def test_the_wheel_carries_the_docs_files(tmp_path: Path) -> None:
    """Built from a copy of the sources (nothing written into the work tree)."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "service", source / "service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
         str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    wheel, = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"service/web/static/swagger-ui/{name}" for name in VENDORED} <= names
