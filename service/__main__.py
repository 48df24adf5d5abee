"""``python -m service``: the standalone server, what ``make run`` starts.

It is Hypercorn with ``hypercorn.toml``, plus what Hypercorn's own command cannot do: a
setting that can never work (a bad value, an unknown store URL, a process-local store with
several workers) is refused before any worker serves a request; a worker that refuses to
start makes the whole server exit non-zero (Hypercorn 0.18 may exit 0 then,
pgjones/hypercorn#269); and SIGTERM or SIGINT, to the master, to a worker or to the whole
process group, always takes the graceful path (see :mod:`service.serving`).

``--app module:app`` serves another app (one that embeds Offload) the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from hypercorn.config import Config

from . import logs
from .serving import run
from .settings import Settings
from .stores import TaskStore, open_store
from .stores.dispatch import DispatchStore
from .workers import STARTUP_REPORT

APPLICATION = "service.app:app"
REFUSED = 2  # the exit code of a start refused by a setting, before serving


def main(argv: list[str] | None = None) -> int:
    """Check the settings, serve until stopped, and return the exit code."""
    args = _parser().parse_args(argv)
    config = _config(args)
    problem: str | None
    try:
        settings = Settings.load()
    except ValueError as exc:
        settings, problem = Settings(), str(exc)
    else:
        problem = start_problem(settings, config.workers)
    if problem is not None:
        print(f"offload: refusing to start: {problem}", file=sys.stderr)
        return REFUSED
    logs.configure(settings.log_format, settings.log_level)  # the master's own few lines
    with tempfile.TemporaryDirectory(prefix="offload-") as folder:
        report = Path(folder) / "refusals"
        os.environ[STARTUP_REPORT] = str(report)
        code = run(config)
        refusals = report.read_text(encoding="utf-8") if report.exists() else ""
    if refusals:
        print(f"offload: a worker refused to start: {refusals.strip()}", file=sys.stderr)
        return code or 1
    return code


def start_problem(settings: Settings, workers: int) -> str | None:
    """Why these settings can never serve, or None."""
    if workers < 1:
        return f"workers must be 1 or more, not {workers}"
    try:
        store = open_store(settings.store)  # only reads the URL: nothing is opened
    except ValueError as exc:
        return str(exc)
    if settings.celery_broker:
        problem = celery_problem(settings, store)
        if problem is not None:
            return problem
    if workers > 1 and not store.shared:
        return (f"OFFLOAD_STORE={settings.store} keeps tasks inside one process, but the "
                f"server would run {workers} worker processes. Run one worker (WORKERS=1) "
                "or use a shared store (sqlite:///path.db or redis://host:6379/0).")
    return None


def celery_problem(settings: Settings, store: TaskStore) -> str | None:
    """Why Celery mode cannot work with these settings, or None."""
    if not isinstance(store, DispatchStore):
        return (f"OFFLOAD_CELERY_BROKER is set, so Celery workers run the tasks, and they "
                f"need a store they share: OFFLOAD_STORE=redis://host:6379/0, not "
                f"{settings.store}")
    if importlib.util.find_spec("celery") is None:
        return ("OFFLOAD_CELERY_BROKER is set, but Celery is not installed: "
                "pip install 'quart-offload[celery]'")
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--config", default="hypercorn.toml",
                        help="Hypercorn's TOML settings (default: hypercorn.toml, if present)")
    parser.add_argument("--bind", action="append", help="address to serve on, host:port")
    parser.add_argument("--workers", type=int, help="worker processes (Hypercorn's workers)")
    parser.add_argument("--app", default=APPLICATION,
                        help=f"the ASGI app to serve, module:attribute (default: {APPLICATION})")
    return parser


def _config(args: argparse.Namespace) -> Config:
    config = Config.from_toml(args.config) if Path(args.config).exists() else Config()
    config.application_path = args.app
    if args.bind:
        config.bind = args.bind
    if args.workers is not None:
        config.workers = args.workers
    return config


if __name__ == "__main__":
    sys.exit(main())
