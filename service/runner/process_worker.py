"""The child side of the process pool: JSON lines in, JSON lines out, nothing pickled.

Started as ``python -m service.runner.process_worker NICE idle|normal``. Reads one request
a line on stdin: ``{"module", "qualname", "args", "kwargs"}``; answers ``{"progress": {...}}`` lines
and finally ``{"ok": value}`` or ``{"error": {"type", "message", "traceback", "mro"}}``.
The task's own prints go to stderr, so they cannot corrupt the protocol.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import IO, Any

from .. import jsonutil
from ..context import TaskContext, set_current
from ..models import Progress

PARENT_CHECK_INTERVAL = 0.5
YIELD_EVERY = 0.001  # seconds of CPU time between two chances to give the CPU up


def main() -> None:
    lower_priority(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                   idle=len(sys.argv) > 2 and sys.argv[2] == "idle")
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lock = threading.Lock()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _send(channel, lock, {"ready": os.getpid()})
    for line in sys.stdin:
        _send(channel, lock, _handle(json.loads(line), channel, lock))


def lower_priority(nice: int, idle: bool) -> None:
    """CPU-bound work must not starve the event loop's process. ``nice`` only weighs it
    less (on 2 cores, 4 busy workers still delay a request by a time slice now and then);
    Linux's SCHED_IDLE gives the CPU to any normal process that wants it."""
    if nice:
        os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        # refused (a seccomp profile, say): the nice value still holds
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            _enter_the_kernel_often()


def _enter_the_kernel_often() -> None:
    """Let a waking request take this CPU within a millisecond, not a clock tick.

    Under the kernel's "none" and "lazy" preemption models a woken process only marks a
    running user-space process for rescheduling, and the switch happens when that process
    next enters the kernel: for pure computation, at the next tick (4 ms at 250 Hz). A
    timer signal per millisecond of CPU time is such an entry, and costs next to nothing.
    """
    signal.signal(signal.SIGVTALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_VIRTUAL, YIELD_EVERY, YIELD_EVERY)


def _exit_with_parent(parent_pid: int) -> None:
    # A busy worker never reads stdin, so it would not see its server die (SIGKILL, OOM
    # killer) and would go on burning CPU as an orphan: look for the parent now and then.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_INTERVAL)
    os._exit(1)


def _handle(request: dict[str, Any], channel: IO[str], lock: threading.Lock) -> dict[str, Any]:
    def sink(progress: Progress) -> None:
        _send(channel, lock, {"progress": progress.to_json()})

    context = TaskContext(request.get("task_id", ""), request.get("attempt", 1), sink,
                          lambda: False, lambda fn: fn(), request.get("task_name", ""))
    fresh = contextvars.Context()  # nothing one task sets reaches the next in this worker
    fresh.run(set_current, context)
    try:
        value = fresh.run(_call, request)
        jsonutil.check(value)
    except jsonutil.NotJSON as exc:  # the same error as for async and thread tasks
        return {"error": _describe(TypeError(f"the task's result is not a JSON value: {exc}"))}
    except Exception as exc:
        return {"error": _describe(exc)}
    return {"ok": value}


def _call(request: dict[str, Any]) -> Any:
    target: Any = importlib.import_module(request["module"])
    for part in request["qualname"].split("."):
        target = getattr(target, part)
    task_type = getattr(target, "task_type", None)
    if task_type is None:
        return target(*request["args"], **request["kwargs"])
    call = task_type.bind(request["args"], request["kwargs"])
    return task_type.fn(*call.args, **call.kwargs)


def _describe(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "mro": [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__],
    }


def _send(channel: IO[str], lock: threading.Lock, message: dict[str, Any]) -> None:
    line = json.dumps(message, allow_nan=False)
    with lock:
        channel.write(line + "\n")
        channel.flush()


if __name__ == "__main__":
    main()
