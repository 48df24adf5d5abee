"""JSON in and out: big integers, NaN, deep nesting, what counts as a JSON value."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from typing import Any

import pytest

from service import jsonutil
from service.jsonutil import NotJSON


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_dumps_plain_values() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "é"}}
    assert json.loads(jsonutil.dumps(value)) == value


@pytest.mark.parametrize("number", [2**64, -(2**64) - 1, 2**200, int("9" * 100)])
def test_integers_beyond_64_bits_fall_back_to_the_standard_library(number: int) -> None:
    encoded = jsonutil.dumps({"n": [number]})
    assert json.loads(encoded) == {"n": [number]}
    assert str(number).encode() in encoded
    jsonutil.check(number)


def test_integer_at_the_64_bit_edge_still_uses_orjson() -> None:
    assert jsonutil.dumps(2**63 - 1) == str(2**63 - 1).encode()
    assert jsonutil.dumps(2**64 - 1) == str(2**64 - 1).encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"),
                                   [1, {"x": float("nan")}]])
def test_nan_and_infinity_are_not_json(value: Any) -> None:
    with pytest.raises(NotJSON):
        jsonutil.check(value)


@pytest.mark.parametrize("value", [
    {1, 2}, {1: "a"}, {"a": {(1, 2): 3}}, datetime.date(2024, 1, 1), uuid.uuid4(),
    b"bytes", object(), [1, 2j], dataclasses.make_dataclass("D", [])(),
])
def test_values_without_a_json_form_are_refused(value: Any) -> None:
    with pytest.raises(NotJSON):
        jsonutil.check(value)


def test_not_json_is_a_type_error() -> None:
    assert issubclass(NotJSON, TypeError)


def test_str_and_int_subclasses_and_tuples_are_json() -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    jsonutil.check([Colour.RED, True, (1, 2), {"k": (None,)}, -0.0, ""])
    assert jsonutil.dumps((1, 2)) == b"[1,2]"


def test_container_subclasses_are_json_at_the_top_as_inside() -> None:
    from collections import Counter, OrderedDict, defaultdict

    for value in (OrderedDict(a=1), Counter("aab"), defaultdict(list, k=[1])):
        jsonutil.check(value)
        jsonutil.check([value])
    with pytest.raises(NotJSON):
        jsonutil.check(OrderedDict(a=float("nan")))


def test_integer_too_long_to_print_is_refused_not_crashing() -> None:
    with pytest.raises(NotJSON):
        jsonutil.check(10**5000)
    with pytest.raises(NotJSON):
        jsonutil.dumps(10**5000)


def test_deep_nesting_is_refused_by_check_and_never_recursion_error() -> None:
    jsonutil.check(nested(jsonutil.MAX_DEPTH))
    jsonutil.dumps(nested(jsonutil.MAX_DEPTH))  # what check lets through, orjson encodes
    for depth in (jsonutil.MAX_DEPTH + 1, 100_000):
        with pytest.raises(NotJSON, match="nested"):
            jsonutil.check(nested(depth))
    with pytest.raises(NotJSON):
        jsonutil.dumps(nested(100_000, 2**70))  # the fallback encoder's RecursionError


def test_loads_plain_and_big_numbers() -> None:
    assert jsonutil.loads(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert jsonutil.loads(str(2**100)) == 2**100


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "[-1e999]"])
def test_loads_rejects_non_finite_numbers(text: str) -> None:
    with pytest.raises(ValueError, match=r"not valid JSON|out of range"):
        jsonutil.loads(text)


def test_loads_deep_nesting_is_value_error_not_recursion_error() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        jsonutil.loads(text)


@pytest.mark.parametrize("data", [b"\xff\xfe\x00", b'"\xc3\x28"', b"{", b"", b"[1,]", "1" * 5000])
def test_loads_bad_input_is_value_error(data: bytes | str) -> None:
    with pytest.raises(ValueError, match=r"."):
        jsonutil.loads(data)


def test_dumps_canonical_is_equal_for_json_equal_values() -> None:
    one = jsonutil.dumps_canonical({"b": 1, "a": {"y": 2, "x": [3]}})
    two = jsonutil.dumps_canonical({"a": {"x": [3], "y": 2}, "b": 1})
    assert one == two == b'{"a":{"x":[3],"y":2},"b":1}'
    assert jsonutil.dumps_canonical({"b": 2**70, "a": 1}) == f'{{"a":1,"b":{2**70}}}'.encode()


@pytest.mark.parametrize("data", [b'["\\ud800"]', '["\\udfff"]', b'{"\\udc00": 1}',
                                  '"\ud800"', b'["ok", {"x": "\\uD83D"}]'])
def test_loads_rejects_lone_surrogates(data: bytes | str) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        jsonutil.loads(data)


@pytest.mark.parametrize(("data", "expected"), [
    (b'"\\ud83d\\ude00"', "\U0001f600"), (b'"\\\\ud800"', "\\ud800"), ('"é"', "é"),
    (b'"\xc3\xa9"', "é"),
])
def test_loads_accepts_surrogate_pairs_and_lookalikes(data: bytes | str, expected: str) -> None:
    assert jsonutil.loads(data) == expected


@pytest.mark.parametrize("value", ["\ud800", ["a", "\udfff"], {"\udc00": 1}])
def test_check_rejects_lone_surrogates(value: Any) -> None:
    with pytest.raises(NotJSON, match="surrogate"):
        jsonutil.check(value)
    jsonutil.check("é\U0001f600")
