"""The Slack listeners, one named object each, callable in a test with a fake `ack` and body
(as Bolt's own listener classes are): Bolt injects `ack`, `body`, `action`, `view` and `event`
by parameter name, and skips `self`.

    SlashCommand    every slash command: ack, then the line goes to dispatch
    ButtonClick     a button: ack, then its stored command runs as the clicking user
    FormSubmitted   a modal: role and validation answered in the ack (errors under the field),
                    then it runs
    HomeOpened      the App Home tab: ack, then the view is published

Every listener acknowledges first and hands the work to `AfterAck`, so Slack gets its 200
within milliseconds whatever the providers or Slack's own Web API do; what the work raises is
handled there, in one place (`bot.errors`: a reference, the log, one sentence to the person).

The database is the exception to "everything shown goes through the outbox": the outbox is
in it. When the work fails because the database is away, `AfterAck` reports it
(`bot.ops.database`) and the person is told so straight through Slack (`bot.slack.direct`);
while the database is known to be down, a request is not handed in at all: a slash command
hears so in its ack, a form under its first field, a click through its response_url.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from bot import messages, reached
from bot.approvals.state import Approvals
from bot.dispatch import Intake
from bot.errors import logged_reference
from bot.ops.database import UNWATCHED, HealthReports
from bot.roles import Roles
from bot.schedules.store import ScheduleStore
from bot.slack.blocks import form_values
from bot.slack.direct import DirectNotes
from bot.slack.home import SHOWN, home_view
from bot.slack.outbox import Outbox
from bot.slack.surface import SlackSurface
from bot.storage.audit import AuditLog
from bot.surface import guarded

log = logging.getLogger(__name__)

# Bolt's `AsyncAck`, or anything called the same way (a test's fake).
Ack = Callable[..., Awaitable[object]]

# How long a request waits, before its ack, for a database known down to be checked again.
RECHECK = 0.5


class AfterAck:
    """Runs work once Slack has its 200, each piece in a task of its own. Whatever it raises
    is handled here: logged with a reference, and the person told in one sentence; when the
    database is away, reported to `health` and told without it (`direct`)."""

    def __init__(
        self, *, health: HealthReports = UNWATCHED, direct: DirectNotes | None = None
    ) -> None:
        self.health = health
        self.direct = direct
        self.running: set[asyncio.Task[None]] = set()

    def __call__(self, work: Awaitable[Any], surface: SlackSurface | None) -> None:
        async def run() -> None:
            seen = reached.watch()
            try:
                await work
            except Exception as exc:
                if self.health.failed(exc, where="a Slack request"):
                    log.info("a Slack request was not recorded: the database is down")
                    await self._tell(surface, after_provider=seen.reached)
                    return
                reference = logged_reference(log, "a Slack request failed after its ack")
                if surface is not None:
                    await guarded(surface).private(messages.failed_after_ack(reference))

        self._start(run())

    async def database_down(self) -> bool:
        """Known before the ack: the request is not handed in, and the person is told. Known
        down, it is checked again first (for at most RECHECK, well inside Slack's 3 s), so a
        request made once the database is back is taken even when no loop has noticed yet; a
        slower check goes on, for the next request."""
        if not self.health.down:
            return False
        await asyncio.wait({self._start(self.health.ok(where="a Slack request"))}, timeout=RECHECK)
        return self.health.down

    def turn_away(self, surface: SlackSurface) -> None:
        """Tell the person, after the ack, that nothing was done (the database is down)."""
        self._start(self._tell(surface))

    async def _tell(self, surface: SlackSurface | None, *, after_provider: bool = False) -> None:
        if surface is None:
            return
        text = (
            messages.database_down_after_provider() if after_provider else messages.database_down()
        )
        if self.direct is None:
            await guarded(surface).private(text)
            return
        await self.direct.tell(
            text,
            channel=surface.channel,
            user=surface.user,
            response_url=surface.response_url,
        )

    def _start(self, work: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(work)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task


def surface_of(outbox: Outbox, body: dict[str, Any], channel: str, user: str) -> SlackSurface:
    """Where one interaction's answers go: its channel, its person, its `response_url` and
    `trigger_id` (for a form)."""
    return SlackSurface(
        outbox,
        channel=channel,
        user=user,
        response_url=body.get("response_url"),
        trigger_id=body.get("trigger_id"),
    )


class SlashCommand:
    def __init__(self, intake: Intake, outbox: Outbox, after_ack: AfterAck) -> None:
        self.intake = intake
        self.outbox = outbox
        self.after_ack = after_ack

    async def __call__(self, ack: Ack, body: dict[str, Any]) -> None:
        if await self.after_ack.database_down():
            # An ack's body is shown to the person who typed the command
            # (https://api.slack.com/interactivity/slash-commands#responding_immediately).
            await ack(text=messages.database_down(), response_type="ephemeral")
            return
        await ack()
        channel, user = str(body.get("channel_id", "")), str(body.get("user_id", ""))
        surface = surface_of(self.outbox, body, channel, user)
        line = f"{body.get('command', '')} {body.get('text') or ''}"
        self.after_ack(self.intake.run(line, user=user, channel=channel, surface=surface), surface)


class ButtonClick:
    def __init__(self, intake: Intake, outbox: Outbox, after_ack: AfterAck) -> None:
        self.intake = intake
        self.outbox = outbox
        self.after_ack = after_ack

    async def __call__(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id", ""
        )
        user = str((body.get("user") or {}).get("id", ""))
        surface = surface_of(self.outbox, body, channel, user)
        if await self.after_ack.database_down():
            self.after_ack.turn_away(surface)
            return
        value = str(action.get("value", ""))
        self.after_ack(self.intake.run(value, user=user, channel=channel, surface=surface), surface)


class FormSubmitted:
    def __init__(self, intake: Intake, outbox: Outbox, after_ack: AfterAck) -> None:
        self.intake = intake
        self.outbox = outbox
        self.after_ack = after_ack

    async def __call__(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        if await self.after_ack.database_down():
            down = _under_blocks({"_": messages.database_down()}, view)
            await ack(response_action="errors", errors=down)
            return
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            path, channel = str(meta.get("path", "")), str(meta.get("channel", ""))
            user = str(body["user"]["id"])
            fixed = {str(k): str(v) for k, v in dict(meta.get("fixed") or {}).items()}
            values = {**form_values(view["state"]["values"]), **fixed}
            command, errors = await self.intake.check_form(path, values, user=user, channel=channel)
            errors = _under_blocks(errors, view)
        except Exception as exc:
            # The modal must still close or show errors; the failure is logged with a reference.
            if self.after_ack.health.failed(exc, where="a form"):
                down = _under_blocks({"_": messages.database_down()}, view)
                await ack(response_action="errors", errors=down)
                return
            reference = logged_reference(log, "a form could not be checked")
            await ack(response_action="errors", errors={"_": messages.failed_after_ack(reference)})
            return
        if errors or command is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        surface = SlackSurface(self.outbox, channel=channel, user=user)
        work = self.intake.run_values(command, values, user=user, channel=channel, surface=surface)
        self.after_ack(work, surface)


def _under_blocks(errors: dict[str, str], view: dict[str, Any]) -> dict[str, str]:
    """Errors keyed by the modal's own inputs: Slack refuses `response_action: errors` that name
    a block the view does not have (https://api.slack.com/surfaces/modals#displaying_errors),
    so an error about a value the form carries (`fixed`) goes under its first input."""
    blocks = [str(b.get("block_id")) for b in view.get("blocks") or [] if b.get("block_id")]
    if not blocks:
        return errors
    shown: dict[str, str] = {}
    for name, text in errors.items():
        key = name if name in blocks else blocks[0]
        shown[key] = f"{shown[key]} {text}" if key in shown else text
    return shown


class HomeOpened:
    def __init__(
        self,
        *,
        approvals: Approvals,
        schedules: ScheduleStore,
        audit: AuditLog,
        roles: Roles,
        tz: ZoneInfo,
        publish: Callable[..., Awaitable[Any]],
        after_ack: AfterAck,
    ) -> None:
        self.approvals = approvals
        self.schedules = schedules
        self.audit = audit
        self.roles = roles
        self.tz = tz
        self.publish = publish
        self.after_ack = after_ack

    async def __call__(self, ack: Ack, event: dict[str, Any]) -> None:
        await ack()
        if event.get("tab", "home") != "home":
            return
        user = str(event["user"])
        self.after_ack(self._publish(user), None)

    async def view(self, user: str) -> dict[str, Any]:
        return home_view(
            user=user,
            role=await self.roles.role_of(user),
            approvals=await self.approvals.open(),
            schedules=await self.schedules.all(),
            recent=await self.audit.recent(SHOWN, user=user),
            tz=self.tz,
            unknown=await self.approvals.unresolved(),
        )

    async def _publish(self, user: str) -> None:
        await self.publish(user_id=user, view=await self.view(user))
