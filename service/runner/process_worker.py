"""The child side of the process pool: JSON lines in, JSON lines out, nothing pickled.

Started as ``python -m service.runner.process_worker NICE [idle] [yield-timer]``. Reads one
request a line on stdin: ``{"module", "qualname", "args", "kwargs"}``; answers
``{"progress": {...}}`` lines and finally ``{"ok": value}`` or
``{"error": {"type", "message", "traceback", "mro"}}``. The task's own prints go to stderr,
so they cannot corrupt the protocol.

A worker is stopped by its server (SIGKILL) or by the server's death, never by SIGTERM or
SIGINT: those reach it too when they are sent to the whole process group (Ctrl+C, systemd's
``KillMode=control-group``), and its task must get the server's shutdown grace.
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
from types import FrameType
from typing import IO, Any

from .. import jsonutil
from ..context import TaskContext, set_current
from ..models import Progress

PARENT_CHECK_INTERVAL = 0.5
YIELD_EVERY = 0.001  # seconds of CPU time between two chances to give the CPU up


def main() -> None:
    _outlive_stop_signals()
    options = set(sys.argv[2:])
    lower_priority(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                   idle="idle" in options, yield_timer="yield-timer" in options)
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lock = threading.Lock()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _send(channel, lock, {"ready": os.getpid()})
    for line in sys.stdin:
        _send(channel, lock, _handle(json.loads(line), channel, lock))


def lower_priority(nice: int, idle: bool = False, yield_timer: bool = False) -> None:
    """CPU-bound work must not starve the event loop's process.

    ``nice`` (the default, everywhere but Windows) only weighs it less: on 2 cores, 4 busy
    workers still delay a request by a time slice now and then. ``idle`` (opt-in,
    ``OFFLOAD_PROCESS_IDLE_PRIORITY``; Linux only) adds ``SCHED_IDLE``, which gives the CPU to
    any normal process that wants it: on a host kept busy by normal processes, process tasks
    then starve. ``yield_timer`` (opt-in, ``OFFLOAD_PROCESS_YIELD_TIMER``): see
    :func:`enter_the_kernel_often`. Each is skipped where the platform lacks it.
    """
    if nice and hasattr(os, "nice"):
        with contextlib.suppress(OSError):  # refused (a container's policy): run as we are
            os.nice(nice)
    if idle:
        schedule_idle()
    if yield_timer:
        enter_the_kernel_often()


def schedule_idle() -> bool:
    """Run this process under Linux's SCHED_IDLE; False where it is missing or refused."""
    set_scheduler = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_IDLE", None)
    if set_scheduler is None or policy is None:  # macOS, Windows
        return False
    try:
        set_scheduler(0, policy, os.sched_param(0))
    except OSError:  # refused (a seccomp profile, say): the nice value still holds
        return False
    return True


def enter_the_kernel_often() -> bool:
    """Let a waking request take this CPU within a millisecond, not a clock tick.

    Under the kernel's "none" and "lazy" preemption models a woken process only marks a
    running user-space process for rescheduling, and the switch happens when that process
    next enters the kernel: for pure computation, at the next tick (4 ms at 250 Hz). A
    timer signal per millisecond of CPU time is such an entry. The cost: the worker's
    SIGVTALRM belongs to this timer (a task that uses it breaks it), and a handler runs about
    1,000 times per CPU-second. System calls it interrupts are restarted, not failed with
    EINTR. False where the platform has no such timer (Windows).
    """
    if not all(hasattr(signal, name) for name in ("SIGVTALRM", "setitimer", "siginterrupt")):
        return False
    signal.signal(signal.SIGVTALRM, _ignore_signal)
    signal.siginterrupt(signal.SIGVTALRM, False)
    signal.setitimer(signal.ITIMER_VIRTUAL, YIELD_EVERY, YIELD_EVERY)
    return True


def _outlive_stop_signals() -> None:
    # A handler that does nothing, not SIG_IGN: programs the task starts get the default back.
    for name in ("SIGTERM", "SIGINT"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _ignore_signal)
            if hasattr(signal, "siginterrupt"):
                signal.siginterrupt(signum, False)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    pass


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
