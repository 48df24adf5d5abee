"""List cursors: opaque, round-trip, and forgery is refused."""

from __future__ import annotations

import base64
import struct

import pytest

from service.cursor import BadCursor, CursorCodec


@pytest.mark.parametrize("seq", [0, 1, 42, 2**63, 2**64 - 1])
def test_round_trip(seq: int) -> None:
    codec = CursorCodec()
    cursor = codec.encode(seq)
    assert codec.decode(cursor) == seq
    assert cursor.isascii()
    assert "=" not in cursor
    assert "/" not in cursor
    assert "+" not in cursor


def test_cursor_from_another_key_is_refused() -> None:
    cursor = CursorCodec(b"k" * 32).encode(7)
    assert CursorCodec(b"k" * 32).decode(cursor) == 7
    with pytest.raises(BadCursor):
        CursorCodec(b"j" * 32).decode(cursor)


def test_forged_position_is_refused() -> None:
    codec = CursorCodec()
    raw = base64.urlsafe_b64decode(codec.encode(7) + "==")
    forged = struct.pack(">Q", 8) + raw[8:]
    with pytest.raises(BadCursor):
        codec.decode(base64.urlsafe_b64encode(forged).decode().rstrip("="))


@pytest.mark.parametrize("cursor", ["", "abc", "!!!!", "a" * 65, "é", "AAAAAAAAAAA",
                                    CursorCodec().encode(1)])
def test_garbage_is_refused_with_bad_cursor(cursor: str) -> None:
    with pytest.raises(BadCursor):
        CursorCodec().decode(cursor)


def test_truncated_cursor_is_refused() -> None:
    codec = CursorCodec()
    cursor = codec.encode(99)
    for cut in range(1, len(cursor)):
        with pytest.raises(BadCursor):
            codec.decode(cursor[:cut])


def test_bad_cursor_is_a_value_error() -> None:
    assert issubclass(BadCursor, ValueError)
