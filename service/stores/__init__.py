"""Task stores: one contract (:class:`TaskStore`), a backend per URL scheme."""

from __future__ import annotations

from .base import ListQuery, TaskStore
from .memory import MemoryStore

__all__ = ["ListQuery", "MemoryStore", "TaskStore", "open_store"]


def open_store(url: str) -> TaskStore:
    """The store for a URL such as ``memory://``. Unknown schemes are a clear error."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStore()
    raise ValueError(f"OFFLOAD_STORE: unsupported store URL {url!r} (supported: memory://)")
