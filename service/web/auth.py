"""Bearer tokens: who is calling, compared in constant time; tasks belong to their token."""

from __future__ import annotations

import hashlib
import hmac

from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` against the configured tokens.

    The owner of a task is a digest of the token, so no token is ever stored or logged.
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = [(t.encode(), _owner_id(t)) for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def owner(self, authorization: str | None) -> str | None:
        """The caller's owner id; None when auth is off. Raises 401 otherwise."""
        if not self._tokens:
            return None
        scheme, _, presented = (authorization or "").partition(" ")
        candidate = presented.strip().encode("utf-8", "replace")
        matched = None
        for token, owner in self._tokens:  # every token, always: no early exit to time
            if hmac.compare_digest(token, candidate):
                matched = owner
        if scheme.lower() != "bearer" or matched is None:
            raise Unauthorized("a valid bearer token is required",
                               www_authenticate=WWWAuthenticate("bearer", {"realm": "offload"}))
        return matched


def _owner_id(token: str) -> str:
    return hashlib.sha256(b"offload-owner:" + token.encode()).hexdigest()[:32]

