"""Task stores: one contract (:class:`TaskStore`), a backend per URL scheme."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .base import ListQuery, StoreUnavailable, TaskStore
from .memory import MemoryStore
from .redis_connect import RedisOptions, redacted
from .redis_store import RedisStore
from .sqlite import SQLiteStore
from .sqlite_open import StoreOpenError

__all__ = ["ListQuery", "MemoryStore", "RedisStore", "SQLiteStore", "StoreOpenError",
           "StoreUnavailable", "TaskStore", "open_store"]

SUPPORTED = ("memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
             "redis://host:port/db, rediss://host:port/db")
_REDIS_OPTIONS: dict[str, Callable[[str], object]] = {
    "prefix": str, "socket_timeout": float, "connect_timeout": float,
    "max_connections": int, "feed_length": int, "ssl_ca_certs": str, "ssl_cert_reqs": str}
_SQLITE_OPTIONS: dict[str, Callable[[str], object]] = {
    "busy_timeout": int, "max_page_count": int, "synchronous": str.upper,
    "progress_interval": float}


def open_store(url: str) -> TaskStore:
    """The store for a URL: ``memory://``, or ``sqlite:///relative.db`` and
    ``sqlite:////absolute/path.db`` (SQLAlchemy's convention), optionally with query
    options such as ``?synchronous=full&busy_timeout=5000``, or
    ``redis://[:password@]host[:port][/db]`` (``rediss://`` for TLS) with options such as
    ``?prefix=app1:&socket_timeout=2``. Anything else is a clear :class:`ValueError`.
    Nothing is opened or imported for Redis until the store opens."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("redis", "rediss"):
        return _redis(url)
    raise ValueError(f"OFFLOAD_STORE: unsupported store URL {url!r} (supported: {SUPPORTED})")


def _options(url: str, query: str, known: dict[str, Callable[[str], object]]
             ) -> dict[str, object]:
    options: dict[str, object] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        convert = known.get(name)
        if convert is None:
            raise ValueError(f"OFFLOAD_STORE: unknown option {name!r} in {url!r} (known: "
                             f"{', '.join(sorted(known))})")
        try:
            options[name] = convert(value)
        except ValueError:
            raise ValueError(f"OFFLOAD_STORE: bad value {value!r} for {name} in {url!r}"
                             ) from None
    return options


def _sqlite(url: str) -> SQLiteStore:
    parts = urlsplit(url)
    path = parts.path[1:]  # sqlite:///x.db has path "/x.db"; sqlite:////x.db "//x.db"
    if parts.netloc or not path or path == ":memory:":
        raise ValueError(f"OFFLOAD_STORE: {url!r} names no database file (expected "
                         f"sqlite:///relative/path.db or sqlite:////absolute/path.db)")
    options = _options(url, parts.query, _SQLITE_OPTIONS)
    try:
        return SQLiteStore(path, **options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"OFFLOAD_STORE: {exc} in {url!r}") from None


def _redis(url: str) -> RedisStore:
    shown = redacted(url)
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise ValueError(f"OFFLOAD_STORE: bad port in {shown!r}") from None
    if not parts.hostname:
        raise ValueError(f"OFFLOAD_STORE: {shown!r} names no Redis host (expected "
                         f"redis://host:port/db)")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ValueError(f"OFFLOAD_STORE: {shown!r} names no Redis database number (expected "
                         f"redis://host:port/db, db a number such as 0)")
    options = _options(shown, parts.query, _REDIS_OPTIONS)
    if importlib.util.find_spec("redis") is None:
        raise ValueError(f"OFFLOAD_STORE: {shown!r} needs the redis package: "
                         f"pip install 'quart-offload[redis]'")
    try:
        settings = RedisOptions(**options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"OFFLOAD_STORE: {exc} in {shown!r}") from None
    return RedisStore(urlunsplit(parts._replace(query="")), settings)
