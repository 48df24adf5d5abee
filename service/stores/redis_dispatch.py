"""The Redis store's half of :class:`~.dispatch.DispatchStore` (Celery mode), mixed into
:class:`~.redis_store.RedisStore`: one script to start a named record, and the dispatch
plan, a sorted set ``P dispatch`` of task ids by the time their message is due."""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..models import TaskRecord
from ..rate_limits import RateLimit
from .base import ChangeKind
from .dispatch import RECHECK, RESEND, ClaimById, ClaimVerdict, DispatchStore, DueDispatch
from .redis_codec import decode_flat, number
from .redis_connect import RedisOptions
from .redis_scripts import Arg

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")


class RedisDispatch(DispatchStore):
    """Needs the store's plumbing (``_run``, ``_redis``, ``_guard``, ``_report``), which
    :class:`~.redis_store.RedisStore` provides."""

    options: RedisOptions

    @property
    def dispatch_key(self) -> str:
        return f"{self.options.prefix}dispatch"

    async def claim_by_id(self, task_id: str, attempts: int, worker: str, now: float,
                          lease: float, limit: int | None = None,
                          rate: RateLimit | None = None, *, recheck: float = RECHECK,
                          resend: float = RESEND) -> ClaimById:
        answer = await self._run("claim_by_id", [
            task_id, attempts, worker, number(now), number(now + lease),
            "" if limit is None else limit, "" if rate is None else rate.starts,
            "" if rate is None else number(rate.window), number(recheck),
            number(now + resend)])
        verdict = cast(ClaimVerdict, answer[0].decode())
        if len(answer) == 1:
            return ClaimById(verdict, None)
        if verdict == "claimed":
            started = self._report("status", [answer[1]])[0]
            return ClaimById(verdict, started,
                             hand_on=tuple(decode_flat(flat) for flat in answer[2:]))
        if verdict == "gated":
            return ClaimById(verdict, decode_flat(answer[1]),
                             hand_on=tuple(decode_flat(flat) for flat in answer[2:]))
        if len(answer) == 3 and rate is not None:  # held back by its rate: until when
            return ClaimById(verdict, decode_flat(answer[1]),
                             rate.next_start(float(answer[2]), now))
        return ClaimById(verdict, decode_flat(answer[1]))

    @property
    def gates_key(self) -> str:
        return f"{self.options.prefix}gates"

    async def plan_dispatch(self, due: Mapping[str, float], *, planned_only: bool = False
                            ) -> None:
        if due:
            await self._guard(self._redis().zadd(
                self.dispatch_key, {task_id: at for task_id, at in due.items()},
                xx=planned_only))

    async def take_dispatch(self, now: float, limit: int, again_at: float) -> DueDispatch:
        answer = await self._run("dispatch_take", [number(now), limit, number(again_at)])
        return DueDispatch([task_id.decode() for task_id in answer[0]],
                           [decode_flat(flat) for flat in answer[1:]])

    async def dispatched(self, task_ids: Collection[str]) -> None:
        if task_ids:
            await self._guard(self._redis().zrem(self.dispatch_key, *task_ids))

    async def next_dispatch(self) -> float | None:
        async with self._redis().pipeline(transaction=False) as pipe:
            pipe.zrange(self.dispatch_key, 0, 0, withscores=True)
            pipe.zrange(self.gates_key, 0, 0, withscores=True)
            firsts = await self._guard(pipe.execute())
        times = [float(first[0][1]) for first in firsts if first]
        return min(times) if times else None

    async def open_gate(self, name: str, now: float, resend_at: float,
                        limit: int | None = None, rate: RateLimit | None = None
                        ) -> list[TaskRecord]:
        woken = await self._run("open_gate", [
            name, number(now), number(resend_at), "" if limit is None else limit,
            "" if rate is None else rate.starts, "" if rate is None else number(rate.window)])
        return [decode_flat(flat) for flat in woken]

    # -- the store's plumbing (RedisStore's own methods come first in its MRO) -----------

    async def _run(self, script: str, args: Sequence[Arg]) -> Any:
        raise NotImplementedError

    def _redis(self) -> Redis:
        raise NotImplementedError

    async def _guard(self, call: Awaitable[T]) -> T:
        raise NotImplementedError

    def _report(self, kind: ChangeKind, flats: Sequence[Sequence[bytes]]
                ) -> list[TaskRecord]:
        raise NotImplementedError
