"""`/billing schedule …`: recurring jobs that providers offer as schedule kinds, and posts.

`schedule add <kind> "<cron>" …` is generated per kind from the kind's own Args, so each kind
gets its own help, validation and example, like any other command.

`schedule add post "<cron>" "/voipcloud partner-balance"` posts any command that only reads
(`Command.read_only`). The command line is parsed and validated once, when the schedule is
added; the schedule keeps the command's path and its validated arguments as text by field
(`Args.preview()`), read back through `grammar.validate` at each run, never a line to parse
again. A run goes through `Dispatcher.execute` (the provider call, the audit row) as the
schedule's creator, with the role they hold when it fires: a creator who lost it pauses the
schedule, and the channel is told once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options
from pydantic import BeforeValidator, Field, create_model

from bot import messages
from bot.approvals.state import Outcome, Status
from bot.progress import ProgressMessage
from bot.schedules.engine import Schedule, check_schedule_cron, cron_trigger, shortest_gap
from bot.storage.audit import Entry
from bot.storage.store import ReportHistory
from bot.surface import MessageRef, Surface
from commands import grammar
from commands.base import (
    Args,
    Command,
    CommandError,
    Context,
    Form,
    Lead,
    NoArgs,
    Reply,
    Role,
    ScheduleKind,
    Table,
    duration_words,
)
from commands.http import ProviderError
from commands.types import Label, PositiveInt
from commands.words import plural

if TYPE_CHECKING:
    from bot.billing import Ops
    from bot.dispatch import Dispatcher

SLASH = "billing"
# The kind of a scheduled post, and the key its stored arguments keep the command's path under
# (no read-only command has a field of that name: tests/bot/test_scheduled_posts.py checks).
POST = "post"
PATH_KEY = "command"


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
                _arguments(s),
            ]
            for s in rows
        ],
    )
    return Reply(text=f"*{plural(len(rows), 'schedule')}* (times in {tz.key})", table=table)


def _arguments(schedule: Schedule) -> str:
    if schedule.kind == POST:
        path, values = _stored_post(schedule)
        return grammar.line(path, **values)
    return " ".join(f"{k}={v}" for k, v in schedule.args.items())


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


def _billing_channel(ops: Ops) -> str:
    channel = ops.dispatcher.settings.billing_channel
    if not channel:
        raise CommandError(
            "Schedules post to BILLING_CHANNEL, which is not set. An admin must set it to "
            "a channel ID (like C0123456789) and restart; nothing was scheduled."
        )
    return channel


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
        channel = _billing_channel(ops)
        scheduler = _scheduler(ops)
        lead = kind_lead(ops.dispatcher, name, args)
        _fits_between_runs(args.cron, lead, settings.tz, now=scheduler.clock())
        values = {k: v for k, v in args.preview().items() if k != "cron"}
        row = await scheduler.add(
            kind=name,
            cron=args.cron,
            args=values,
            channel=channel,
            created_by=ctx.user_id,
        )
        when = messages.when(row.next_run_at, settings.tz)
        return Reply(
            text=f"Schedule #{row.id} added: {name} `{row.cron}` ({cron_in_words(row.cron)}) "
            f"→ <#{row.channel}>; next run {when}.{_lead_words(lead, row, scheduler.clock())}",
        )

    return Command(
        slash=SLASH,
        words=("schedule", "add", name),
        summary=f"schedule: {kind.summary}",
        args=model,
        handler=add,
        role=Role.ADMIN,
    )


# --- lead time: runs that start early to post at their time -----------------------------------


def kind_lead(dispatcher: Dispatcher, name: str, args: Args) -> Lead | None:
    """How long before its time a run of kind `name` with `args` starts (None: at its time,
    which is also the answer while its provider is not configured: the run is skipped then)."""
    found = dispatcher.schedule_kinds().get(name)
    if found is None:
        return None
    owner, kind = found
    runtime = dispatcher.runtime(owner)
    if kind.lead is None or runtime is None or runtime.client is None:
        return None
    return kind.lead(runtime.client, args)


def lead_time(dispatcher: Dispatcher, schedule: Schedule) -> timedelta:
    """The scheduler's `lead`: worked out again at every tick from the stored arguments."""
    found = dispatcher.schedule_kinds().get(schedule.kind)
    if found is None or found[1].lead is None:
        return timedelta(0)
    lead = kind_lead(dispatcher, schedule.kind, found[1].args.model_validate(schedule.args))
    return lead.span if lead is not None else timedelta(0)


def _fits_between_runs(cron: str, lead: Lead | None, tz: ZoneInfo, *, now: datetime) -> None:
    """Refuse a schedule whose runs would overlap: each would start before the previous one
    posted, and two runs of one report share one request budget, so both would be late."""
    if lead is None or not lead.span:
        return
    gap = shortest_gap(cron, tz, now)
    if gap is not None and lead.span > gap:
        raise CommandError(
            f"Nothing was scheduled: each run must start {duration_words(lead.span)} before "
            f"its time ({lead.reason}), longer than the {duration_words(gap)} between runs of "
            f"`{cron}`, so runs would overlap. Run it less often, or give each run less to do."
        )


def _lead_words(lead: Lead | None, row: Schedule, now: datetime) -> str:
    if lead is None or not lead.span or row.next_run_at is None:
        return ""
    words = (
        f" Each run starts {duration_words(lead.span)} early so that it posts at its time: "
        f"{lead.reason}."
    )
    if row.next_run_at - lead.span < now:
        words += " The first run is sooner than that: it starts now and posts when done."
    return words


async def _hold_until(
    due: datetime, clock: Callable[[], datetime], sleep: Callable[[float], Awaitable[None]]
) -> None:
    """A run that started early waits for its time before posting."""
    while (left := (due - clock()).total_seconds()) > 0:
        await sleep(left)


# --- scheduled posts of read commands ---------------------------------------------------------


class AddPost(Args):
    positional = ("cron", "command")
    rest = "command"
    cron: CronText = Field(
        description="when, as a 5-field crontab in BILLING_TIMEZONE that runs at most once an hour",
        examples=["0 9 * * 1"],
    )
    command: str = Field(
        min_length=1,
        max_length=500,
        description="the command whose reply is posted, in quotes; one that only reads",
        examples=["/voipcloud partner-balance"],
    )


def _creator_lacks(command: Command[Any, Any], held: Role | None) -> bool:
    return held is None or held < command.role


async def scheduled_command(
    dispatcher: Dispatcher, text: str, *, user: str
) -> tuple[Command[Any, Any], Args]:
    """The command a post will run, read from its line once: parsed, refused unless it only
    reads and `user` may run it, and validated. CommandError says why, in a sentence."""
    line = text.strip()
    slash, _, rest = line.removeprefix("/").partition(" ")
    slash = slash.lower()
    if not line.startswith("/") or slash not in dispatcher.slashes:
        raise CommandError(
            f"Nothing was scheduled: `{line}` does not start with one of my commands "
            f"({', '.join(f'`/{s}`' for s in dispatcher.slashes)}); give the whole command to "
            'post, in quotes, like "/voipcloud partner-balance".'
        )
    try:
        parsed = grammar.parse(slash, rest, dispatcher.commands)
    except grammar.GrammarError as exc:
        raise CommandError(f"Nothing was scheduled. {exc.message}") from None
    if isinstance(parsed, grammar.HelpRequest):
        raise CommandError(
            f"Nothing was scheduled: `{line}` names no single command; give the whole command "
            f"to post, like `/{slash} help` lists them."
        )
    command = parsed.command
    if not command.read_only:
        why = (
            "changes something and needs a second person's approval"
            if command.approval
            else "changes something rather than only reading"
        )
        raise CommandError(
            f"Nothing was scheduled: `{command.audit_name}` {why}, and a schedule may post only "
            "commands that read."
        )
    held = await dispatcher.roles.role_of(user)
    if _creator_lacks(command, held):
        have = f"you are {held.label}" if held else "you have no billing role"
        raise CommandError(
            f"Nothing was scheduled: `{command.audit_name}` needs the *{command.role.label}* "
            f"role and {have}, and a schedule runs with the role of whoever added it."
        )
    try:
        args = grammar.validate(command, parsed.values)
    except grammar.FieldErrors as exc:
        raise CommandError(
            f"Nothing was scheduled: the command to post has bad input.\n{exc.message}"
        ) from None
    return command, args


async def add_post(ops: Ops, args: AddPost, ctx: Context) -> Reply:
    dispatcher = ops.dispatcher
    channel = _billing_channel(ops)
    command, target = await scheduled_command(dispatcher, args.command, user=ctx.user_id)
    row = await _scheduler(ops).add(
        kind=POST,
        cron=args.cron,
        args={PATH_KEY: command.path, **target.preview()},
        channel=channel,
        created_by=ctx.user_id,
    )
    when = messages.when(row.next_run_at, dispatcher.settings.tz)
    return Reply(
        text=f"Schedule #{row.id} added: post `{grammar.render(command, target)}` "
        f"`{row.cron}` ({cron_in_words(row.cron)}) → <#{row.channel}>; next run {when}. "
        f"It runs with the role <@{ctx.user_id}> holds when it fires.",
    )


ADD_POST: Command[Any, Ops] = Command(
    slash=SLASH,
    words=("schedule", "add", POST),
    summary=(
        "schedule: post the reply of a command that only reads (a balance, a list, a report) "
        "to the channel, run with your role at the time"
    ),
    args=AddPost,
    handler=add_post,
    role=Role.ADMIN,
    example='/billing schedule add post "0 9 * * 1" "/voipcloud partner-balance"',
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
            read_only=True,
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
    if POST in kinds:
        raise ValueError(f"`{POST}` is the bot's own schedule kind; name the provider's otherwise")
    kind_commands = [add_command(name, kind) for name, kind in sorted(kinds.items())]
    return [*base, *kind_commands, ADD_POST]


async def run_schedule(
    dispatcher: Dispatcher,
    schedule: Schedule,
    due: datetime | None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """What a firing does: run the kind, post its reply (or its proposal) at `due` if it
    started early (its lead; `sleep` waits), audit it."""
    if schedule.kind == POST:
        await run_post(dispatcher, schedule, due)
        return
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
        name = f"schedule #{schedule.id}"
        if due is not None and due > dispatcher.clock():  # started early: say when it posts
            name += f", posts {messages.when(due, dispatcher.settings.tz)}"
        progress = ProgressMessage(surface, name)
        ctx = Context(
            user_id=origin,
            channel_id=schedule.channel,
            tz=dispatcher.settings.tz,
            clock=dispatcher.clock,
            progress=progress.update,
            notify=surface.private,
            history=ReportHistory(dispatcher.engine),
            due=due,
        )
        try:
            reply = await kind.run(runtime.client, args, ctx)
            detail = reply.audit_note or reply.text
            if due is not None:
                await _hold_until(due, dispatcher.clock, sleep)
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


def _stored_post(schedule: Schedule) -> tuple[str, dict[str, str]]:
    values = dict(schedule.args)
    return values.pop(PATH_KEY, ""), values


class _ChannelPost:
    """The channel's surface for one scheduled post. A reply meant only for the person who
    asks (`Reply.private`) is never posted to the channel: it is held back and the run says
    so. Everything else passes through."""

    def __init__(self, channel: Surface) -> None:
        self.channel = channel
        self.withheld = False

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        if reply.private:
            self.withheld = True
            return None
        return await self.channel.send(reply, key=key)

    async def private(self, text: str) -> None:
        await self.channel.private(text)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        await self.channel.update(ref, reply, key=key)

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        return False


async def run_post(dispatcher: Dispatcher, schedule: Schedule, due: datetime | None) -> None:
    """Post a read command's reply: as its creator, with the role they hold now."""
    path, values = _stored_post(schedule)
    surface = dispatcher.system_surface(schedule.channel)
    creator = schedule.created_by
    label = f"Schedule #{schedule.id}"
    note = f"schedule #{schedule.id} ran it" + (f", due {due.isoformat()}" if due else ", now")
    command = dispatcher.command(path)
    if command is None or not command.read_only:  # the declarations changed since it was added
        await surface.send(
            Reply(
                text=f"⚠️ {label} skipped: `/{path}` is no longer a command that only reads; "
                "remove the schedule, or add it again."
            )
        )
        await dispatcher.audit.record(
            Entry(
                user_id=creator,
                channel=schedule.channel,
                command=f"schedule {POST}",
                args=schedule.args,
                decision="scheduled run",
                outcome="failed",
                detail=f"{note}: /{path} does not read only",
                provider=SLASH,
            )
        )
        return
    held = await dispatcher.roles.role_of(creator)
    if _creator_lacks(command, held):
        await _pause_for_role(dispatcher, schedule, command, values, note)
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
        await dispatcher.audit.record(
            Entry(
                user_id=creator,
                channel=schedule.channel,
                command=command.audit_name,
                args=values,
                decision="invalid",
                outcome="rejected input",
                detail=f"{note}: {exc}",
                provider=dispatcher.owner(command),
            )
        )
        return
    post = _ChannelPost(surface)
    outcome = await dispatcher.execute(
        command, args, user=creator, channel=schedule.channel, surface=post, note=note
    )
    if outcome.status is not Status.DONE:
        await surface.send(Reply(text=f"⚠️ {label} failed: {_why(dispatcher, command, outcome)}"))
    elif post.withheld:
        await surface.send(
            Reply(
                text=f"{label}: `{command.audit_name}` answers only the person who asks, so its "
                "result is not posted in the channel."
            )
        )


def _why(dispatcher: Dispatcher, command: Command[Any, Any], outcome: Outcome) -> str:
    return dispatcher.disabled(command) or outcome.summary


async def _pause_for_role(
    dispatcher: Dispatcher,
    schedule: Schedule,
    command: Command[Any, Any],
    values: dict[str, str],
    note: str,
) -> None:
    """The creator no longer may run the command: pause the schedule (so the channel hears
    this once), say so, and audit the refusal like a typed one."""
    if dispatcher.scheduler is not None:
        await dispatcher.scheduler.set_paused(schedule.id, True)
    role = command.role.label
    await dispatcher.system_surface(schedule.channel).send(
        Reply(
            text=f"⏸️ Schedule #{schedule.id} is paused and did not post "
            f"`{command.audit_name}`: <@{schedule.created_by}>, who added it, no longer holds "
            f"the {role} role it needs (an admin can resume it once they do, or add it again)."
        )
    )
    await dispatcher.audit.record(
        Entry(
            user_id=schedule.created_by,
            channel=schedule.channel,
            command=command.audit_name,
            args=values,
            decision="refused",
            outcome="denied",
            detail=f"{note}: needs {role}; schedule #{schedule.id} paused",
            provider=dispatcher.owner(command),
        )
    )
