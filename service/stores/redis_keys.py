"""Where the Redis store keeps things: every key, under one configurable prefix.

Several deployments may share one Redis database as long as their prefixes differ (the
default is ``offload:``). With prefix ``P``:

=============================  ============  ===========================================
key                            type          holds
=============================  ============  ===========================================
``P version``                  string        the layout's version (checked at open)
``P cursor_key``               string        the key list cursors are signed with
``P seq``                      string        the last ``seq`` handed out (``INCRBY``)
``P t:<id>``                   hash          one record, a field per attribute
``P idem``                     hash          ``<owner>`` + idempotency key → task id
``P s:<status>``               sorted set    ids of that status, by ``seq``
``P n:<status>:<name>``        sorted set    ids of that status and task name, by ``seq``
``P o:<status>:<owner>``       sorted set    ids of that status and owner, by ``seq``
``P on:<status>:<len>:<owner><name>``  zset  ids of that status, owner and name
``P ready:<name>``             sorted set    queued records of a name: score ``-priority``,
                                             member ``<seq, 16 digits>:<id>`` (FIFO in a
                                             level)
``P names``                    set           names that have queued records
``P due``                      sorted set    scheduled ids by ``scheduled_at``
``P leases``                   sorted set    running ids by ``lease_expires``
``P done``                     sorted set    terminal ids by ``finished_at``
``P feed``                     stream        the change feed: entry ``<n>-0``, fields
                                             ``t`` (task id), ``k`` (kind), ``w`` (writer),
                                             then the record's state as of the change
                                             (unless terminal; see ``redis_lua.feed``)
``P feed:n``                   string        the last feed entry's ``n`` (the cursor)
``P meta:<key>``               string        a small named value of the service's (schedules)
``P deps:<id>``                set           the waiting records that depend on ``<id>``
``P dr:<id>``                  hash          results of the dependencies of waiting ``<id>``
                                             that have succeeded (field: their position)
``P rate:<name>``              sorted set    the newest starts of a rate-limited name (at
                                             most its N): member ``<id>:<attempt>``,
                                             score the start time
``P dispatch``                 sorted set    Celery mode: ids whose message must be sent,
                                             by when (the dispatch plan)
``P gates``                    sorted set    Celery mode: names whose limit held a start
                                             back, by when their lane's head is woken
=============================  ============  ===========================================

Counts are the sizes of the status sets (``ZCARD``), so they can never drift from the
records. The Lua scripts (:mod:`.redis_lua`) build the same names from the prefix they are
given; this module builds the few that Python reads directly.
"""

from __future__ import annotations

from ..models import Status

LAYOUT_VERSION = "1"
DEFAULT_PREFIX = "offload:"


class Keys:
    """The keys of one store: the prefix joined to each name of the table above."""

    __slots__ = ("cursor_key", "due", "prefix", "version")

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.version = prefix + "version"
        self.cursor_key = prefix + "cursor_key"
        self.due = prefix + "due"

    def rate_log(self, name: str) -> str:
        """The newest starts of a rate-limited task name (at most its N)."""
        return f"{self.prefix}rate:{name}"

    def meta(self, key: str) -> str:
        return f"{self.prefix}meta:{key}"

    def record(self, task_id: str) -> str:
        return f"{self.prefix}t:{task_id}"

    def with_status(self, status: Status, owner: str | None = None) -> str:
        """The ids of a status (of one owner's records, if given)."""
        if owner is None:
            return f"{self.prefix}s:{status.value}"
        return f"{self.prefix}o:{status.value}:{owner}"
