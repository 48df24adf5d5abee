from __future__ import annotations

from quart import Quart

from service.web.headers import optional_header


async def test_optional_header_is_case_blind_and_none_when_absent() -> None:
    app = Quart(__name__)
    async with app.test_request_context("/", headers={"x-request-id": "abc"}):
        assert optional_header("X-Request-ID") == "abc"
        assert optional_header("x-request-id") == "abc"
        assert optional_header("Authorization") is None
