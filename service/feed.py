"""The service-wide event feed: every task change of this process, with ids, to any number
of readers (``GET /events``).

Each published change gets one id and one JSON encoding, shared by every reader and by a
ring buffer of recent events, bounded in count and in bytes, from which a reader that
reconnects with the last id it saw is served what it missed. Each reader has a queue bounded
the same way: one that falls behind is told so (a ``reset``) and continues live, its queue
cleared, so memory never grows with a slow reader (readers share the events' bytes).
Progress events of one task may be coalesced in a queue (a later one replaces an earlier
one not yet read); a status event is never dropped except through a reset.

Publishing costs one attribute check while nobody reads the feed: the buffer runs only
while a reader is connected and for ``RESUME_WINDOW`` seconds after the last one left, so
that a reader that reconnects meanwhile can resume.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

from . import jsonutil
from .errors import ShuttingDown
from .models import TaskRecord

FeedKind = Literal["status", "progress"]
ResetReason = Literal["cannot-resume", "fell-behind"]
RESUME_WINDOW = 60.0
"""Seconds the buffer keeps running after the last reader left, for it to come back."""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One change of one task: its id in the feed, its kind, and the task as JSON."""

    seq: int
    id: str
    kind: FeedKind
    task_id: str
    owner: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Reset:
    """The reader missed events: it should read the state again (``GET /tasks``)."""

    reason: ResetReason


class TooManyReaders(Exception):
    """The feed has as many readers as it may have."""


class Feed:
    """Every task change of this process, fanned out to readers (see the module)."""

    def __init__(self, buffer: int = 1000, queue: int = 1000, max_readers: int = 100,
                 include_traceback: bool = False, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.armed = False
        """True while events are recorded: a reader is connected, or left recently."""
        self._include_traceback = include_traceback
        self._queue_size = queue
        self._max_bytes = max_bytes
        self._max_readers = max_readers
        self._epoch = secrets.token_hex(6)  # ids of another process or run never resume
        self._seq = 0
        self._horizon = 1  # the lowest last-seen seq from which this feed can resume
        self._buffer_size = buffer
        self._buffer: deque[FeedEvent] = deque()
        self._buffered = 0  # bytes of the events in the buffer
        self._readers: dict[str | None, set[FeedReader]] = {}
        self._count = 0
        self._idle_since = 0.0
        self._closed = False

    def publish(self, kind: FeedKind, record: TaskRecord) -> None:
        """Record a change and hand it to the readers that may see it. Call only when
        :attr:`armed` (the one check on the hot path is the caller's)."""
        if not self._count and time.monotonic() - self._idle_since > RESUME_WINDOW:
            self._disarm()
            return
        self._seq += 1
        event = FeedEvent(self._seq, f"{self._epoch}-{self._seq}", kind, record.id,
                          record.owner, jsonutil.dumps(record.to_json(self._include_traceback)))
        self._record(event)
        for reader in self._readers.get(None, ()):
            reader.offer(event)
        if record.owner is not None:
            for reader in self._readers.get(record.owner, ()):
                reader.offer(event)

    def _record(self, event: FeedEvent) -> None:
        """Keep ``event`` for readers that resume; the oldest leave past either bound (the
        newest always stays, however large)."""
        if not self._buffer_size:
            self._horizon = event.seq
            return
        self._buffer.append(event)
        self._buffered += len(event.data)
        while len(self._buffer) > self._buffer_size or (
                self._buffered > self._max_bytes and len(self._buffer) > 1):
            oldest = self._buffer.popleft()
            self._buffered -= len(oldest.data)
            self._horizon = oldest.seq  # resuming from before what left cannot be done

    def subscribe(self, owner: str | None = None, last_event_id: str | None = None
                  ) -> FeedReader:
        """A reader of the events ``owner`` may see (None: every event), from now on, or
        from after ``last_event_id`` when the buffer still holds what followed it (else the
        reader starts with a ``cannot-resume`` reset). Synchronous: nothing published in
        between is missed or repeated."""
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        if self._count >= self._max_readers:
            raise TooManyReaders(f"at most {self._max_readers} event streams at once")
        if not self.armed:
            self.armed = True
            self._horizon = self._seq + 1  # what came before was not recorded
        reader = FeedReader(self, owner, self._queue_size, self._max_bytes)
        if last_event_id is not None:
            self._replay(reader, last_event_id)
        self._readers.setdefault(owner, set()).add(reader)
        self._count += 1
        return reader

    def reader_count(self) -> int:
        """Readers connected now."""
        return self._count

    def close(self) -> None:
        """End every reader once it has read what it was handed; refuse new readers."""
        self._closed = True
        for readers in self._readers.values():
            for reader in readers:
                reader.end()

    def _replay(self, reader: FeedReader, last_event_id: str) -> None:
        seq = self._resume_point(last_event_id)
        if seq is None:
            reader.reset("cannot-resume")
            return
        # the buffer holds consecutive seqs up to the newest: the missed are its last ones
        missed = self._seq - seq
        for event in itertools.islice(self._buffer, len(self._buffer) - missed, None):
            if reader.owner is None or event.owner == reader.owner:
                reader.offer(event)

    def _resume_point(self, last_event_id: str) -> int | None:
        """The seq after which to resume, or None if this feed cannot."""
        epoch, _, number = last_event_id.strip().partition("-")
        if epoch != self._epoch or not (number.isascii() and number.isdigit()) \
                or len(number) > 19:
            return None
        seq = int(number)
        return seq if self._horizon <= seq <= self._seq else None

    def _leave(self, reader: FeedReader) -> None:
        readers = self._readers.get(reader.owner)
        if readers is None or reader not in readers:
            return
        readers.discard(reader)
        if not readers:
            del self._readers[reader.owner]
        self._count -= 1
        if not self._count:
            self._idle_since = time.monotonic()

    def _disarm(self) -> None:
        self.armed = False
        self._buffer.clear()
        self._buffered = 0


class FeedReader:
    """One reader's queue of events: call :meth:`next` until :attr:`finished` (the feed
    closed), and :meth:`close` when done."""

    def __init__(self, feed: Feed, owner: str | None, size: int,
                 max_bytes: int = 16 * 1024 * 1024) -> None:
        self.owner = owner
        self._feed = feed
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0  # of the events queued
        # progress is keyed by task, so that a newer one replaces one not yet read
        self._queue: OrderedDict[tuple[str, object], FeedEvent] = OrderedDict()
        self._reset: ResetReason | None = None
        self._wake = asyncio.Event()
        self._ended = False
        self._closed = False

    def offer(self, event: FeedEvent) -> None:
        """Queue ``event``; a full queue is cleared and a ``fell-behind`` reset queued."""
        if event.kind == "progress":
            key: tuple[str, object] = ("progress", event.task_id)
            replaced = self._queue.pop(key, None)
            if replaced is not None:
                self._bytes -= len(replaced.data)
        else:
            key = ("status", event.seq)
        if self._queue and (len(self._queue) >= self._size
                            or self._bytes + len(event.data) > self._max_bytes):
            self._clear()
            self._reset = "fell-behind"
        self._queue[key] = event
        self._bytes += len(event.data)
        self._wake.set()

    def _clear(self) -> None:
        self._queue.clear()
        self._bytes = 0

    def reset(self, reason: ResetReason) -> None:
        """Tell the reader, before anything queued after this, that it missed events."""
        self._clear()
        self._reset = reason
        self._wake.set()

    def queued(self) -> int:
        """Events waiting to be read."""
        return len(self._queue)

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    @property
    def finished(self) -> bool:
        """The feed has closed and everything handed to this reader was read."""
        return (self._ended or self._closed) and self._reset is None and not self._queue

    async def next(self, idle: float | None) -> FeedEvent | Reset | None:
        """The next reset or event; None when ``idle`` seconds pass first (a keep-alive
        is due) or the reader is :attr:`finished`."""
        if not (self._reset or self._queue or self.finished):
            self._wake.clear()
            try:
                async with asyncio.timeout(idle):
                    await self._wake.wait()  # set by offer, reset and end
            except TimeoutError:
                return None
        if self._reset is not None:
            reason, self._reset = self._reset, None
            return Reset(reason)
        if self._queue:
            event = self._queue.popitem(last=False)[1]
            self._bytes -= len(event.data)
            return event
        return None

    def close(self) -> None:
        """Stop reading: the feed forgets this reader."""
        if not self._closed:
            self._closed = True
            self._clear()
            self._feed._leave(self)
