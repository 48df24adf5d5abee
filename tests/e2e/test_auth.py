"""Bearer-token auth on the real server (OFFLOAD_API_TOKENS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT, serving_in
from .server import Server

pytestmark = pytest.mark.e2e
ALICE, BOB = "alice-token-0123456789", "bob-token-9876543210"


@pytest.fixture(scope="module")
def guarded(mode: str, request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the module's mode (embedded, or a Celery-mode web process) with tokens."""
    with serving_in(request, mode, tmp_path_factory.mktemp("guarded"), name="guarded",
                    OFFLOAD_API_TOKENS=f"{ALICE},{BOB}", OFFLOAD_SHUTDOWN_GRACE="1") as server:
        yield server


@pytest.fixture
async def anonymous(guarded: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded.base_url, timeout=CLIENT_TIMEOUT) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_bearer_tokens_guard_the_api_and_each_token_sees_only_its_tasks(
    anonymous: httpx.AsyncClient,
) -> None:
    body = {"name": "add", "args": [2, 3]}
    for headers in ({}, bearer("wrong-token"), {"Authorization": f"Basic {ALICE}"}):
        refused = await anonymous.post("/tasks", json=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"].lower().startswith("bearer")
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await anonymous.get("/process")).status_code == 401
    assert (await anonymous.get("/stats")).status_code == 401
    assert (await anonymous.get("/metrics")).status_code == 401

    accepted = await anonymous.post("/tasks", json=body, headers=bearer(ALICE))
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["id"]
    mine = await anonymous.get(f"/tasks/{task_id}", params={"wait": 10},
                               headers=bearer(ALICE))
    assert mine.status_code == 200
    assert mine.json()["result"] == 5

    assert (await anonymous.get(f"/tasks/{task_id}", headers=bearer(BOB))).status_code == 404
    assert (await anonymous.get(f"/tasks/{task_id}")).status_code == 401
    listed = await anonymous.get("/tasks", headers=bearer(BOB))
    assert task_id not in {t["id"] for t in listed.json()["items"]}
    events = await anonymous.get(f"/tasks/{task_id}/events", headers=bearer(BOB))
    assert events.status_code == 404

    for open_path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await anonymous.get(open_path)).status_code == 200, open_path
