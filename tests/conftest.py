"""Shared fixtures. `database_url` runs each storage-touching test on SQLite and, when
TEST_DATABASE_URL names one, on PostgreSQL too (CI starts a real server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot import store
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.runtime import Runtime, open_providers, open_runtime
from commands.secrets import reset_secrets
from tests.support import RecordingSurface

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the variables they set: no real credentials leak in from the shell."""
    prefixes = ("SLACK_", "BILLING_", "INVOICEXPRESS_", "SMSC_", "VOIPCLOUD_", "ACTIVEPLATFORM_")
    for name in list(os.environ):
        if name.startswith(prefixes) or name in {"DATABASE_URL", "APPROVAL_TTL_HOURS", "PORT"}:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    """Each test starts with no registered secret: whatever masks one was registered by the code
    the test runs (or the test itself), never by an earlier test."""
    reset_secrets()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}"
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set (PostgreSQL runs in CI)")
    yield from _fresh_postgres(base)


def _fresh_postgres(base: str) -> Iterator[str]:
    """A throwaway database per test, so tests never see each other's rows. Its name carries the
    pytest-xdist worker ("gw0", …; "main" when not under xdist), so parallel workers sharing the
    server can never pick the same name and a database left behind says who left it."""
    import asyncio

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"t_{worker}_{uuid.uuid4().hex[:12]}"
    url = store.async_url(base)
    admin = url.rsplit("/", 1)[0] + "/postgres"

    async def run(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    async def drop() -> None:
        # FORCE ends the test's own sessions, but not an autovacuum worker that happens to be in
        # the database (it belongs to the server's superuser): that one ends by itself shortly.
        for attempt in range(50):
            try:
                await run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except sa.exc.DBAPIError as exc:
                if "pg_signal_backend" not in str(exc) or attempt == 49:
                    raise
                await asyncio.sleep(0.1)

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(drop())


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "billing_viewers": "U0VIEWER",
            "billing_operators": "U0OPERATOR,U1",
            "billing_approvers": "U0APPROVER,U2,U3",
            "billing_admins": "U0ADMIN",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def runtime(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Runtime]:
    """A bot on sandboxes with roles: U1 operator, U2/U3 approvers, U0ADMIN admin."""
    settings = make_settings()
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    surfaces: dict[str, RecordingSurface] = {}

    def system_surface(channel: str) -> RecordingSurface:
        return surfaces.setdefault(channel, RecordingSurface(channel=channel, user=""))

    bot_runtime = await open_runtime(
        settings,
        system_surface=system_surface,
        runtimes=open_providers(use_sandboxes=True),
        working_after=5.0,
    )
    bot_runtime.system_surfaces = surfaces  # type: ignore[attr-defined]
    try:
        yield bot_runtime
    finally:
        await bot_runtime.close()


@pytest.fixture
def dispatcher(runtime: Runtime) -> Dispatcher:
    return runtime.dispatcher
