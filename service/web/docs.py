"""Offload's own OpenAPI document and docs page, under its prefix, for an embedding app.

They leave the host app alone: no quart-schema extension is installed on it (that would
replace its JSON provider, its test client class and its ``make_response``), a host's own
quart-schema document does not list Offload's routes, and Offload's document lists only
them, built with quart-schema's defaults whatever the host configured for its own.
"""

from __future__ import annotations

import html
import weakref
from collections.abc import Iterable
from typing import Any

from quart import Blueprint, Quart, Response, current_app
from quart_schema import QuartSchema
from werkzeug.routing.rules import Rule

from .. import jsonutil
from .openapi import OffloadOpenAPIProvider, is_offload_endpoint

docs = Blueprint("offload_docs", __name__)

INFO = {"title": "Offload", "version": "0.1.0"}
SWAGGER_JS = "https://cdnjs.cloudflare.com/ajax/libs/swagger-ui/5.4.2/swagger-ui-bundle.js"
SWAGGER_CSS = "https://cdnjs.cloudflare.com/ajax/libs/swagger-ui/5.4.2/swagger-ui.min.css"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{css}"></head>
<body><div id="swagger-ui"></div><script src="{js}"></script>
<script>SwaggerUIBundle({{url: "{url}", dom_id: "#swagger-ui", deepLinking: true}});</script>
</body></html>
"""
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


@docs.get("/docs")
async def docs_page() -> Response:
    """Interactive documentation of Offload's API."""
    page = PAGE.format(title=html.escape(str(INFO["title"])), css=SWAGGER_CSS,
                       js=SWAGGER_JS, url="openapi.json")
    return Response(page, 200, content_type="text/html; charset=utf-8")
