"""Tasks every registry has, for Offload's own use: ``offload.group``, the task that gives a
group an id and a status of its own (see :class:`~service.workflows.Group`).

Internal: not listed in ``GET /task-types`` or the OpenAPI document, and a submission
over HTTP that names one is refused as an unknown type; only a workflow submits one.
"""

from __future__ import annotations

from typing import Any

GROUP_JOIN = "offload.group"


async def group_join(results: list[Any]) -> list[Any]:
    """The results of a group's members, in order. It waits for every member (its
    ``depends_on``) and gets the list of their results, as a chord's callback does: so it
    ends when the group does, succeeded with the list or cancelled naming the member that
    did not succeed."""
    return results
