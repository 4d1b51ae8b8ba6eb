"""Assembles a running bot from configuration: store, provider clients, roles, dispatcher.

Shared by `serve`, `socket`, `console` and `check`, so every adapter runs the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.policy import PolicyError
from bot.approvals.policy import load as load_policy
from bot.billing import Ops, billing_provider
from bot.config import Settings, config_error_line, config_error_lines
from bot.dispatch import Dispatcher, ProviderRuntime
from bot.ops.logs import command_line
from bot.ops.metrics import Metrics
from bot.roles import GroupLookup, Roles
from bot.schedules.commands import POST, lead_time, run_schedule
from bot.schedules.engine import Schedule, Scheduler
from bot.slack.outbox import Outbox
from bot.slack.surface import SlackSurface
from bot.storage import store
from bot.storage.limits import DatabaseLimits
from bot.surface import Surface
from commands.base import Provider
from commands.http import http_of
from commands.limits import limits_of
from commands.registry import PROVIDERS
from commands.secrets import install_log_redaction, register_secret

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """Bad configuration values; the message has one line per bad variable."""


def load_settings(providers: Sequence[Provider[Any, Any]] = PROVIDERS) -> Settings:
    """The bot's settings, after checking every provider's too: every bad variable is
    reported at once, not one per attempt."""
    lines: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings()
    except ValidationError as exc:
        lines += config_error_lines(exc, Settings)
    for provider in providers:
        try:
            provider.settings()
        except ValidationError as exc:
            lines += config_error_lines(exc, type_of(provider))
    if lines or settings is None:
        raise ConfigError("\n".join(lines))
    register_secret(*settings.secrets())
    return settings


def open_providers(
    *, use_sandboxes: bool, providers: Sequence[Provider[Any, Any]] = PROVIDERS
) -> list[ProviderRuntime]:
    """Configured providers go live; the others use their sandbox (console) or are disabled."""
    runtimes = []
    for provider in providers:
        try:
            settings = provider.settings()
        except ValidationError as exc:
            raise ConfigError(config_error_line(exc, type_of(provider))) from None
        if provider.configured(settings):
            runtimes.append(ProviderRuntime(provider, "live", provider.open_client(settings, None)))
        elif use_sandboxes:
            sandbox_settings, sandbox = provider.sandbox()
            transport = httpx.ASGITransport(app=sandbox.app())
            client = provider.open_client(sandbox_settings, transport)
            runtimes.append(ProviderRuntime(provider, "sandbox", client, sandbox))
        else:
            runtimes.append(ProviderRuntime(provider, "disabled"))
    return runtimes


def type_of(provider: Provider[Any, Any]) -> Any:
    return provider.settings


async def prepare_database(settings: Settings) -> AsyncEngine:
    """SQLite is migrated at start; PostgreSQL must be migrated with `billing-bot db upgrade`."""
    engine = store.make_engine(settings.database_url)
    if store.is_sqlite(engine):
        await store.upgrade(settings.database_url)
    return engine


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    dispatcher: Dispatcher
    metrics: Metrics = field(default_factory=Metrics)
    outbox: Outbox | None = None
    background: list[asyncio.Task[Any]] = field(default_factory=list)

    def start_deliveries(self, every: float = 2.0) -> None:
        """Send what Slack has not taken yet: retries, and rows an earlier process left."""
        if self.outbox is not None:
            self.background.append(asyncio.ensure_future(self.outbox.run(every)))

    def start_sweeper(self, every: float = 30.0) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.dispatcher.flow.sweep()
                except Exception:
                    log.exception("approval sweep failed")
                await asyncio.sleep(every)

        self.background.append(asyncio.ensure_future(loop()))

    def start_scheduler(self) -> None:
        if self.dispatcher.scheduler is not None:
            self.dispatcher.scheduler.start()

    async def close(self, *, drain: float = 25.0) -> None:
        """Stop: let requests in flight finish (up to `drain` seconds), then release."""
        if self.dispatcher.scheduler is not None:
            await self.dispatcher.scheduler.stop()
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.dispatcher.drain(drain)
        for runtime in self.dispatcher.runtimes:
            await close_client(runtime.client)
        if self.outbox is not None:
            await self.outbox.http.aclose()
        await self.engine.dispose()


async def close_client(client: Any) -> None:
    closer = getattr(client, "aclose", None) or getattr(
        getattr(client, "http", None), "aclose", None
    )
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


def direct_messages(outbox: Outbox) -> Callable[[str], Awaitable[Surface | None]]:
    """A person's direct message with the bot, opened with `conversations.open` (scope
    `im:write`): files are shared to a channel id, never to a user id
    (https://api.slack.com/methods/conversations.open,
    https://api.slack.com/methods/files.completeUploadExternal)."""

    async def direct(user: str) -> Surface | None:
        try:
            opened = await outbox.client.conversations_open(users=user)
            channel = str(opened["channel"]["id"])
        except Exception as exc:  # Slack refused or is away: the caller tells the person
            log.warning("could not open a direct message with %s (%s)", user, type(exc).__name__)
            return None
        return SlackSurface(outbox, channel=channel, user=user)

    return direct


async def open_runtime(
    settings: Settings,
    *,
    system_surface: Callable[[str], Surface] | None = None,
    slack: AsyncWebClient | None = None,
    use_sandboxes: bool = False,
    open_console: bool = False,
    group_members: GroupLookup | None = None,
    runtimes: list[ProviderRuntime] | None = None,
    metrics: Metrics | None = None,
    **dispatcher_options: Any,
) -> Runtime:
    """`slack`: the Web API client; what the bot shows then goes through the outbox, and each
    channel's own surface (scheduled posts, cards of another channel) is a `SlackSurface`.
    Without it (the console, tests) `system_surface` gives those surfaces.
    `metrics`: the registry the Slack client already counts into (a new one otherwise)."""
    install_log_redaction()
    register_secret(*settings.secrets())
    metrics = metrics or Metrics()
    engine = await prepare_database(settings)
    roles = Roles(settings, group_members=group_members, open_console=open_console)
    providers = runtimes if runtimes is not None else open_providers(use_sandboxes=use_sandboxes)
    kinds = {name: kind for r in providers for name, kind in r.provider.schedule_kinds.items()}
    outbox = Outbox(engine, slack) if slack is not None else None
    if system_surface is None:
        if outbox is None:
            raise ValueError("open_runtime needs a Slack client or a system_surface")
        slack_outbox = outbox

        def system_surface(channel: str) -> Surface:
            return SlackSurface(slack_outbox, channel=channel, user="")

    dispatcher = Dispatcher(
        settings=settings,
        engine=engine,
        roles=roles,
        runtimes=providers,
        system_surface=system_surface,
        billing=billing_provider(kinds),
        billing_client=Ops,
        **dispatcher_options,
    )
    if outbox is not None:
        outbox.on_posted = dispatcher.flow.card_posted
        outbox.locate = dispatcher.flow.card_ref
        dispatcher.direct_surface = direct_messages(outbox)

    async def run(schedule: Schedule, due: datetime | None) -> None:
        await run_schedule(dispatcher, schedule, due)

    dispatcher.scheduler = Scheduler(
        engine,
        tz=settings.tz,
        run=run,
        audit=dispatcher.audit,
        clock=dispatcher.clock,
        tick_every=settings.scheduler_tick_seconds,
        lead=lambda schedule: lead_time(dispatcher, schedule),
    )
    dispatcher.flow.scheduler = dispatcher.scheduler
    if settings.billing_policy_file is not None:
        try:
            policy = load_policy(settings.billing_policy_file, dispatcher.commands)
        except PolicyError as exc:
            await engine.dispose()
            raise ConfigError(str(exc)) from None
        dispatcher.policy = dispatcher.flow.policy = policy
    dispatcher.audit.listen(command_line)
    dispatcher.audit.listen(metrics.on_audit)
    metrics.know(
        commands=[c.audit_name for c in dispatcher.commands],
        providers=[
            *([dispatcher.billing.name] if dispatcher.billing else []),
            *(r.provider.name for r in providers),
        ],
        kinds=[*kinds, POST],
    )
    metrics.watch_approvals(engine)
    if outbox is not None:
        metrics.watch_deliveries(outbox.backlog)
    attach_providers(
        providers, metrics, None if store.is_sqlite(engine) else DatabaseLimits(engine)
    )
    return Runtime(
        settings=settings, engine=engine, dispatcher=dispatcher, metrics=metrics, outbox=outbox
    )


def attach_providers(
    providers: Sequence[ProviderRuntime], metrics: Metrics, shared: DatabaseLimits | None
) -> None:
    """Count each provider's requests, show its limits, and share them across replicas when
    the database is PostgreSQL (SQLite means one process: its limits stay in memory)."""
    for runtime in providers:
        if runtime.client is None:
            continue
        name = runtime.provider.name
        for http in http_of(runtime.client):
            http.observers.append(metrics.provider_observer(name))
        for limit in limits_of(runtime.client):
            if shared is not None:
                limit.share(shared)
            metrics.watch_limit(name, limit)
