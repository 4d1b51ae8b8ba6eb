"""The approval recovery guarantees, each shown failing the way it would if its guard went.

A request runs at most once, and a run that may have reached the provider is never reported as
"failed" (which invites a retry): a late runner cannot overwrite a settled "unknown", the sweeper
never settles this process's own live runs, a stale runner is recognised as stale and a fresh
one is not, the heartbeat keeps a live run fresh, a decided request cannot be rejected
afterwards, a crash inside a non-idempotent handler ends as "unknown", and an id that does not
exist runs nothing.

The tests drive the bot from outside: requests are typed through `Dispatcher.run`, and the
state machine is stepped through `Approvals` as another replica would. The provider is a tiny
one declared here, whose handler can be held mid-call (an event) or made to crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.cards import Cards
from bot.approvals.flow import ApprovalFlow, Postponer
from bot.approvals.state import Approvals, Claim, Status
from bot.catalog import ProviderRuntime
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.executor import Executor
from bot.runtime import Runtime, open_runtime
from bot.storage import store
from bot.storage.store import ReportHistory, StoredCommands, approvals, audit
from bot.surface import MessageRef
from commands.base import (
    Args,
    Button,
    Command,
    CommandError,
    Context,
    Evidence,
    NoArgs,
    Proposal,
    Provider,
    Reply,
    Role,
)
from commands.http import OutcomeUnknown, ProviderError
from commands.sandbox import Sandbox
from tests.support import Clock, RecordingSurface, move_on_disk

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
STALE = timedelta(minutes=2)
LOST = "the process running it stopped before the answer came"


# --- a provider that exists only here --------------------------------------------------------


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


# --- fixtures ----------------------------------------------------------------------------------


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


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


@pytest.fixture
def live() -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours that lives until `end(live)` (never one we did not start: a broken
    liveness check could signal it)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield child
    finally:
        end(child)


def end(child: subprocess.Popen[bytes]) -> int:
    """Let the process finish; its exit status (negative: the signal that killed it)."""
    assert child.stdin is not None
    if not child.stdin.closed:
        child.stdin.close()
    return child.wait(timeout=60)


# --- a late runner cannot overwrite a settled outcome ---------------------------------------


async def test_a_late_runner_does_not_overwrite_unknown(bot: Bot) -> None:
    running = await approve_in_flight(bot)
    # Another replica decides this run's process is gone (same host, same pid from its point of
    # view as a restarted container) and settles it as unknown while the call is still out.
    other = bot.replica("other-host:4242:feedbeef")
    bot.clock.advance(minutes=10)
    settled = await other.orphaned(stale_after=STALE)
    assert [(a.id, a.status) for a in settled] == [(1, Status.UNKNOWN)]

    bot.client.release.set()  # the answer comes back after all
    await running
    row = await bot.row()
    assert row["status"] == "unknown"  # not rewritten to "done" by the late runner
    assert row["outcome"] == LOST
    assert bot.client.calls == ["r1"]


async def test_finish_only_settles_a_run_that_is_executing(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")

    await runner.finish(1, Status.DONE, "never claimed")  # pending: nothing to finish
    assert await bot.status(1) == "pending"
    assert (await bot.row(1))["outcome"] is None

    claim, _ = await runner.claim(2, "U2")
    assert claim is Claim.WON
    await runner.finish(2, Status.FAILED, "refused by the provider")
    await runner.finish(2, Status.DONE, "a second finish")  # settled stays settled
    row = await bot.row(2)
    assert (row["status"], row["outcome"]) == ("failed", "refused by the provider")
    assert row["finished_at"] == START


# --- the sweeper and this process's own runs ------------------------------------------------


async def test_the_sweeper_leaves_this_process_s_own_live_run_alone(bot: Bot) -> None:
    running = await approve_in_flight(bot)
    bot.clock.advance(hours=1)  # far past any staleness: only "it is ours" protects it
    await bot.runtime.flow.sweep()
    assert await bot.status() == "executing"
    assert bot.runtime.system_surface("C1").updates == []  # type: ignore[attr-defined]

    bot.client.release.set()
    assert await running
    assert await bot.status() == "done"
    assert bot.client.calls == ["r1"]
    decisions = [(r["user_id"], r["decision"]) for r in await bot.audit()]
    assert ("system", "recovered") not in decisions


async def test_a_replica_never_settles_its_own_runner_s_rows(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    mine = bot.replica("host-a:101:aaaa")
    await mine.claim(1, "U2")
    bot.clock.advance(hours=3)
    assert await mine.orphaned(stale_after=STALE) == []
    assert await bot.status() == "executing"


# --- staleness --------------------------------------------------------------------------------


async def test_a_runner_on_another_host_is_gone_only_once_its_heartbeat_is_stale(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    runner = bot.replica("host-a:101:aaaa")
    sweeper = bot.replica("host-b:202:bbbb")
    await runner.claim(1, "U2")

    bot.clock.advance(minutes=1)
    assert await sweeper.orphaned(stale_after=STALE) == []
    bot.clock.advance(minutes=1)  # exactly the threshold: not yet stale
    assert await sweeper.orphaned(stale_after=STALE) == []
    assert await bot.status() == "executing"

    bot.clock.advance(seconds=1)
    settled = await sweeper.orphaned(stale_after=STALE)
    assert [(a.id, a.status, a.outcome) for a in settled] == [(1, Status.UNKNOWN, LOST)]
    row = await bot.row()
    assert (row["status"], row["outcome"]) == ("unknown", LOST)
    assert row["finished_at"] == START + STALE + timedelta(seconds=1)
    assert await sweeper.orphaned(stale_after=STALE) == []  # settled once


async def test_a_dead_process_on_this_host_is_gone_at_once(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    host = socket.gethostname()
    await bot.replica(f"{host}:{dead_pid()}:cafe0001").claim(1, "U2")
    sweeper = bot.replica("host-b:202:cafe0002")
    settled = await sweeper.orphaned(stale_after=STALE)  # heartbeat fresh: the pid decides
    assert [a.id for a in settled] == [1]
    assert await bot.status() == "unknown"


async def test_an_earlier_boot_of_this_pid_is_gone_at_once(bot: Bot) -> None:
    """Containers reuse pids: our pid under another boot id is a previous life of ours."""
    await bot.run("/drill move r1", "U1")
    host = socket.gethostname()
    await bot.replica(f"{host}:{os.getpid()}:oldboot1").claim(1, "U2")
    settled = await bot.replica(f"{host}:{os.getpid()}:newboot2").orphaned(stale_after=STALE)
    assert [a.id for a in settled] == [1]


async def test_a_live_process_on_this_host_with_a_fresh_heartbeat_is_not_gone(
    bot: Bot, live: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    host = socket.gethostname()
    await bot.replica(f"{host}:{live.pid}:cafe0003").claim(1, "U2")
    sweeper = bot.replica(f"{host}:{os.getpid()}:cafe0004")
    assert await sweeper.orphaned(stale_after=STALE) == []
    assert end(live) == 0  # asking whether it lives sent it no signal

    # A process we may not signal (another user's) is alive too.
    await bot.replica(f"{host}:1:cafe0005").claim(2, "U2")

    def not_permitted(pid: int, signal: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", not_permitted)
    assert await sweeper.orphaned(stale_after=STALE) == []
    monkeypatch.undo()
    assert [await bot.status(1), await bot.status(2)] == ["executing", "executing"]


async def test_a_runner_without_a_heartbeat_is_gone(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.replica("host-a:101:aaaa").claim(1, "U2")
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().values(heartbeat_at=None))
    assert [a.id for a in await bot.replica("host-b:1:b").orphaned(stale_after=STALE)] == [1]


# --- the heartbeat ----------------------------------------------------------------------------


async def test_a_heartbeat_keeps_a_run_fresh_and_only_its_runner_beats(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    runner = bot.replica("host-a:101:aaaa")
    sweeper = bot.replica("host-b:202:bbbb")
    await runner.claim(1, "U2")

    bot.clock.advance(seconds=90)
    await runner.heartbeat(1)
    assert (await bot.row())["heartbeat_at"] == START + timedelta(seconds=90)
    bot.clock.advance(seconds=60)  # 150 s after the claim, 60 s after the beat
    assert await sweeper.orphaned(stale_after=STALE) == []

    bot.clock.advance(seconds=50)
    await sweeper.heartbeat(1)  # not its run: changes nothing
    assert (await bot.row())["heartbeat_at"] == START + timedelta(seconds=90)
    bot.clock.advance(seconds=11)  # 131 s after the runner's last beat
    assert [a.id for a in await sweeper.orphaned(stale_after=STALE)] == [1]


async def test_a_run_in_flight_keeps_beating(bot: Bot) -> None:
    bot.runtime.executor.heartbeat_every = 0.01
    running = await approve_in_flight(bot)
    claimed = await bot.row()
    assert claimed["heartbeat_at"] == START

    bot.clock.advance(minutes=5)

    async def beaten() -> bool:
        return bool((await bot.row())["heartbeat_at"] == bot.clock.now)

    await eventually(beaten, "the heartbeat of the run in flight")
    bot.client.release.set()
    assert await running
    assert await bot.status() == "done"


# --- rejecting --------------------------------------------------------------------------------


async def test_a_done_request_cannot_be_rejected(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    approved, _ = await bot.run("/billing approve 1", "U2")
    assert approved and await bot.status() == "done"

    rejected, surface = await bot.run('/billing reject 1 "too late"', "U3")
    assert not rejected
    assert surface.privates[-1] == "Approval #1 is already done by <@U2>; nothing was run again."
    row = await bot.row()
    assert (row["status"], row["decided_by"], row["reason"]) == ("done", "U2", None)
    assert "rejected" not in [r["decision"] for r in await bot.audit()]
    assert bot.client.calls == ["r1"]


async def test_a_run_in_flight_or_settled_as_unknown_cannot_be_rejected(bot: Bot) -> None:
    running = await approve_in_flight(bot)
    rejected, surface = await bot.run("/billing reject 1", "U3")
    assert not rejected
    assert "already executing by <@U2>" in surface.privates[-1]
    assert await bot.status() == "executing"

    bot.clock.advance(minutes=10)
    await bot.replica("other-host:4242:feedbeef").orphaned(stale_after=STALE)
    rejected, surface = await bot.run("/billing reject 1", "U3")
    assert not rejected
    assert "already unknown" in surface.privates[-1]
    bot.client.release.set()
    await running
    assert await bot.status() == "unknown"


async def test_an_expired_request_cannot_be_rejected_and_expires_once(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=24)  # exactly the TTL: no longer open
    rejected, surface = await bot.run("/billing reject 1", "U2")
    assert not rejected
    assert surface.privates[-1] == "Approval #1 has expired; request it again."
    assert await bot.status() == "pending"  # until the sweeper marks it

    expired = await bot.replica("host-b:1:b").expire_due()
    assert [(a.id, a.status) for a in expired] == [(1, Status.EXPIRED)]
    assert (await bot.row())["finished_at"] == START + timedelta(hours=24)
    assert await bot.replica("host-b:1:b").expire_due() == []
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved
    assert surface.privates[-1] == "Approval #1 has expired; request it again."
    assert bot.client.calls == []


async def test_a_request_still_open_can_be_rejected_up_to_its_expiry(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=24, seconds=-1)
    rejected, _ = await bot.run('/billing reject 1 "not this month"', "U2")
    assert rejected
    row = await bot.row()
    assert (row["status"], row["decided_by"], row["reason"]) == ("rejected", "U2", "not this month")
    assert row["decided_at"] == row["finished_at"] == bot.clock.now
    assert await bot.replica("host-b:1:b").expire_due() == []
    assert bot.client.calls == []


# --- a crash inside the handler ---------------------------------------------------------------


async def test_a_crash_in_a_non_idempotent_handler_is_unknown_not_failed(bot: Bot) -> None:
    bot.client.crash = True
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert bot.client.calls == ["r1"]
    assert await bot.status() == "unknown"
    assert surface.sent[-1].text == "Approval #1: unknown."
    assert surface.sent[-1].private  # the approver's own note; the card tells the channel
    card = surface.updates[-1][1]
    assert card.text.startswith("❓ #1 *outcome unknown*")
    assert "It may or may not have reached the provider" in card.sections[1]
    assert "the client broke" not in surface.texts()  # the exception stays in the log
    executed = [r for r in await bot.audit() if r["decision"] == "executed"]
    assert [r["outcome"] for r in executed] == ["unknown"]

    # ... and nobody can run it again.
    again, other = await bot.run("/billing approve 1", "U3")
    assert not again and "already unknown" in other.privates[-1]
    assert bot.client.calls == ["r1"]


async def test_a_crash_in_an_idempotent_handler_is_failed(bot: Bot) -> None:
    bot.client.crash = True
    await bot.run("/drill look r1", "U1")
    await bot.run("/billing approve 1", "U2")
    assert await bot.status() == "failed"
    assert "Nothing was retried." in str((await bot.row())["outcome"])


# --- an id that does not exist ----------------------------------------------------------------


@pytest.mark.parametrize("line", ["/billing approve 999", '/billing reject 999 "no such"'])
async def test_an_id_that_does_not_exist_runs_nothing(bot: Bot, line: str) -> None:
    await bot.run("/drill move r1", "U1")
    done, surface = await bot.run(line, "U2")
    assert not done
    assert surface.privates == ["There is no approval request #999."]
    assert bot.client.calls == []
    assert await bot.status(1) == "pending"  # the request that does exist is untouched
    last = (await bot.audit())[-1]
    assert last["user_id"] == "U2" and last["command"] == line.split(" 999")[0]
    assert (last["outcome"], last["detail"]) == ("failed", "There is no approval request #999.")
    async with bot.runtime.engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(approvals))).scalar()
    assert count == 1


# --- the state machine's edges ----------------------------------------------------------------


@contextlib.contextmanager
def just_before_update(engine: AsyncEngine, marker: str, sql: str) -> Iterator[list[str]]:
    """Run `sql` on the same connection just before the first `UPDATE approvals` whose values
    include `marker`: another replica's write landing between a read and the update it decides.
    Yields the statements it went before (one, once it has)."""
    seen: list[str] = []

    def hook(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        values = parameters if isinstance(parameters, tuple | list) else ()
        if not seen and statement.lstrip().startswith("UPDATE approvals") and marker in values:
            seen.append(statement)
            cursor.execute(sql)

    event.listen(engine.sync_engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", hook)


async def test_open_lists_open_requests_oldest_first_fifty_at_most(bot: Bot) -> None:
    for n in range(53):
        await bot.run(f"/drill move r{n}", "U1")
    await bot.run("/billing approve 1", "U2")
    await bot.run("/billing reject 2", "U2")
    listed = bot.replica("host-b:1:b")
    await move_on_disk(bot.runtime.engine, 10)
    assert [a.id for a in await listed.open()] == list(range(3, 53))
    assert [a.id for a in await listed.open(limit=2)] == [3, 4]
    bot.clock.advance(hours=24)  # exactly the TTL: none is open any more
    assert await listed.open() == []


async def test_a_claim_records_who_when_and_which_runner(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(minutes=5)
    runner = bot.replica("host-a:101:aaaa")
    claim, row = await runner.claim(1, "U2")
    assert claim is Claim.WON and row is not None
    at = START + timedelta(minutes=5)
    assert (row.status, row.decided_by, row.decided_at) == (Status.EXECUTING, "U2", at)
    assert (row.runner, row.heartbeat_at) == ("host-a:101:aaaa", at)


async def test_a_request_cannot_be_approved_at_its_expiry(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=24)
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved
    assert surface.privates[-1] == "Approval #1 has expired; request it again."
    assert bot.client.calls == [] and await bot.status() == "pending"


async def test_your_own_request_once_decided_is_just_decided(bot: Bot) -> None:
    await bot.run("/drill move r1", "U2")  # an approver may request too
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved and "You requested #1 yourself" in surface.privates[-1]
    assert (await bot.run("/billing approve 1", "U3"))[0]
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved
    assert surface.privates[-1] == "Approval #1 is already done by <@U3>; nothing was run again."


async def test_each_step_touches_only_its_own_request(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")
    await runner.claim(1, "U2")
    await runner.claim(2, "U3")
    bot.clock.advance(minutes=1)
    await runner.heartbeat(1)
    assert (await bot.row(1))["heartbeat_at"] == START + timedelta(minutes=1)
    assert (await bot.row(2))["heartbeat_at"] == START
    await runner.finish(1, Status.DONE, "x" * 5000)
    assert await bot.status(2) == "executing"
    assert (await bot.row(1))["outcome"] == "x" * 4000  # long outcomes are cut, not refused


async def test_a_card_posted_elsewhere_is_updated_where_it_is(bot: Bot) -> None:
    billing = RecordingSurface(channel="C0BILL", user="U1")
    await bot.runtime.dispatcher.run("/drill move r1", user="U1", channel="C1", surface=billing)
    row = await bot.row()
    assert (row["channel"], row["message_ts"]) == ("C0BILL", "1.0001")
    await bot.run("/billing approve 1", "U2")
    system = bot.runtime.system_surface("C0BILL")
    assert [ref for ref, _ in system.updates][-1] == MessageRef("C0BILL", "1.0001")  # type: ignore[attr-defined]


async def test_a_row_still_reads_for_a_replica_older_than_stored_arguments(bot: Bot) -> None:
    await bot.run('/drill move "café ☕ = 5"', "U1")
    row = await bot.row()
    assert row["origin"] == "user"  # a typed request, not a schedule's
    assert row["args_preview"] == row["args"]
    assert json.loads(row["args_preview"]) == {"ref": "café ☕ = 5"}


async def test_a_request_written_by_an_older_replica_runs_what_its_card_showed(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().values(args=None))  # it knows only the preview
    assert (await bot.run("/billing approve 1", "U2"))[0]
    assert bot.client.calls == ["r1"]


async def test_expiry_takes_only_requests_past_their_time(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=1)
    await bot.run("/drill move r2", "U1")
    await bot.run("/drill move r3", "U1")
    await bot.run("/billing approve 3", "U2")
    bot.clock.advance(hours=24)  # #1 is an hour past its time, #2 just due
    sweeper = bot.replica("host-b:1:b")
    assert [a.id for a in await sweeper.expire_due()] == [1, 2]
    assert [await bot.status(n) for n in (1, 2, 3)] == ["expired", "expired", "done"]
    await bot.run("/drill move r4", "U1")
    assert await sweeper.expire_due() == []
    assert await bot.status(4) == "pending"


async def test_a_decision_landing_during_expiry_stands(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=25)
    engine = bot.runtime.engine
    withdrawn = "UPDATE approvals SET status = 'rejected', reason = 'withdrawn' WHERE id = 1"
    with just_before_update(engine, "expired", withdrawn) as raced:
        assert await bot.replica("host-b:1:b").expire_due() == []
    assert raced  # the withdrawal did land between the sweeper's read and its update
    assert await bot.status() == "rejected"


async def test_an_answer_landing_during_a_sweep_stands(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.replica("host-a:101:aaaa").claim(1, "U2")
    bot.clock.advance(minutes=10)
    engine = bot.runtime.engine
    answered = "UPDATE approvals SET status = 'done', outcome = 'answered' WHERE id = 1"
    with just_before_update(engine, "unknown", answered) as raced:
        assert await bot.replica("host-b:202:bbbb").orphaned(stale_after=STALE) == []
    assert raced
    row = await bot.row()
    assert (row["status"], row["outcome"]) == ("done", "answered")


async def test_one_sweep_settles_every_lost_run_and_only_those(bot: Bot) -> None:
    for n in range(3):
        await bot.run(f"/drill move r{n}", "U1")
    runner = bot.replica("host-a:101:aaaa")
    for n in (1, 2, 3):
        await runner.claim(n, "U2")
    bot.clock.advance(minutes=3)
    await runner.heartbeat(1)  # #1 is still being worked on; #2 and #3 went quiet
    settled = await bot.replica("host-b:202:bbbb").orphaned(stale_after=STALE)
    assert [a.id for a in settled] == [2, 3]
    assert [await bot.status(n) for n in (1, 2, 3)] == ["executing", "unknown", "unknown"]


# --- the bot failing around a run -------------------------------------------------------------


def trip_over_proposals(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler's reply proposes a command, and putting it up fails inside the bot."""
    bot.client.propose = Proposal(command="/drill look r9")

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the bot tripped over the proposal")

    monkeypatch.setattr(bot.runtime.flow, "propose", broken)


def logged_reference(caplog: pytest.LogCaptureFixture) -> str:
    """The reference the flow logged its failure under."""
    [record] = [r for r in caplog.records if r.name == "bot.approvals.flow"]
    found = re.fullmatch(
        r"approval #1 failed inside the bot \(reference ([0-9a-f]{8})\)", record.getMessage()
    )
    assert found is not None, record.getMessage()
    return found.group(1)


async def test_a_bot_failure_after_a_write_was_sent_is_unknown(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write is sent and answered; then the bot trips over what the answer proposes.
    trip_over_proposals(bot, monkeypatch)
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert bot.client.calls == ["r1"]
    row = await bot.row()
    reference = logged_reference(caplog)
    assert row["status"] == "unknown"
    assert row["outcome"] == f"the bot failed while running it (reference {reference})"
    assert surface.sent[-1].text == "Approval #1: unknown."
    last = [r for r in await bot.audit() if r["approval_id"] == 1][-1]
    assert (last["decision"], last["outcome"], last["detail"]) == (
        "executed",
        "unknown",
        row["outcome"],
    )
    again, _ = await bot.run("/billing approve 1", "U3")
    assert not again and bot.client.calls == ["r1"]


async def test_a_bot_failure_around_a_safe_read_is_failed(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    trip_over_proposals(bot, monkeypatch)
    await bot.run("/drill look r1", "U1")
    await bot.run("/billing approve 1", "U2")
    row = await bot.row()
    reference = logged_reference(caplog)
    assert row["status"] == "failed"
    assert row["outcome"] == f"not run: the bot failed (reference {reference})"
    last = [r for r in await bot.audit() if r["approval_id"] == 1][-1]
    assert (last["decision"], last["outcome"]) == ("not run", "failed")


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


async def test_a_command_gone_since_the_request_fails_and_sends_nothing(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    await bot.run("/drill move r1", "U1")
    # The next release no longer has the command; it is approved there.
    approver = await in_a_later_release(bot, make_settings, "/billing approve 1", "U2")
    row = await bot.row()
    assert (row["status"], row["outcome"]) == ("failed", "not run: /drill move no longer exists")
    assert approver.sent[-1].text == "Approval #1: failed."
    assert bot.client.calls == []
    story = [(r["decision"], r["outcome"]) for r in await bot.audit() if r["approval_id"] == 1]
    assert story == [("requested", "pending"), ("approved", "executing"), ("not run", "failed")]


# --- what the flow shows and records ----------------------------------------------------------

TOKYO_EXPIRY = "2030-01-07 18:00 JST"  # START + 24 h, shown in BILLING_TIMEZONE


def system(bot: Bot) -> RecordingSurface:
    surface = bot.runtime.system_surface("C1")
    assert isinstance(surface, RecordingSurface)
    return surface


async def story(bot: Bot, approval_id: int = 1) -> list[tuple[str, str, str, str]]:
    return [
        (r["user_id"], r["decision"], r["outcome"], r["detail"])
        for r in await bot.audit()
        if r["approval_id"] == approval_id
    ]


async def test_the_sweeper_settles_and_shows_what_it_did(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    await bot.replica("host-a:101:aaaa").claim(2, "U2")
    bot.clock.advance(hours=24)  # #1 is due; #2's runner has been quiet for a day
    await bot.runtime.flow.sweep()

    shown = system(bot)
    assert [ref for ref, _ in shown.updates] == [MessageRef("C1", "1.0001")] * 2
    assert shown.keys == ["approval:1", "approval:2"]
    expired, lost = (reply for _, reply in shown.updates)
    assert expired.text == f"⌛ #1 expired unapproved at {TOKYO_EXPIRY}; nothing ran."
    assert lost.text.startswith("❓ #2 *outcome unknown* — approved by <@U2>")
    assert lost.sections[1].startswith(f"{LOST}. It will not be retried. Check whether r2 moved.")
    assert "/drill look r2" in [b.command for b in lost.buttons]
    assert ("Decided", "2030-01-06 18:00 JST") in lost.fields
    assert (await story(bot, 1))[-1] == ("system", "expired", "not run", "")
    assert (await story(bot, 2))[-1] == ("system", "recovered", "unknown", LOST)


async def test_a_lost_run_whose_request_no_longer_reads_is_still_settled(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")
    await runner.claim(1, "U2")
    await runner.claim(2, "U2")
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().where(approvals.c.id == 1).values(args="{}"))
    bot.clock.advance(minutes=10)
    await bot.runtime.flow.sweep()  # #1's arguments no longer validate: no hint, still settled
    assert [await bot.status(n) for n in (1, 2)] == ["unknown", "unknown"]
    first = system(bot).updates[0][1]
    assert "/drill look" not in " ".join(b.command for b in first.buttons)

    # A release without the command settles a lost run of it too.
    await bot.run("/drill move r3", "U1")
    await runner.claim(3, "U2")
    bot.clock.advance(minutes=10)
    shown: dict[str, RecordingSurface] = {}
    later = await open_runtime(
        make_settings(),
        system_surface=lambda c: shown.setdefault(c, RecordingSurface(channel=c, user="")),
        runtimes=[],
        clock=bot.clock,
    )
    try:
        await later.flow.sweep()
    finally:
        await later.close()
    assert await bot.status(3) == "unknown"
    assert shown["C1"].updates[0][1].text.startswith("❓ #3 *outcome unknown*")


async def test_a_rejection_shows_and_records_who_and_why(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    rejected, surface = await bot.run("/billing reject 1", "U2")
    assert rejected
    assert surface.sent[-1].text == "Approval #1 rejected." and surface.sent[-1].private
    ref, card = surface.updates[-1]
    assert ref == MessageRef("C1", "1.0001") and surface.keys == ["approval:1", None]
    assert card.text == "🚫 #1 rejected by <@U2>"
    assert ("Decided", "2030-01-06 18:00 JST") in card.fields
    assert (await story(bot, 1))[-1] == ("U2", "rejected", "not run", "")
    await bot.run('/billing reject 2 "wrong account"', "U2")
    assert (await story(bot, 2))[-1] == ("U2", "rejected", "not run", "wrong account")


async def test_an_approval_updates_its_card_in_place(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert approved
    cards = [k for k in surface.keys if not (k or "").startswith("progress:")]
    assert cards[:2] == ["approval:1", "approval:1"]  # running…, then the outcome
    [(first_ref, running), (final_ref, final)] = surface.updates
    assert first_ref == final_ref == MessageRef("C1", "1.0001")
    assert running.text.startswith("⏳ #1 approved by <@U2>")
    assert final.text.startswith("✅ #1 *done* — approved by <@U2>")
    assert ("Decided", "2030-01-06 18:00 JST") in final.fields


async def test_a_proposal_from_an_approved_run_is_put_up_as_proposed(bot: Bot) -> None:
    bot.client.propose = Proposal(command="/drill look r2")
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert approved and await bot.status(1) == "done"
    assert (await bot.row(1))["outcome"] == "moved r1"
    row = await bot.row(2)
    assert (row["status"], row["origin"], row["requester"], row["channel"]) == (
        "pending",
        "U2",
        "U2",
        "C1",
    )
    card = next(r for r in surface.sent if "Approval needed" in " ".join(r.sections))
    assert card.text == "moved r1"  # the reply that proposed it heads the card
    assert [b.command for b in card.buttons] == ["/billing approve 2", "/billing reject 2"]
    assert [r.text for r in surface.sent if r.text == "moved r1"] == ["moved r1"]  # only there


async def test_labels_and_snooze_of_a_proposal_reach_its_card(bot: Bot) -> None:
    bot.client.propose = Proposal(
        command="/drill look r2", approve_label="Look now", reject_label="Skip", snooze_hours=4
    )
    await bot.run("/drill move r1", "U1")
    _, surface = await bot.run("/billing approve 1", "U2")
    row = await bot.row(2)
    assert (row["approve_label"], row["reject_label"], row["snooze_hours"]) == (
        "Look now",
        "Skip",
        4,
    )
    card = next(r for r in surface.sent if "Approval needed" in " ".join(r.sections))
    assert [b.label for b in card.buttons] == ["Look now", "Skip", "Snooze 4 h"]


async def test_a_switched_off_provider_takes_no_request(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    runtime = await open_runtime(
        make_settings(),
        system_surface=lambda c: RecordingSurface(channel=c, user=""),
        runtimes=[ProviderRuntime(DRILL, "disabled")],
    )
    try:
        surface = RecordingSurface(user="U1")
        assert not await runtime.dispatcher.run(
            "/drill move r1", user="U1", channel="C1", surface=surface
        )
        assert "Drill is not configured here" in surface.privates[-1]
        assert "`DRILL_*`" in surface.privates[-1]
        async with runtime.engine.connect() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(approvals))).scalar()
        assert count == 0
    finally:
        await runtime.close()


async def test_an_approved_run_tells_the_handler_where_and_for_whom(bot: Bot) -> None:
    _, requester = await bot.run("/drill move r1", "U1")
    assert [b.label for b in requester.sent[0].buttons] == ["Approve", "Reject"]
    _, approver = await bot.run("/billing approve 1", "U2")
    [ctx] = bot.client.contexts
    assert (ctx.user_id, ctx.channel_id, ctx.approval_id) == ("U2", "C1", 1)
    assert str(ctx.tz) == "Asia/Tokyo" and ctx.now() == START
    assert "sending r1" in approver.privates  # what the handler says on the way
    await ctx.history.record("drill", {"moved": 1})  # kept in the store, not in memory
    kept = ReportHistory(bot.runtime.engine)
    assert [data for _, data in await kept.recent("drill", 5)] == [{"moved": 1}]


# --- the outbox's and the scheduler's questions -----------------------------------------------


async def test_a_card_posted_late_is_found_by_its_key_and_only_by_it(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    cards = Cards(bot.runtime.approvals)
    late = MessageRef("C9", "77.0001")
    for wrong in ("approval:x", "approval:", "schedule:2", "2", "approval:2:1"):
        await cards.posted(wrong, late)
        assert await cards.locate(wrong) is None
    assert await cards.locate("approval:2") == MessageRef("C1", "1.0001")  # untouched
    await cards.posted("approval:2", late)
    assert await cards.locate("approval:2") == late
    assert await cards.locate("approval:1") == MessageRef("C1", "1.0001")
    assert await cards.locate("approval:99") is None  # no such request


@dataclass
class Postponed:
    """The scheduler as the flow sees it: records what it was asked."""

    calls: list[tuple[str, int, int]] = field(default_factory=list)
    again: datetime = START + timedelta(hours=4)

    async def postpone(self, schedule_id: int, hours: int) -> None:
        self.calls.append(("postpone", schedule_id, hours))

    async def asked_again(self, schedule_id: int, hours: int) -> datetime | None:
        self.calls.append(("asked_again", schedule_id, hours))
        return self.again


def flow_with(runtime: Runtime, schedules: Postponer) -> ApprovalFlow:
    """The runtime's approval flow, asking `schedules` about snoozed reminders."""
    return ApprovalFlow(
        approvals=runtime.approvals,
        audit=runtime.audit,
        runner=runtime.executor,
        commands=runtime.catalog,
        roles=runtime.roles,
        schedules=schedules,
        policy=runtime.policy,
        system_surface=runtime.system_surface,
        tz=runtime.settings.tz,
        stale_after=STALE,
    )


async def test_a_snoozed_reminder_postpones_only_its_own_schedule(bot: Bot) -> None:
    scheduler = Postponed()
    flow = flow_with(bot.runtime, scheduler)
    await bot.run("/drill move r1", "U1")
    await flow.request(
        DRILL.commands[0],
        Ref(ref="r2"),
        user="U1",
        channel="C1",
        surface=RecordingSurface(),
        origin="schedule:12",
        snooze_hours=4,
    )
    typed, reminded = await flow.approvals.get(1), await flow.approvals.get(2)
    assert typed is not None and reminded is not None
    assert await flow.asked_again(reminded, 4) == START + timedelta(hours=4)
    await flow.snooze(reminded, 4)
    assert await flow.asked_again(typed, 4) is None  # typed by a person: no schedule to ask
    await flow.snooze(typed, 4)
    for origin in ("schedule:", "schedule:x", "scheduler:3", "U1"):
        odd = replace(reminded, origin=origin)
        assert await flow.asked_again(odd, 4) is None
        await flow.snooze(odd, 4)
    assert scheduler.calls == [("asked_again", 12, 4), ("postpone", 12, 4)]
    # The real store: a schedule that is gone (or never was) has nothing to ask again.
    stored = flow_with(bot.runtime, bot.runtime.schedules)
    assert await stored.asked_again(reminded, 4) is None
    await stored.snooze(reminded, 4)
    assert await bot.runtime.schedules.all() == []


# --- a command run at once: what the person who typed it is told -------------------------------


def plain(text: str) -> str:
    """What the audit log keeps of a message: its text without mrkdwn."""
    return text.replace("`", "")


async def last_audit(bot: Bot) -> tuple[str, str, str, int | None]:
    row = (await bot.audit())[-1]
    return row["decision"], row["outcome"], row["detail"], row["provider_status"]


async def test_a_direct_write_whose_answer_was_lost_is_unknown_with_its_hint(bot: Bot) -> None:
    bot.client.raises = OutcomeUnknown("drill", "no answer in 30 s", status=504)
    done, surface = await bot.run("/drill send r1", "U1")
    assert not done and bot.client.calls == ["r1"]
    assert surface.privates[-1] == (
        "❓ *Outcome unknown* for `/drill send`: no answer in 30 s. It was not retried, because "
        "it may already have happened. Check whether r1 moved."
    )
    [hint] = surface.sent  # once, to the person who ran it
    assert (hint.text, hint.private) == ("Check whether r1 moved.", True)
    assert [(b.label, b.command) for b in hint.buttons] == [("Look", "/drill peek r1")]
    assert await last_audit(bot) == ("ran", "unknown", "no answer in 30 s", 504)


async def test_a_direct_read_whose_answer_was_lost_says_to_check(bot: Bot) -> None:
    bot.client.raises = OutcomeUnknown("drill", "no answer", status=None)
    _, surface = await bot.run("/drill peek r1", "U1")
    assert surface.privates[-1].endswith(
        "Check at the provider whether it happened before asking again."
    )
    assert surface.sent == []  # no hint, so no buttons
    assert await last_audit(bot) == ("ran", "unknown", "no answer", None)


async def test_a_provider_refusal_is_one_sentence_and_failed(bot: Bot) -> None:
    bot.client.raises = ProviderError("drill", "Drill has no account r1", status=404)
    done, surface = await bot.run("/drill send r1", "U1")
    said = "`/drill send` failed: Drill has no account r1."
    assert not done and surface.privates[-1] == said and surface.sent == []
    assert await last_audit(bot) == ("ran", "failed", plain(said), 404)


async def test_a_handler_s_own_refusal_is_shown_as_it_said_it(bot: Bot) -> None:
    bot.client.raises = CommandError("r1 is closed; nothing was sent.")
    done, surface = await bot.run("/drill send r1", "U1")
    assert not done and surface.privates[-1] == "r1 is closed; nothing was sent."
    assert await last_audit(bot) == ("ran", "failed", "r1 is closed; nothing was sent.", None)


@pytest.mark.parametrize(
    ("line", "status", "tail"),
    [
        (
            "/drill send r1",
            "unknown",
            "It may or may not have reached the provider: check there before asking again.",
        ),
        ("/drill peek r1", "failed", "Nothing was retried."),
    ],
)
async def test_a_crash_in_a_direct_run_names_its_reference(
    bot: Bot, line: str, status: str, tail: str, caplog: pytest.LogCaptureFixture
) -> None:
    bot.client.crash = True
    done, surface = await bot.run(line, "U1")
    assert not done
    said = surface.privates[-1]
    [record] = [r for r in caplog.records if r.name == "bot.executor"]
    reference = re.fullmatch(
        rf"command {line[:-3]} failed \(reference ([0-9a-f]{{8}})\)", record.getMessage()
    )
    assert reference is not None, record.getMessage()
    assert f"(reference `{reference.group(1)}`)" in said
    assert said.startswith(f"`{line[:-3]}` hit an error inside the bot (reference `")
    assert said.endswith(f"`). {tail}")
    decision, outcome, detail, _ = await last_audit(bot)
    assert (decision, outcome, detail) == ("ran", status, plain(said))


async def test_a_direct_run_that_succeeds_shows_its_reply_and_progress(bot: Bot) -> None:
    done, surface = await bot.run("/drill send r1", "U1")
    assert done
    assert surface.privates == ["sending r1"]  # the handler's own note, and no "working"
    progress, reply = surface.sent
    assert progress.text.startswith("`/drill send` moved r1") and reply.text == "moved r1"
    assert await last_audit(bot) == ("ran", "done", "moved r1", None)
    [ctx] = bot.client.contexts
    assert (ctx.user_id, ctx.channel_id, ctx.approval_id) == ("U1", "C1", None)


async def test_a_slow_direct_run_says_it_is_working_and_an_approved_one_does_not(
    bot: Bot,
) -> None:
    bot.runtime.executor.working_after = 0.0
    bot.client.hold = True
    running = asyncio.ensure_future(bot.run("/drill send r1", "U1"))
    await asyncio.wait_for(bot.client.entered.wait(), timeout=30)
    bot.client.release.set()
    _, surface = await running
    assert surface.privates == [
        "sending r1",
        "⏳ Working on `/drill send`… the answer will be posted here when it is done.",
    ]
    await bot.run("/drill move r2", "U1")
    _, approver = await bot.run("/billing approve 1", "U2")
    assert not any("`/drill move`" in p for p in approver.privates)  # the card says it


# --- checking and settling an unknown outcome ---------------------------------------------------


async def lost(bot: Bot, requester: str = "U1", approver: str = "U2") -> None:
    """Request #1, a move, and have it approved; its answer is lost (the move happened)."""
    await bot.run("/drill move r1", requester)
    bot.client.raises = OutcomeUnknown("drill", "no answer", status=None)
    await bot.run("/billing approve 1", approver)
    bot.client.raises = None
    assert await bot.status() == "unknown"


async def test_a_check_reads_the_provider_as_the_checker_and_is_audited(bot: Bot) -> None:
    await lost(bot)
    bot.client.contexts.clear()
    done, surface = await bot.run("/billing check-outcome 1", "U3")
    assert done
    [ctx] = bot.client.contexts
    assert (ctx.user_id, ctx.channel_id) == ("U3", "C1")
    found = surface.sent[-1]
    assert found.sections == ["r1 is at the provider"] and "it happened" in found.text
    assert [b.label for b in found.buttons] == ["Mark done", "Mark not done"]
    assert (await story(bot))[-1] == ("U3", "checked", "done", "r1 is at the provider")


async def test_only_someone_who_may_settle_it_is_offered_to(bot: Bot) -> None:
    await lost(bot, requester="U2", approver="U3")  # an approver may request too
    _, requester = await bot.run("/billing check-outcome 1", "U2")
    assert requester.sent[-1].buttons == []  # the requester may look, not settle
    _, other = await bot.run("/billing check-outcome 1", "U3")
    assert other.sent[-1].buttons  # another approver may
    await bot.run('/billing resolve 1 done reason="seen"', "U3")
    _, later = await bot.run("/billing check-outcome 1", "U3")
    assert later.sent[-1].buttons == []  # settled already


async def test_a_check_of_nothing_or_of_a_command_gone_says_so(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    done, surface = await bot.run("/billing check-outcome 999", "U3")
    assert not done and surface.privates[-1] == "There is no approval request #999."
    await lost(bot)
    checker = await in_a_later_release(bot, make_settings, "/billing check-outcome 1", "U3")
    assert checker.privates[-1] == "/drill move no longer exists; check at the provider."


async def test_settling_as_not_done_updates_the_card_and_offers_the_request_again(
    bot: Bot,
) -> None:
    await lost(bot)
    done, surface = await bot.run('/billing resolve 1 not-done reason="not there"', "U3")
    assert done
    [(ref, card)] = [(r, c) for r, c in surface.updates if "settled" in c.text]
    assert ref == MessageRef("C1", "1.0001") and "approval:1" in surface.keys
    assert ("Settled", "2030-01-06 18:00 JST") in card.fields
    said = surface.sent[-1]
    assert said.private and said.text.startswith("Approval #1 settled as not done.")
    [again] = said.buttons
    assert (again.label, again.command, again.style) == (
        "Request it again",
        "/drill move ref=r1",
        "primary",
    )
    assert (await story(bot))[-1] == ("U3", "resolved", "not done", "not there")


async def test_settling_as_done_offers_nothing_more(bot: Bot) -> None:
    await lost(bot)
    _, surface = await bot.run('/billing resolve 1 done reason="there"', "U3")
    assert surface.sent[-1].buttons == []


async def test_settling_from_another_channel_updates_the_card_where_it_is(bot: Bot) -> None:
    await lost(bot)
    elsewhere = RecordingSurface(channel="C2", user="U3")
    await bot.runtime.dispatcher.run(
        '/billing resolve 1 done reason="there"', user="U3", channel="C2", surface=elsewhere
    )
    assert not [c for _, c in elsewhere.updates if "settled" in c.text]
    [(ref, card)] = [(r, c) for r, c in system(bot).updates if "settled" in c.text]
    assert ref == MessageRef("C1", "1.0001")


async def test_a_not_done_whose_arguments_no_longer_read_offers_no_request(bot: Bot) -> None:
    await lost(bot)
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().where(approvals.c.id == 1).values(args="{}"))
    done, surface = await bot.run('/billing resolve 1 not-done reason="not there"', "U3")
    assert done and surface.sent[-1].buttons == []
    assert (await bot.row())["resolution"] == "not done"


class Bare:
    """A surface that says nothing about its channel (the Surface protocol does not ask)."""

    def __init__(self) -> None:
        self.updates: list[Reply] = []

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        return None

    async def private(self, text: str) -> None:
        return None

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        self.updates.append(reply)

    async def open_form(self, command: Command[Any, Any], form: Any) -> bool:
        return False


async def test_a_surface_without_a_channel_leaves_the_card_to_its_channel(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bare = Bare()
    await bot.runtime.flow.reject(1, user="U2", reason="no", surface=bare)
    assert bare.updates == []
    assert "rejected" in system(bot).updates[-1][1].text


# --- what a request and its story record ---------------------------------------------------------


async def test_a_request_s_card_is_keyed_and_shows_its_local_expiry(bot: Bot) -> None:
    _, surface = await bot.run("/drill move r1", "U1")
    assert surface.keys[0] == "approval:1"
    assert ("Expires", TOKYO_EXPIRY) in surface.sent[0].fields


async def test_every_step_of_the_story_names_the_provider_and_the_values(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/billing approve 1", "U2")
    rows = [r for r in await bot.audit() if r["approval_id"] == 1]
    assert [r["decision"] for r in rows] == ["requested", "approved", "executed"]
    assert {r["provider"] for r in rows} == {"drill"}
    assert {r["args"] for r in rows} == {json.dumps({"ref": "r1"})}


async def test_a_failed_approved_run_tells_the_approver_once(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.client.raises = ProviderError("drill", "Drill refused r1", status=409)
    _, approver = await bot.run("/billing approve 1", "U2")
    assert [r.text for r in approver.sent if r.private] == ["Approval #1: failed."]
    assert None not in approver.sent


async def test_a_switched_off_provider_runs_nothing_and_says_so(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    off = await open_runtime(
        make_settings(),
        system_surface=lambda c: RecordingSurface(channel=c, user=""),
        runtimes=[ProviderRuntime(DRILL, "disabled")],
        clock=bot.clock,
    )
    try:
        surface = RecordingSurface(user="U1")
        done = await off.dispatcher.run("/drill send r1", user="U1", channel="C1", surface=surface)
    finally:
        await off.close()
    assert not done and bot.client.calls == []
    assert surface.privates[-1].startswith("Drill is not configured here")


async def test_billing_commands_without_their_client_say_so(bot: Bot) -> None:
    runtime = bot.runtime
    executor = Executor(
        catalog=runtime.catalog,
        audit=runtime.audit,
        approvals=runtime.approvals,
        stored=StoredCommands(runtime.engine),
        history=ReportHistory(runtime.engine),
        billing_client=lambda surface: None,
        tz=runtime.settings.tz,
        clock=bot.clock,
    )
    command = runtime.catalog.command("billing approvals")
    assert command is not None
    surface = RecordingSurface(user="U2")
    outcome = await executor.execute(command, NoArgs(), user="U2", channel="C1", surface=surface)
    done = outcome.status is Status.DONE
    assert not done and surface.privates[-1] == "That provider is switched off."
    last = (await bot.audit())[-1]
    assert (last["outcome"], last["detail"]) == ("failed", "provider not configured")


@pytest.mark.parametrize(
    ("proposed", "why"),
    [
        ("/nowhere at all", "`/nowhere at all` is not a command."),
        ("/drill help", "it asks for help, not a command"),
        ("/drill move", "ref: "),
    ],
)
async def test_a_proposal_that_cannot_be_read_is_shown_as_the_reply_it_came_in(
    bot: Bot, caplog: pytest.LogCaptureFixture, proposed: str, why: str
) -> None:
    bot.client.propose = Proposal(command=proposed)
    done, surface = await bot.run("/drill send r1", "U1")
    assert done and bot.client.calls == ["r1"]
    assert [r.text for r in surface.sent if not r.private][-1] == "moved r1"
    [record] = [r for r in caplog.records if r.name == "bot.approvals.flow"]
    assert record.getMessage().startswith(f"cannot propose {proposed}: {why}")
    assert await last_audit(bot) == ("ran", "done", "moved r1", None)
    assert await bot.runtime.approvals.open() == []


async def test_a_proposal_that_cannot_be_put_up_is_shown_as_it_is(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot.client.propose = Proposal(command="/drill move r2")
    monkeypatch.setattr(bot.runtime.catalog, "disabled", lambda command: "Drill moves are off.")
    done, surface = await bot.run("/drill send r1", "U1")
    assert done and "Drill moves are off." in surface.privates
    assert [r.text for r in surface.sent if not r.private][-1] == "moved r1"
    assert await bot.audit() and not [r for r in await bot.audit() if r["approval_id"]]


async def test_the_sweeper_settles_runs_whose_command_gives_no_hint(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    await bot.run("/drill look r1", "U1")  # a read: no hint to give
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")
    await runner.claim(1, "U2")
    await runner.claim(2, "U2")
    bot.clock.advance(hours=1)
    await bot.runtime.flow.sweep()
    [(_, read)] = [(r, c) for r, c in system(bot).updates if c.text.startswith("❓ #1")]
    assert "Check at the provider before asking again." in read.sections[1]
    assert [b.label for b in read.buttons] == ["Check now"]
