"""The Redis store's scripts, registered with a client: each call is one ``EVALSHA`` (the
client loads the script again when the server answers ``NOSCRIPT``, after a restart)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import redis_lua as front
from . import redis_lua_dispatch as dispatch
from . import redis_lua_runner as runner

if TYPE_CHECKING:
    from redis.asyncio import Redis

Arg = str | int | float | bytes

_BODIES = {"add": front.ADD, "page": front.PAGE, "cancel": front.CANCEL,
           "delete": front.DELETE, "meta_cas": front.META_CAS, "claim": runner.CLAIM,
           "unclaim": runner.UNCLAIM,
           "settle": runner.SETTLE, "progress": runner.PROGRESS, "renew": runner.RENEW,
           "reclaim": runner.RECLAIM, "evict": runner.EVICT, "feed": runner.FEED,
           "claim_by_id": dispatch.CLAIM_BY_ID, "dispatch_take": dispatch.DISPATCH_TAKE,
           "open_gate": dispatch.OPEN_GATE}


class Scripts:
    """The scripts of one store object: the prelude of :mod:`.redis_lua` before each body,
    and the three leading arguments every script takes."""

    def __init__(self, client: Redis, prefix: str, writer: str, feed_length: int) -> None:
        self._client = client
        self._header: list[Arg] = [prefix, writer, feed_length]
        self._scripts = {name: client.register_script(front.PRELUDE + body)
                         for name, body in _BODIES.items()}

    async def load(self) -> None:
        """Load every script into the server now (a broken one fails at open, not later)."""
        for script in self._scripts.values():
            await self._client.script_load(script.script)

    async def run(self, name: str, args: Sequence[Arg]) -> Any:
        """Run a script with these arguments after the common ones; its Redis answer."""
        return await self._scripts[name](keys=[], args=[*self._header, *args])
