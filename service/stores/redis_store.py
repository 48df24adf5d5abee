"""The Redis store: task records in a Redis server that every process of a deployment shares.

Each operation is one round trip: a Lua script (:mod:`.redis_lua`, :mod:`.redis_lua_runner`)
that reads, checks and writes the record, its indexes and the change feed atomically, or a
plain read. Adding a thousand records is one script call. Nothing blocks the event loop
(``redis.asyncio``); a server that cannot be reached, or does not answer within
``socket_timeout``, is a :class:`StoreUnavailable` (the web answers 503), and the next
operation after the server is back simply works.

What survives is what the server keeps: with ``appendonly yes`` (and ``appendfsync
everysec`` or ``always``) a record the store acknowledged survives a restart of Redis;
without persistence a restart of Redis loses every task. Run it with
``maxmemory-policy noeviction``: a server that drops keys to free memory drops records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..models import ALLOWED_MOVES, Progress, Status, TaskRecord
from ..rate_limits import RateLimit
from .base import (
    ChangeKind,
    ClaimRequest,
    ListQuery,
    Outcome,
    QueueBoundReached,
    StoreUnavailable,
    TaskStore,
)
from .dependencies import UnknownDependency
from .rate_room import earliest_start
from .redis_codec import (
    as_of_changes,
    decode,
    decode_flat,
    encode,
    encode_error,
    encode_result,
    number,
    text,
)
from .redis_connect import RedisOptions, connect, redacted, unavailable
from .redis_dispatch import RedisDispatch
from .redis_keys import LAYOUT_VERSION, Keys
from .redis_scripts import Arg, Scripts

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from redis.asyncio import Redis

log = logging.getLogger("offload.store")

T = TypeVar("T")
EVICT_CHUNK = 2000  # records dropped by one script, so other commands get their turn
FEED_BATCH = 5000  # change-feed entries read at once


class RedisStore(RedisDispatch, TaskStore):
    """Task records in Redis, shared by every process that opens the same URL and prefix.

    ``url``: ``redis://[:password@]host[:port][/db]`` or ``rediss://`` (TLS). The options
    are those of :class:`~service.stores.redis_connect.RedisOptions`.
    """

    durable = True
    shared = True
    supports_meta = True

    def __init__(self, url: str, options: RedisOptions | None = None) -> None:
        self.url = url
        self.options = options or RedisOptions()
        self.where = f"{redacted(url)} (prefix {self.options.prefix!r})"
        self.keys = Keys(self.options.prefix)
        self._writer_id = secrets.token_hex(8)
        self._client: Redis | None = None
        self._scripts: Scripts | None = None
        self._key = b""
        self._background: set[asyncio.Task[None]] = set()
        self._claims: set[asyncio.Future[Any]] = set()  # claims in flight (see claim)
        self._gap_reported = False

    async def open(self) -> None:
        if self._client is not None:
            return
        client = connect(self.url, self.options)
        scripts = Scripts(client, self.options.prefix, self._writer_id,
                          self.options.feed_length)
        try:
            self._key = await self._guard(self._prepare(client, scripts))
        except BaseException:
            await client.aclose()
            raise
        self._client, self._scripts = client, scripts

    async def _prepare(self, client: Redis, scripts: Scripts) -> bytes:
        """The layout's version checked, the scripts loaded, the shared cursor key read
        (the first process to open the store writes it)."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.version, LAYOUT_VERSION, nx=True)
            pipe.get(self.keys.version)
            pipe.set(self.keys.cursor_key, secrets.token_bytes(32), nx=True)
            pipe.get(self.keys.cursor_key)
            _, version, _, key = await pipe.execute()
        if version != LAYOUT_VERSION.encode():
            raise StoreUnavailable(f"Redis store {self.where}: its layout version is "
                                   f"{version!r}, this Offload reads version {LAYOUT_VERSION}")
        await scripts.load()
        return bytes(key)

    async def close(self) -> None:
        if self._client is None:
            return
        # abandoned claims hand their records back before the connection goes
        await asyncio.gather(*self._claims, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        client, self._client, self._scripts = self._client, None, None
        await client.aclose()

    # -- plumbing -------------------------------------------------------------------------

    async def _guard(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            raise unavailable(self.where, exc) from exc

    async def _run(self, script: str, args: Sequence[Arg]) -> Any:
        if self._scripts is None:
            raise StoreUnavailable(f"Redis store {self.where} is not open")
        return await self._guard(self._scripts.run(script, args))

    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreUnavailable(f"Redis store {self.where} is not open")
        return self._client

    def _report(self, kind: ChangeKind, flats: Sequence[Sequence[bytes]]) -> list[TaskRecord]:
        records = [decode_flat(flat) for flat in flats]
        for record in records:
            self._changed(kind, record)
        return records

    # -- the front ------------------------------------------------------------------------

    async def add(self, records: Sequence[TaskRecord], max_pending: int | None = None
                  ) -> list[TaskRecord]:
        return await self.add_planned(records, max_pending, {})

    async def add_planned(self, records: Sequence[TaskRecord], max_pending: int | None,
                          plan: Mapping[str, float]) -> list[TaskRecord]:
        if not records:
            return []
        args: list[Arg] = ["" if max_pending is None else max_pending, len(records)]
        for record in records:
            fields = encode(record)
            args.append(len(fields) // 2)
            args.extend(fields)
        if plan:  # each record's dispatch plan entry, or '' (see redis_lua.ADD)
            args.extend(number(plan[r.id]) if r.id in plan else "" for r in records)
        answer = await self._run("add", args)
        if answer[0] == 0:
            raise QueueBoundReached(f"{max_pending} tasks are queued or scheduled")
        if answer[0] == 2:
            index, position = int(answer[1]), int(answer[2])
            raise UnknownDependency(index, position, records[index].depends_on[position])
        stored: list[TaskRecord] = []
        for record, result in zip(records, answer[1], strict=True):
            if isinstance(result, int):
                record.seq = result
                stored.append(record)
            elif isinstance(result, bytes):  # the same key as an earlier record of the call
                stored.append(stored[int(result[1:]) - 1])
            else:
                stored.append(decode_flat(result))
        return stored

    async def get(self, task_id: str) -> TaskRecord | None:
        fields = await self._guard(self._redis().hgetall(self.keys.record(task_id)))
        return decode(cast("dict[bytes, bytes]", fields)) if fields else None

    async def page(self, query: ListQuery) -> list[TaskRecord]:
        statuses = sorted(Status if query.statuses is None else query.statuses)
        if query.limit <= 0 or not statuses:
            return []
        flats = await self._run("page", [
            query.limit, "" if query.before_seq is None else query.before_seq,
            "" if query.owner is None else "=" + query.owner,
            "" if query.name is None else "=" + query.name, *statuses])
        return [decode_flat(flat) for flat in flats]

    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        async def read() -> list[int]:
            async with self._redis().pipeline(transaction=True) as pipe:
                for status in Status:
                    pipe.zcard(self.keys.with_status(status, owner))
                return list(await pipe.execute())

        counts = await self._guard(read())
        return dict(zip(Status, counts, strict=True))

    async def request_cancel(self, task_id: str, now: float) -> TaskRecord | None:
        answer = await self._run("cancel", [task_id, number(now)])
        if answer is None:
            return None
        if not answer[0]:
            return decode_flat(answer[1])
        record = self._report("status", [answer[1]])[0]
        self._report("status", answer[2] if len(answer) > 2 else [])
        return record

    async def delete(self, task_id: str) -> bool:
        return bool(await self._run("delete", [task_id]))

    async def cursor_key(self) -> bytes:
        return self._key

    async def get_meta(self, key: str) -> bytes | None:
        """The value stored under ``key`` (``P meta:<key>``), or None."""
        value = await self._guard(self._redis().get(self.keys.meta(key)))
        return None if value is None else cast(bytes, value)  # the client keeps bytes

    async def put_meta(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        await self._guard(self._redis().set(self.keys.meta(key), value))

    async def compare_and_set_meta(self, key: str, expected: bytes | None, value: bytes
                                   ) -> bool:
        """Store ``value`` only if ``expected`` (None: nothing) is there now, atomically."""
        return bool(await self._run("meta_cas", [
            key, b"" if expected is None else b"=" + expected, value]))

    async def changes_since(self, cursor: int | None
                            ) -> tuple[int, list[tuple[ChangeKind, TaskRecord]]]:
        upto, gap, records, changes = await self._run("feed", [
            "" if cursor is None else cursor, FEED_BATCH])
        if gap and not self._gap_reported:
            self._gap_reported = True  # once per store object: a slow reader says so once
            log.warning("Redis store %s: %s; waiters and streams of the changes missed "
                        "hear of them only at their next event", self.where,
                        "the change feed was trimmed past this reader (raise feed_length)"
                        if gap == 1 else "the change feed started over (the server lost "
                        "its data)")
        return int(upto), as_of_changes(records, changes)

    # -- the runner -----------------------------------------------------------------------

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        args: list[Arg] = [number(request.now), number(request.now + request.lease),
                           request.worker, max(request.limit, 0), len(request.limits)]
        for name, cap in request.limits.items():
            args += [name, cap]
        args += [len(request.excluded), *request.excluded, len(request.pools)]
        for names, free in request.pools:
            args += [free, len(names), *names]
        args.append(len(request.rates))
        for name, rate in request.rates.items():
            args += [name, rate.starts, number(rate.window)]
        # Shielded: a caller that stops waiting must not leave records running that no
        # runner holds (they would be reclaimed as interrupted a lease later).
        call = asyncio.ensure_future(self._run("claim", args))
        self._claims.add(call)
        call.add_done_callback(self._claims.discard)
        try:
            claimed, promoted = await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(lambda done: self._hand_back(done, request.worker))
            raise
        self._report("status", promoted)
        return self._report("status", claimed)

    def _hand_back(self, done: asyncio.Future[Any], worker: str) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        claimed, promoted = done.result()
        self._report("status", promoted)
        records = [decode_flat(flat) for flat in claimed]
        if records:
            self._spawn(self._unclaim(records, worker))

    async def _unclaim(self, records: Sequence[TaskRecord], worker: str) -> None:
        args: list[Arg] = [worker]
        for record in records:
            args += [record.id, record.attempts]
        self._report("status", await self._run("unclaim", args))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def logged() -> None:
            try:
                await work
            except Exception:
                log.exception("Redis store %s: handing back abandoned claims failed",
                              self.where)

        task = asyncio.get_running_loop().create_task(logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def next_due(self) -> float | None:
        first = await self._guard(self._redis().zrange(self.keys.due, 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    async def next_start(self, rates: Mapping[str, RateLimit], now: float) -> float | None:
        if not rates:
            return None
        pipe = self._redis().pipeline(transaction=False)
        for name, rate in rates.items():  # each name's N-th newest start
            pipe.zrevrange(self.keys.rate_log(name), rate.starts - 1, rate.starts - 1,
                           withscores=True)
        answers = await self._guard(pipe.execute())
        nth = {name: float(answer[0][1]) if answer else None
               for name, answer in zip(rates, answers, strict=True)}
        return earliest_start(rates, lambda name, _: nth[name], now)

    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        if outcome.status not in ALLOWED_MOVES[Status.RUNNING]:
            raise ValueError(f"a running task cannot settle as {outcome.status}")
        flat = await self._run("settle", [
            record.id, record.attempts, worker, outcome.status.value, number(outcome.at),
            encode_result(outcome.result) or "", encode_error(outcome.error) or "",
            "" if outcome.scheduled_at is None else number(outcome.scheduled_at)])
        if flat is None:
            return None
        settled = self._report("status", [flat[0]])[0]
        self._report("status", flat[1])  # the records waiting for it, released or cancelled
        return settled

    async def save_progress(self, record: TaskRecord, worker: str, progress: Progress) -> bool:
        written = await self._run("progress", [record.id, record.attempts, worker,
                                               text(progress.to_json())])
        if not written:
            return False
        self._changed("progress", dataclasses.replace(record, progress=progress))
        return True

    async def renew(self, worker: str, task_ids: Collection[str], now: float, lease: float
                    ) -> dict[str, bool]:
        if not task_ids:
            return {}
        held = await self._run("renew", [worker, number(now + lease), *task_ids])
        return {held[i].decode(): bool(held[i + 1]) for i in range(0, len(held), 2)}

    async def reclaim(self, worker: str, now: float, lease: float) -> list[TaskRecord]:
        flats = await self._run("reclaim", [worker, number(now), number(now + lease)])
        return sorted((decode_flat(flat) for flat in flats), key=lambda r: r.seq)

    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        evicted = 0
        while True:
            dropped = int(await self._run("evict", [number(finished_before),
                                                    max(keep_at_most, 0), EVICT_CHUNK]))
            evicted += dropped
            if dropped < EVICT_CHUNK:
                return evicted
