"""Process workers: ``nice`` only by default; SCHED_IDLE and the CPU timer are opt-in; each
is skipped where the platform lacks it; group signals do not kill a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from service.runner import process_worker
from service.settings import Settings

TIMER = {"module": "tests.runner.runner_tasks", "qualname": "process_cpu_timer_interval",
         "args": [], "kwargs": {}}
POLICY = {**TIMER, "qualname": "process_scheduler_policy"}


def start_worker(*options: str) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.runner.process_worker", "0", *options],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert worker.stdout is not None
    assert "ready" in json.loads(worker.stdout.readline())
    return worker


def ask(worker: subprocess.Popen[bytes], request: dict[str, Any]) -> Any:
    assert worker.stdin is not None
    assert worker.stdout is not None
    worker.stdin.write(json.dumps(request).encode() + b"\n")
    worker.stdin.flush()
    reply = json.loads(worker.stdout.readline())
    return reply["ok"]


def test_the_defaults_are_nice_only() -> None:
    settings = Settings.load(environ={})
    assert settings.process_nice == 10
    assert settings.process_idle_priority is False
    assert settings.process_yield_timer is False


def test_the_yield_timer_is_opt_in_and_runs_every_millisecond_of_cpu() -> None:
    plain, timed = start_worker(), start_worker("yield-timer")
    try:
        assert ask(plain, TIMER) == 0
        assert ask(timed, TIMER) == process_worker.YIELD_EVERY
        assert ask(timed, POLICY) == os.sched_getscheduler(0)  # the timer alone: no SCHED_IDLE
    finally:
        for worker in (plain, timed):
            worker.kill()
            worker.communicate()


def test_sigterm_and_sigint_do_not_stop_a_worker() -> None:
    # sent to the whole group (Ctrl+C, systemd), they reach the worker: its server decides
    worker = start_worker()
    try:
        worker.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGINT)
        assert ask(worker, TIMER) == 0  # still answering
        assert worker.poll() is None
    finally:
        worker.kill()
        _, stderr = worker.communicate()
    assert b"Traceback" not in stderr  # no KeyboardInterrupt either


def test_without_os_nice_the_nice_value_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "nice")  # as on Windows
    process_worker.lower_priority(5)  # nothing to call, nothing raised


@pytest.mark.parametrize("missing", ["sched_setscheduler", "SCHED_IDLE"])
def test_without_sched_idle_it_is_skipped(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.delattr(os, missing)  # as on macOS
    assert process_worker.schedule_idle() is False
    process_worker.lower_priority(0, idle=True)


@pytest.mark.parametrize("missing", ["SIGVTALRM", "setitimer", "siginterrupt"])
def test_without_a_cpu_timer_it_is_skipped(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.delattr(signal, missing)  # as on Windows
    assert process_worker.enter_the_kernel_often() is False
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
