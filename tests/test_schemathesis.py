"""Schemathesis against the service's own ``/openapi.json``: generated valid and invalid
requests to every operation, in process, with the app started (lifespan)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.python import asgi

from service.app import create_app
from service.settings import DEMO_MODULE

from .conftest import settings

# Bounded and seeded: the same cases every run, a few seconds per operation.
MAX_EXAMPLES = 30
SEED = 20261125

APP = create_app(settings(task_modules=(DEMO_MODULE,), max_wait=2.0, sse_keepalive=0.5))


def _openapi_document() -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await APP.test_client().get("/openapi.json")
        assert response.status_code == 200
        document: dict[str, Any] = await response.get_json()
        return document
    return asyncio.run(fetch())


schema = schemathesis.openapi.from_dict(_openapi_document())
schema.app = APP
schema.config.generation.update(modes=list(GenerationMode), max_examples=MAX_EXAMPLES,
                                deterministic=True)


@pytest.fixture(scope="module", autouse=True)
def _stop_the_app() -> Iterator[None]:
    yield
    asgi.shutdown_lifespans()


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()
