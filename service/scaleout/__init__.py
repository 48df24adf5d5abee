"""Celery mode: the same tasks and HTTP API, with Celery workers running the tasks.

``config`` builds the Celery app from Offload's settings, ``publisher`` sends messages,
``dispatcher`` is the web side (it queues in the store, then publishes) and ``worker`` the
worker side (``service.celery_app`` wires it into Celery). Nothing here is imported unless
``OFFLOAD_CELERY_BROKER`` is set. See docs/celery.md.
"""
