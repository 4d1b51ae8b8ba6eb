"""Shared fixtures. `database_url` runs each storage-touching test on SQLite and, when
TEST_DATABASE_URL names one, on PostgreSQL too (CI starts a real server)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.catalog import ProviderRuntime
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.ops.logs import CHATTY
from bot.ops.logs import _Handler as BotHandler
from bot.runtime import Runtime, open_providers, open_runtime
from bot.storage import store
from commands.secrets import reset_secrets
from tests.support import Clock, OpenBot, RecordingSurface
from tests.support.drill import DRILL, STALE, START, Bot, DrillClient

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the variables they set: no real credentials leak in from the shell. The
    providers' prefixes come from their settings models, so a new provider's are cleared too."""
    from commands.registry import PROVIDERS

    prefixes = ["SLACK_", "BILLING_"]
    for provider in PROVIDERS:
        settings: Any = provider.settings  # the settings class, or a factory of one
        model: Any = settings if isinstance(settings, type) else type(settings())
        if prefix := str(model.model_config.get("env_prefix", "")):
            prefixes.append(prefix.upper())
    bare = {"DATABASE_URL", "APPROVAL_TTL_HOURS", "PORT", "METRICS_TOKEN"}
    for name in list(os.environ):  # settings read names in any case, so clear them in any case
        if name.upper().startswith(tuple(prefixes)) or name.upper() in bare:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    """Each test starts with no registered secret: whatever masks one was registered by the code
    the test runs (or the test itself), never by an earlier test."""
    reset_secrets()


@pytest.fixture(autouse=True)
def _restore_log_levels() -> Iterator[None]:
    """Each test starts with the log levels the last one found: `billing-bot` commands a test
    runs (`main([...])`) configure logging for the whole process, quieting libraries such as
    httpx, and a later test in the same worker must not inherit that, nor the handler they add,
    which writes to the stderr pytest captured for that test and closed after it."""
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in CHATTY)]
    levels = [logger.level for logger in loggers]
    handlers = list(root.handlers)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    for added in [h for h in root.handlers if isinstance(h, BotHandler) and h not in handlers]:
        root.removeHandler(added)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database migrated to the head, on each backend `database_url` names."""
    await store.upgrade(database_url)
    made = store.make_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


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
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "billing_spool_dir": tmp_path / "spool",
            "billing_viewers": "U0VIEWER",
            "billing_operators": "U0OPERATOR,U1",
            "billing_approvers": "U0APPROVER,U2,U3",
            "billing_admins": "U0ADMIN",
        }
        values.update(overrides)
        return Settings(**values)

    return make


# What `open_bot` hands to `open_runtime` rather than to the settings.
RUNTIME_OPTIONS = {
    "runtimes",
    "direct",
    "clock",
    "working_after",
    "heartbeat_every",
    "stale_after",
    "group_members",
    "open_console",
}


@pytest.fixture
async def open_bot(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[OpenBot]:
    """Opens bots on sandboxes with roles (U1 operator, U2/U3 approvers, U0ADMIN admin);
    keyword arguments override settings (`billing_channel="C0BILLING"`) or, for the names in
    RUNTIME_OPTIONS, go to `open_runtime` (`clock=…`, `runtimes=[…]`). Each bot's system
    surfaces are `RecordingSurface`s, one per channel, in `bot.system_surfaces`; all are
    closed after the test."""
    opened: list[Runtime] = []
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)

    async def open_one(**overrides: Any) -> Runtime:
        options = {k: overrides.pop(k) for k in list(overrides) if k in RUNTIME_OPTIONS}
        settings = make_settings(**overrides)
        surfaces: dict[str, RecordingSurface] = {}

        def system_surface(channel: str) -> RecordingSurface:
            return surfaces.setdefault(channel, RecordingSurface(channel=channel, user=""))

        options.setdefault("runtimes", open_providers(use_sandboxes=True))
        options.setdefault("working_after", 5.0)
        bot_runtime = await open_runtime(settings, system_surface=system_surface, **options)
        bot_runtime.system_surfaces = surfaces  # type: ignore[attr-defined]
        opened.append(bot_runtime)
        return bot_runtime

    try:
        yield open_one
    finally:
        for bot_runtime in opened:
            await bot_runtime.close()


@pytest.fixture
async def runtime(open_bot: OpenBot) -> Runtime:
    """A bot on sandboxes with roles: U1 operator, U2/U3 approvers, U0ADMIN admin."""
    return await open_bot()


@pytest.fixture
def dispatcher(runtime: Runtime) -> Dispatcher:
    return runtime.dispatcher


@pytest.fixture
async def bot(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[Bot]:
    """A bot whose only provider is the drill: U1 operator, U2 and U3 approvers."""
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    client = DrillClient()
    clock = Clock(START)
    surfaces: dict[str, RecordingSurface] = {}
    runtime = await open_runtime(
        make_settings(billing_timezone="Asia/Tokyo"),
        system_surface=lambda c: surfaces.setdefault(c, RecordingSurface(channel=c, user="")),
        runtimes=[ProviderRuntime(DRILL, "live", client)],
        clock=clock,
        working_after=60.0,
        stale_after=STALE,
    )
    try:
        yield Bot(runtime, client, clock)
    finally:
        client.release.set()
        await runtime.close()
