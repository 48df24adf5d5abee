"""Opaque, tamper-evident list cursors: a position signed with a per-service key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

_SIGNATURE_BYTES = 12
_MAX_CURSOR_LENGTH = 64


class BadCursor(ValueError):
    """A cursor this service did not issue (forged, truncated or from another process)."""


class CursorCodec:
    """Encodes a list position (a record ``seq``) so clients can pass it back, not forge it."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def encode(self, seq: int) -> str:
        body = struct.pack(">Q", seq)
        return base64.urlsafe_b64encode(body + self._sign(body)).decode().rstrip("=")

    def decode(self, cursor: str) -> int:
        if len(cursor) > _MAX_CURSOR_LENGTH:
            raise BadCursor("cursor is too long")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise BadCursor("cursor is not valid") from None
        body, signature = raw[:8], raw[8:]
        if len(body) != 8 or not hmac.compare_digest(signature, self._sign(body)):
            raise BadCursor("cursor is not valid")
        seq: int = struct.unpack(">Q", body)[0]
        return seq

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
