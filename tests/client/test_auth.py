"""Tokens on: the client sends OFFLOAD_TOKEN as a bearer token; a 401 is ``Unauthorized``."""

from __future__ import annotations

import pytest

from service.client import AsyncOffloadClient, OffloadClient, Unauthorized
from service.errors import TaskNotFound

from ..e2e.server import Server
from .conftest import TOKENS, WAIT


def test_no_token_is_401(token_server: Server) -> None:
    with OffloadClient(token_server.base_url) as client, \
            pytest.raises(Unauthorized) as caught:
        client.submit("add", 1, 2)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].lower().startswith("bearer")


def test_a_wrong_token_is_401(token_server: Server) -> None:
    with OffloadClient(token_server.base_url, "wrong") as client, \
            pytest.raises(Unauthorized):
        client.list()


def test_the_token_from_the_environment(token_server: Server,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_TOKEN", TOKENS[0])
    with OffloadClient(token_server.base_url) as alice:
        handle = alice.submit("add", 1, 2)
        assert handle.result(WAIT) == 3
        assert [e.kind for e in handle.events()] == ["status"]
    # another token does not see it; the argument wins over the environment
    with OffloadClient(token_server.base_url, TOKENS[1]) as bob, \
            pytest.raises(TaskNotFound):
        bob.get(handle.id)


async def test_async_client_sends_the_token(token_server: Server) -> None:
    async with AsyncOffloadClient(token_server.base_url, TOKENS[1]) as bob:
        handle = await bob.submit("add", 5, 5)
        assert await handle.result(WAIT) == 10
    async with AsyncOffloadClient(token_server.base_url) as nobody:
        with pytest.raises(Unauthorized):
            await nobody.get(handle.id)
