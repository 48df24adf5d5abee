"""The core is framework-free: it imports and runs without Quart."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_core_runs_in_a_plain_asyncio_program_without_importing_quart() -> None:
    program = textwrap.dedent("""
        import asyncio, sys
        from service import TaskService, task

        @task
        async def double(x: int) -> int:
            return 2 * x

        async def main() -> None:
            service = TaskService()
            service.register(double)
            await service.start()
            handle = await double.submit(21)
            print(await handle.result(timeout=5))
            await service.stop()

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"quart", "hypercorn",
                                                                       "quart_schema"})
        print(loaded)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["42", "[]"]


def test_quart_extension_is_loaded_only_when_asked_for() -> None:
    program = "import service, sys; service.Offload; print('quart' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
