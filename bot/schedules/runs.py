"""What a schedule's firing does: run its kind (a report, a reminder that proposes a command)
or post a read command's reply, at its time, as the schedule's creator, audited.

A kind's run posts its reply, or puts its proposal up for approval, at `due` when it started
early (its lead, worked out again at every tick by `lead`). A post runs through the executor
as the schedule's creator, with the role they hold when it fires: a creator who lost it pauses
the schedule, and the channel is told once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot import messages
from bot.approvals.flow import RoleCheck, Runner
from bot.approvals.state import Outcome, Status
from bot.catalog import Catalog
from bot.progress import ProgressMessage
from bot.schedules.commands import POST, stored_post
from bot.schedules.store import Schedule, ScheduleStore
from bot.storage.audit import AuditLog, Entry
from bot.storage.store import ReportHistory
from bot.surface import MessageRef, Surface, SurfaceWrapper
from commands import grammar
from commands.base import Command, CommandError, Context, Reply
from commands.http import ProviderError

BILLING = "billing"


class Replies(Protocol):
    """How a run's reply is shown: posted, or put up for approval when it proposes a command
    (the approval flow)."""

    async def show(self, reply: Reply, *, channel: str, origin: str, surface: Surface) -> None: ...

    async def propose(
        self, reply: Reply, *, channel: str, origin: str, surface: Surface
    ) -> None: ...


class ScheduleRuns:
    def __init__(
        self,
        *,
        catalog: Catalog,
        runner: Runner,
        flow: Replies,
        roles: RoleCheck,
        audit: AuditLog,
        store: ScheduleStore,
        history: ReportHistory,
        system_surface: Callable[[str], Surface],
        tz: ZoneInfo,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.catalog = catalog
        self.runner = runner
        self.flow = flow
        self.roles = roles
        self.audit = audit
        self.store = store
        self.history = history
        self.system_surface = system_surface
        self.tz = tz
        self.clock = clock
        self.sleep = sleep

    def lead(self, schedule: Schedule) -> timedelta:
        """The engine's `lead`: worked out again at every tick from the stored arguments."""
        found = self.catalog.schedule_kinds().get(schedule.kind)
        if found is None or found[1].lead is None:
            return timedelta(0)
        lead = self.catalog.lead(schedule.kind, found[1].args.model_validate(schedule.args))
        return lead.span if lead is not None else timedelta(0)

    async def run(self, schedule: Schedule, due: datetime | None) -> None:
        """What a firing does: run the kind, post its reply (or its proposal) at `due` if it
        started early (its lead; `sleep` waits), audit it."""
        if schedule.kind == POST:
            await self.post(schedule, due)
            return
        owner, kind = self.catalog.schedule_kinds()[schedule.kind]
        surface = self.system_surface(schedule.channel)
        runtime = self.catalog.runtime(owner)
        started = time.monotonic()
        origin = f"schedule:{schedule.id}"
        outcome, detail, status = "done", "", None
        if runtime is None or runtime.client is None:
            outcome = "failed"
            detail = f"{owner} is not configured"
            await surface.send(
                Reply(text=f"Schedule #{schedule.id} ({schedule.kind}) skipped: {detail}.")
            )
        else:
            args = kind.args.model_validate(schedule.args)
            name = f"schedule #{schedule.id}"
            if due is not None and due > self.clock():  # started early: say when it posts
                name += f", posts {messages.when(due, self.tz)}"
            progress = ProgressMessage(surface, name)
            ctx = Context(
                user_id=origin,
                channel_id=schedule.channel,
                tz=self.tz,
                clock=self.clock,
                progress=progress.update,
                notify=surface.private,
                history=self.history,
                due=due,
            )
            try:
                reply = await kind.run(runtime.client, args, ctx)
                detail = reply.audit_note or reply.text
                if due is not None:
                    await _hold_until(due, self.clock, self.sleep)
                if reply.proposal is not None:
                    await self.flow.propose(
                        reply, channel=schedule.channel, origin=origin, surface=surface
                    )
                else:
                    await surface.send(reply)
            except (ProviderError, CommandError) as exc:
                outcome, detail = "failed", exc.message
                status = getattr(exc, "status", None)
                await surface.send(
                    Reply(text=f"⚠️ Schedule #{schedule.id} ({schedule.kind}) failed: {exc.message}")
                )
        await self.audit.record(
            Entry(
                user_id=origin,
                channel=schedule.channel,
                command=f"schedule {schedule.kind}",
                args=schedule.args,
                decision="scheduled run",
                outcome=outcome,
                detail=detail if due is None else f"due {due.isoformat()}: {detail}",
                provider=owner,
                provider_status=status,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        )

    async def post(self, schedule: Schedule, due: datetime | None) -> None:
        """Post a read command's reply: as its creator, with the role they hold now."""
        path, values = stored_post(schedule)
        surface = self.system_surface(schedule.channel)
        creator = schedule.created_by
        label = f"Schedule #{schedule.id}"
        note = f"schedule #{schedule.id} ran it" + (f", due {due.isoformat()}" if due else ", now")
        command = self.catalog.command(path)
        if command is None or not command.read_only:  # the declarations changed since it was added
            await surface.send(
                Reply(
                    text=f"⚠️ {label} skipped: `/{path}` is no longer a command that only reads; "
                    "remove the schedule, or add it again."
                )
            )
            await self.audit.record(
                Entry(
                    user_id=creator,
                    channel=schedule.channel,
                    command=f"schedule {POST}",
                    args=schedule.args,
                    decision="scheduled run",
                    outcome="failed",
                    detail=f"{note}: /{path} does not read only",
                    provider=BILLING,
                )
            )
            return
        if await self.roles.check(creator, command.role) is not None:
            await self._pause_for_role(schedule, command, values, note)
            return
        try:
            args = grammar.validate(command, values)
        except grammar.FieldErrors as exc:
            await surface.send(
                Reply(
                    text=f"⚠️ {label} skipped: the arguments it keeps for `{command.audit_name}` no "
                    f"longer fit it ({exc}); remove the schedule, or add it again."
                )
            )
            await self.audit.record(
                Entry(
                    user_id=creator,
                    channel=schedule.channel,
                    command=command.audit_name,
                    args=values,
                    decision="invalid",
                    outcome="rejected input",
                    detail=f"{note}: {exc}",
                    provider=self.catalog.owner(command),
                )
            )
            return
        post = _ChannelPost(surface)
        outcome = await self.runner.execute(
            command, args, user=creator, channel=schedule.channel, surface=post, note=note
        )
        if outcome.status is not Status.DONE:
            await surface.send(Reply(text=f"⚠️ {label} failed: {self._why(command, outcome)}"))
            return
        if outcome.reply is not None:
            await self.flow.show(
                outcome.reply, channel=schedule.channel, origin=creator, surface=post
            )
        if post.withheld:
            await surface.send(
                Reply(
                    text=f"{label}: `{command.audit_name}` answers only the person who asks, so "
                    "its result is not posted in the channel."
                )
            )

    def _why(self, command: Command[Any, Any], outcome: Outcome) -> str:
        return self.catalog.disabled(command) or outcome.summary

    async def _pause_for_role(
        self,
        schedule: Schedule,
        command: Command[Any, Any],
        values: dict[str, str],
        note: str,
    ) -> None:
        """The creator no longer may run the command: pause the schedule (so the channel hears
        this once), say so, and audit the refusal like a typed one."""
        await self.store.set_paused(schedule.id, True)
        role = command.role.label
        await self.system_surface(schedule.channel).send(
            Reply(
                text=f"⏸️ Schedule #{schedule.id} is paused and did not post "
                f"`{command.audit_name}`: <@{schedule.created_by}>, who added it, no longer holds "
                f"the {role} role it needs (an admin can resume it once they do, or add it again)."
            )
        )
        await self.audit.record(
            Entry(
                user_id=schedule.created_by,
                channel=schedule.channel,
                command=command.audit_name,
                args=values,
                decision="refused",
                outcome="denied",
                detail=f"{note}: needs {role}; schedule #{schedule.id} paused",
                provider=self.catalog.owner(command),
            )
        )


class _ChannelPost(SurfaceWrapper):
    """The channel's surface for one scheduled post. A reply meant only for the person who
    asks (`Reply.private`) is never posted to the channel: it is held back and the run says
    so. Everything else passes through."""

    def __init__(self, channel: Surface) -> None:
        super().__init__(channel)
        self.withheld = False

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        if reply.private:
            self.withheld = True
            return None
        return await self.inner.send(reply, key=key)


async def _hold_until(
    due: datetime, clock: Callable[[], datetime], sleep: Callable[[float], Awaitable[None]]
) -> None:
    """A run that started early waits for its time before posting."""
    while (left := (due - clock()).total_seconds()) > 0:
        await sleep(left)
