"""Tasks for the end-to-end workflow tests: ``start_workflows`` runs inside the real server
and submits a chain, a chord and groups through the library there (the library's API runs
in the process that holds the service), so the server that accepted them is the one a test
kills. Their first steps are ``idempotent_run``/``journal_run`` of ``durable_tasks``: they
journal their runs and hold until the test creates the gate file.
"""

from __future__ import annotations

from service import chain, chord, group, task
from service.models import JSON

from .durable_tasks import idempotent_run, journal_run

HOLD = 60.0  # seconds a gated step holds at most; every test opens its gate well before


@task
async def suffix(text: str, tail: str) -> str:
    return text + tail


@task
async def joined(parts: list[str]) -> str:
    """A chord's callback: its results joined with ``+``."""
    return "+".join(parts)


@task
async def start_workflows(tag: str, gate: str) -> dict[str, JSON]:
    """Submit, through the library in this process: a chain whose head is running when a
    test kills the server (idempotent: it runs again after the restart) and passes its
    result on; a chord and a group of such heads; a group with a member that is cut off by
    the kill (not idempotent: it fails ``Interrupted``). Returns their ids."""
    chained = await chain(idempotent_run.s(f"{tag}-head", HOLD, gate), suffix.s("-two"),
                          suffix.s("-three")).submit()
    chorded = await chord([idempotent_run.s(f"{tag}-c1", HOLD, gate),
                           idempotent_run.s(f"{tag}-c2", HOLD, gate)], joined.s()).submit()
    grouped = await group(idempotent_run.s(f"{tag}-g1", HOLD, gate),
                          suffix.s(f"{tag}-g", "2")).submit()
    doomed = await group(journal_run.s(f"{tag}-doomed", HOLD, gate),
                         suffix.s("a", "b")).submit()
    return {"chain": chained.id, "chain_steps": [step.id for step in chained.steps],
            "chord": chorded.id, "group": grouped.id, "group_members": grouped.ids,
            "doomed": doomed.id, "doomed_members": doomed.ids}
