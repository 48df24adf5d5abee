"""The front's checks of depends_on inside one batch: indexes become ids, a cycle is named
by one of its own links, and the longest path is bounded."""

from __future__ import annotations

import pytest

from service.errors import InvalidSubmission
from service.links import link
from service.models import Submission, TaskRecord


def batch(*depends_on: list[str | int]) -> tuple[list[TaskRecord], list[Submission]]:
    submissions = [Submission("t", depends_on=d) for d in depends_on]
    return [TaskRecord(name="t") for _ in submissions], submissions


def refused(records: list[TaskRecord], submissions: list[Submission], most: int = 10) -> str:
    with pytest.raises(InvalidSubmission) as caught:
        link(records, submissions, most)
    return caught.value.errors[0].field


def test_indexes_become_ids_and_ids_stay() -> None:
    records, submissions = batch([], [0, "X" * 24], [1])
    link(records, submissions, 10)
    assert records[1].depends_on == [records[0].id, "X" * 24]
    assert records[2].depends_on == [records[1].id]


def test_a_cycle_is_named_by_a_link_on_it_not_by_one_leading_to_it() -> None:
    # 0 waits for the cycle 1 <-> 2 but is not on it
    assert refused(*batch([1], [2], [1])) in ("tasks.1.depends_on.0", "tasks.2.depends_on.0")
    assert refused(*batch([0])) == "tasks.0.depends_on.0"
    assert refused(*batch([], [0, 2], [1])) in ("tasks.1.depends_on.1", "tasks.2.depends_on.0")


def test_the_longest_path_is_bounded() -> None:
    diamond = ([], [0], [0], [1, 2])  # three tasks on its longest path
    link(*batch(*diamond), 3)
    assert refused(*batch(*diamond), most=2) == "tasks.3.depends_on.0"
