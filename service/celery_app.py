"""Celery workers that run Offload's tasks: ``celery -A service.celery_app worker``.

Settings come from the environment, as for the web processes: ``OFFLOAD_CELERY_BROKER``,
``OFFLOAD_STORE`` (``redis://…``) and ``OFFLOAD_TASK_MODULES``, plus the other
``OFFLOAD_*`` limits. Every task type is a Celery task named ``offload.<name>``; its message
carries the record's id (also the Celery task id) and its generation, nothing else. Every
Celery worker option works (``-c``, ``--pool``, ``--autoscale``, ``-Q``, ``--hostname``);
see docs/celery.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from .errors import StoreUnavailable
from .runner.process_worker import lower_priority
from .scaleout.config import celery_name, make_celery, offload_name
from .scaleout.worker import WorkerHost, load_registry
from .settings import Settings

log = logging.getLogger("offload.celery")
STORE_PAUSE = 1.0  # seconds a message waits before it goes back while the store is down

settings = Settings.load()
app = make_celery(settings)
registry = load_registry(settings)

_host: WorkerHost | None = None
_host_lock = threading.Lock()
_worker_pid: int | None = None  # the worker's own process (its solo pool runs tasks there)


def _current_host() -> WorkerHost:
    """This process's host: made at a prefork child's start, else at the first task (the
    ``threads`` and ``solo`` pools run tasks in the worker process itself)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = WorkerHost(settings, registry, app, inline_process=False)
            _host.start()
        return _host


def run_task(self: Task[Any, Any], task_id: str, attempts: int = 0) -> None:
    """Start and run the record the message names (see WorkerHost.run)."""
    try:
        later = _current_host().run(task_id, attempts, offload_name(self.name))
    except StoreUnavailable as exc:  # the message goes back to the broker, not lost
        log.warning("task %s: the store is unreachable (%s); the message goes back to the "
                    "broker", task_id, exc)
        time.sleep(STORE_PAUSE)  # not at once: a store that is down stays down a while
        raise Reject(str(exc), requeue=True) from exc
    if later is not None:  # its attempt runs elsewhere, or its type is at a limit: the
        # same message, a little later
        raise self.retry(countdown=later)  # never "too many": the task's max_retries is None


for _task_type in registry.every_type():  # the built-in offload.group too
    # max_retries=None on the task: retry(max_retries=None) would mean Celery's default, 3
    app.task(name=celery_name(_task_type.name), bind=True, ignore_result=True,
             acks_late=True, reject_on_worker_lost=True, max_retries=None)(run_task)


@worker_init.connect
def _note_the_worker(**_: object) -> None:
    global _worker_pid
    _worker_pid = os.getpid()


@worker_process_init.connect
def _start_pool_process(**_: object) -> None:
    """A prefork child: process tasks run in it (Celery's pool is the process pool), in a
    thread that takes the process pool's lower priority (see InlineProcessExecutor); the
    opt-in yield timer is the whole process's (a signal handler, set from this thread).
    The solo pool sends this signal in the worker itself: no pool process, so process
    tasks go to a subprocess pool as with ``threads`` (see _current_host)."""
    if os.getpid() == _worker_pid:
        return
    lower_priority(0, yield_timer=settings.process_yield_timer)
    global _host
    with _host_lock:
        _host = WorkerHost(settings, registry, app, inline_process=True)
        _host.start()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop_host(**_: object) -> None:
    global _host
    with _host_lock:
        host, _host = _host, None
    if host is not None:
        try:
            host.stop()
        except Exception:
            log.exception("stopping Offload's worker failed")
