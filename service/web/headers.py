"""Reading request headers that are usually absent, without an exception each time."""

from __future__ import annotations

from quart import request


def optional_header(name: str) -> str | None:
    """The request's ``name`` header, or None.

    werkzeug's ``Headers.get`` raises and catches a ``BadRequestKeyError`` for an absent
    header, which costs a microsecond; ``X-Request-ID``, ``Authorization`` and
    ``Idempotency-Key`` are absent from most requests, and each is asked for on every one.
    """
    wanted = name.lower()
    for key, value in request.headers.items():
        if key.lower() == wanted:
            return value
    return None
