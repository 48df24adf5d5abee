"""Request ids: taken from ``X-Request-ID`` when sane, else made; echoed on the response and
carried by every log line written while the request is handled."""

from __future__ import annotations

import re
import secrets

from quart import Blueprint, Response, g

from ..logs import request_id
from .headers import optional_header

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def install(blueprint: Blueprint) -> None:
    blueprint.before_request(_assign)
    blueprint.after_request(_echo)


async def _assign() -> None:
    given = optional_header(HEADER) or ""
    rid = given if _SANE.fullmatch(given) else secrets.token_hex(8)
    g.offload_request_id = rid
    request_id.set(rid)


async def _echo(response: Response) -> Response:
    rid = g.get("offload_request_id")
    if rid is not None:
        response.headers[HEADER] = rid
    return response
