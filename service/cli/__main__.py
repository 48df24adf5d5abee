"""``python -m service.cli``: the ``offload`` command."""

from __future__ import annotations

from . import main

raise SystemExit(main())
