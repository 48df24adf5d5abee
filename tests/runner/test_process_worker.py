"""A process worker must not outlive the server that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

SPAWN_AND_DIE = """
import os, subprocess, sys
worker = subprocess.Popen([sys.executable, "-m", "service.runner.process_worker", "0"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
worker.stdout.readline()  # ready
worker.stdin.write(b'{"module": "tests.sample_tasks", "qualname": "spin_forever", '
                   b'"args": [], "kwargs": {}}\\n')
worker.stdin.flush()
print(worker.pid, flush=True)
os._exit(0)  # the server dies like under SIGKILL: nobody stops the busy worker
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_a_busy_worker_exits_when_its_server_dies() -> None:
    out = subprocess.run([sys.executable, "-c", SPAWN_AND_DIE], capture_output=True, text=True,
                         timeout=30, check=True, env={**os.environ,
                                                      "PYTHONPATH": os.pathsep.join(sys.path)})
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:  # polls a condition, bounded
        time.sleep(0.05)
    assert not alive(pid), f"worker {pid} is still running without its server"
