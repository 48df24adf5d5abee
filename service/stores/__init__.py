"""Task stores: one contract (:class:`TaskStore`), a backend per URL scheme."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from .base import ListQuery, StoreUnavailable, TaskStore
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .sqlite_open import StoreOpenError

__all__ = ["ListQuery", "MemoryStore", "SQLiteStore", "StoreOpenError", "StoreUnavailable",
           "TaskStore", "open_store"]

SUPPORTED = "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db"
_SQLITE_OPTIONS: dict[str, Callable[[str], object]] = {
    "busy_timeout": int, "max_page_count": int, "synchronous": str.upper,
    "progress_interval": float}


def open_store(url: str) -> TaskStore:
    """The store for a URL: ``memory://``, or ``sqlite:///relative.db`` and
    ``sqlite:////absolute/path.db`` (SQLAlchemy's convention), optionally with query
    options such as ``?synchronous=full&busy_timeout=5000``. Anything else is a clear
    :class:`ValueError`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        return _sqlite(url)
    raise ValueError(f"OFFLOAD_STORE: unsupported store URL {url!r} (supported: {SUPPORTED})")


def _sqlite(url: str) -> SQLiteStore:
    parts = urlsplit(url)
    path = parts.path[1:]  # sqlite:///x.db has path "/x.db"; sqlite:////x.db "//x.db"
    if parts.netloc or not path or path == ":memory:":
        raise ValueError(f"OFFLOAD_STORE: {url!r} names no database file (expected "
                         f"sqlite:///relative/path.db or sqlite:////absolute/path.db)")
    options: dict[str, object] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = _SQLITE_OPTIONS.get(name)
        if convert is None:
            raise ValueError(f"OFFLOAD_STORE: unknown option {name!r} in {url!r} (known: "
                             f"{', '.join(sorted(_SQLITE_OPTIONS))})")
        try:
            options[name] = convert(value)
        except ValueError:
            raise ValueError(f"OFFLOAD_STORE: bad value {value!r} for {name} in {url!r}"
                             ) from None
    try:
        return SQLiteStore(path, **options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"OFFLOAD_STORE: {exc} in {url!r}") from None
