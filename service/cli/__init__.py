"""``offload``: the command-line client of a running Offload service (built on
:mod:`service.client`). ``offload --help`` lists the commands; ``python -m service.cli``
runs it too (``python -m service`` serves)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE, INTERRUPTED = 2, 130
MISSING = ("offload needs the client extra (httpx, httpx-sse, rich): "
           "pip install 'quart-offload[client]'")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 done, 1 failed, 2 usage or connection
    error, 3 cancelled)."""
    try:
        from .run import run
    except ImportError as exc:
        print(f"{MISSING} ({exc})", file=sys.stderr)
        return USAGE
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
