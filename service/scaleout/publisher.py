"""Sending Celery messages for records, and revoking them, off the event loop.

Celery's client is blocking (a broker that is down holds a send for its connect
timeout), so every send and revoke runs in a small thread pool. A message names the
record and its generation only: the task's arguments stay in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from celery import Celery

from ..models import Status, TaskRecord
from ..runner.threads import DaemonThreadPool
from .config import celery_name, celery_priority, message_args

log = logging.getLogger("offload.celery")
SEND_THREADS = 4
# A broker that does not answer fails a send within about a second: the record waits in
# the dispatch plan, and a dispatcher sends it later.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2,
                "interval_max": 0.5}


class Publisher:
    """Sends the message of each record given to it (one per record and generation)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._broker = str(app.conf.broker_url or "")
        self._pool = DaemonThreadPool(SEND_THREADS, "offload-celery")
        self._failing = False

    async def send(self, records: Sequence[TaskRecord]) -> bool:
        """Send a message for each queued (or scheduled and due) record, to start now.
        False, with a warning logged, if the broker refused."""
        startable = [r for r in records if r.status in (Status.QUEUED, Status.SCHEDULED)]
        if not startable:
            return True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._send_now, startable)
        except Exception as exc:
            if not self._failing:  # said once per outage, not once per message
                log.warning("sending %d task message(s) to the Celery broker failed (%s); "
                            "they wait in the store's dispatch plan and are sent again",
                            len(startable), exc)
            self._failing = True
            return False
        if self._failing:
            log.warning("sending task messages to the Celery broker works again")
            self._failing = False
        return True

    def _send_now(self, records: Sequence[TaskRecord]) -> None:
        with self.app.producer_or_acquire() as producer:
            for record in records:
                self.app.send_task(
                    celery_name(record.name), args=message_args(record), task_id=record.id,
                    priority=celery_priority(record.priority, self._broker),
                    producer=producer, retry=True, retry_policy=RETRY_POLICY)

    async def revoke(self, task_id: str) -> None:
        """Tell every worker to drop messages of this task (a cancel; best effort: the
        record, which a worker reads before it runs anything, is what counts)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._revoke_now, task_id)
        except Exception as exc:
            log.warning("revoking task %s on the Celery workers failed: %s", task_id, exc)

    def _revoke_now(self, task_id: str) -> None:
        self.app.control.revoke(task_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
