"""The in-process peer for B4: taskiq's ``InMemoryBroker`` with a no-op task.

Results are all kept (``max_stored_results=-1``), as Offload keeps every record, so that
each one can be read back; everything else is taskiq's default.
"""

from __future__ import annotations

from taskiq import InMemoryBroker

broker = InMemoryBroker(max_stored_results=-1)


@broker.task(task_name="noop")
async def noop() -> None:
    """Nothing at all."""
