"""The drill: a provider that exists only in the tests, and a bot whose only provider it is.

Its commands (`/drill move`, `send`, `peek`, `look`) are a write or a safe read, run at once or
behind an approval; `DrillClient` records every call and can be held mid-call (an event), made
to crash, made to raise, or made to propose a command, as a scheduled reminder's reply does.
`Bot` drives it from outside: requests typed through `Dispatcher.run`, the state machine stepped
through `Approvals` as another replica would (the `bot` fixture in tests/conftest.py opens one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.approvals.state import Approvals
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.runtime import Runtime, open_runtime
from bot.storage.store import approvals, audit
from commands.base import Args, Button, Command, Context, Evidence, Proposal, Provider, Reply, Role
from commands.sandbox import Sandbox
from tests.support import Clock, RecordingSurface

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
STALE = timedelta(minutes=2)
LOST = "the process running it stopped before the answer came"


class DrillSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRILL_")


class Ref(Args):
    positional: ClassVar[tuple[str, ...]] = ("ref",)
    ref: str


@dataclass
class DrillClient:
    """Records every call; `hold` parks the handler until `release`, `crash` makes it raise,
    `raises` raise that, `propose` makes its reply propose a command, as a scheduled
    reminder's does."""

    calls: list[str] = field(default_factory=list)
    hold: bool = False
    crash: bool = False
    raises: Exception | None = None
    propose: Proposal | None = None
    contexts: list[Context] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def move(client: DrillClient, args: Ref, ctx: Context) -> Reply:
    client.calls.append(args.ref)
    client.contexts.append(ctx)
    await ctx.notify(f"sending {args.ref}")
    if client.hold:
        client.entered.set()
        await client.release.wait()
    if client.crash:
        raise RuntimeError(f"the client broke while sending {args.ref}")
    if client.raises is not None:
        raise client.raises
    await ctx.progress(1, 1, f"moved {args.ref}")
    return Reply(text=f"moved {args.ref}", proposal=client.propose)


def _no_sandbox() -> tuple[DrillSettings, Sandbox]:
    raise AssertionError("the drill provider is always given a client")


async def _check(client: DrillClient) -> str:
    return "ok"


async def seen(client: DrillClient, args: Ref, ctx: Context) -> Evidence:
    """The read that shows whether a lost write happened: the client's own record."""
    client.contexts.append(ctx)
    if args.ref in client.calls:
        return Evidence(text=f"{args.ref} is at the provider", verdict="done")
    return Evidence(text=f"{args.ref} is not at the provider", verdict="not done")


def drill(word: str, *, approval: bool, write: bool, look: str = "look") -> Command[Ref, Any]:
    """A drill command: a write (with a hint naming the read that checks it) or a safe read,
    run at once or behind an approval."""

    def hint(args: Ref) -> Reply:
        return Reply(
            text=f"Check whether {args.ref} moved.",
            buttons=[Button(label="Look", command=f"/drill {look} {args.ref}")],
        )

    return Command(
        slash="drill",
        words=(word,),
        summary=f"a {'write' if write else 'read'}{' behind an approval' if approval else ''}",
        args=Ref,
        handler=move,
        role=Role.OPERATOR,
        approval=approval,
        idempotent=not write,
        unknown_hint=hint if write else None,
        check_outcome=seen if write else None,
    )


DRILL: Provider[DrillSettings, DrillClient] = Provider(
    name="drill",
    title="Drill",
    settings=DrillSettings,
    configured=lambda settings: True,
    open_client=lambda settings, transport: DrillClient(),
    sandbox=_no_sandbox,
    commands=[
        drill("move", approval=True, write=True),
        drill("send", approval=False, write=True, look="peek"),
        drill("peek", approval=False, write=False),
        drill("look", approval=True, write=False),
    ],
    check=_check,
)


@dataclass
class Bot:
    runtime: Runtime
    client: DrillClient
    clock: Clock

    @property
    def dispatcher(self) -> Dispatcher:
        return self.runtime.dispatcher

    async def run(self, line: str, user: str) -> tuple[bool, RecordingSurface]:
        surface = RecordingSurface(user=user)
        done = await self.runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)
        return done, surface

    def replica(self, runner: str) -> Approvals:
        """The state machine as seen by another process sharing the database."""
        return Approvals(
            self.runtime.engine, ttl=timedelta(hours=24), runner=runner, clock=self.clock
        )

    async def row(self, approval_id: int = 1) -> dict[str, Any]:
        async with self.runtime.engine.connect() as conn:
            found = (
                (await conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)))
                .mappings()
                .one()
            )
        return dict(found)

    async def status(self, approval_id: int = 1) -> str:
        return str((await self.row(approval_id))["status"])

    async def audit(self) -> list[dict[str, Any]]:
        async with self.runtime.engine.connect() as conn:
            rows = (await conn.execute(sa.select(audit).order_by(audit.c.id))).mappings().all()
        return [dict(r) for r in rows]


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until `condition` holds (the deadline only turns a hang into a failure)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not await condition():
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


async def approve_in_flight(bot: Bot) -> asyncio.Future[bool]:
    """Request #1 (`/drill move r1`) as U1, approve it as U2 and return once the handler is
    inside its provider call, held there until `bot.client.release` is set."""
    bot.client.hold = True
    requested, _ = await bot.run("/drill move r1", "U1")
    assert requested
    running = asyncio.ensure_future(
        bot.runtime.dispatcher.run(
            "/billing approve 1", user="U2", channel="C1", surface=RecordingSurface(user="U2")
        )
    )
    await asyncio.wait_for(bot.client.entered.wait(), timeout=30)
    assert await bot.status() == "executing"
    return running


async def in_a_later_release(
    bot: Bot, make_settings: Callable[..., Settings], line: str, user: str
) -> RecordingSurface:
    """Run `line` on a bot sharing this one's database whose release has no drill commands."""
    later = await open_runtime(
        make_settings(),
        system_surface=lambda c: RecordingSurface(channel=c, user=""),
        runtimes=[],
        clock=bot.clock,
    )
    try:
        surface = RecordingSurface(user=user)
        await later.dispatcher.run(line, user=user, channel="C1", surface=surface)
        return surface
    finally:
        await later.close()


TOKYO_EXPIRY = "2030-01-07 18:00 JST"  # START + 24 h, shown in BILLING_TIMEZONE


def system(bot: Bot, where: str = "C1") -> RecordingSurface:
    """What the bot showed in `where` by itself: a channel, or a person's direct messages."""
    surface = bot.runtime.system_surface(where)
    assert isinstance(surface, RecordingSurface)
    return surface


async def story(bot: Bot, approval_id: int = 1) -> list[tuple[str, str, str, str]]:
    return [
        (r["user_id"], r["decision"], r["outcome"], r["detail"])
        for r in await bot.audit()
        if r["approval_id"] == approval_id
    ]


async def last_audit(bot: Bot) -> tuple[str, str, str, int | None]:
    row = (await bot.audit())[-1]
    return row["decision"], row["outcome"], row["detail"], row["provider_status"]
