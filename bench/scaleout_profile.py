"""Where Celery mode's end-to-end time goes (B10a): py-spy on Offload's web process and on
its Celery worker's pool process, while B10a's driver runs against them.

    .venv/bin/python -m bench.scaleout_profile [--tasks 8000] [--duration 8] [--concurrency 1]

Starts the B10 deployment (``bench/scaleout_stacks.py``: redis-server, ``python -m service``, one
``celery -A service.celery_app worker -c N``), runs ``bench/e2e.py single`` against it and,
two seconds in, records the web process's Hypercorn worker and the worker's pool process(es)
with py-spy (from ``bench/.venv``) for ``--duration`` seconds, all at once: collapsed stacks,
only samples holding the GIL (Python running, in any thread). Each summary (self time by
package and function, Offload's functions by inclusive time; ``bench.profile.summarize``) is
printed and written to ``bench/results/b10-<part>-profile.txt``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.common import product_python
from bench.procs import BENCH_BIN, REPO
from bench.profile import RESULTS, summarize
from bench.scaleout_stacks import offload_stack


def record(pids: dict[str, int], duration: float) -> dict[str, str]:
    """py-spy on each PID at once; their collapsed stacks, by part."""
    spy = str(BENCH_BIN / "py-spy")
    outputs = {part: RESULTS / f"b10-{part}-raw.txt" for part in pids}
    spies = [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", f"{duration:g}",
                               "--rate", "200", "--function", "--gil", "--full-filenames",
                               "--threads", "--format", "raw", "--output",
                               str(outputs[part]), "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for part, pid in pids.items()]
    for spy_process in spies:
        _, err = spy_process.communicate(timeout=duration + 60)
        if spy_process.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-1000:]}")
    return {part: path.read_text() for part, path in outputs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=8000)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    procs.install_cleanup()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="offload-b10-profile-") as tmp,
          offload_stack(Path(tmp), "B10-profile", args.concurrency) as stack):
        assert stack.web is not None
        worker = stack.parts["worker"][0]
        pids = {"web": procs.worker_pid(stack.web)}
        for index, pid in enumerate(sorted(worker.children())):
            pids[f"pool{index + 1}"] = pid
        driver = subprocess.Popen(
            [product_python(), "-m", "bench.e2e", "single", "--port", str(stack.web.port),
             "--n", str(args.tasks), "--conns", "32"], cwd=REPO,
            env=procs.clean_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # the submissions are under way
        raws = record(pids, args.duration)
        out, _ = driver.communicate(timeout=600)
        print(f"driver: {out.strip()}")
    for part, raw in raws.items():
        text = summarize(raw)
        (RESULTS / f"b10-{part}-profile.txt").write_text(text + "\n")
        print(f"\n== {part} (pid {pids[part]}) ==\n{text}")


if __name__ == "__main__":
    main()
