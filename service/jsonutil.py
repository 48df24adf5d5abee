"""JSON in and out: orjson where it can, the standard library where it must."""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_INT_DIGITS = 4300  # CPython's own int/str conversion limit


class NotJSON(TypeError):
    """A value that has no JSON form (a set, an object, NaN, a dict with non-str keys)."""


def dumps(value: Any) -> bytes:
    """Encode; integers beyond 64 bits fall back to the standard library instead of failing."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        if "Integer exceeds 64-bit range" not in str(exc):
            raise NotJSON(str(exc)) from None
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise NotJSON(str(exc)) from None


def dumps_canonical(value: Any) -> bytes:
    """Encode with sorted keys, so that JSON-equal values give equal bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Decode strictly: NaN/Infinity, invalid UTF-8, absurd nesting and huge numbers raise
    :class:`ValueError` (never :class:`RecursionError`)."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"request body is not valid UTF-8: {exc.reason}") from None


def check(value: Any) -> None:
    """Raise :class:`NotJSON` unless ``value`` is a JSON value (args, kwargs, results)."""
    dumps(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
