"""A stateful property test of the core: Hypothesis drives a :class:`TaskService` through
random sequences of submit, cancel, delete, complete, fail, retry, time out, evict and
restart, and checks the service's promises after every step.

How it does without sleeps: every task either finishes at once or is *held*
(tests/state_tasks.py) until a rule hands it a verdict. After each rule the machine waits, on
events and not on a clock, until every task is at rest (terminal; held and waiting for a
verdict; queued behind full capacity; or scheduled far ahead) and then records what it sees.
A task that should move and does not within ``SETTLE_LIMIT`` is itself a failure. Rules have
no preconditions, so the rules Hypothesis draws never depend on thread timing. The rules and
the waiting live in tests/core_machine.py, what it knows of each task in
tests/core_machine_model.py; the promises (invariants) are here.

Eviction happens only when the machine says so: the ``evict`` rule runs the sweeper's pass
(``service.evict()``: the oldest finished records beyond ``max_records``) and then a TTL cut
at a moment it picks. Between two such rules finished records pile up, and no record may
leave the store unless a rule deleted or evicted it.

Stores: the machine gets its store from a :class:`StoreKind`, once per run of the service
(a *generation*), and each kind is a test class of its own (end of file). The memory store
and the copying store (tests/stores/copying.py: a memory store behind deep copies, which
catches code that relies on sharing record objects with the store) start empty on each run,
so a restart drops every record. A durable store hands the next run what the last one left,
and the machine then expects queued work to run again and interrupted work to be re-queued
or failed: ``DURABLE_STAND_IN`` (a memory store flagged durable, kept across restarts) and
the SQLite store (a file in the machine's temporary directory, reopened on each run). The
restart rule stops the old service gracefully (no grace for tasks), so every attempt it ran
is settled before the next one starts: no lease is left to expire.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from service.errors import TaskNotFound
from service.models import TERMINAL, Status, Submission, TaskRecord
from service.stores import MemoryStore, SQLiteStore, TaskStore
from tests.core_machine import MEMORY, CoreMachine, StoreKind
from tests.core_machine_model import (
    CORE,
    HELD_KINDS,
    KINDS,
    LONG,
    OWNERS,
    PAGE,
    REACHABLE,
    SHORT,
    Kind,
    expected_result,
    possible_errors,
)
from tests.stores.copying import CopyingStore

# -- stores -------------------------------------------------------------------------------


class DurableMemoryStore(MemoryStore):
    """Stands in for a durable store: kept across restarts, flagged durable."""

    durable = True


def _sqlite(workdir: Path, previous: TaskStore | None) -> TaskStore:
    return SQLiteStore(workdir / "tasks.db")  # the same file, opened again by each run


DURABLE_STAND_IN = StoreKind(
    "durable stand-in", lambda workdir, previous: previous or DurableMemoryStore())
COPYING = StoreKind("copying", lambda workdir, previous: CopyingStore())
SQLITE = StoreKind("sqlite", _sqlite)


# -- the rules and the promises ---------------------------------------------------------------


class PromisesMachine(CoreMachine):
    """The machine's rules, and after every step the service's promises."""

    # -- rules ----------------------------------------------------------------------------

    @rule(kind=st.sampled_from(KINDS), n=st.integers(0, 3), priority=st.integers(-2, 2),
          delay=st.sampled_from([None, None, None, 0.0, SHORT, LONG]),
          timeout=st.sampled_from([None, None, None, None, SHORT, LONG]),
          owner=st.sampled_from(OWNERS), idempotency_key=st.sampled_from([None, None, "k1", "k2"]),
          again=st.booleans())
    def submit(self, kind: Kind, n: int, priority: int, delay: float | None,
               timeout: float | None, owner: str | None, idempotency_key: str | None,
               again: bool) -> None:
        """Submit a task; with ``again``, repeat the submission that holds the key."""
        key = f"t{self.counter}"
        self.counter += 1
        submission = Submission(kind.name, kind.args(key, n), {}, delay, priority, timeout)
        holder = self._key_holder(owner, idempotency_key)
        if again and holder is not None:
            kind, key, submission = holder.kind, holder.key, holder.submission
        self._run(self._submit(kind, key, submission, owner, idempotency_key))

    @rule(kind=st.sampled_from(HELD_KINDS), priority=st.integers(-2, 2),
          owner=st.sampled_from(OWNERS))
    def submit_held(self, kind: Kind, priority: int, owner: str | None) -> None:
        """A held task, no options: it runs and waits for a verdict (or for capacity)."""
        key = f"t{self.counter}"
        self.counter += 1
        submission = Submission(kind.name, [key], {}, None, priority, None)
        self._run(self._submit(kind, key, submission, owner, None))

    @rule(kind=st.sampled_from(HELD_KINDS), priority=st.integers(-2, 2))
    def time_out(self, kind: Kind, priority: int) -> None:
        """A held task with a short timeout: it fails with TimeoutError once it runs."""
        key = f"t{self.counter}"
        self.counter += 1
        submission = Submission(kind.name, [key], {}, None, priority, SHORT)
        task_id = self._run(self._submit(kind, key, submission, None, None))
        if task_id is not None:
            last = self.tracked[task_id].last
            assert last.status is Status.QUEUED or (
                last.status is Status.FAILED and last.error == "TimeoutError"), last

    # No preconditions: which rules may run must not depend on timing, or Hypothesis sees
    # "flaky data generation". A rule with nothing to act on does nothing.

    @rule(pick=st.integers(0, 255), as_owner=st.sampled_from([None, None, "alice", "bob"]))
    def cancel(self, pick: int, as_owner: str | None) -> None:
        """Cancel any task ever accepted (gone ones must be not found)."""
        tracked = self._pick([self.tracked[i] for i in self.order], pick)
        if tracked is not None:
            self._run(self._cancel(tracked, as_owner))

    @rule(pick=st.integers(0, 255), as_owner=st.sampled_from([None, None, "alice", "bob"]))
    def delete(self, pick: int, as_owner: str | None) -> None:
        """Delete any task ever accepted (only finished ones may go)."""
        tracked = self._pick([self.tracked[i] for i in self.order], pick)
        if tracked is not None:
            self._run(self._delete(tracked, as_owner))

    @rule(pick=st.integers(0, 255))
    def complete(self, pick: int) -> None:
        """Let a running held task return."""
        self._give(pick, "succeed")

    @rule(pick=st.integers(0, 255))
    def fail(self, pick: int) -> None:
        """Make a running held task raise an error that is not retried."""
        self._give(pick, "fail")

    @rule(pick=st.integers(0, 255))
    def retry(self, pick: int) -> None:
        """Make a running held task raise a retryable error."""
        self._give(pick, "retry")

    @rule(pick=st.integers(0, 255))
    def evict(self, pick: int) -> None:
        """The sweeper's pass (max_records), then its TTL cut at a chosen moment."""
        self._run(self._evict(pick))

    @rule()
    def restart(self) -> None:
        """Stop the service (no grace) and start a new one on the next generation's store."""
        self._run(self._restart())

    # -- the promises -----------------------------------------------------------------------

    @invariant()
    def statuses_only_move_forward(self) -> None:
        for tracked in self.tracked.values():
            for source, snaps in (("record", tracked.records), ("events", tracked.events)):
                for earlier, later in itertools.pairwise(snaps):
                    assert earlier.progress_key() <= later.progress_key(), (
                        tracked.id, source, earlier, later)
                    assert earlier.status == later.status or (
                        later.status in REACHABLE[earlier.status]), (source, earlier, later)
                    assert earlier.attempts <= later.attempts, (source, earlier, later)

    @invariant()
    def terminal_status_never_changes(self) -> None:
        for tracked in self.tracked.values():
            ends = [s for s in (*tracked.records, *tracked.events) if s.terminal]
            assert len(set(ends)) <= 1, (tracked.id, ends)
            for snaps in (tracked.records, tracked.events):
                if any(s.terminal for s in snaps):
                    first = next(i for i, s in enumerate(snaps) if s.terminal)
                    assert all(s == snaps[first] for s in snaps[first:]), snaps

    @invariant()
    def accepted_ids_are_found_until_evicted_or_deleted(self) -> None:
        self._run(self._check_found())

    async def _check_found(self) -> None:
        for tracked in self.tracked.values():
            if tracked.fate == "present":
                assert (await self.service.get(tracked.id)).id == tracked.id
                continue
            if tracked.fate == "evicted":
                assert tracked.seen_terminal() is not None, tracked
            if tracked.fate == "lost":
                assert not self.durable
            try:
                await self.service.get(tracked.id)
            except TaskNotFound:
                continue
            raise AssertionError(f"{tracked.fate} task {tracked.id} is still found")

    @invariant()
    def evicted_records_are_the_oldest(self) -> None:
        kept = [t.last.finished for t in self._present() if t.last.finished is not None]
        if kept and self.evicted_finished:
            assert max(self.evicted_finished) <= min(kept), (self.evicted_finished, kept)

    @invariant()
    def finished_records_stay_until_evicted(self) -> None:
        """Eviction is the sweeper's (the machine's) alone: every finished record the
        machine has not seen evicted or deleted is still counted, however many there are."""
        counts = self._run(self.service.store.count_by_status())
        finished = [t for t in self._present() if t.last.terminal]
        assert sum(counts[s] for s in TERMINAL) == len(finished), (counts, len(finished))

    @invariant()
    def stats_counts_equal_the_list(self) -> None:
        self._run(self._check_stats())

    async def _check_stats(self) -> None:
        for owner in OWNERS:
            stats = await self.service.stats(owner=owner)
            listed = await self._list_all(owner)
            seqs = [record.seq for record in listed]
            assert seqs == sorted(set(seqs), reverse=True), "not newest first, or repeated"
            counted = {status.value: 0 for status in Status}
            for record in listed:
                counted[record.status.value] += 1
            assert stats["counts"] == counted, (owner, stats["counts"], counted)
            expected = {t.id for t in self._present() if owner in (None, t.owner)}
            assert {record.id for record in listed} == expected
        counts = (await self.service.stats())["counts"]
        pending, _ = await self.service.list(statuses=["queued", "scheduled"], limit=1000)
        assert len(pending) == counts["queued"] + counts["scheduled"]

    async def _list_all(self, owner: str | None) -> list[TaskRecord]:
        items: list[TaskRecord] = []
        cursor: str | None = None
        while True:
            page, cursor = await self.service.list(owner=owner, limit=PAGE, cursor=cursor)
            assert len(page) <= PAGE
            items += page
            if cursor is None:
                return items
            assert len(page) == PAGE, "a short page with a next cursor"

    @invariant()
    def queue_within_its_bound(self) -> None:
        counts = self._run(self.service.store.count_by_status())
        pending = counts[Status.QUEUED] + counts[Status.SCHEDULED]
        depth = self._run(self.service.stats())["queue_depth"]
        assert depth == pending <= self._queue_bound(), (depth, counts)

    @invariant()
    def running_within_max_concurrency(self) -> None:
        counts = self._run(self.service.store.count_by_status())
        running = [t for t in self._present() if t.last.status is Status.RUNNING]
        assert self.service.runner.running == counts[Status.RUNNING] == len(running), (
            self.service.runner.running, counts)
        assert len(running) <= CORE.max_concurrency
        assert sum(t.kind.thread for t in running) <= CORE.thread_workers

    @invariant()
    def outcomes_have_a_cause(self) -> None:
        """Every end is one the machine caused: a verdict, a cancel, a timeout, a stop."""
        for tracked in self.tracked.values():
            last = tracked.seen_terminal() or tracked.records[-1]
            # a hand-back at shutdown runs the task once more, up to max_attempts + 1 runs
            assert last.attempts <= tracked.max_attempts + min(tracked.requeued, 1), (
                tracked, last)
            assert (last.finished is not None) == last.terminal, last
            if last.status is Status.CANCELLED:
                assert tracked.cancelled, tracked
            elif last.status is Status.SUCCEEDED:
                assert last.result == expected_result(tracked), (tracked, last)
                assert last.error is None, (tracked, last)
            elif last.status is Status.FAILED:
                assert last.error in possible_errors(tracked, last), (tracked, last)
            if not last.terminal:
                assert tracked.fate in ("present", "lost"), tracked


# -- the test cases -----------------------------------------------------------------------

# Bounded and seeded: the same sequences every run. Sized to keep this file under a minute
# on two cores (SQLite's steps cost more: it runs fewer).
RUNS = settings(max_examples=80, stateful_step_count=60, derandomize=True, database=None,
                deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=False)
SQLITE_RUNS = settings(RUNS, max_examples=30)


@RUNS
class MemoryStoreMachine(PromisesMachine):
    store_kind = MEMORY


@RUNS
class DurableStoreMachine(PromisesMachine):
    store_kind = DURABLE_STAND_IN


@RUNS
class CopyingStoreMachine(PromisesMachine):
    store_kind = COPYING


@SQLITE_RUNS
class SQLiteStoreMachine(PromisesMachine):
    store_kind = SQLITE


TestCoreWithMemoryStore = MemoryStoreMachine.TestCase
TestCoreWithDurableStore = DurableStoreMachine.TestCase
TestCoreWithCopyingStore = CopyingStoreMachine.TestCase
TestCoreWithSQLiteStore = SQLiteStoreMachine.TestCase
