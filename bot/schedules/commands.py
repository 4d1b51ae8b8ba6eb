"""The handlers of `/billing schedule …` (declared in `bot.billing`): recurring jobs that
providers offer as schedule kinds, and posts.

`schedule add <kind> "<cron>" …` is generated per kind from the kind's own Args (`add_kind`), so
each kind gets its own help, validation and example, like any other command.

`schedule add post "<cron>" "/voipcloud partner-balance"` posts any command that only reads
(`Command.read_only`). The command line is parsed and validated once, when the schedule is
added; the schedule keeps the command's path and its validated arguments as text by field
(`Args.preview()`), read back through `grammar.validate` at each run, never a line to parse
again. A run (`bot.schedules.runs`) goes through the executor (the provider call, the audit
row) as the schedule's creator, with the role they hold when it fires: a creator who lost it
pauses the schedule, and the channel is told once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options
from pydantic import BeforeValidator, Field, create_model

from bot import messages
from bot.schedules.cron import check_schedule_cron, cron_trigger, shortest_gap
from bot.schedules.store import Schedule
from commands import grammar
from commands.base import (
    Args,
    Command,
    CommandError,
    Context,
    Handler,
    Lead,
    NoArgs,
    Reply,
    ScheduleKind,
    Table,
    duration_words,
)
from commands.types import Label, PositiveInt
from commands.words import plural

if TYPE_CHECKING:
    from bot.desk import Desk

# The kind of a scheduled post, and the key its stored arguments keep the command's path under
# (no read-only command has a field of that name: tests/schedules/test_scheduled_posts.py checks).
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


async def list_schedules(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    store = desk.schedules
    rows = await store.all()
    if not rows:
        return Reply(text="No schedules yet. Add one with `/billing schedule add`.")
    tz = desk.settings.tz
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
                else messages.next_run(s.next_run_at, store.regular_run(s), tz, now=store.clock()),
                s.channel,
                _arguments(s),
            ]
            for s in rows
        ],
    )
    return Reply(text=f"*{plural(len(rows), 'schedule')}* (times in {tz.key})", table=table)


def _arguments(schedule: Schedule) -> str:
    if schedule.kind == POST:
        path, values = stored_post(schedule)
        return grammar.line(path, **values)
    return " ".join(f"{k}={v}" for k, v in schedule.args.items())


def _found(schedule: Schedule | None, schedule_id: int) -> Schedule:
    if schedule is None:
        raise CommandError(f"There is no schedule #{schedule_id}; see `/billing schedules`.")
    return schedule


async def remove_schedule(desk: Desk, args: ScheduleId, ctx: Context) -> Reply:
    if not await desk.schedules.remove(args.id):
        _found(None, args.id)
    return Reply(text=f"Schedule #{args.id} removed.")


async def pause_schedule(desk: Desk, args: ScheduleId, ctx: Context) -> Reply:
    _found(await desk.schedules.set_paused(args.id, True), args.id)
    return Reply(text=f"Schedule #{args.id} paused.")


async def resume_schedule(desk: Desk, args: ScheduleId, ctx: Context) -> Reply:
    row = _found(await desk.schedules.set_paused(args.id, False), args.id)
    when = messages.when(row.next_run_at, desk.settings.tz)
    return Reply(text=f"Schedule #{args.id} resumed; next run {when}.")


async def run_schedule_now(desk: Desk, args: ScheduleId, ctx: Context) -> Reply:
    row = _found(await desk.schedules.get(args.id), args.id)
    await desk.scheduler.fire_now(row)
    return Reply(text=f"Schedule #{row.id} ({row.kind}) ran now.", private=True)


def _billing_channel(desk: Desk) -> str:
    channel = desk.settings.billing_channel
    if not channel:
        raise CommandError(
            "Schedules post to BILLING_CHANNEL, which is not set. An admin must set it to "
            "a channel ID (like C0123456789) and restart; nothing was scheduled."
        )
    return channel


def add_kind(name: str, kind: ScheduleKind[Any, Any]) -> tuple[type[Args], Handler[Desk, Any]]:
    """`/billing schedule add <name> "<cron>" …`: the kind's own arguments with a cron first,
    and the handler that adds such a schedule."""
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

    async def add(desk: Desk, args: Any, ctx: Context) -> Reply:
        tz = desk.settings.tz
        channel = _billing_channel(desk)
        store = desk.schedules
        lead = desk.catalog.lead(name, args)
        _fits_between_runs(args.cron, lead, tz, now=store.clock())
        values = {k: v for k, v in args.preview().items() if k != "cron"}
        row = await store.add(
            kind=name,
            cron=args.cron,
            args=values,
            channel=channel,
            created_by=ctx.user_id,
        )
        when = messages.when(row.next_run_at, tz)
        return Reply(
            text=f"Schedule #{row.id} added: {name} `{row.cron}` ({cron_in_words(row.cron)}) "
            f"→ <#{row.channel}>; next run {when}.{_lead_words(lead, row, store.clock())}",
        )

    handler: Handler[Desk, Any] = add
    return cast("type[Args]", model), handler


# --- lead time: runs that start early to post at their time -----------------------------------


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


async def scheduled_command(desk: Desk, text: str, *, user: str) -> tuple[Command[Any, Any], Args]:
    """The command a post will run, read from its line once: parsed, refused unless it only
    reads and `user` may run it, and validated. CommandError says why, in a sentence."""
    line = text.strip()
    slash, _, rest = line.removeprefix("/").partition(" ")
    slash = slash.lower()
    if not line.startswith("/") or slash not in desk.catalog.slashes:
        raise CommandError(
            f"Nothing was scheduled: `{line}` does not start with one of my commands "
            f"({', '.join(f'`/{s}`' for s in desk.catalog.slashes)}); give the whole command to "
            'post, in quotes, like "/voipcloud partner-balance".'
        )
    try:
        parsed = grammar.parse(slash, rest, desk.catalog.commands)
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
    denied = await desk.roles.check(user, command.role)
    if denied is not None:
        held = denied.held
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


async def add_post(desk: Desk, args: AddPost, ctx: Context) -> Reply:
    channel = _billing_channel(desk)
    command, target = await scheduled_command(desk, args.command, user=ctx.user_id)
    row = await desk.schedules.add(
        kind=POST,
        cron=args.cron,
        args={PATH_KEY: command.path, **target.preview()},
        channel=channel,
        created_by=ctx.user_id,
    )
    when = messages.when(row.next_run_at, desk.settings.tz)
    return Reply(
        text=f"Schedule #{row.id} added: post `{grammar.render(command, target)}` "
        f"`{row.cron}` ({cron_in_words(row.cron)}) → <#{row.channel}>; next run {when}. "
        f"It runs with the role <@{ctx.user_id}> holds when it fires.",
    )


def stored_post(schedule: Schedule) -> tuple[str, dict[str, str]]:
    values = dict(schedule.args)
    return values.pop(PATH_KEY, ""), values
