"""The memory store's indexes for listing: ids in ``seq`` order per owner (cursor paging),
and the rules of which records a list query matches."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from ..models import TaskRecord
from .base import ListQuery

COMPACT_SLACK = 1024
EVERYONE = "\x00everyone"  # the key of the indexes over all owners (no owner id looks so)


class SeqIndex:
    """Ids in ``seq`` order for cursor paging. Deleted ids are skipped when read and
    compacted away now and then, instead of removed one by one."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.seqs: list[int] = []

    def append(self, seq: int, task_id: str) -> None:
        self.ids.append(task_id)
        self.seqs.append(seq)

    def newest_first(self, before_seq: int | None) -> Iterator[str]:
        start = len(self.seqs) if before_seq is None else bisect_left(self.seqs, before_seq)
        return (self.ids[i] for i in range(start - 1, -1, -1))

    def compact_if_sparse(self, live: int, alive: dict[str, TaskRecord]) -> None:
        if len(self.ids) > 2 * live + COMPACT_SLACK:
            kept = [(s, i) for s, i in zip(self.seqs, self.ids, strict=True) if i in alive]
            self.seqs = [s for s, _ in kept]
            self.ids = [i for _, i in kept]


def index_keys(record: TaskRecord) -> tuple[str, ...]:
    """The indexes a record is listed in: everyone's, and its owner's."""
    return (EVERYONE,) if record.owner is None else (EVERYONE, record.owner)


def matches(record: TaskRecord, query: ListQuery) -> bool:
    """Whether a list query's filters let the record through."""
    if query.owner is not None and record.owner != query.owner:
        return False
    if query.name is not None and record.name != query.name:
        return False
    return query.statuses is None or record.status in query.statuses


def index_of(indexes: dict[str, SeqIndex], key: str) -> SeqIndex:
    """``indexes[key]``, made if missing (``setdefault`` would build one on every call)."""
    index = indexes.get(key)
    if index is None:
        index = indexes[key] = SeqIndex()
    return index
