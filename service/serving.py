"""The server of ``python -m service``: Hypercorn's workers under a master of our own, so
that every way a process manager stops the service takes the graceful path.

Hypercorn's own master (``hypercorn.run.run``, 0.18) makes its workers ignore SIGINT and
leaves SIGTERM at its default: a SIGTERM sent to a worker, or to the whole process group
(systemd's ``KillMode=control-group``, ``kill -TERM -- -<pgid>``), kills the worker at once,
with no grace for its tasks. Here every worker handles SIGTERM and SIGINT itself, and so
does the master, which passes the request on to every worker through a shared event. A
worker asked to stop, by either path, first stops the Offload service while it still
serves (``/readyz`` and new submissions answer 503, running tasks get
``OFFLOAD_SHUTDOWN_GRACE``, what outlives it ends ``Interrupted``, so ``?wait=`` and event
stream clients get their answer), then lets Hypercorn close its connections and run the
app's shutdown.

A worker that stops on its own with exit code 0 (a SIGTERM to it alone, Hypercorn's
``max_requests``) is replaced, as under Hypercorn and gunicorn; one that fails stops the
whole server, which then exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import ssl
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import load_application

from .events import wait_until_set

log = logging.getLogger("offload.server")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MASTER_POLL = 0.1  # seconds between two looks at the master's stop event (as Hypercorn does)
FAILED = 1  # the server's exit code when a worker failed without an exit code of its own


def run(config: Config) -> int:
    """Serve ``config.application_path`` with ``config.workers`` worker processes until
    SIGTERM or SIGINT; return the exit code (0 when every worker stopped cleanly)."""
    if config.worker_class not in ("asyncio", "uvloop"):
        raise ValueError(f"worker_class {config.worker_class!r}: python -m service runs "
                         "'asyncio' or 'uvloop' workers")
    sockets = config.create_sockets()
    try:
        return _Master(config, sockets).serve()
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
            sock.close()


class _Master:
    """Starts the workers, passes a stop request on to them, replaces a clean leaver."""

    def __init__(self, config: Config, sockets: Sockets) -> None:
        self.config = config
        self.sockets = sockets
        self.context: SpawnContext = multiprocessing.get_context("spawn")
        self.stopping = self.context.Event()
        self.processes: list[BaseProcess] = []
        self.code = 0

    def serve(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._stop)
        self._populate()
        while self.processes:
            wait([process.sentinel for process in self.processes])
            self._reap()
            if not self.stopping.is_set():
                self._populate()
        return self.code

    def _stop(self, signum: int, frame: FrameType | None = None) -> None:
        if not self.stopping.is_set():
            log.info("%s: asking %d worker(s) to stop", signal.Signals(signum).name,
                     len(self.processes))
        self.stopping.set()

    def _populate(self) -> None:
        with blocked(STOP_SIGNALS):  # a new worker handles them once it can (see _worker)
            while len(self.processes) < self.config.workers:
                process = self.context.Process(
                    target=serve_worker, kwargs={"config": self.config,
                                                 "sockets": self.sockets,
                                                 "shutdown_event": self.stopping})
                process.daemon = self.config.daemon
                process.start()
                self.processes.append(process)

    def _reap(self) -> None:
        for process in [p for p in self.processes if p.exitcode is not None]:
            process.join()
            self.processes.remove(process)
            code = process.exitcode or 0
            if code != 0:  # a failed worker (or one refused to start) stops the server
                log.error("worker %s exited with code %s: stopping the server", process.pid, code)
                self.code = self.code or (code if code > 0 else FAILED)
                self.stopping.set()


@contextlib.contextmanager
def blocked(signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """Hold these signals while the block runs; a process started inside inherits the mask
    (so a new worker cannot die of SIGTERM before it handles it, nor lose one)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StopRequest:
    """A SIGTERM or SIGINT to this worker, or the master's stop event: time to stop."""

    def __init__(self, master: Event | None) -> None:
        self.master = master
        self.signum: int | None = None
        self._noted: asyncio.Event | None = None
        for signum in STOP_SIGNALS:  # until the loop runs (the app is still importing)
            signal.signal(signum, self._note)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _note(self, signum: int, frame: FrameType | None = None) -> None:
        if self.signum is not None:
            log.info("%s: already stopping", signal.Signals(signum).name)
            return
        self.signum = signum
        if self._noted is not None:
            self._noted.set()

    async def wait(self) -> str:
        """Wait for the request; return who made it, for the log."""
        loop = asyncio.get_running_loop()
        self._noted = asyncio.Event()
        for signum in STOP_SIGNALS:  # from now on, handled between two steps of the loop
            loop.add_signal_handler(signum, self._note, signum)
        if self.signum is not None:
            self._noted.set()
        while not await wait_until_set(self._noted, MASTER_POLL):
            if self.master is not None and self.master.is_set():
                return "asked by the master"
        assert self.signum is not None
        return f"{signal.Signals(self.signum).name} to this worker"


def serve_worker(config: Config, sockets: Sockets | None = None,
                 shutdown_event: Event | None = None) -> None:
    """One worker process: load the app, serve, stop gracefully when asked (see module)."""
    request = StopRequest(shutdown_event)
    app = load_application(config.application_path, config.wsgi_max_body_size)

    async def stopped() -> None:
        await drain(app, await request.wait())

    loop_factory = _uvloop_factory() if config.worker_class == "uvloop" else None
    try:
        with asyncio.Runner(debug=config.debug, loop_factory=loop_factory) as runner:
            runner.get_loop().set_exception_handler(_quiet_exception_handler)
            runner.run(worker_serve(app, config, sockets=sockets, shutdown_trigger=stopped))
    finally:
        for signum in STOP_SIGNALS:  # the loop is gone: a late signal must not kill the exit
            signal.signal(signum, signal.SIG_IGN)


async def drain(app: Any, why: str) -> None:
    """Drain the app's Offload service (if it has one) while the server still serves: its
    store stays open for the clients still connected, until the app's own shutdown."""
    extension = _offload_of(app)
    if extension is None:
        log.info("stopping (%s)", why)
        return
    service = extension.service
    log.info("stopping (%s): new work is refused (503 on /readyz), running tasks get %gs",
             why, service.settings.shutdown_grace)
    began = time.monotonic()
    try:
        await service.drain()
    except Exception:
        log.exception("draining the task service failed")
        return
    log.info("the task service drained in %.1fs: closing connections",
             time.monotonic() - began)


def _offload_of(app: Any) -> Any:
    """The Offload extension of a loaded app (Hypercorn wraps the Quart app), or None."""
    extensions = getattr(getattr(app, "app", app), "extensions", None)
    return extensions.get("offload") if isinstance(extensions, dict) else None


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    import uvloop  # type: ignore[import-not-found]  # only with worker_class = "uvloop"

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # As Hypercorn's own runner does, a client's failed TLS handshake is not our error. And
    # on Python 3.11 a connection that Hypercorn cancels at graceful_timeout (an event
    # stream still open when the server stops) makes asyncio's stream callback raise
    # CancelledError (fixed in 3.12): not an error either, and no traceback for it.
    if not isinstance(context.get("exception"), ssl.SSLError | asyncio.CancelledError):
        loop.default_exception_handler(context)
