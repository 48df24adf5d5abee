"""The Quart layer: the extension, the HTTP API and its problem details."""

from __future__ import annotations

from .extension import Offload

__all__ = ["Offload"]
