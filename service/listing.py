"""Pages of tasks: a list request checked and turned into a store query, and the cursor of
the next page (signed, so that any process reads any cursor and none can be forged)."""

from __future__ import annotations

from collections.abc import Sequence

from .cursor import BadCursor, CursorCodec
from .errors import BadQuery
from .models import Status, TaskRecord
from .stores.base import ListQuery


def page_query(cursors: CursorCodec, max_page: int, *, statuses: Sequence[str],
               name: str | None, owner: str | None, limit: int,
               cursor: str | None) -> ListQuery:
    """The store query of one page; :class:`BadQuery` for a bad status, limit or cursor.
    It asks for one record more than the page holds, to tell whether another page follows."""
    if not 1 <= limit <= max_page:
        raise BadQuery(f"limit must be between 1 and {max_page}")
    return ListQuery(statuses=parse_statuses(statuses), name=name, owner=owner,
                     limit=limit + 1, before_seq=_decode(cursors, cursor))


def next_page(items: list[TaskRecord], query: ListQuery, cursors: CursorCodec
              ) -> tuple[list[TaskRecord], str | None]:
    """The page, and the cursor of the next one (None on the last page)."""
    if len(items) < query.limit:
        return items, None
    items = items[:-1]
    return items, cursors.encode(items[-1].seq)


def parse_statuses(values: Sequence[str]) -> frozenset[Status] | None:
    try:
        return frozenset(Status(v) for v in values) or None
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise BadQuery(f"status must be one of: {allowed}") from None


def _decode(cursors: CursorCodec, cursor: str | None) -> int | None:
    try:
        return None if cursor is None else cursors.decode(cursor)
    except BadCursor as exc:
        raise BadQuery(str(exc)) from None
