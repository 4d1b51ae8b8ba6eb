"""`/billing schedule …`: recurring jobs that providers offer as schedule kinds.

`schedule add <kind> "<cron>" …` is generated per kind from the kind's own Args, so each kind
gets its own help, validation and example, like any other command.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options
from pydantic import BeforeValidator, Field, create_model

from bot import messages
from bot.audit import Entry
from bot.progress import ProgressMessage
from bot.scheduler import Schedule, check_schedule_cron, cron_trigger
from bot.store import ReportHistory
from commands.base import (
    Args,
    Command,
    CommandError,
    Context,
    NoArgs,
    Reply,
    Role,
    ScheduleKind,
    Table,
)
from commands.http import ProviderError
from commands.types import Label, PositiveInt

if TYPE_CHECKING:
    from bot.billing import Ops
    from bot.dispatch import Dispatcher

SLASH = "billing"


_UTC = ZoneInfo("UTC")


def cron_text(value: str) -> str:
    expression = " ".join(value.split())
    cron_trigger(expression, _UTC)
    check_schedule_cron(expression, now=datetime.now(UTC))
    return expression


def cron_in_words(expression: str) -> str:
    """`0 9 1 * *` → "at 09:00, on day 1 of the month" (cron-descriptor, 24-hour clock)."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        words = str(ExpressionDescriptor(expression, options).get_description())
    except Exception:  # a phrase it cannot build is no reason to hide the schedule
        return expression
    return words[:1].lower() + words[1:]


CronText = Annotated[str, BeforeValidator(cron_text), Label("cron")]


class ScheduleId(Args):
    positional = ("id",)
    id: PositiveInt = Field(description="schedule number (see `/billing schedules`)", examples=[3])


def _scheduler(ops: Ops) -> Any:
    scheduler = ops.dispatcher.scheduler
    if scheduler is None:
        raise CommandError("The scheduler is not available in this process.")
    return scheduler


async def list_schedules(ops: Ops, args: NoArgs, ctx: Context) -> Reply:
    scheduler = _scheduler(ops)
    rows = await scheduler.all()
    if not rows:
        return Reply(text="No schedules yet. Add one with `/billing schedule add`.")
    tz = ops.dispatcher.settings.tz
    table = Table(
        columns=["#", "Kind", "Cron", "When", "Next run", "Channel", "Arguments"],
        rows=[
            [
                str(s.id),
                s.kind,
                s.cron,
                cron_in_words(s.cron),
                "paused"
                if s.paused
                else messages.next_run(
                    s.next_run_at, scheduler.regular_run(s), tz, now=scheduler.clock()
                ),
                s.channel,
                " ".join(f"{k}={v}" for k, v in s.args.items()),
            ]
            for s in rows
        ],
    )
    return Reply(text=f"*{len(rows)} schedules* (times in {tz.key})", table=table)


def _found(schedule: Schedule | None, schedule_id: int) -> Schedule:
    if schedule is None:
        raise CommandError(f"There is no schedule #{schedule_id}; see `/billing schedules`.")
    return schedule


async def remove_schedule(ops: Ops, args: ScheduleId, ctx: Context) -> Reply:
    if not await _scheduler(ops).remove(args.id):
        _found(None, args.id)
    return Reply(text=f"Schedule #{args.id} removed.")


async def pause_schedule(ops: Ops, args: ScheduleId, ctx: Context) -> Reply:
    _found(await _scheduler(ops).set_paused(args.id, True), args.id)
    return Reply(text=f"Schedule #{args.id} paused.")


async def resume_schedule(ops: Ops, args: ScheduleId, ctx: Context) -> Reply:
    row = _found(await _scheduler(ops).set_paused(args.id, False), args.id)
    when = messages.when(row.next_run_at, ops.dispatcher.settings.tz)
    return Reply(text=f"Schedule #{args.id} resumed; next run {when}.")


async def run_schedule_now(ops: Ops, args: ScheduleId, ctx: Context) -> Reply:
    scheduler = _scheduler(ops)
    row = _found(await scheduler.get(args.id), args.id)
    await scheduler.fire_now(row)
    return Reply(text=f"Schedule #{row.id} ({row.kind}) ran now.", private=True)


def add_command(name: str, kind: ScheduleKind[Any, Any]) -> Command[Any, Ops]:
    """`/billing schedule add <name> "<cron>" …` with the kind's own arguments."""
    model: type[Args] = create_model(
        f"Add{name.title().replace('-', '')}",
        __base__=kind.args,
        cron=(
            CronText,
            Field(
                description=(
                    "when, as a 5-field crontab in BILLING_TIMEZONE that runs at most once an hour"
                ),
                examples=["0 9 1 * *"],
            ),
        ),
    )
    setattr(model, "positional", ("cron", *kind.args.positional))  # noqa: B010

    async def add(ops: Ops, args: Any, ctx: Context) -> Reply:
        settings = ops.dispatcher.settings
        if not settings.billing_channel:
            raise CommandError(
                "Schedules post to BILLING_CHANNEL, which is not set. An admin must set it to "
                "a channel ID (like C0123456789) and restart; nothing was scheduled."
            )
        values = {k: v for k, v in args.preview().items() if k != "cron"}
        row = await _scheduler(ops).add(
            kind=name,
            cron=args.cron,
            args=values,
            channel=settings.billing_channel,
            created_by=ctx.user_id,
        )
        when = messages.when(row.next_run_at, settings.tz)
        return Reply(
            text=f"Schedule #{row.id} added: {name} `{row.cron}` ({cron_in_words(row.cron)}) "
            f"→ <#{row.channel}>; next run {when}.",
        )

    return Command(
        slash=SLASH,
        words=("schedule", "add", name),
        summary=f"schedule: {kind.summary}",
        args=model,
        handler=add,
        role=Role.ADMIN,
    )


def schedule_commands(kinds: dict[str, ScheduleKind[Any, Any]]) -> list[Command[Any, Ops]]:
    base: list[Command[Any, Ops]] = [
        Command(
            slash=SLASH,
            words=("schedules",),
            summary="schedules: each one's cron in words and its next run",
            args=NoArgs,
            handler=list_schedules,
            role=Role.VIEWER,
        ),
        Command(
            slash=SLASH,
            words=("schedule", "remove"),
            summary="delete a schedule",
            args=ScheduleId,
            handler=remove_schedule,
            role=Role.ADMIN,
        ),
        Command(
            slash=SLASH,
            words=("schedule", "pause"),
            summary="stop a schedule from firing",
            args=ScheduleId,
            handler=pause_schedule,
            role=Role.ADMIN,
        ),
        Command(
            slash=SLASH,
            words=("schedule", "resume"),
            summary="let a paused schedule fire again",
            args=ScheduleId,
            handler=resume_schedule,
            role=Role.ADMIN,
        ),
        Command(
            slash=SLASH,
            words=("schedule", "run"),
            summary="fire a schedule now",
            args=ScheduleId,
            handler=run_schedule_now,
            role=Role.ADMIN,
        ),
    ]
    return [*base, *(add_command(name, kind) for name, kind in sorted(kinds.items()))]


async def run_schedule(dispatcher: Dispatcher, schedule: Schedule, due: datetime | None) -> None:
    """What a firing does: run the kind, post its reply (or its proposal), audit it."""

    owner, kind = dispatcher.schedule_kinds()[schedule.kind]
    surface = dispatcher.system_surface(schedule.channel)
    runtime = dispatcher.runtime(owner)
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
        progress = ProgressMessage(surface, f"schedule #{schedule.id}")
        ctx = Context(
            user_id=origin,
            channel_id=schedule.channel,
            tz=dispatcher.settings.tz,
            clock=dispatcher.clock,
            progress=progress.update,
            notify=surface.private,
            history=ReportHistory(dispatcher.engine),
        )
        try:
            reply = await kind.run(runtime.client, args, ctx)
            detail = reply.audit_note or reply.text
            if reply.proposal is not None:
                await dispatcher.flow.propose(
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
    await dispatcher.audit.record(
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
