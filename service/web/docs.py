"""Offload's own OpenAPI document and docs page, under its prefix, for an embedding app.

They leave the host app alone: no quart-schema extension is installed on it (that would
replace its JSON provider, its test client class and its ``make_response``), a host's own
quart-schema document does not list Offload's routes, and Offload's document lists only
them, built with quart-schema's defaults whatever the host configured for its own.

The page, ``/docs``, is Swagger UI served from the package (vendored in ``static/swagger-ui``),
started by a script file of its own, and sent with a Content-Security-Policy: no CDN, no
inline script. The standalone service serves the same page (:data:`docs_page`) next to its
own document of all its routes.
"""

from __future__ import annotations

import html
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quart import Blueprint, Quart, Response, current_app, send_from_directory
from quart_schema import QuartSchema
from werkzeug.routing.rules import Rule

from .. import jsonutil
from .openapi import OffloadOpenAPIProvider, is_offload_endpoint

INFO = {"title": "Offload", "version": "0.1.0"}
SWAGGER_UI_VERSION = "5.35.0"  # vendored in static/swagger-ui (see its NOTICE)
ASSETS = "docs/swagger-ui"  # where the page's files are served, under the API's prefix

SWAGGER_UI_FILES = Path(__file__).resolve().parent / "static" / "swagger-ui"

docs_page = Blueprint("offload_docs_page", __name__)
"""The interactive documentation: ``/docs`` and its files, Swagger UI's included, served by
Offload itself (nothing from another host: it works offline)."""

docs = Blueprint("offload_docs", __name__)
"""What an embedding app gets: Offload's own document at ``openapi.json``, and the page."""
docs.register_blueprint(docs_page)

# Relative URLs: the page is at <prefix>/docs, its document at <prefix>/openapi.json.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="openapi.json"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/offload-docs.js"></script>
</body></html>
"""
# Scripts from this origin only, no inline script; Swagger UI sets inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
# What quart-schema's extension would set on an app that uses it (see _AppView).
QUART_SCHEMA_DEFAULTS: dict[str, Any] = {"QUART_SCHEMA_CONVERSION_PREFERENCE": None,
                         "QUART_SCHEMA_CONVERT_CASING": False,
                         "QUART_SCHEMA_PYDANTIC_DUMP_OPTIONS": {}}


class _AppView:
    """The app as the document sees it: its routes, with quart-schema's default settings in
    place of the app's config (which may have none, or the host's own choices)."""

    def __init__(self, app: Quart) -> None:
        self._app = weakref.proxy(app)
        self.config = QUART_SCHEMA_DEFAULTS

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


class OffloadOnlyProvider(OffloadOpenAPIProvider):
    """The document of Offload's routes alone (those of an embedding app)."""

    def __init__(self, app: Quart) -> None:
        self._view = _AppView(app)  # the provider itself keeps only a weak proxy
        super().__init__(self._view, QuartSchema(info=INFO))  # type: ignore[arg-type]

    def generate_rules(self) -> Iterable[Rule]:
        for rule in super().generate_rules():
            if is_offload_endpoint(rule.endpoint):
                yield rule


def document(app: Quart) -> dict[str, Any]:
    """The OpenAPI document of Offload's routes on ``app``."""
    return OffloadOnlyProvider(app).schema()


@docs.get("/openapi.json")
async def openapi() -> Response:
    """Offload's OpenAPI document."""
    # the app itself, not its proxy (Quart's stubs type the proxy differently by version)
    app: Quart = getattr(current_app, "_get_current_object")()  # noqa: B009
    body = jsonutil.dumps(document(app))
    return Response(body, 200, content_type="application/json")


@docs_page.get("/docs")
async def swagger_ui() -> Response:
    """Interactive documentation of Offload's API (Swagger UI, served from here)."""
    page = PAGE.format(title=html.escape(str(INFO["title"])), assets=ASSETS)
    response = Response(page, 200, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@docs_page.get(f"/{ASSETS}/<path:filename>")
async def swagger_ui_file(filename: str) -> Response:
    """A file of the page: Swagger UI's script and styles, their licenses, our start-up."""
    # a view of our own, not a blueprint's static folder: a function that can be hidden
    # from a host app's document, as every Offload view is
    return await send_from_directory(SWAGGER_UI_FILES, filename)
