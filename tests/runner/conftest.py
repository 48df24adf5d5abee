"""Fixtures of the runner tests."""

from __future__ import annotations

import pytest

from service import TaskService

from .helpers import Factory, started


@pytest.fixture
async def svc(make_service: Factory) -> TaskService:
    """A started service with the demo, sample and runner tasks."""
    return await started(make_service)
