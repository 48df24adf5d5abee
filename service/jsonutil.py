"""JSON in and out: orjson where it can, the standard library where it must."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_INT_DIGITS = 4300  # CPython's own int/str conversion limit
MAX_DEPTH = 200  # orjson refuses to encode beyond 254 levels


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
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotJSON(str(exc)) from None


def dumps_canonical(value: Any) -> bytes:
    """Encode with sorted keys, so that JSON-equal values give equal bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Decode strictly: NaN/Infinity (also as 1e400), invalid UTF-8, absurd nesting and huge
    numbers raise :class:`ValueError` (never :class:`RecursionError`)."""
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
        if _may_hold_surrogates(data):  # "\\ud800" alone decodes, but is no UTF-8 text
            json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"request body is not valid UTF-8: {exc.reason}") from None
    except UnicodeEncodeError:
        raise ValueError("a JSON string holds a lone surrogate (\\ud800-\\udfff)") from None
    return value


def _may_hold_surrogates(data: bytes | str) -> bool:
    if isinstance(data, bytes):  # raw surrogates are invalid UTF-8: only escapes can be
        return b"\\ud" in data or b"\\uD" in data
    return not data.isascii() or "\\ud" in data or "\\uD" in data


_PLAIN = frozenset({bool, float, int})
_CONTAINERS = frozenset({list, tuple, dict})


def check(value: Any) -> None:
    """Raise :class:`NotJSON` unless ``value`` is a JSON value (args, kwargs, results).

    Stricter than the encoders, which write NaN as ``null`` (orjson), turn ``{1: 2}`` into
    ``{"1": 2}`` (json) and take dates, UUIDs and dataclasses: a stored value must come back
    the same from JSON. Lists and tuples are arrays; nesting stops at ``MAX_DEPTH``.
    """
    if value.__class__ not in _CONTAINERS and not isinstance(value, list | tuple | dict):
        _check_scalar(value)
        return
    if not value:
        return  # no arguments: the most common case of all
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= MAX_DEPTH:
            raise NotJSON(f"nested deeper than {MAX_DEPTH} levels")
        for item in _children(container):
            kind = item.__class__
            if kind is int:  # the common scalars first, each in a line or two
                if item.bit_length() > 64:
                    _check_big_int(item)
            elif kind is str:
                if not item.isascii():
                    _check_str(item)
            elif kind in _CONTAINERS or isinstance(item, list | tuple | dict):
                stack.append((item, depth + 1))
            else:
                _check_scalar(item)


def _children(container: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> Any:
    if not isinstance(container, dict):
        return container
    for key in container:
        if not isinstance(key, str):
            raise NotJSON("object keys must be strings")
        _check_str(key)
    return container.values()


def _check_scalar(item: Any) -> None:
    if isinstance(item, str):
        _check_str(item)
        return
    if item is None or isinstance(item, bool):
        return
    if isinstance(item, float):
        if not math.isfinite(item):
            raise NotJSON(f"{item} is not a JSON number")
    elif isinstance(item, int):
        _check_big_int(item)
    else:
        raise NotJSON(f"a {type(item).__name__} is not a JSON value")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf: as bad as a literal Infinity
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _check_str(item: str) -> None:
    if not item.isascii():
        try:
            item.encode()
        except UnicodeEncodeError:
            raise NotJSON("a string holds a lone surrogate (\\ud800-\\udfff)") from None


def _check_big_int(item: int) -> None:
    if item.bit_length() > 64:  # encoded by the standard library, within its digit limit
        try:
            str(item)
        except ValueError:
            raise NotJSON(f"integer longer than {MAX_INT_DIGITS} digits") from None
