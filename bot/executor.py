"""Runs one validated command now: the one place a handler is called.

    execute ─► handler(client, args, ctx) in a task ─► Outcome ─► audit row ─► reply prepared
                 │ "working…" after `working_after` s (a direct run)
                 └ heartbeat on the approval row while an approved run is out (`heartbeat_every`)

Handlers never catch: `CommandError` and the `ProviderError` tree become one private sentence
here, a lost answer to a write becomes "outcome unknown", and anything else gets an error
reference (`bot.errors`). What a run did is audited before anything is shown; showing the reply
is the caller's (dispatch for a direct run, the approval flow for an approved one, the
schedules for a post), and a surface here is always guarded, so showing never raises.

`resolve` makes a command's relative inputs concrete before an approval is asked, and `probe`
runs the read that shows whether a write of unknown outcome happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot import messages, reached
from bot.approvals.late import answer_of
from bot.approvals.state import Approval, Approvals, Outcome, Status
from bot.catalog import Catalog
from bot.errors import logged_reference
from bot.progress import ProgressMessage
from bot.storage.audit import AuditLog, Entry
from bot.storage.failures import DATABASE_ERRORS
from bot.storage.spool import Spool
from bot.storage.store import MAX_BUTTON_VALUE, ReportHistory, StoredCommands
from bot.surface import Surface, guarded
from commands.base import Args, Command, CommandError, Context, Evidence, Reply
from commands.http import OutcomeUnknown, ProviderError

log = logging.getLogger(__name__)

# The client `/billing` commands get, made for the surface of each request (bot.billing.Desk).
BillingClient = Callable[[Surface], Any]


class Executor:
    def __init__(
        self,
        *,
        catalog: Catalog,
        audit: AuditLog,
        approvals: Approvals,
        stored: StoredCommands,
        history: ReportHistory,
        billing_client: BillingClient,
        tz: ZoneInfo,
        clock: Callable[[], datetime],
        spool: Spool,
        working_after: float = 2.0,
        heartbeat_every: float = 10.0,
    ) -> None:
        self.spool = spool
        self.catalog = catalog
        self.audit = audit
        self.approvals = approvals
        self.stored = stored
        self.history = history
        self.billing_client = billing_client
        self.tz = tz
        self.clock = clock
        self.working_after = working_after
        self.heartbeat_every = heartbeat_every

    async def execute(
        self,
        command: Command[Any, Any],
        args: Args,
        *,
        user: str,
        channel: str,
        surface: Surface,
        approval: Approval | None = None,
        note: str | None = None,
    ) -> Outcome:
        """Run the handler now and audit it; the outcome carries the reply, ready to show (long
        buttons stored). Never raises for provider trouble. `note` opens the audit row's
        detail (a scheduled post says which schedule ran it)."""
        surface = guarded(surface)
        started = time.monotonic()
        outcome = await self._call(
            command, args, user=user, channel=channel, surface=surface, approval=approval
        )
        try:
            await self._audit(command, args, outcome, user, channel, approval, note, started)
        except DATABASE_ERRORS:
            if approval is not None:  # the answer outlives the database's refusal
                self.spool.keep(answer_of(approval.id, user, outcome))
            raise
        if outcome.reply is None or outcome.status is not Status.DONE:
            return outcome  # an unknown's hint was shown privately already
        return replace(outcome, reply=await self._short_buttons(outcome.reply))

    async def _audit(
        self,
        command: Command[Any, Any],
        args: Args,
        outcome: Outcome,
        user: str,
        channel: str,
        approval: Approval | None,
        note: str | None,
        started: float,
    ) -> None:
        await self.audit.record(
            Entry(
                user_id=user,
                channel=channel,
                command=command.audit_name,
                args=args.preview(),
                decision="executed" if approval else "ran",
                outcome=outcome.status.value,
                detail=f"{note}: {outcome.summary}" if note else outcome.summary,
                provider=self.catalog.owner(command),
                provider_status=outcome.provider_status,
                duration_ms=int((time.monotonic() - started) * 1000),
                approval_id=approval.id if approval else None,
            )
        )

    async def _call(
        self,
        command: Command[Any, Any],
        args: Args,
        *,
        user: str,
        channel: str,
        surface: Surface,
        approval: Approval | None,
    ) -> Outcome:
        client = self.client(command, surface)
        if client is None:
            await surface.private(
                self.catalog.disabled(command) or "That provider is switched off."
            )
            return Outcome(Status.FAILED, "provider not configured")
        progress = ProgressMessage(surface, command.audit_name)
        ctx = Context(
            user_id=user,
            channel_id=channel,
            tz=self.tz,
            clock=self.clock,
            progress=progress.update,
            notify=surface.private,
            approval_id=approval.id if approval else None,
            history=self.history,
        )
        reached.mark()  # from here a failure may leave the provider's work done
        task = asyncio.ensure_future(command.handler(client, args, ctx))
        heartbeat = asyncio.ensure_future(self._beat(approval.id)) if approval else None
        done, _ = await asyncio.wait({task}, timeout=self.working_after)
        if not done and approval is None:  # an approved run says so on its card instead
            await surface.private(messages.working(command.audit_name))  # guarded: never raises
        try:
            reply: Reply = await task
        except OutcomeUnknown as exc:
            hint = command.unknown_hint(args) if command.unknown_hint else None
            text = messages.outcome_unknown(command.audit_name, exc.message, hint)
            if approval is None:
                await surface.private(text)
                if hint and hint.buttons:
                    await surface.send(Reply(text=hint.text, buttons=hint.buttons, private=True))
            return Outcome(Status.UNKNOWN, exc.message, hint, exc.status)
        except ProviderError as exc:
            text = messages.provider_failed(command.audit_name, exc)
            if approval is None:
                await surface.private(text)
            return Outcome(Status.FAILED, text, None, exc.status)
        except CommandError as exc:
            if approval is None:
                await surface.private(exc.message)
            return Outcome(Status.FAILED, exc.message)
        except Exception:
            reference = logged_reference(log, f"command {command.audit_name} failed")
            status = Status.FAILED if command.idempotent else Status.UNKNOWN
            text = messages.internal_error(command.audit_name, reference, command.idempotent)
            if approval is None:
                await surface.private(text)
            return Outcome(status, text)
        finally:
            if heartbeat:
                heartbeat.cancel()
        return Outcome(Status.DONE, reply.audit_note or reply.text, reply)

    async def _short_buttons(self, reply: Reply) -> Reply:
        """Buttons whose command is too long for Slack carry a stored reference instead."""
        if all(len(b.command) <= MAX_BUTTON_VALUE for b in reply.buttons):
            return reply
        buttons = [
            b
            if len(b.command) <= MAX_BUTTON_VALUE
            else replace(b, command=await self.stored.store(b.command))
            for b in reply.buttons
        ]
        return replace(reply, buttons=buttons)

    def client(self, command: Command[Any, Any], surface: Surface) -> Any | None:
        """The client the command's handler gets: its provider's (None: switched off), or for
        `/billing` the bot's own, made for this surface."""
        if self.catalog.is_billing(command):
            return self.billing_client(surface)
        runtime = self.catalog.runtime(self.catalog.owner(command))
        return runtime.client if runtime else None

    async def _beat(self, approval_id: int) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            try:
                await self.approvals.heartbeat(approval_id)
            except DATABASE_ERRORS as exc:  # one missed beat; the run goes on, the next may land
                log.warning("approval #%s: a heartbeat failed (%s)", approval_id, exc)

    # --- before and after a write ----------------------------------------------------------

    async def resolve(
        self, command: Command[Any, Any], args: Args, *, user: str, channel: str, surface: Surface
    ) -> Args | None:
        """Relative inputs made concrete before an approval is asked (`Command.resolve`), so the
        card shows and the run sends the same values however late it is approved. None when
        they cannot be (the requester has been told why, and it is audited; nothing was
        requested)."""
        client = self.client(command, surface)
        if command.resolve is None or client is None:  # switched off: the request says so
            return args
        ctx = Context(user_id=user, channel_id=channel, tz=self.tz, clock=self.clock)
        try:
            resolved: Args = await command.resolve(client, args, ctx)
            return resolved
        except CommandError as exc:
            await surface.private(messages.not_requested(exc.message))
            await self.audit.invalid(command.audit_name, args.preview(), user, channel, exc.message)
        except ProviderError as exc:
            detail = messages.not_prepared(command.audit_name, exc)
            await surface.private(detail)
            entry = Entry(
                user_id=user,
                channel=channel,
                command=command.audit_name,
                args=args.preview(),
                decision="not requested",
                outcome=Status.FAILED.value,
                detail=detail,
                provider=self.catalog.owner(command),
                provider_status=exc.status,
            )
            await self.audit.record(entry)
        return None

    async def probe(
        self, command: Command[Any, Any], args: Args, *, user: str, channel: str
    ) -> Evidence:
        """Run a write's `check_outcome` read; what cannot be read says so instead."""
        hint = command.unknown_hint(args).text if command.unknown_hint else ""
        if command.check_outcome is None:
            return Evidence(text=messages.no_check(command.audit_name, hint), verdict="unclear")
        runtime = self.catalog.runtime(self.catalog.owner(command))
        if runtime is None or runtime.client is None:
            why = self.catalog.disabled(command) or "the provider is switched off"
            return Evidence(text=why, verdict="unclear")
        ctx = Context(user_id=user, channel_id=channel, tz=self.tz, clock=self.clock)
        try:
            return await command.check_outcome(runtime.client, args, ctx)
        except ProviderError as exc:
            text = messages.provider_failed(command.audit_name, exc)
            return Evidence(text=f"The check could not be made: {text}", verdict="unclear")
