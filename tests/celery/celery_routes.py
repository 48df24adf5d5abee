"""Celery settings for the ``-Q`` test, read through Celery's own ``CELERY_CONFIG_MODULE``
(as docs/celery.md shows): the ``add`` type goes to the queue ``other``, every other type
to Celery's default queue ``celery``."""

from __future__ import annotations

task_routes = {"offload.add": {"queue": "other"}}
