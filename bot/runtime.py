"""The composition root: every service of a running bot, built once, in dependency order.

    settings ─► engine ─► audit ─► approvals ─► policy ─► outbox (Slack) ─► catalog ─► executor
             ─► notices ─► approval flow ─► dispatcher ─► schedule runs ─► scheduler
             ─► /billing desk ─► Slack app (bot.slack.app) | console (bot.console)

Each service gets the few others it uses at construction and is complete once built: nothing
assigns a service's attribute afterwards (tests/test_architecture.py checks). Where two need
each other, a callback or a small protocol crosses at construction: the outbox asks the
approvals' `Cards` where a card is, and the executor makes `/billing`'s client through a
function that reaches the desk built last. `serve`, `socket`, `console` and the tests all open
the bot here, so every adapter runs the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.anchors import Anchoring
from bot.approvals.cards import Cards
from bot.approvals.flow import ApprovalFlow
from bot.approvals.gate import Gate
from bot.approvals.notices import Notices, SurfaceNotices
from bot.approvals.policy import Policy, PolicyError
from bot.approvals.policy import load as load_policy
from bot.approvals.state import Approvals
from bot.approvals.stepup import StepUp
from bot.billing import ask_approval, billing_provider
from bot.catalog import Catalog, ProviderRuntime
from bot.config import Settings, config_error_line, config_error_lines
from bot.desk import Desk, DirectMessages
from bot.dispatch import Dispatcher
from bot.executor import Executor
from bot.ops.database import DatabaseHealth
from bot.ops.health import database_problem
from bot.ops.logs import command_line
from bot.ops.metrics import Metrics
from bot.roles import GroupLookup, Roles
from bot.schedules.commands import POST
from bot.schedules.engine import Scheduler
from bot.schedules.runs import ScheduleRuns
from bot.schedules.store import ScheduleStore
from bot.slack.app import Listeners, build_app, group_lookup, web_client
from bot.slack.direct import DirectNotes
from bot.slack.listeners import AfterAck, ButtonClick, FormSubmitted, HomeOpened, SlashCommand
from bot.slack.notices import SlackNotices
from bot.slack.outbox import Outbox, Places
from bot.slack.secret_dm import SlackSecretMessages
from bot.slack.steps import FunctionExecuted, SlackCompletions, StepDelivery
from bot.slack.surface import SlackSurface
from bot.steps import Completer, Completions, KeepingRunner, ShownCompletions, Steps, Told
from bot.storage import store
from bot.storage.anchors import AnchorStore
from bot.storage.audit import AuditLog, ChainCheck
from bot.storage.limits import DatabaseLimits
from bot.storage.spool import Spool
from bot.storage.steps import StepRuns
from bot.storage.store import ReportHistory, StoredCommands, utcnow
from bot.surface import MessageRef, Surface, guarded
from commands.base import Provider, Reply
from commands.http import http_of
from commands.limits import limits_of
from commands.registry import PROVIDERS
from commands.secrets import install_log_redaction, register_secret

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """Bad configuration values; the message has one line per bad variable."""


NO_SECRET_KEY = (
    "configuration error: BILLING_SECRET_KEY: the approval policy asks for step-up codes "
    "(step_up: totp), which need this key to encrypt the enrolments: set it to the base64 of "
    "32 random bytes (`openssl rand -base64 32`)."
)


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


@dataclass(kw_only=True)
class Runtime:
    """What `open_runtime` built: every service, for the adapters to take the few they use."""

    settings: Settings
    engine: AsyncEngine
    health: DatabaseHealth
    metrics: Metrics
    roles: Roles
    audit: AuditLog
    chain: ChainCheck
    anchors: Anchoring
    approvals: Approvals
    policy: Policy
    outbox: Outbox | None
    catalog: Catalog
    executor: Executor
    flow: ApprovalFlow
    dispatcher: Dispatcher
    schedules: ScheduleStore
    runs: ScheduleRuns
    scheduler: Scheduler
    system_surface: Callable[[str], Surface]
    direct: DirectMessages
    stepup: StepUp
    steps: Steps
    background: list[asyncio.Task[Any]] = field(default_factory=list)

    def start_deliveries(self, every: float = 2.0) -> None:
        """Send what Slack has not taken yet: retries, and rows an earlier process left."""
        if self.outbox is not None:
            self.background.append(asyncio.ensure_future(self.outbox.run(every)))

    def start_sweeper(self, every: float = 30.0) -> None:
        """Expiries, stale runs and reminders; the next batch of the audit chain's check; and
        the day's audit anchor once it is due."""

        steps = (
            (self.flow.sweep, "approval sweep"),
            (self.chain.step, "the audit chain check"),
            (self.anchors.daily, "the daily audit anchor"),
        )

        async def loop() -> None:
            while True:
                away = False
                for step, what in steps:
                    try:
                        await step()
                    except Exception as exc:
                        if self.health.failed(exc, where="the sweeper"):
                            away = True
                        else:
                            log.exception("%s failed", what)
                if not away:
                    await self.health.ok(where="the sweeper")
                await asyncio.sleep(every)

        self.background.append(asyncio.ensure_future(loop()))

    def start_scheduler(self) -> None:
        self.scheduler.start()

    async def close(self, *, drain: float = 25.0) -> None:
        """Stop: let requests in flight finish (up to `drain` seconds), then release."""
        await self.scheduler.stop()
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.dispatcher.drain(drain)
        for runtime in self.catalog.runtimes:
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


class SlackDirectMessages:
    """A person's direct message with the bot, opened with `conversations.open` (scope
    `im:write`): files are shared to a channel id, never to a user id
    (https://api.slack.com/methods/conversations.open,
    https://api.slack.com/methods/files.completeUploadExternal)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def open(self, user: str) -> Surface | None:
        try:
            opened = await self.outbox.client.conversations_open(users=user)
            channel = str(opened["channel"]["id"])
        except Exception as exc:  # Slack refused or is away: the caller tells the person
            log.warning("could not open a direct message with %s (%s)", user, type(exc).__name__)
            return None
        return guarded(SlackSurface(self.outbox, channel=channel, user=user))


class SystemSecretMessages:
    """Without Slack, a secret for a person goes to the surface the runtime was given for them,
    as text alone: the console saves files to a folder, and a seed must not rest in a file."""

    def __init__(self, system_surface: Callable[[str], Surface]) -> None:
        self.system_surface = system_surface

    async def send(self, user: str, reply: Reply) -> bool:
        await guarded(self.system_surface(user)).send(replace(reply, files=()))
        return True


class SystemDirectMessages:
    """Without Slack (the console, tests) a person's direct messages are the surface the
    runtime was given for them."""

    def __init__(self, system_surface: Callable[[str], Surface]) -> None:
        self.system_surface = system_surface

    async def open(self, user: str) -> Surface | None:
        return guarded(self.system_surface(user))


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
    direct: DirectMessages | None = None,
    clock: Callable[[], datetime] = utcnow,
    working_after: float = 2.0,
    heartbeat_every: float = 10.0,
    stale_after: timedelta = timedelta(minutes=2),
    outbox_lease: timedelta = timedelta(seconds=120),
) -> Runtime:
    """`slack`: the Web API client; what the bot shows then goes through the outbox, and each
    channel's own surface (scheduled posts, cards of another channel) is a `SlackSurface`.
    Without it (the console, tests) `system_surface` gives those surfaces.
    `metrics`: the registry the Slack client already counts into (a new one otherwise).
    `direct`: where a person's direct messages open (by default Slack's, or without Slack
    `system_surface(user)`)."""
    install_log_redaction()
    register_secret(*settings.secrets())
    metrics = metrics or Metrics()
    providers = runtimes if runtimes is not None else open_providers(use_sandboxes=use_sandboxes)
    kinds = {name: kind for r in providers for name, kind in r.provider.schedule_kinds.items()}
    catalog = Catalog(providers, billing_provider(kinds))
    policy = load_policy_of(settings, catalog)
    keyring = settings.keyring()
    if policy.step_up and keyring is None:
        raise ConfigError(NO_SECRET_KEY)
    engine = await prepare_database(settings)
    health = DatabaseHealth(functools.partial(database_problem, engine), gauge=metrics.database_up)
    roles = Roles(settings, group_members=group_members, open_console=open_console)
    audit = AuditLog(engine, listeners=[command_line, metrics.on_audit])
    chain = ChainCheck(audit)
    kept = AnchorStore(engine, audit)
    approvals = Approvals(engine, ttl=timedelta(hours=settings.approval_ttl_hours), clock=clock)
    places = EveryPlace(Cards(approvals), kept)
    step_runs = StepRuns(engine, clock=clock)
    delivery = StepDelivery(step_runs, audit)
    outbox = (
        Outbox(engine, slack, places=places, steps=delivery, health=health, lease=outbox_lease)
        if slack is not None
        else None
    )
    surfaces = _surfaces(outbox, system_surface)
    anchors = Anchoring(
        kept, system_surface=surfaces, channel=settings.billing_channel, tz=settings.tz, clock=clock
    )
    if direct is None:
        direct = (
            SlackDirectMessages(outbox) if outbox is not None else SystemDirectMessages(surfaces)
        )
    stepup = StepUp(engine, keyring, clock=clock)
    secrets = SlackSecretMessages(outbox.client) if outbox else SystemSecretMessages(surfaces)
    gate = Gate(
        codes=stepup, policy=policy, audit=audit, voters=approvals, ask=ask_approval, tz=settings.tz
    )
    schedules = ScheduleStore(engine, tz=settings.tz, clock=clock)
    history = ReportHistory(engine)
    stored = StoredCommands(engine)
    # `/billing`'s client needs the flow and the scheduler, which need the executor: the
    # executor gets a function that makes the desk, and the desk's services are bound below,
    # once built (before anything can run a command).
    desk: list[functools.partial[Desk]] = []

    def billing_client(surface: Surface) -> Desk:
        return desk[0](surface=surface)

    spool = Spool(settings.spool_dir)  # answers the database could not take when they came
    executor = Executor(
        catalog=catalog,
        audit=audit,
        approvals=approvals,
        stored=stored,
        history=history,
        billing_client=billing_client,
        tz=settings.tz,
        clock=clock,
        spool=spool,
        working_after=working_after,
        heartbeat_every=heartbeat_every,
    )
    notices = Notices(
        approvals=approvals,
        roles=roles,
        post=SlackNotices(outbox) if outbox is not None else SurfaceNotices(direct, surfaces),
        tz=settings.tz,
        notify_approvers=settings.notify_approvers,
    )
    completions: Completions = (
        SlackCompletions(outbox)
        if outbox is not None
        else ShownCompletions(surfaces, settings.billing_channel)
    )
    completer = Completer(runs=step_runs, approvals=approvals, completions=completions)
    flow = ApprovalFlow(
        approvals=approvals,
        audit=audit,
        runner=KeepingRunner(executor, step_runs),
        commands=catalog,
        roles=roles,
        schedules=schedules,
        policy=policy,
        notices=Told(notices, completer),
        gate=gate,
        system_surface=surfaces,
        tz=settings.tz,
        stale_after=stale_after,
        spool=spool,
    )
    dispatcher = Dispatcher(
        catalog=catalog, roles=roles, flow=flow, executor=executor, audit=audit, stored=stored
    )
    steps = Steps(
        catalog=catalog,
        intake=dispatcher,
        runs=step_runs,
        audit=audit,
        completer=completer,
        surfaces=surfaces,
        channel=settings.billing_channel,
    )
    runs = ScheduleRuns(
        catalog=catalog,
        runner=executor,
        flow=flow,
        roles=roles,
        audit=audit,
        store=schedules,
        history=history,
        system_surface=surfaces,
        tz=settings.tz,
        clock=clock,
    )
    scheduler = Scheduler(
        schedules,
        run=runs.run,
        audit=audit,
        clock=clock,
        tick_every=settings.scheduler_tick_seconds,
        lead=runs.lead,
        health=health,
    )
    desk.append(
        functools.partial(
            Desk,
            settings=settings,
            catalog=catalog,
            engine=engine,
            approvals=approvals,
            flow=flow,
            audit=audit,
            anchors=anchors,
            policy=policy,
            schedules=schedules,
            scheduler=scheduler,
            roles=roles,
            direct=direct,
            secrets=secrets,
            stepup=stepup,
        )
    )
    metrics.know(
        commands=[c.audit_name for c in catalog.commands],
        providers=[catalog.billing.name, *(r.provider.name for r in providers)],
        kinds=[*kinds, POST],
    )
    metrics.watch_approvals(engine)
    metrics.watch_chain(lambda: chain.ok)
    if outbox is not None:
        metrics.watch_deliveries(outbox.backlog)
    attach_providers(
        providers, metrics, None if store.is_sqlite(engine) else DatabaseLimits(engine)
    )
    return Runtime(
        settings=settings,
        engine=engine,
        health=health,
        metrics=metrics,
        roles=roles,
        audit=audit,
        chain=chain,
        anchors=anchors,
        approvals=approvals,
        policy=policy,
        outbox=outbox,
        catalog=catalog,
        executor=executor,
        flow=flow,
        dispatcher=dispatcher,
        schedules=schedules,
        runs=runs,
        scheduler=scheduler,
        system_surface=surfaces,
        direct=direct,
        stepup=stepup,
        steps=steps,
    )


async def open_slack_runtime(settings: Settings, metrics: Metrics, **options: Any) -> Runtime:
    """The runtime of a Slack app (`serve`, `socket`): its Web API client, counted in
    `metrics`, with the user groups of approver rules read through it. `options`: as
    `open_runtime`'s (tests shorten the sweeper's and the outbox's times)."""
    client = web_client(settings, metrics)
    return await open_runtime(
        settings, slack=client, group_members=group_lookup(client), metrics=metrics, **options
    )


def slack_app(
    runtime: Runtime, *, middleware: Sequence[Callable[..., Awaitable[Any]]] = ()
) -> AsyncApp:
    """The Slack adapter on top of a runtime opened with a Slack client: its listeners, each
    given the few services it uses."""
    outbox = runtime.outbox
    if outbox is None:
        raise ValueError("the Slack app needs a runtime opened with a Slack client")
    after_ack = AfterAck(health=runtime.health, direct=DirectNotes(outbox.client, outbox.http))
    listeners = Listeners(
        command=SlashCommand(runtime.dispatcher, outbox, after_ack),
        button=ButtonClick(runtime.dispatcher, outbox, after_ack),
        form=FormSubmitted(runtime.dispatcher, outbox, after_ack),
        home=HomeOpened(
            approvals=runtime.approvals,
            schedules=runtime.schedules,
            audit=runtime.audit,
            roles=runtime.roles,
            tz=runtime.settings.tz,
            publish=outbox.client.views_publish,
            after_ack=after_ack,
        ),
        step=FunctionExecuted(runtime.steps, after_ack),
    )
    return build_app(
        settings=runtime.settings,
        outbox=outbox,
        slashes=runtime.catalog.slashes,
        steps=sorted(runtime.steps.steps),
        listeners=listeners,
        middleware=middleware,
    )


def load_policy_of(settings: Settings, catalog: Catalog) -> Policy:
    """BILLING_POLICY_FILE's rules, or none (one approval by any approver but the requester)."""
    if settings.billing_policy_file is None:
        return Policy()
    try:
        return load_policy(settings.billing_policy_file, catalog.commands)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def _surfaces(
    outbox: Outbox | None, system_surface: Callable[[str], Surface] | None
) -> Callable[[str], Surface]:
    """Each channel's own surface (scheduled posts, cards of another channel)."""
    if system_surface is not None:
        return system_surface
    if outbox is None:
        raise ValueError("open_runtime needs a Slack client or a system_surface")
    slack_outbox = outbox

    def channel_surface(channel: str) -> Surface:
        return SlackSurface(slack_outbox, channel=channel, user="")

    return channel_surface


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


class EveryPlace:
    """The outbox's `Places` for messages of more than one kind (approval cards, audit
    anchors): each is told where a message landed, and the first that knows says where one is."""

    def __init__(self, *places: Places) -> None:
        self.places = places

    async def posted(self, key: str, ref: MessageRef) -> None:
        for place in self.places:
            await place.posted(key, ref)

    async def locate(self, key: str) -> MessageRef | None:
        for place in self.places:
            if (ref := await place.locate(key)) is not None:
                return ref
        return None
