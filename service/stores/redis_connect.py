"""The Redis store's connection: its options, the client, and what its errors mean.

The ``redis`` package is imported here, and only when a store connects: an install without
the ``redis`` extra never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .base import StoreUnavailable
from .redis_keys import DEFAULT_PREFIX

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Replies with which a server says it cannot take the command now (rather than "bad
# command"): out of memory, a read-only replica, still loading, a script running too long,
# a failed disk save, too few replicas.
_UNAVAILABLE_REPLIES = ("OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "MISCONF",
                        "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How the store talks to Redis (each is a query option of the store's URL).

    ``prefix``: put before every key (deployments sharing a database need different ones).
    ``socket_timeout`` (s): the longest wait for a reply; a dead server is an error after
    it, never a hang. ``connect_timeout`` (s): the same for connecting.
    ``max_connections``: connections per store object; a caller waits up to
    ``socket_timeout`` for one. ``feed_length``: change-feed entries kept (about;
    a reader further behind misses changes and says so in the log).
    ``ssl_ca_certs``, ``ssl_cert_reqs``: for ``rediss://``.
    """

    prefix: str = DEFAULT_PREFIX
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    max_connections: int = 64
    feed_length: int = 10_000
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str | None = None

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("prefix must not be empty")
        for name in ("socket_timeout", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be 1 or more")
        if self.feed_length < 100:
            raise ValueError("feed_length must be 100 or more")
        if self.ssl_cert_reqs not in (None, "none", "optional", "required"):
            raise ValueError("ssl_cert_reqs must be none, optional or required")


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def connect(url: str, options: RedisOptions) -> Redis:
    """A client with a bounded pool, bounded timeouts and no silent retries (a write whose
    reply was lost must not be sent twice: the caller hears :class:`StoreUnavailable`)."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    extra: dict[str, Any] = {}
    if url.lower().startswith("rediss://"):
        extra = {name: value for name, value in (("ssl_ca_certs", options.ssl_ca_certs),
                                                 ("ssl_cert_reqs", options.ssl_cert_reqs))
                 if value is not None}
    pool = BlockingConnectionPool.from_url(
        url, max_connections=options.max_connections, timeout=options.socket_timeout,
        socket_timeout=options.socket_timeout,
        socket_connect_timeout=options.connect_timeout, retry=Retry(NoBackoff(), 0),
        **extra)
    return Redis(connection_pool=pool)


def unavailable(where: str, exc: BaseException) -> BaseException:
    """What a caller sees for a failed command: :class:`StoreUnavailable` when the server
    cannot be reached or cannot take the command now, else ``exc`` itself (a bug)."""
    from redis import exceptions

    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, exceptions.ResponseError):
        reply = str(exc)
        if not reply.startswith(_UNAVAILABLE_REPLIES):
            return exc
        reason = f"the server refused the command ({reply})"
    elif isinstance(exc, exceptions.TimeoutError | TimeoutError):
        reason = "the server did not answer in time"
    elif isinstance(exc, exceptions.ConnectionError | OSError):
        reason = f"cannot reach the server ({exc})"
    else:
        return exc
    failure = StoreUnavailable(f"Redis store {where}: {reason}")
    failure.__cause__ = exc
    return failure
