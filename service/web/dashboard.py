"""The dashboard: one HTML page and its static files (plain JS modules and CSS, shipped in
the package), served with a Content-Security-Policy that allows nothing inline.

The page is served by the ``public`` blueprint at ``/`` (see :mod:`.ops`); its files are
served here under ``dashboard/``, next to it, so that the page's relative URLs work at the
root of the standalone service and under an embedding app's prefix alike.
"""

from __future__ import annotations

import functools
from pathlib import Path

from quart import Blueprint, Response, send_from_directory
from quart_schema import hide
from werkzeug.exceptions import NotFound

from .problems import register_handlers

STATIC = Path(__file__).resolve().parent / "static" / "dashboard"
PAGE = "index.html"
# No inline script or style, nothing from another origin, not framed, no <base>.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
# Explicit, not guessed: a platform's mimetypes table may call .js text/plain, which a
# browser refuses to run as a module.
MEDIA_TYPES = {
    ".js": "text/javascript",  # Quart adds the charset of text/* types
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate each time (an ETag makes that cheap): an upgrade never mixes old and new files.
    "Cache-Control": "no-cache",
}

dashboard = Blueprint("offload_dashboard", __name__)
register_handlers(dashboard)


@functools.cache
def _page() -> bytes:
    return (STATIC / PAGE).read_bytes()


def dashboard_page() -> Response:
    """The dashboard's HTML page, with its Content-Security-Policy."""
    response = Response(_page(), 200, content_type="text/html; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@dashboard.get("/dashboard/<path:filename>")
@hide
async def dashboard_file(filename: str) -> Response:
    """A static file of the dashboard (scripts, styles, icon)."""
    media_type = MEDIA_TYPES.get(Path(filename).suffix)
    if media_type is None:
        raise NotFound("no such dashboard file")
    # send_from_directory refuses paths that leave STATIC (404)
    response = await send_from_directory(STATIC, filename, mimetype=media_type,
                                         cache_timeout=0)
    response.headers.update(SECURITY_HEADERS)
    return response
