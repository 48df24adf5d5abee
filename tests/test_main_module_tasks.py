"""A process task defined in ``__main__`` is refused when it is declared, not when it runs:
a worker process imports the function by its module, and ``__main__`` there is not the
user's script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import TaskService, task
from service.registry import TaskType

from .conftest import settings

ROOT = Path(__file__).resolve().parent.parent


def in_main(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as if the script being run (``python script.py``) had defined it."""
    fn.__module__ = "__main__"
    return fn


def square(n: int) -> int:
    return n * n


def test_a_process_task_in_main_is_refused_with_what_to_do() -> None:
    fn = in_main(lambda n: n)
    fn.__qualname__ = "crunch"

    with pytest.raises(ValueError, match=r"defined in __main__.*move it into a module"):
        task(executor="process")(fn)
    with pytest.raises(ValueError, match="__main__"):
        TaskType("crunch", fn, "process")


def test_thread_and_async_tasks_in_main_are_fine() -> None:
    def threaded(n: int) -> int:
        return n

    async def awaited(n: int) -> int:
        return n

    threaded.__qualname__ = awaited.__qualname__ = "top"  # as if defined at module level
    assert task(in_main(threaded)).task_type.executor == "thread"
    assert task(in_main(awaited)).task_type.executor == "async"


def test_the_service_refuses_it_at_registration() -> None:
    service = TaskService(settings(task_modules=()))
    fn = in_main(lambda n: n)
    fn.__qualname__ = "crunch"

    with pytest.raises(ValueError, match="move it into a module"):
        service.task(executor="process")(fn)
    assert "crunch" not in service.registry
    service.register(task(executor="process")(square))  # from a module: fine
    assert "square" in service.registry


def test_a_script_that_declares_one_stops_at_the_declaration(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        from service import task

        @task(executor="process")
        def crunch(n: int) -> int:
            return n * n

        print("declared")  # never reached
    """))

    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={"PYTHONPATH": str(ROOT)})

    assert done.returncode == 1
    assert "declared" not in done.stdout
    assert "process task 'crunch' is defined in __main__" in done.stderr
    assert "move it into a module" in done.stderr
