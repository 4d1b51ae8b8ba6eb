"""What an approval must bring when its rules ask: a reason, and the approver's current code.

    approve ─► the request's rules ─► neither asked: on to the claim
                                  └► a code asked, approver not enrolled: refused, audited
                                  └► an answer missing: the approval's form opens (or how to type
                                     it), nothing counts
                                  └► reason too short: refused
                                  └► code checked (bot.approvals.stepup), every try audited
                                     ─► ok: on to the claim | refused

The flow asks this before the claim, so a click without the answers, or with a wrong, replayed
or locked-out code, never counts as an approval. Which rules apply comes from the request's
stored rule names and the policy in force (`rules_of`), as its ceilings do.
"""

from __future__ import annotations

from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from bot import messages
from bot.approvals import stepup_messages as say
from bot.approvals.policy import Policy, rules_of
from bot.approvals.state import Approval, Status
from bot.approvals.stepup import Check, Enrolment, Verdict
from bot.storage.audit import AuditLog, Entry
from bot.surface import Surface
from commands.base import CommandError, Form, FormField, Reply

REASON_WORDS = 2
REASON_CHARS = 8
STEP_UP = "step-up"  # the audit decision of every code tried


class Codes(Protocol):
    """The step-up service (`bot.approvals.stepup.StepUp`)."""

    async def status(self, user: str) -> Enrolment: ...

    async def verify(self, user: str, code: str) -> Check: ...


class Voters(Protocol):
    async def votes(self, approval_id: int) -> list[str]: ...


class Asker(Protocol):
    """Opens the approval's form for the missing answers; False where no form can open."""

    async def __call__(
        self, surface: Surface, approval_id: int, *, code: bool, reason: bool
    ) -> bool: ...


class Admission(Protocol):
    """What the flow asks before a claim (this module's `Gate`)."""

    async def admit(
        self,
        row: Approval | None,
        *,
        user: str,
        code: SecretStr | None,
        reason: str | None,
        surface: Surface,
    ) -> Reply | None: ...


def reason_problem(reason: str, what: str) -> str | None:
    """The sentence refusing a reason too short to say why, or None."""
    text = reason.strip()
    if len(text.split()) >= REASON_WORDS and len(text) >= REASON_CHARS:
        return None
    return say.reason_too_short(what, REASON_WORDS)


def approval_form(approval_id: int, *, code: bool, reason: bool) -> Form:
    """The answers an approval's rules ask for (the request number travels with the form)."""
    fields = []
    if code:
        fields.append(
            FormField(
                name="code",
                label="Authenticator code",
                kind="secret",
                placeholder="123456",
                hint="the 6 digits your authenticator app shows now for billing-bot",
            )
        )
    if reason:
        fields.append(
            FormField(
                name="reason",
                label="Why do you approve?",
                kind="multiline",
                hint="a few words; shown on the card and kept in the audit log",
            )
        )
    return Form(
        title=f"Approve #{approval_id}",
        submit="Approve",
        fields=fields,
        fixed={"id": str(approval_id)},
    )


def reject_form(approval_id: int) -> Form:
    return Form(
        title=f"Reject #{approval_id}",
        submit="Reject",
        fields=[
            FormField(
                name="reason",
                label="Why do you reject it?",
                kind="multiline",
                hint="a few words; shown on the card and kept in the audit log",
            )
        ],
        fixed={"id": str(approval_id)},
    )


class Gate:
    def __init__(
        self,
        *,
        codes: Codes,
        policy: Policy,
        audit: AuditLog,
        voters: Voters,
        ask: Asker,
        tz: ZoneInfo,
    ) -> None:
        self.codes = codes
        self.policy = policy
        self.audit = audit
        self.voters = voters
        self.ask = ask
        self.tz = tz

    async def admit(
        self,
        row: Approval | None,
        *,
        user: str,
        code: SecretStr | None,
        reason: str | None,
        surface: Surface,
    ) -> Reply | None:
        """None: go on to the claim. A reply: a form was opened for the answers, and nothing
        counted yet. CommandError: refused (the sentence says why)."""
        if row is None or row.status is not Status.PENDING or row.requester == user:
            return None  # the claim refuses these with its own sentence
        requirement = rules_of(row, self.policy)
        if not requirement.step_up and not requirement.reason:
            return None
        if user in await self.voters.votes(row.id):
            return None  # "you have already approved" comes from the claim
        if requirement.step_up and await self.codes.status(user) is not Enrolment.ENROLLED:
            await self._audit(row, user, Verdict.NOT_ENROLLED)
            raise CommandError(say.step_up_not_enrolled(row.id))
        asked = {"code": requirement.step_up, "reason": requirement.reason}
        if (requirement.step_up and code is None) or (requirement.reason and reason is None):
            if await self.ask(surface, row.id, **asked):
                return Reply(text=say.approval_asked(row.id, **asked), private=True)
            raise CommandError(say.approval_unasked(row.id, **asked))
        if requirement.reason:
            assert reason is not None  # asked for above when missing
            if problem := reason_problem(reason, f"Approving #{row.id}"):
                raise CommandError(problem)
        if requirement.step_up:
            assert code is not None  # asked for above when missing
            check = await self.codes.verify(user, code.get_secret_value())
            await self._audit(row, user, check.verdict)
            if check.verdict is not Verdict.OK:
                until = messages.when(check.locked_until, self.tz) if check.locked_until else None
                refusal = say.code_refused(row.id, check.verdict, check.tries_left, until)
                raise CommandError(refusal)
        return None

    async def _audit(self, row: Approval, user: str, verdict: Verdict) -> None:
        """One row per try, with its result: never the code."""
        await self.audit.record(
            Entry(
                user_id=user,
                channel=row.channel,
                command=f"/{row.command_path}",
                args=row.args,
                decision=STEP_UP,
                outcome=verdict.value,
                detail=f"approval #{row.id}",
                provider=row.provider,
                approval_id=row.id,
            )
        )
