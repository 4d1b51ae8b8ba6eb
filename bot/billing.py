"""`/billing`: the bot's own commands, all declared here — status, approvals, audit, policy and
schedules (whose handlers live in `bot.schedules.commands`).

They are declared exactly like provider commands, so roles, help, validation and audit apply
the same way; their client is a `bot.desk.Desk`. One more `/billing` command belongs to a
provider: `/billing report balances` is VoIPcloud's (`commands/voipcloud/commands.py`), declared
with that provider since it reads VoIPcloud (`PROVIDED` below lists it; a test checks).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

import bot
from bot import messages
from bot.approvals import mfa
from bot.approvals import stepup_messages as say
from bot.approvals.gate import approval_form, reason_problem, reject_form
from bot.desk import Desk
from bot.schedules import commands as schedules
from bot.storage.audit import to_csv
from bot.storage.store import ping
from bot.surface import Surface
from commands.base import (
    Args,
    Button,
    Command,
    CommandError,
    Context,
    File,
    NoArgs,
    Provider,
    Reply,
    Role,
    ScheduleKind,
    Table,
)
from commands.types import IsoDate, PositiveInt, YesNo
from commands.words import clip, plural

SLASH = "billing"


class ApprovalId(Args):
    positional = ("id",)
    id: PositiveInt = Field(description="approval request number", examples=[12])


class ApproveArgs(Args):
    positional = ("id",)
    id: PositiveInt = Field(description="approval request number", examples=[12])
    code: SecretStr | None = Field(
        None,
        description=(
            "your authenticator app's current 6-digit code, when a rule asks for one (the "
            "Approve button asks for it in a form)"
        ),
        examples=["123456"],
    )
    reason: str | None = Field(
        None,
        max_length=500,
        description="why you approve, when a rule asks (shown on the card, kept in the audit log)",
        examples=["matches the signed order"],
    )


class RejectArgs(Args):
    positional = ("id", "reason")
    rest = "reason"
    id: PositiveInt = Field(description="approval request number", examples=[12])
    reason: str | None = Field(
        None, max_length=500, description="why (required)", examples=["wrong amount"]
    )
    form: YesNo = Field(
        False,
        description="ask for the reason in a form (what the Reject button does)",
        examples=["yes"],
    )


class ResolveArgs(Args):
    positional = ("id", "outcome")
    id: PositiveInt = Field(description="approval request number", examples=[12])
    outcome: Literal["done", "not-done"] = Field(
        description="what the provider shows happened", examples=["done"]
    )
    reason: str = Field(
        min_length=3,
        max_length=1500,
        description="how you know (kept in the audit log)",
        examples=["balance shows the 8.00 at 10:31"],
    )


class AuditArgs(Args):
    positional = ("n",)
    n: PositiveInt = Field(20, description="how many entries (at most 200)", examples=[20])
    user: str | None = Field(None, description="only this user ID", examples=["U012ABCDEF"])
    provider: str | None = Field(None, description="only this provider", examples=["smsc"])

    @model_validator(mode="after")
    def _cap(self) -> AuditArgs:
        if self.n > 200:
            raise ValueError("`n` is at most 200; use `/billing audit export` for more")
        return self


class AuditExportArgs(Args):
    positional = ("start", "end")
    start: IsoDate = Field(description="first day", examples=["2026-10-01"])
    end: IsoDate = Field(description="last day", examples=["2026-10-31"])
    to: Literal["me", "channel"] = Field(
        "me",
        description="`me`: a direct message only you see (the default); `channel`: post it here",
        examples=["channel"],
    )

    @model_validator(mode="after")
    def _order(self) -> AuditExportArgs:
        if self.end < self.start:
            raise ValueError(f"`end` ({self.end}) is before `start` ({self.start})")
        return self


def permalink(channel: str, ts: str) -> str:
    """Slack's archive link to a message; it opens the message in the user's workspace."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


async def status(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    rows = []
    for runtime in desk.catalog.runtimes:
        state = {"live": "configured", "sandbox": "sandbox", "disabled": "not configured"}
        rows.append([runtime.provider.title, state[runtime.mode]])
    database = "reachable" if await ping(desk.engine) else "UNREACHABLE"
    leader = desk.scheduler.describe()
    samples = [
        f"• {runtime.provider.title} {what}: {ids}"
        for runtime in desk.catalog.runtimes
        if runtime.mode == "sandbox" and runtime.sandbox is not None
        for what, ids in runtime.sandbox.samples()
    ]
    return Reply(
        text=f"*billing-bot {bot.__version__}*",
        sections=["*Sample ids to try in the sandboxes*\n" + "\n".join(samples)] if samples else [],
        fields=[
            ("Database", f"{desk.engine.dialect.name}: {database}"),
            ("Scheduler", str(leader)),
            ("Time zone", desk.settings.billing_timezone),
            ("Approval TTL", f"{desk.settings.approval_ttl_hours:g} h"),
        ],
        table=Table(columns=["Provider", "State"], rows=rows),
    )


async def list_approvals(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    """Open requests, and unknown outcomes nobody has settled yet."""
    rows = await desk.approvals.open()
    unknown = await desk.approvals.unresolved()
    if not rows and not unknown:
        return Reply(text="No open approval requests.", private=True)
    sections = []
    buttons = []
    for row in rows:
        link = f" · <{permalink(row.channel, row.message_ts)}|open>" if row.message_ts else ""
        sections.append(
            f"*#{row.id}* `{row.command_line}` — by {messages._who(row.requester)}, "
            f"expires {messages.when(row.expires_at, desk.settings.tz)}{link}"
        )
        buttons += [
            Button(
                label=f"Approve #{row.id}", command=f"/billing approve {row.id}", style="primary"
            ),
            Button(
                label=f"Reject #{row.id}",
                command=f"/billing reject {row.id} form=yes",
                style="danger",
            ),
        ]
    for row in unknown:
        link = f" · <{permalink(row.channel, row.message_ts)}|open>" if row.message_ts else ""
        sections.append(
            f"❓ *#{row.id}* `{row.command_line}` — outcome unknown since "
            f"{messages.when(row.decided_at, desk.settings.tz)}; settle it with "
            f'`/billing resolve {row.id} done|not-done reason="…"`{link}'
        )
        buttons.append(Button(label=f"Check #{row.id}", command=f"/billing check-outcome {row.id}"))
    head = f"*{plural(len(rows), 'open approval request')}*"
    if unknown:
        head += f" · *{plural(len(unknown), 'unknown outcome')} to settle*"
    return Reply(text=head, sections=sections, buttons=buttons)


async def approve(desk: Desk, args: ApproveArgs, ctx: Context) -> Reply:
    return await desk.flow.approve(
        args.id, user=ctx.user_id, surface=desk.surface, code=args.code, reason=args.reason
    )


async def ask_approval(surface: Surface, approval_id: int, *, code: bool, reason: bool) -> bool:
    """Open the approval's form where the surface can (`bot.approvals.gate.Asker`)."""
    form = approval_form(approval_id, code=code, reason=reason)
    return await surface.open_form(APPROVE, form)


async def reject(desk: Desk, args: RejectArgs, ctx: Context) -> Reply:
    """Always with a reason: typed, or asked in a form by the Reject button (`form=yes`)."""
    if not args.reason and args.form and await desk.surface.open_form(REJECT, reject_form(args.id)):
        return Reply(text=f"Rejecting #{args.id}: the reason is asked in the form.", private=True)
    if not args.reason:
        raise CommandError(say.reject_needs_reason(args.id))
    if (problem := reason_problem(args.reason, f"Rejecting #{args.id}")) is not None:
        raise CommandError(problem)
    return await desk.flow.reject(
        args.id, user=ctx.user_id, reason=args.reason, surface=desk.surface
    )


async def check_outcome(desk: Desk, args: ApprovalId, ctx: Context) -> Reply:
    return await desk.flow.check(args.id, user=ctx.user_id)


async def resolve(desk: Desk, args: ResolveArgs, ctx: Context) -> Reply:
    return await desk.flow.resolve(
        args.id,
        user=ctx.user_id,
        resolution=args.outcome.replace("-", " "),
        reason=args.reason,
        surface=desk.surface,
    )


async def show_policy(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    policy = desk.policy
    if not policy.rules:
        return Reply(
            text="No approval policy: every request needs one approval by any approver "
            "(not the requester). Set BILLING_POLICY_FILE to add rules.",
            private=True,
        )
    file = desk.settings.billing_policy_file
    return Reply(
        text=f"*Approval policy* ({len(policy.rules)} rules, from `{file}`)",
        sections=["\n".join(policy.lines())],
        private=True,
    )


async def snooze(desk: Desk, args: ApprovalId, ctx: Context) -> Reply:
    row = await desk.approvals.get(args.id)
    if row is None or not row.snooze_hours:
        raise CommandError(f"Approval #{args.id} cannot be snoozed.")
    hours = row.snooze_hours
    until = await desk.flow.asked_again(row, hours)
    await desk.flow.reject(
        args.id, user=ctx.user_id, reason=messages.snooze_reason(until), surface=desk.surface
    )
    await desk.flow.snooze(row, hours)
    decided = await desk.approvals.get(args.id)
    return Reply(text=messages.snoozed(decided or row, desk.settings.tz), private=True)


async def show_audit(desk: Desk, args: AuditArgs, ctx: Context) -> Reply:
    rows = await desk.audit.recent(args.n, user=args.user, provider=args.provider)
    if not rows:
        return Reply(text="No audit entries match.", private=True)
    table = Table(
        columns=["#", "When", "Who", "Command", "Decision", "Outcome", "Detail"],
        rows=[
            [
                str(r["id"]),
                messages.when(r["at"], desk.settings.tz),
                r["user_id"],
                r["command"],
                r["decision"],
                r["outcome"],
                clip(r["detail"] or "", 40),
            ]
            for r in rows
        ],
    )
    shown = plural(len(rows), "audit entry", "audit entries")
    return Reply(text=f"*Last {shown}*", table=table, private=True)


async def export_audit(desk: Desk, args: AuditExportArgs, ctx: Context) -> Reply:
    """The CSV goes to the requester alone (a direct message) unless `to=channel` asks for the
    channel: the audit log names people, commands and amounts."""
    rows = await desk.audit.between(args.start, args.end, desk.settings.tz)
    name = f"audit-{args.start.isoformat()}-{args.end.isoformat()}.csv"
    export = Reply(
        text=f"Audit log {args.start} … {args.end}: {plural(len(rows), 'entry', 'entries')}.",
        files=[File(filename=name, content=to_csv(rows), title=name, mime="text/csv")],
    )
    person = ctx.user_id.startswith(("U", "W"))  # a schedule has no direct messages
    if args.to == "channel" or not person:
        return export
    direct = await desk.direct.open(ctx.user_id)
    if direct is None:
        raise CommandError(
            "I could not open a direct message with you, so the audit export was not sent. "
            "Try again, or add `to=channel` to post it in this channel."
        )
    await direct.send(export)
    return Reply(
        text=f"Sent the audit log {args.start} … {args.end} to you in a direct message.",
        private=True,
        audit_note=f"{export.text} Sent as a direct message to {ctx.user_id}.",
    )


async def anchor_audit(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    """The audit chain's head posted to the billing channel now (`bot/anchors.py`)."""
    channel = desk.settings.billing_channel
    if not channel:
        raise CommandError(
            "Anchors are posted to BILLING_CHANNEL, which is not set. An admin must set it to a "
            "channel ID (like C0123456789) and restart; nothing was anchored."
        )
    anchor = await desk.anchors.take(by=ctx.user_id)
    if anchor is None:
        raise CommandError("The audit log is empty: there is nothing to anchor yet.")
    return Reply(
        text=f"Anchored the audit log at row {anchor.seq}, hash `{anchor.hash}`; posted to "
        f"<#{channel}>.",
        private=True,
    )


APPROVE: Command[Any, Desk] = Command(
    slash=SLASH,
    words=("approve",),
    summary="approve a request (not your own); it runs once",
    args=ApproveArgs,
    handler=approve,
    role=Role.APPROVER,
)

REJECT: Command[Any, Desk] = Command(
    slash=SLASH,
    words=("reject",),
    summary="reject a request, with a reason",
    args=RejectArgs,
    handler=reject,
    role=Role.APPROVER,
    example='/billing reject 12 "wrong amount"',
)

COMMANDS: list[Command[Any, Desk]] = [
    Command(
        slash=SLASH,
        words=("status",),
        summary="providers, database, scheduler and version",
        args=NoArgs,
        handler=status,
        role=Role.VIEWER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("approvals",),
        summary="open approval requests",
        args=NoArgs,
        handler=list_approvals,
        role=Role.VIEWER,
        read_only=True,
    ),
    APPROVE,
    REJECT,
    Command(
        slash=SLASH,
        words=("snooze",),
        summary="put a reminder off; it is asked again later",
        args=ApprovalId,
        handler=snooze,
        role=Role.APPROVER,
    ),
    Command(
        slash=SLASH,
        words=("check-outcome",),
        summary="ask the provider whether a request of unknown outcome happened",
        args=ApprovalId,
        handler=check_outcome,
        role=Role.APPROVER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("resolve",),
        summary="settle an unknown outcome as done or not done, with a reason",
        args=ResolveArgs,
        handler=resolve,
        role=Role.APPROVER,
        example='/billing resolve 12 done reason="balance shows the 8.00"',
    ),
    Command(
        slash=SLASH,
        words=("policy",),
        summary="the approval rules in force",
        args=NoArgs,
        handler=show_policy,
        role=Role.VIEWER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("audit",),
        summary="the last n audit entries",
        args=AuditArgs,
        handler=show_audit,
        role=Role.APPROVER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("audit", "export"),
        summary="the audit log of a period as a CSV file, sent to you in a direct message",
        args=AuditExportArgs,
        handler=export_audit,
        role=Role.APPROVER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("audit", "anchor"),
        summary="post the audit log's head (row and hash) to the billing channel, as daily",
        args=NoArgs,
        handler=anchor_audit,
        role=Role.APPROVER,
    ),
]


MFA: list[Command[Any, Desk]] = [
    Command(
        slash=SLASH,
        words=("mfa", "enroll"),
        summary="set up your authenticator app for step-up codes (sent to your direct messages)",
        args=NoArgs,
        handler=mfa.enroll,
        role=Role.APPROVER,
    ),
    Command(
        slash=SLASH,
        words=("mfa", "confirm"),
        summary="confirm your enrolment with the first code your authenticator app shows",
        args=mfa.CodeArgs,
        handler=mfa.confirm,
        role=Role.APPROVER,
        form=mfa.CONFIRM_FORM,
    ),
    Command(
        slash=SLASH,
        words=("mfa", "status"),
        summary="whether you are enrolled for step-up codes",
        args=NoArgs,
        handler=mfa.status,
        role=Role.APPROVER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("mfa", "reset"),
        summary="forget someone's step-up enrolment (they are told); they enrol again",
        args=mfa.UserArgs,
        handler=mfa.reset,
        role=Role.ADMIN,
        example="/billing mfa reset <@U0123ABCD>",
    ),
]


SCHEDULES: list[Command[Any, Desk]] = [
    Command(
        slash=SLASH,
        words=("schedules",),
        summary="schedules: each one's cron in words and its next run",
        args=NoArgs,
        handler=schedules.list_schedules,
        role=Role.VIEWER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("schedule", "remove"),
        summary="delete a schedule",
        args=schedules.ScheduleId,
        handler=schedules.remove_schedule,
        role=Role.ADMIN,
    ),
    Command(
        slash=SLASH,
        words=("schedule", "pause"),
        summary="stop a schedule from firing",
        args=schedules.ScheduleId,
        handler=schedules.pause_schedule,
        role=Role.ADMIN,
    ),
    Command(
        slash=SLASH,
        words=("schedule", "resume"),
        summary="let a paused schedule fire again",
        args=schedules.ScheduleId,
        handler=schedules.resume_schedule,
        role=Role.ADMIN,
    ),
    Command(
        slash=SLASH,
        words=("schedule", "run"),
        summary="fire a schedule now",
        args=schedules.ScheduleId,
        handler=schedules.run_schedule_now,
        role=Role.ADMIN,
    ),
]

ADD_POST: Command[Any, Desk] = Command(
    slash=SLASH,
    words=("schedule", "add", schedules.POST),
    summary=(
        "schedule: post the reply of a command that only reads (a balance, a list, a report) "
        "to the channel, run with your role at the time"
    ),
    args=schedules.AddPost,
    handler=schedules.add_post,
    role=Role.ADMIN,
    example='/billing schedule add post "0 9 * * 1" "/voipcloud partner-balance"',
)

# `/billing` commands that a provider declares next to its own code (and which need it).
PROVIDED = {("report", "balances"): "voipcloud"}


def schedule_add(name: str, kind: ScheduleKind[Any, Any]) -> Command[Any, Desk]:
    """`/billing schedule add <name> "<cron>" …`, one per kind a provider offers."""
    model, handler = schedules.add_kind(name, kind)
    return Command(
        slash=SLASH,
        words=("schedule", "add", name),
        summary=f"schedule: {kind.summary}",
        args=model,
        handler=handler,
        role=Role.ADMIN,
    )


def billing_provider(
    kinds: dict[str, ScheduleKind[Any, Any]] | None = None,
) -> Provider[Any, Desk]:
    """The bot's own command set, shaped like a provider so dispatch treats it the same: the
    commands above, then one `schedule add` per schedule kind of the providers."""
    kinds = kinds or {}
    if schedules.POST in kinds:
        raise ValueError(
            f"`{schedules.POST}` is the bot's own schedule kind; name the provider's otherwise"
        )

    async def _check(desk: Desk) -> str:
        return "ok"

    def _unused(*_: Any) -> Any:
        raise RuntimeError("the billing commands have no provider client")

    return Provider(
        name=SLASH,
        title="billing-bot",
        settings=_unused,
        configured=lambda _: True,
        open_client=_unused,
        sandbox=_unused,
        commands=[
            *COMMANDS,
            *MFA,
            *SCHEDULES,
            *(schedule_add(name, kind) for name, kind in sorted(kinds.items())),
            ADD_POST,
        ],
        check=_check,
    )
