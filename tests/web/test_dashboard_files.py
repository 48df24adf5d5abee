"""The dashboard's page and files over HTTP: a CSP that allows nothing inline, explicit media
types, nothing outside its folder, and no place in the OpenAPI document for its files."""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service.web.dashboard import STATIC

ASSETS = sorted(p.name for p in STATIC.iterdir() if p.suffix in {".js", ".css", ".svg"})


async def test_the_page_forbids_inline_script_and_style_and_other_origins(
        client: Client) -> None:
    response = await client.get("/")
    page = await response.get_data(as_text=True)

    csp = dict(part.strip().split(" ", 1)
               for part in response.headers["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["default-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page  # only <script type="module" src=…>
    assert " style=" not in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)  # nothing from elsewhere


@pytest.mark.parametrize("name", ASSETS)
async def test_each_file_is_served_with_its_media_type(client: Client, name: str) -> None:
    response = await client.get(f"/dashboard/{name}")

    assert response.status_code == 200
    expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    assert response.mimetype == expected[name[name.rindex("."):]]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-cache" in response.headers["Cache-Control"]


@pytest.mark.parametrize("path", ["/dashboard/index.html", "/dashboard/../dashboard.py",
                                  "/dashboard/%2e%2e/dashboard.py", "/dashboard/nope.js",
                                  "/dashboard/", "/dashboard/..%2fops.py"])
async def test_nothing_else_is_served(client: Client, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


async def test_the_files_are_not_in_the_api_document(client: Client) -> None:
    spec: dict[str, Any] = await (await client.get("/openapi.json")).get_json()

    assert "/" in spec["paths"]
    assert not [path for path in spec["paths"] if path.startswith("/dashboard")]


async def test_every_script_the_page_loads_is_shipped() -> None:
    modules = {p.name for p in STATIC.glob("*.js")}
    imported = set()
    for module in modules:
        text = (STATIC / module).read_text(encoding="utf-8")
        imported |= set(re.findall(r'from "\./([\w-]+\.js)"', text))
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    assert imported <= modules
    assert set(re.findall(r'src="dashboard/([\w-]+\.js)"', page)) <= modules
    assert "innerHTML" not in "".join((STATIC / m).read_text(encoding="utf-8")
                                      for m in modules if m != "dom.js")
