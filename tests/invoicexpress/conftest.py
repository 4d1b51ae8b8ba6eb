"""InvoiceXpress fixtures: a fresh sandbox and a client that reaches it in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from commands.invoicexpress.client import InvoiceXpressClient
from commands.invoicexpress.sandbox import (
    SANDBOX_API_KEY,
    SANDBOX_BASE_URL,
    InvoiceXpressSandbox,
)


@pytest.fixture
def sandbox() -> InvoiceXpressSandbox:
    return InvoiceXpressSandbox()


@pytest.fixture
def delays() -> list[float]:
    """The back-off delays the client asked to sleep (it never really sleeps in tests)."""
    return []


@pytest.fixture
async def client(
    sandbox: InvoiceXpressSandbox, delays: list[float]
) -> AsyncIterator[InvoiceXpressClient]:
    client = InvoiceXpressClient.open(
        base_url=SANDBOX_BASE_URL,
        api_key=SANDBOX_API_KEY,
        transport=httpx.ASGITransport(app=sandbox.app()),
    )

    async def sleep(delay: float) -> None:
        delays.append(delay)

    client.http.sleep = sleep
    yield client
    await client.http.aclose()
