"""Provider limits shared through PostgreSQL: two engines stand for two replicas.

SQLite is one process, so the bot keeps its limits in memory there (see
test_the_runtime_shares_limits_only_on_postgresql).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runtime import Runtime
from bot.storage import store
from bot.storage.limits import DatabaseLimits, limit_slots, limit_turns
from commands.limits import limit_key, limits_of
from commands.smsc.queue import DocumentQueue
from commands.voipcloud.budget import BudgetSpent, RateBudget, RateLimit
from tests.support import sandbox_of

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
TOKEN = "vc-token-d41d8cd98f00b204"
NOON = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    await store.upgrade(database_url)
    first, second = store.make_engine(database_url), store.make_engine(database_url)
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


@on_postgresql
async def test_a_window_holds_across_replicas_even_when_they_race(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    replicas = [DatabaseLimits(engine) for engine in engines]
    key = limit_key("VoIPcloud", TOKEN)
    window = timedelta(minutes=1)
    takes = await asyncio.gather(
        *(replicas[n % 2].take(key, requests=4, window=window, now=NOON) for n in range(12))
    )
    assert sum(taken for taken, _ in takes) == 4
    assert sorted(len(slots) for taken, slots in takes if taken) == [1, 2, 3, 4]
    assert all(len(slots) == 4 for taken, slots in takes if not taken)
    # A minute later the window has room again, for either replica.
    later = NOON + window
    assert (await replicas[1].take(key, requests=4, window=window, now=later))[0]
    assert await replicas[0].slots(key, window=window, now=later) == [later]


@on_postgresql
async def test_turns_never_overlap_and_are_spaced_across_replicas(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    replicas = [DatabaseLimits(engine) for engine in engines]
    key = limit_key("SMSC", "acme-login")
    spacing = 0.4
    spans: list[tuple[float, float]] = []

    async def request(limits: DatabaseLimits) -> None:
        async with limits.turn(key, spacing):
            started = time.monotonic()
            await asyncio.sleep(0)  # the request is in flight
            spans.append((started, time.monotonic()))

    await asyncio.gather(*(request(replicas[n % 2]) for n in range(4)))
    spans.sort()
    assert len(spans) == 4
    for (_, ended), (started, _) in zip(spans, spans[1:], strict=False):
        assert started - ended >= spacing


@on_postgresql
async def test_two_budgets_on_one_token_spend_one_window(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    limit = RateLimit.parse("3/15m")
    budgets = [
        RateBudget(
            limit, provider="VoIPcloud", key=limit_key("VoIPcloud", TOKEN), clock=lambda: NOON
        )
        for _ in engines
    ]
    for budget, engine in zip(budgets, engines, strict=True):
        budget.share(DatabaseLimits(engine))
    await budgets[0].acquire(wait=False)
    await budgets[0].acquire(wait=False)
    await budgets[1].refresh()
    assert budgets[1].level() == 1
    await budgets[1].acquire(wait=False)
    with pytest.raises(BudgetSpent) as spent:
        await budgets[0].acquire(wait=False)
    assert spent.value.ready_at == NOON + timedelta(minutes=15)
    async with engines[0].connect() as conn:
        keys = set((await conn.execute(sa.select(limit_slots.c.key))).scalars())
    assert keys == {limit_key("VoIPcloud", TOKEN)}
    assert TOKEN not in "".join(keys)


@on_postgresql
async def test_two_document_queues_on_one_login_take_turns(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    spacing = 0.3
    queues = [DocumentQueue(account="acme-login", spacing=spacing) for _ in engines]
    for queue, engine in zip(queues, engines, strict=True):
        queue.share(DatabaseLimits(engine))
    spans: list[tuple[float, float]] = []

    async def call() -> None:
        started = time.monotonic()
        await asyncio.sleep(0)
        spans.append((started, time.monotonic()))

    await asyncio.gather(*(queues[n % 2].run(call) for n in range(4)))
    spans.sort()
    for (_, ended), (started, _) in zip(spans, spans[1:], strict=False):
        assert started - ended >= spacing
    async with engines[0].connect() as conn:
        [key] = (await conn.execute(sa.select(limit_turns.c.key))).scalars()
    assert key == limit_key("smsc", "acme-login") and "acme-login" not in key


async def test_the_runtime_shares_limits_only_on_postgresql(
    runtime: Runtime, database_url: str
) -> None:
    smsc = runtime.catalog.runtime("smsc")
    assert smsc is not None and smsc.client is not None
    [queue] = limits_of(smsc.client)
    shared = getattr(queue, "_shared", None)
    if database_url.startswith("sqlite"):
        assert shared is None
    else:
        assert isinstance(shared, DatabaseLimits)
    assert sandbox_of(runtime, "smsc") is not None
