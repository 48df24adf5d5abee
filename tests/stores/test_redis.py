"""The Redis store beyond the contract: two store objects on one server, as two processes
would have, and a server that goes away and comes back. A real redis-server throughout."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from service.models import Progress, Status
from service.stores import RedisStore, StoreUnavailable, open_store
from service.stores.base import Outcome, QueueBoundReached
from tests.redis_server import RedisServer, fresh_prefix, running_redis

from .contract import LEASE, NOW, claim, fetch, new, succeed

Pair = tuple[RedisStore, RedisStore]
DEADLINE = 30.0  # seconds: generous, for a loaded machine


def redis_store(url: str, **options: object) -> RedisStore:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    store = open_store(f"{url}?{query}" if query else url)
    assert isinstance(store, RedisStore)
    return store


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[Pair]:
    """Two store objects on one server and prefix: as two processes would have."""
    prefix = fresh_prefix()
    first, second = (redis_store(redis_server.url, prefix=prefix) for _ in range(2))
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = DEADLINE) -> None:
    """Wait until ``check`` holds: a bounded poll that fails the test at its deadline."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


# -- two processes, one store ------------------------------------------------------------

async def test_concurrent_claims_never_grant_a_record_twice(pair: Pair) -> None:
    a, b = pair
    added = await a.add([new(f"n{i % 5}", priority=i % 3) for i in range(300)])
    claims = [claim(store, limit=7, worker=f"w{i}") for i in range(60)
              for store in (a, b)]
    claimed = [record.id for batch in await asyncio.gather(*claims) for record in batch]
    assert len(claimed) == len(set(claimed)) == len(added)
    assert (await b.count_by_status())[Status.RUNNING] == 300


async def test_a_type_limit_counts_the_other_store_s_running_records(pair: Pair) -> None:
    a, b = pair
    first, second = await a.add([new("capped"), new("capped")])
    assert [r.id for r in await claim(a, limits={"capped": 1})] == [first.id]
    assert await claim(b, limit=5, limits={"capped": 1}) == []
    await succeed(a, await fetch(a, first.id))
    assert [r.id for r in await claim(b, limits={"capped": 1})] == [second.id]


async def test_an_expired_lease_is_reclaimed_by_the_other(pair: Pair) -> None:
    a, b = pair
    await a.add([new()])
    (running,) = await claim(a, worker="a")
    assert await b.reclaim("b", NOW + LEASE, LEASE) == []
    (taken,) = await b.reclaim("b", NOW + LEASE + 1, LEASE)
    assert (taken.id, taken.lease_owner) == (running.id, "b")
    assert await a.renew("a", [running.id], NOW + LEASE + 2, LEASE) == {}
    assert await a.settle(running, "a", Outcome(Status.SUCCEEDED, NOW)) is None
    assert not await a.save_progress(running, "a", Progress(1))
    settled = await b.settle(taken, "b", Outcome(Status.QUEUED, NOW + LEASE + 2))
    assert settled is not None
    assert settled.status is Status.QUEUED


async def test_the_change_feed_carries_one_store_s_changes_to_the_other(pair: Pair) -> None:
    a, b = pair
    cursor, nothing = await b.changes_since(None)
    assert nothing == []
    (queued,) = await a.add([new()])
    cursor, changes = await b.changes_since(cursor)
    assert [(kind, r.id, r.status) for kind, r in changes] == [
        ("status", queued.id, Status.QUEUED)]
    (running,) = await claim(a)
    await a.save_progress(running, "w", Progress(1, 2))
    cursor, changes = await b.changes_since(cursor)
    assert [(kind, r.id, r.status, r.progress) for kind, r in changes] == [
        ("status", queued.id, Status.RUNNING, None),  # each change, as of that change
        ("progress", queued.id, Status.RUNNING, Progress(1, 2))]
    await a.save_progress(running, "w", Progress(2, 2))
    cursor, changes = await b.changes_since(cursor)
    assert [(kind, r.progress) for kind, r in changes] == [("progress", Progress(2, 2))]
    await succeed(a, running)
    cursor, changes = await b.changes_since(cursor)
    assert [r.status for _, r in changes] == [Status.SUCCEEDED]
    assert (await b.changes_since(cursor))[1] == []
    _, own = await a.changes_since(0)
    assert own == []  # a store object hears of its own changes at once, not from the feed


async def test_one_idempotency_key_is_one_record_under_concurrency(pair: Pair) -> None:
    a, b = pair
    answers = await asyncio.gather(*(store.add([new(owner="o", key="k")])
                                      for _ in range(20) for store in (a, b)))
    assert len({answer[0].id for answer in answers}) == 1
    assert sum((await a.count_by_status()).values()) == 1


async def test_the_queue_bound_holds_across_store_objects(pair: Pair) -> None:
    a, b = pair

    async def submit(store: RedisStore) -> bool:
        try:
            await store.add([new()], max_pending=10)
        except QueueBoundReached:
            return False
        return True

    accepted = await asyncio.gather(*(submit(store) for _ in range(15) for store in (a, b)))
    assert sum(accepted) == 10
    assert (await b.count_by_status())[Status.QUEUED] == 10


async def test_evicting_leaves_no_key_behind(pair: Pair, redis_server: RedisServer) -> None:
    a, b = pair
    records = await a.add([new(f"n{i % 3}", owner=f"o{i % 2}", key=f"k{i}",
                               scheduled_at=NOW + 5 if i % 4 == 0 else None)
                           for i in range(40)])
    for record in await claim(a, limit=20, now=NOW + 10):
        await succeed(a, record, status=Status.FAILED)
    for record in records:
        await b.request_cancel(record.id, NOW + 20)
    assert await b.evict(finished_before=NOW + 30, keep_at_most=0) == 40
    assert sum((await a.count_by_status("o1")).values()) == 0
    client = Redis.from_url(redis_server.url)
    try:
        left = sorted([key.decode().removeprefix(a.options.prefix)
                       async for key in client.scan_iter(match=a.options.prefix + "*")])
    finally:
        await client.aclose()
    assert left == ["cursor_key", "feed", "feed:n", "seq", "version"]


async def test_prefixes_keep_deployments_apart(redis_server: RedisServer) -> None:
    mine = redis_store(redis_server.url, prefix=fresh_prefix())
    theirs = redis_store(redis_server.url, prefix=fresh_prefix())
    for store in (mine, theirs):
        await store.open()
    try:
        (added,) = await mine.add([new(key="k")])
        assert await theirs.get(added.id) is None
        assert await claim(theirs) == []
        assert (await theirs.add([new(key="k")]))[0].id != added.id
        assert await mine.cursor_key() != await theirs.cursor_key()
    finally:
        for store in (mine, theirs):
            await store.close()


async def test_adding_a_thousand_records_is_one_script_call(
        pair: Pair, redis_server: RedisServer) -> None:
    a, _ = pair
    client = Redis.from_url(redis_server.url)

    async def evalsha_calls() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    try:
        before = await evalsha_calls()
        added = await a.add([new() for _ in range(1000)])
        after = await evalsha_calls()
    finally:
        await client.aclose()
    assert after - before == 1
    assert [r.seq for r in added] == list(range(added[0].seq, added[0].seq + 1000))


async def test_a_claim_whose_caller_stops_waiting_hands_its_records_back(pair: Pair) -> None:
    a, b = pair
    (added,) = await a.add([new()])
    claiming = asyncio.create_task(claim(a, worker="gone"))
    await asyncio.sleep(0)  # the claim is sent; its caller stops waiting before the answer
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming

    async def queued_again() -> bool:
        record = await b.get(added.id)
        return record is not None and record.status is Status.QUEUED

    await eventually(queued_again)
    (again,) = await claim(b, worker="b")
    assert (again.id, again.attempts) == (added.id, 1)


async def test_a_reader_behind_a_trimmed_feed_goes_on_and_says_so(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    prefix = fresh_prefix()
    writer = redis_store(redis_server.url, prefix=prefix, feed_length=100)
    reader = redis_store(redis_server.url, prefix=prefix, feed_length=100)
    for store in (writer, reader):
        await store.open()
    try:
        cursor, _ = await reader.changes_since(None)
        records = await writer.add([new() for _ in range(500)])
        with caplog.at_level(logging.WARNING, "offload.store"):
            cursor, changes = await reader.changes_since(cursor)
        assert "trimmed" in caplog.text
        assert 0 < len(changes) < 500
        await writer.request_cancel(records[0].id, NOW)
        _, changes = await reader.changes_since(cursor)
        assert [(r.id, r.status) for _, r in changes] == [(records[0].id, Status.CANCELLED)]
    finally:
        for store in (writer, reader):
            await store.close()


async def test_named_values_are_shared_and_compare_and_set_is_atomic(pair: Pair) -> None:
    a, b = pair
    assert a.supports_meta
    assert await b.get_meta("schedule:x") is None
    wins = await asyncio.gather(*(store.compare_and_set_meta("schedule:x", None, name)
                                  for name, store in ((b"a", a), (b"b", b)) * 10))
    assert sum(wins) == 1
    winner = await a.get_meta("schedule:x")
    assert winner in (b"a", b"b")
    assert not await b.compare_and_set_meta("schedule:x", b"other", b"late")
    assert await b.compare_and_set_meta("schedule:x", winner, b"")
    assert await a.get_meta("schedule:x") == b""  # empty is a value, not nothing
    await a.put_meta("schedule:x", b"\x00\xff")
    assert await b.get_meta("schedule:x") == b"\x00\xff"


# -- a server that goes away -------------------------------------------------------------

async def test_a_restarted_server_is_unavailable_then_used_again_without_reopening() -> None:
    with running_redis(persistent=True) as server:
        store = redis_store(server.url, socket_timeout=2)
        await store.open()
        try:
            (kept,) = await store.add([new()])
            await asyncio.to_thread(server.stop)
            async with asyncio.timeout(DEADLINE):
                for call in (store.get(kept.id), store.add([new()]), claim(store),
                             store.count_by_status(), store.changes_since(0)):
                    with pytest.raises(StoreUnavailable, match=str(server.port)):
                        await call
            await asyncio.to_thread(server.start)
            async with asyncio.timeout(DEADLINE):
                assert (await fetch(store, kept.id)).status is Status.QUEUED  # kept (AOF)
                (running,) = await claim(store)
                assert running.id == kept.id
                await succeed(store, running)
        finally:
            await store.close()


async def test_a_reader_follows_a_server_that_lost_its_data(
        caplog: pytest.LogCaptureFixture) -> None:
    with running_redis() as server:
        writer, reader = (redis_store(server.url, prefix="p:") for _ in range(2))
        for store in (writer, reader):
            await store.open()
        try:
            cursor, _ = await reader.changes_since(None)
            await writer.add([new() for _ in range(5)])
            cursor, _ = await reader.changes_since(cursor)
            # in threads: the loop runs meanwhile and sees its connections closed, as a
            # running service would
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)  # no persistence: the data is gone
            (fresh,) = await writer.add([new()])
            with caplog.at_level(logging.WARNING, "offload.store"):
                cursor, changes = await reader.changes_since(cursor)
            assert "started over" in caplog.text
            assert [r.id for _, r in changes] == [fresh.id]
        finally:
            for store in (writer, reader):
                await store.close()


async def test_a_server_that_stops_answering_is_an_error_not_a_hang() -> None:
    with running_redis() as server:
        store = redis_store(server.url, socket_timeout=0.5)
        await store.open()
        assert server.process is not None
        try:
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                async with asyncio.timeout(DEADLINE):
                    with pytest.raises(StoreUnavailable, match="did not answer in time"):
                        await store.get("x" * 24)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            async with asyncio.timeout(DEADLINE):
                assert await store.get("x" * 24) is None
        finally:
            await store.close()


async def test_opening_with_no_server_is_unavailable_and_may_be_tried_again() -> None:
    with running_redis() as server:
        url = server.url
        server.stop()
        store = redis_store(url, connect_timeout=1)
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(StoreUnavailable, match="cannot reach the server"):
                await store.open()
        server.start()
        await store.open()
        try:
            assert len(await store.cursor_key()) == 32
        finally:
            await store.close()


def test_the_password_never_shows_in_errors() -> None:
    with pytest.raises(ValueError, match="OFFLOAD_STORE") as failure:
        open_store("redis://:s3cret@localhost/0?nope=1")
    assert "s3cret" not in str(failure.value)
    store = open_store("redis://user:s3cret@localhost/0")
    assert isinstance(store, RedisStore)
    assert "s3cret" not in store.where


def test_opening_a_redis_url_imports_no_redis_until_the_store_opens() -> None:
    code = ("import sys; from service.stores import open_store; "
            "open_store('redis://127.0.0.1:1/0?prefix=x:'); "
            "import service.core, service.app; "
            "sys.exit(1 if 'redis' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr.decode()
