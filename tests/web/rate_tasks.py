"""A rate-limited task for the HTTP API tests."""

from __future__ import annotations

from service import task


@task(rate_limit="10/m")
async def call_partner(order: int) -> int:
    """Calls a partner's API, which allows 10 calls a minute."""
    return order
