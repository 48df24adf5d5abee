"""The Celery app of a deployment, built from Offload's settings (web and worker alike).

JSON only, never pickle; no result backend (results live in the store); ``acks_late``
with ``reject_on_worker_lost`` and a prefetch of one, so that a message is given back to
the broker when the process running it dies. A module named by Celery's own
``CELERY_CONFIG_MODULE`` may add settings (routes, time limits, transport options); the
ones set here win, so no such module can turn pickle on.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from ..models import TaskRecord
from ..settings import Settings

TASK_PREFIX = "offload."
"""Celery's name of an Offload task type: ``offload.<name>`` (what ``inspect`` and Flower
show, and what ``task_routes`` match)."""

REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://", "redis+socket://")
REDIS_PRIORITY_STEPS = [0, 3, 6, 9]  # the Redis transport's default: four lists per queue
AMQP_MAX_PRIORITY = 9


def celery_name(task_name: str) -> str:
    return TASK_PREFIX + task_name


def offload_name(celery_task_name: str) -> str:
    return celery_task_name.removeprefix(TASK_PREFIX)


def make_celery(settings: Settings) -> Celery:
    """The Celery app for these settings (``OFFLOAD_CELERY_BROKER`` must be set)."""
    if not settings.celery_broker:
        raise ValueError("OFFLOAD_CELERY_BROKER is not set: Celery mode needs a broker URL "
                         "(redis://host:6379/1 or amqp://host)")
    app = Celery("offload", broker=settings.celery_broker, set_as_current=False)
    app.config_from_envvar("CELERY_CONFIG_MODULE", silent=True)
    app.conf.update(celery_settings(settings))
    return app


def celery_settings(settings: Settings) -> dict[str, Any]:
    """Celery's settings: what makes delivery safe, JSON only, no result backend."""
    return {
        "broker_url": settings.celery_broker,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # a broker connection lost mid-task: the task runs on (its record and lease say
        # who runs it; the message handed out again finds it held), as Celery 5 does by
        # default; Celery 6 would cancel it, and a non-idempotent task would then fail
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_queue_max_priority": AMQP_MAX_PRIORITY,
        "task_default_priority": celery_priority(0, settings.celery_broker),
        "broker_connection_retry_on_startup": True,
    }


def celery_priority(priority: int, broker_url: str) -> int:
    """Offload's priority (higher first, any integer, 0 by default) as a Celery one.

    The Redis transport serves lower numbers first, in four steps (0, 3, 6, 9): Offload's
    priorities above 0 go to the first, 0 to the second, below 0 to the third. AMQP
    (RabbitMQ, queues declared with ``x-max-priority`` 9) serves higher numbers first:
    -4 and below are 0, 0 is 4, 5 and above are 9.
    """
    if broker_url.startswith(REDIS_SCHEMES):
        return 0 if priority > 0 else 3 if priority == 0 else 6
    return min(max(priority, -4), 5) + 4


def message_args(record: TaskRecord) -> list[Any]:
    """A message carries the record's id and its generation (attempts when sent)."""
    return [record.id, record.attempts]
