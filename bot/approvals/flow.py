"""The two-person rule as people meet it: request, approve, reject, snooze, sweep.

    request ─► policy (rules, ceilings) ─► row (pending) ─► audit "requested" ─► card
    approve ─► role the rules ask ─► vote ─► not the last: audit "approved", card "1 of 2"
                                          └► the last: claim (pending → executing, ceilings
                                             checked again) ─► audit ─► run ─► finish ─► card
    reject  ─► claim (pending → rejected)  ─► audit "rejected" ─► card
    sweep   ─► expired and orphaned rows   ─► audit "expired" / "recovered" ─► card
    check   ─► an unknown outcome: the provider read that shows it (Evidence)
    resolve ─► a person settles an unknown outcome: done | not done (audited)

The state machine (`bot.approvals.state`) and the audit log are written before anything is
shown, and showing never raises (surfaces are guarded, Slack goes through the outbox), so a
Slack failure can delay a card but never strand a row in `executing`, mark a call unknown that
was never sent, or lose an outcome. Running a command is the runner's job (`Runner`, the
dispatcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from bot import messages
from bot.approvals import late, shown
from bot.approvals.cards import card_key, number_after
from bot.approvals.gate import Admission
from bot.approvals.metadata import tagged
from bot.approvals.notices import Notifier
from bot.approvals.policy import Policy, Requirement, over_ceiling, requirement_of, rules_of
from bot.approvals.state import Approval, Approvals, Claim, Guard, Outcome, Status
from bot.errors import logged_reference
from bot.roles import Denied
from bot.storage.audit import AuditLog, Entry
from bot.storage.failures import DATABASE_ERRORS
from bot.storage.spool import Spool
from bot.surface import Headed, Surface, guarded, letting_through
from commands import grammar
from commands.base import Args, Button, Command, CommandError, Evidence, Reply, Role
from commands.secrets import redact

log = logging.getLogger(__name__)

WITHDRAWN = "cancelled before the request was complete"
CUT_OFF = "cancelled while it ran; it may or may not have happened"


class Runner(Protocol):
    """What runs a command now (the executor): the flow for an approved request, the schedules
    for a scheduled post (whose `note` opens its audit detail)."""

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
    ) -> Outcome: ...

    async def probe(
        self, command: Command[Any, Any], args: Args, *, user: str, channel: str
    ) -> Evidence:
        """The provider read that shows whether an unknown write happened."""
        ...


class Commands(Protocol):
    """What the flow looks up about commands (the catalog)."""

    commands: list[Command[Any, Any]]

    def command(self, path: str) -> Command[Any, Any] | None: ...

    def owner(self, command: Command[Any, Any]) -> str: ...

    def disabled(self, command: Command[Any, Any]) -> str | None:
        """Why the command's provider cannot run it now (switched off), or None."""
        ...


class RoleCheck(Protocol):
    async def check(self, user_id: str, needed: Role) -> Denied | None: ...


class Postponer(Protocol):
    async def postpone(self, schedule_id: int, hours: int) -> Any: ...

    async def asked_again(self, schedule_id: int, hours: int) -> datetime | None: ...


class ApprovalFlow:
    def __init__(
        self,
        *,
        approvals: Approvals,
        audit: AuditLog,
        runner: Runner,
        commands: Commands,
        roles: RoleCheck,
        schedules: Postponer,
        policy: Policy,
        notices: Notifier,
        gate: Admission,
        system_surface: Callable[[str], Surface],
        tz: ZoneInfo,
        stale_after: timedelta,
        spool: Spool,
    ) -> None:
        self.spool = spool  # answers the database could not take (bot/approvals/late.py)
        self.approvals = approvals
        self.audit = audit
        self.runner = runner
        self.commands = commands
        self.roles = roles
        self.schedules = schedules
        self.policy = policy
        self.notices = notices
        self.gate = gate
        self.system_surface = system_surface
        self.tz = tz
        self.stale_after = stale_after

    # --- request ---------------------------------------------------------------------------

    async def request(
        self,
        command: Command[Any, Any],
        args: Args,
        *,
        user: str,
        channel: str,
        surface: Surface,
        origin: str = "user",
        labels: tuple[str, str] = ("Approve", "Reject"),
        snooze_hours: int | None = None,
    ) -> Approval | None:
        surface = guarded(surface)
        if (why := self.commands.disabled(command)) is not None:
            await surface.private(why)
            return None
        # What is stored is what runs: the arguments as text, read back here through the same
        # validation the run will use, so the card below is drawn from exactly what will run.
        stored = args.preview()
        try:
            exact = grammar.validate(command, stored)
        except grammar.FieldErrors:
            exact = None
        if exact != args:
            await surface.private(messages.not_storable(command.audit_name))
            return None
        requirement = requirement_of(self.policy, command, exact)
        if requirement.ceilings:
            async with self.approvals.single.connect() as conn:
                refusal = await over_ceiling(
                    conn, requirement, stored, now=self.approvals.clock(), tz=self.tz
                )
            if refusal is not None:
                await surface.private(messages.ceiling_refused(command.audit_name, refusal))
                await self.audit.record(
                    Entry(
                        user_id=user,
                        channel=channel,
                        command=command.audit_name,
                        args=stored,
                        decision="refused",
                        outcome="over ceiling",
                        detail=refusal,
                        provider=self.commands.owner(command),
                    )
                )
                return None
        line = grammar.shown(command, exact)  # amounts as the summary writes them; args stay exact
        description = command.describe(exact) if command.describe else f"`{line}`"
        since = self.approvals.clock()
        try:
            approval = await self._make(
                command,
                stored,
                line,
                description,
                requirement,
                user=user,
                channel=channel,
                surface=surface,
                origin=origin,
                labels=labels,
                snooze_hours=snooze_hours,
            )
        except (asyncio.CancelledError, *DATABASE_ERRORS):
            # Cut off (Ctrl-C in the console, a stopping process, the database failing): a
            # request left half-made is withdrawn, even one whose row was written as it came.
            with contextlib.suppress(*DATABASE_ERRORS):
                await self._withdraw_since(user, channel, command.path, since, surface)
            raise
        await self.notices.requested(approval)  # the request is complete: never withdrawn now
        return approval

    async def _make(
        self,
        command: Command[Any, Any],
        stored: dict[str, str],
        line: str,
        description: str,
        requirement: Requirement,
        *,
        user: str,
        channel: str,
        surface: Surface,
        origin: str,
        labels: tuple[str, str],
        snooze_hours: int | None,
    ) -> Approval:
        approval = await self.approvals.create(
            command_line=line,
            command_path=command.path,
            provider=self.commands.owner(command),
            args=stored,
            description=redact(description),
            requester=user,
            channel=channel,
            origin=origin,
            approve_label=labels[0],
            reject_label=labels[1],
            snooze_hours=snooze_hours,
            approvals_needed=requirement.approvals,
            approver_role=requirement.role.label if requirement.role > Role.APPROVER else None,
            rules=requirement.names,
        )
        await self.audit_decision(
            approval, user, "requested", "pending", f"approval #{approval.id}"
        )
        card = self._card(approval, messages.approval_card(approval, self.tz))
        with letting_through(*DATABASE_ERRORS):  # a card the outbox never got: withdrawn
            ref = await surface.send(card, key=card_key(approval.id))
        if ref is not None:
            await self.approvals.attach_message(approval.id, ref)
        return approval

    async def show(self, reply: Reply, *, channel: str, origin: str, surface: Surface) -> None:
        """A run's reply: put up for approval when it proposes a command, else posted."""
        if reply.proposal is not None:
            await self.propose(reply, channel=channel, origin=origin, surface=surface)
        else:
            await guarded(surface).send(reply)

    async def propose(self, reply: Reply, *, channel: str, origin: str, surface: Surface) -> None:
        """A reply that proposes a command (a reminder): an approval request any approver takes.
        A proposal that cannot be put up is shown as the reply it came in."""
        assert reply.proposal is not None
        proposal = reply.proposal
        slash, _, text = proposal.command.removeprefix("/").partition(" ")
        approval = None
        try:
            parsed = grammar.parse(slash, text, self.commands.commands)
            if not isinstance(parsed, grammar.Parsed):
                raise grammar.GrammarError("it asks for help, not a command")
            args = grammar.validate(parsed.command, parsed.values)
        except (grammar.GrammarError, grammar.FieldErrors) as exc:
            log.error("cannot propose %s: %s", proposal.command, exc)
        else:
            approval = await self.request(
                parsed.command,
                args,
                user=origin,
                channel=channel,
                surface=Headed(guarded(surface), reply),
                origin=origin,
                labels=(proposal.approve_label, proposal.reject_label),
                snooze_hours=proposal.snooze_hours,
            )
        if approval is None:
            await guarded(surface).send(reply)

    # --- decisions -------------------------------------------------------------------------

    async def approve(
        self,
        approval_id: int,
        *,
        user: str,
        surface: Surface,
        code: SecretStr | None = None,
        reason: str | None = None,
    ) -> Reply:
        asked = await self.approvals.get(approval_id)
        if asked is not None and asked.status is Status.PENDING and asked.approver_role:
            if await self.roles.check(user, Role.ADMIN) is not None:
                raise CommandError(messages.needs_admin(asked))
        # A code and a reason, when the rules ask: nothing counts without them.
        gated = await self.gate.admit(asked, user=user, code=code, reason=reason, surface=surface)
        if gated is not None:
            return gated
        guard = self._guard(asked)
        claim, row = await self.approvals.claim(approval_id, user, guard=guard, reason=reason)
        if claim is Claim.WAITING and row is not None:
            votes = await self.approvals.votes(row.id)
            progress = f"{len(votes)} of {row.approvals_needed}"
            detail = messages.with_reason(messages.approvals_progress(row, votes), reason)
            await self.audit_decision(row, user, "approved", progress, detail)
            reasons = await self.approvals.reasons(row.id)
            card = messages.approval_card(row, self.tz, votes=votes, reasons=reasons)
            card = self._card(row, card)
            await guarded(self._surface_for(surface, row.channel)).update(
                row.ref, card, key=card_key(row.id)
            )
            return Reply(text=messages.approval_waiting(row, votes), private=True)
        if claim is Claim.REFUSED and row is not None:
            assert row.outcome is not None  # a refused claim stores why
            await self.audit_decision(row, user, "approved", Status.FAILED.value, row.outcome)
            outcome = Outcome(Status.FAILED, row.outcome)
            card = await self._ended(row, outcome)
            await shown.show(self, row, card, self._surface_for(surface, row.channel))
            return Reply(text=f"Approval #{row.id}: {row.outcome}.", private=True)
        if claim is not Claim.WON or row is None:
            votes = await self.approvals.votes(approval_id)  # "already done by" names them all
            raise CommandError(messages.claim_refused(approval_id, claim, row, votes))
        if not await late.admitted(self, row, user, messages.with_reason(f"by {user}", reason)):
            return Reply(text=late.NOT_ADMITTED.format(id=row.id), private=True)
        target = guarded(self._surface_for(surface, row.channel))
        votes, reasons = [user], [(user, reason)] if reason is not None else []
        if row.approvals_needed > 1:  # else the one vote it needed is this click's: no read
            votes, reasons = await self.approvals.ballot(row.id)
        running = messages.approval_running(row, votes, reasons)
        try:
            outcome, unaudited = await self._run(row, user, target, running)
        except asyncio.CancelledError:
            await self._cut_off(row, user, target, surface)
            raise
        # A run audits itself; one that never got that far is audited here, then finished.
        if not await late.recorded(self, row, user, outcome, unaudited):
            return Reply(text=late.KEPT.format(id=row.id), private=True)
        card = messages.approval_done(row, outcome, self.tz, reasons=reasons, votes=votes)
        result = None  # an unknown's hint is on the card already
        if outcome.reply is not None and outcome.status is not Status.UNKNOWN:
            result = self._card(row, outcome.reply, outcome.status)
        await shown.show(self, row, self._card(row, card, outcome.status), target, result)
        return Reply(text=f"Approval #{row.id}: {outcome.status.value}.", private=True)

    async def _run(
        self, row: Approval, approver: str, target: Surface, running: Reply
    ) -> tuple[Outcome, str | None]:
        """Run a claimed request once. Whatever happens, an outcome comes back to finish it,
        with the audit decision still to record when the run did not record its own."""
        command = self.commands.command(row.command_path)
        if command is None:
            summary = f"not run: /{row.command_path} no longer exists"
            return Outcome(Status.FAILED, summary), "not run"
        try:
            args = grammar.validate(command, row.args)
        except grammar.FieldErrors as exc:
            # Nothing is sent: what was approved can no longer be run as shown.
            summary = f"not run: the arguments no longer validate ({exc})"
            return Outcome(Status.FAILED, summary), "not run"
        started = False
        try:
            await target.update(row.ref, self._card(row, running), key=card_key(row.id))
            started = True
            outcome = await self.runner.execute(
                command, args, user=approver, channel=row.channel, surface=target, approval=row
            )
            if outcome.reply is not None and outcome.reply.proposal is not None:
                # A reply that proposes a command is a request of its own, not a result to post.
                await self.propose(
                    outcome.reply, channel=row.channel, origin=approver, surface=target
                )
                outcome = replace(outcome, reply=None)
            return outcome, None
        except Exception:
            reference = logged_reference(log, f"approval #{row.id} failed inside the bot")
            if started and not command.idempotent:
                summary = f"the bot failed while running it (reference {reference})"
                return Outcome(Status.UNKNOWN, summary), "executed"
            summary = f"not run: the bot failed (reference {reference})"
            return Outcome(Status.FAILED, summary), "not run"

    async def withdraw(
        self, approval_id: int, *, by: str, reason: str, surface: Surface | None = None
    ) -> bool:
        """The requester takes back their own pending request: rejected, audited "withdrawn",
        its card updated. False when it is not theirs or no longer pending."""
        row = await self.approvals.get(approval_id)
        if row is None or row.requester != by or row.status is not Status.PENDING:
            return False
        claim, rejected = await self.approvals.reject(approval_id, by, reason)
        if claim is not Claim.WON or rejected is None:
            return False
        await self.audit_decision(rejected, by, "withdrawn", "not run", reason)
        card = self._card(rejected, messages.approval_rejected(rejected, self.tz))
        target = self.system_surface(rejected.channel)
        await shown.show(self, rejected, card if rejected.ref else None, target)
        if surface is not None:
            await guarded(surface).private(messages.withdrawn(rejected.id))
        return True

    async def _withdraw_since(
        self, user: str, channel: str, path: str, since: datetime, surface: Surface
    ) -> None:
        for row in await self.approvals.open(limit=None):
            if (row.requester, row.channel, row.command_path) == (user, channel, path) and (
                row.created_at >= since
            ):
                await self.withdraw(row.id, by=user, reason=WITHDRAWN, surface=surface)

    async def _cut_off(self, row: Approval, user: str, target: Surface, surface: Surface) -> None:
        """An approved run cancelled while it ran may have reached the provider: its outcome
        is unknown, and it is never run again."""
        outcome = Outcome(Status.UNKNOWN, CUT_OFF, self._unknown_hint(row))
        await self.approvals.finish(row.id, Status.UNKNOWN, CUT_OFF)
        await self.audit_decision(row, user, "approved", Status.UNKNOWN.value, CUT_OFF)
        await guarded(surface).private(messages.cut_off(row.id))
        await shown.show(self, row, await self._ended(row, outcome), target)

    async def reject(
        self, approval_id: int, *, user: str, reason: str | None, surface: Surface
    ) -> Reply:
        claim, row = await self.approvals.reject(approval_id, user, reason)
        if claim is not Claim.WON or row is None:
            raise CommandError(messages.claim_refused(approval_id, claim, row))
        await self.audit_decision(row, user, "rejected", "not run", reason or "")
        card = self._card(row, messages.approval_rejected(row, self.tz))
        await shown.show(self, row, card, self._surface_for(surface, row.channel))
        return Reply(text=f"Approval #{row.id} rejected.", private=True)

    def _guard(self, row: Approval | None) -> Guard | None:
        """The ceilings a request was made under, checked again by its final approval."""
        if row is None or not row.rules:
            return None
        requirement = rules_of(row, self.policy)
        if not requirement.ceilings:
            return None

        async def guard(conn: Any, current: Approval) -> str | None:
            return await over_ceiling(
                conn,
                requirement,
                current.args,
                now=self.approvals.clock(),
                tz=self.tz,
            )

        return guard

    # --- unknown outcomes ------------------------------------------------------------------

    async def check(self, approval_id: int, *, user: str) -> Reply:
        """Run the provider read that shows whether an unknown write happened."""
        row = await self.approvals.get(approval_id)
        if row is None:
            raise CommandError(f"There is no approval request #{approval_id}.")
        if row.status is not Status.UNKNOWN:
            raise CommandError(messages.nothing_to_check(row))
        command = self.commands.command(row.command_path)
        if command is None:
            raise CommandError(f"/{row.command_path} no longer exists; check at the provider.")
        args = grammar.validate(command, row.args)
        evidence = await self.runner.probe(command, args, user=user, channel=row.channel)
        await self.audit_decision(row, user, "checked", evidence.verdict, evidence.text)
        return messages.evidence(row, evidence, settle=row.unresolved and row.requester != user)

    async def resolve(
        self, approval_id: int, *, user: str, resolution: str, reason: str, surface: Surface
    ) -> Reply:
        """A person (not the requester) settles an unknown outcome, with a reason."""
        claim, row = await self.approvals.resolve(approval_id, user, resolution, reason)
        if claim is not Claim.WON or row is None:
            raise CommandError(messages.resolve_refused(approval_id, claim, row))
        await self.audit_decision(row, user, "resolved", resolution, reason)
        target = guarded(self._surface_for(surface, row.channel))
        card = self._card(row, messages.approval_resolved(row, self.tz))
        await target.update(row.ref, card, key=card_key(row.id))
        buttons: list[Button] = []
        command = self.commands.command(row.command_path)
        if resolution == "not done" and command is not None:
            with contextlib.suppress(grammar.FieldErrors):
                line = grammar.render(command, grammar.validate(command, row.args))
                buttons.append(Button(label="Request it again", command=line, style="primary"))
        return Reply(text=messages.resolved(row), buttons=buttons, private=True)

    async def asked_again(self, approval: Approval, hours: int) -> datetime | None:
        """When a reminder snoozed now is asked again (its schedule's extra run, or its next
        regular run when that comes first); None for a request no schedule made."""
        schedule = _schedule_of(approval)
        if schedule is None:
            return None
        return await self.schedules.asked_again(schedule, hours)

    async def snooze(self, approval: Approval, hours: int) -> None:
        """A snoozed reminder asks again later: its schedule fires once more in `hours`."""
        schedule = _schedule_of(approval)
        if schedule is not None:
            await self.schedules.postpone(schedule, hours)

    # --- the sweeper -----------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire old requests and settle executions whose runner is gone; update their cards."""
        for row in await self.approvals.expire_due():
            await self.audit_decision(row, "system", "expired", "not run", "")
            card = self._card(row, messages.approval_expired(row, self.tz))
            await shown.show(self, row, card, self.system_surface(row.channel))
        for row in await self.approvals.orphaned(stale_after=self.stale_after):
            assert row.outcome is not None  # orphaned() says why
            await self.audit_decision(row, "system", "recovered", Status.UNKNOWN.value, row.outcome)
            outcome = Outcome(Status.UNKNOWN, row.outcome, self._unknown_hint(row))
            await shown.show(self, row, await self._ended(row, outcome), self._system(row))
        await late.replay(self)  # answers the database could not take when they came
        await shown.sweep(self)  # ends the database kept from being shown
        await self.notices.sweep()

    def _unknown_hint(self, row: Approval) -> Reply | None:
        return shown.hint(self, row)

    def _system(self, row: Approval) -> Surface:
        return self.system_surface(row.channel)

    # --- helpers ---------------------------------------------------------------------------

    def _card(self, row: Approval, reply: Reply, state: Status | None = None) -> Reply:
        """A card, or an approved run's result, with the request's metadata for other apps."""
        return tagged(reply, row, self.commands.command(row.command_path), state)

    async def _ended(self, row: Approval, outcome: Outcome) -> Reply:
        """An ended request's card, naming everyone who approved it, in order."""
        votes = await self.approvals.votes(row.id)
        done = messages.approval_done(row, outcome, self.tz, votes=votes)
        return self._card(row, done, outcome.status)

    def _surface_for(self, surface: Surface, channel: str) -> Surface:
        """The clicking user's surface when it is the card's channel, else the channel's own."""
        same = getattr(surface, "channel", None) == channel
        return surface if same else self.system_surface(channel)

    async def audit_decision(
        self,
        row: Approval,
        user: str,
        decision: str,
        outcome: str,
        detail: str,
    ) -> None:
        await self.audit.record(
            Entry(
                user_id=user,
                channel=row.channel,
                command=f"/{row.command_path}",
                args=row.args,
                decision=decision,
                outcome=outcome,
                detail=detail,
                provider=row.provider,
                approval_id=row.id,
            )
        )


def _schedule_of(approval: Approval) -> int | None:
    """The schedule whose reminder made a request (origin `schedule:<id>`), or None."""
    return number_after("schedule:", approval.origin)
