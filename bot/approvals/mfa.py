"""The handlers of `/billing mfa …` (declared in `bot.billing`): each approver's authenticator.

enroll   ─► a new seed ─► the otpauth:// URI and its QR code, in the person's direct message
            only (sent straight to Slack, never kept in the outbox: a seed rests nowhere
            but sealed in the step_up table); the channel hears "sent to your DMs"
confirm  ─► the first valid code makes the enrolment count (also the DM's button: a form)
status   ─► enrolled or not
reset    ─► an admin forgets someone's enrolment; they are told in a direct message
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import BeforeValidator, Field, SecretStr

from bot import messages
from bot.approvals import stepup_messages as say
from bot.approvals.stepup import Enrolment, NoKey, StepUp, Verdict
from commands.base import Args, Button, CommandError, Context, File, Form, FormField, NoArgs, Reply

if TYPE_CHECKING:
    from bot.desk import Desk

CONFIRM = "/billing mfa confirm"
NO_KEY = (
    "Step-up codes are not set up here: an admin must set BILLING_SECRET_KEY (base64 of 32 "
    "random bytes) and restart."
)
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$|^@?([UW][A-Z0-9]+)$")


def _user_id(value: object) -> str:
    """`<@U123>` (a mention as Slack escapes it), `<@U123|name>` or `U123`."""
    found = _MENTION.match(str(value).strip())
    if found is None:
        raise ValueError("give the person as a mention (<@U…>) or a user ID (U…)")
    return found.group(1) or found.group(2)


SlackUser = Annotated[str, BeforeValidator(_user_id)]


class CodeArgs(Args):
    positional = ("code",)
    code: SecretStr = Field(
        description="the 6-digit code your authenticator app shows now", examples=["123456"]
    )


class UserArgs(Args):
    positional = ("user",)
    user: SlackUser = Field(description="whose enrolment (a mention or user ID)", examples=["U0A"])


CONFIRM_FORM = Form(
    title="Confirm authenticator",
    submit="Confirm",
    fields=[
        FormField(
            name="code",
            label="Authenticator code",
            kind="secret",
            placeholder="123456",
            hint="the 6 digits your authenticator app shows now for billing-bot",
        )
    ],
)


def _service(desk: Desk) -> StepUp:
    if desk.stepup.keyring is None:
        raise CommandError(NO_KEY)
    return desk.stepup


async def enroll(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    stepup = _service(desk)
    if await stepup.status(ctx.user_id) is Enrolment.ENROLLED:
        raise CommandError(say.already_enrolled())
    try:
        seed = await stepup.enroll(ctx.user_id)
    except NoKey:
        raise CommandError(NO_KEY) from None
    if seed is None:
        raise CommandError(say.already_enrolled())
    dm = Reply(
        text=say.enrolment(seed.uri, seed.seed),
        files=[
            File(
                filename="billing-bot-authenticator.png",
                content=seed.qr_png,
                title="Scan with your authenticator app",
                mime="image/png",
            )
        ],
        buttons=[Button(label="Enter the first code", command=CONFIRM, style="primary")],
        private=True,
        reveal=True,
    )
    if not await desk.secrets.send(ctx.user_id, dm):
        raise CommandError(say.enrolment_not_sent())
    return Reply(
        text=say.enrolment_sent(),
        private=True,
        audit_note="new enrolment sent as a direct message",
    )


async def confirm(desk: Desk, args: CodeArgs, ctx: Context) -> Reply:
    stepup = _service(desk)
    status = await stepup.status(ctx.user_id)
    if status is not Enrolment.PENDING:
        raise CommandError(say.nothing_to_confirm(status is Enrolment.ENROLLED))
    check = await stepup.confirm(ctx.user_id, args.code.get_secret_value())
    if check.verdict is Verdict.OK:
        return Reply(text=say.enrolled(), private=True)
    until = messages.when(check.locked_until, desk.settings.tz) if check.locked_until else None
    raise CommandError(say.confirm_refused(check.verdict, check.tries_left, until))


async def status(desk: Desk, args: NoArgs, ctx: Context) -> Reply:
    found = await desk.stepup.status(ctx.user_id)
    return Reply(text=say.enrolment_status(found), private=True)


async def reset(desk: Desk, args: UserArgs, ctx: Context) -> Reply:
    if not await desk.stepup.reset(args.user):
        raise CommandError(say.nothing_to_reset(args.user))
    direct = await desk.direct.open(args.user)
    if direct is not None:
        await direct.send(Reply(text=say.reset_told(ctx.user_id)))
    return Reply(text=say.reset_done(args.user, told=direct is not None), private=True)
