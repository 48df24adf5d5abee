"""Tasks that write log lines of their own."""

from __future__ import annotations

import logging

from service import task

log = logging.getLogger("tests.log_tasks")


@task
def chatty_thread(word: str) -> str:
    log.warning("thread says %s", word)
    return word


@task
async def chatty_async(word: str) -> str:
    log.warning("async says %s", word)
    return word


@task(retries=1, retry_backoff=0.01)
async def always_fails() -> None:
    raise RuntimeError("nope")
