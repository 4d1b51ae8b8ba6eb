"""Commands as Workflow Builder steps (Slack's custom steps: https://api.slack.com/automation/
functions/custom-bolt), adapter-neutral: what a step is, how one runs, how it completes.

    function_executed ─► Steps.run ─► audit row (workflow, execution, step, requested_by)
                                   ─► Intake.run_step as `requested_by` (role check, validation,
                                      approval flow or executor: the path of a typed command)
        a read         ─► its reply's figures and text ─► completion, queued once ─► outbox
        an approval    ─► its card, as always; the step waits ─► decided (a Notifier) ─► queued
                          once: outputs with approval_id, state, decided_by; or the reason

A step's `callback_id` is its provider and words joined by `_`, dashes as `_`
(`voipcloud_move_funds`). Its inputs are its `Args` fields, with `requested_by` (a user ID)
besides; its outputs the reply's declared figures as text, exactly as sent, plus `text`.
Completions go through a queue (`Completions`: the outbox in Slack) in the transaction that
marks them queued, so a restart or a 429 completes a step once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Annotated, Any, Protocol, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from sqlalchemy.ext.asyncio import AsyncConnection

from bot import mrkdwn
from bot.approvals.cards import card_of
from bot.approvals.flow import Runner
from bot.approvals.notices import Notifier
from bot.approvals.state import Approval, Outcome, Status
from bot.errors import logged_reference
from bot.storage.audit import AuditLog, Entry
from bot.storage.steps import StepRuns
from bot.surface import MessageRef, Surface, SurfaceWrapper, guarded
from commands.base import Args, Command, Evidence, File, Provider, Reply
from commands.secrets import redact

log = logging.getLogger(__name__)

REQUESTED_BY = "requested_by"
TEXT = "text"
FILE_PERMALINK = "file_permalink"
DECISION_OUTPUTS = (
    ("approval_id", "Approval request number"),
    ("state", "How the request ended (done)"),
    ("decided_by", "Who approved it (user ID)"),
)
USER_ID = re.compile(r"^[UW][A-Z0-9]+$")  # a Slack user ID (U…, or W… in Enterprise Grid)


# --- what a step is ------------------------------------------------------------------------------


def callback_id(provider: str, command: Command[Any, Any]) -> str:
    """`voipcloud` + `partner-balance` → `voipcloud_partner_balance`."""
    return "_".join((provider, *command.words)).replace("-", "_")


class Owners(Protocol):
    """Who provides each command (the catalog)."""

    commands: list[Command[Any, Any]]

    def owner(self, command: Command[Any, Any]) -> str: ...


def steps_of(catalog: Owners) -> dict[str, Command[Any, Any]]:
    """Every command declared a step, by its callback_id."""
    return {callback_id(catalog.owner(c), c): c for c in catalog.commands if c.step}


def slack_type(info: FieldInfo) -> str:
    """A field's Slack parameter type (https://api.slack.com/automation/types): dates as
    `slack#/types/date`, whole numbers as `integer`, yes/no as `boolean`, everything else, money
    included (never a float), as `string`."""
    kind: Any = info.annotation
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) is Union or type(kind).__name__ == "UnionType":
            kind = next(a for a in get_args(kind) if a is not type(None))
        else:
            break
    if kind is bool:
        return "boolean"
    if kind is date:
        return "slack#/types/date"
    if kind is int:
        return "integer"
    return "string"


def _parameter(
    name: str, kind: str, title: str, description: str, required: bool
) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "title": title,
        "description": description,
        "is_required": required,
    }


def step_outputs(command: Command[Any, Any]) -> list[tuple[str, str]]:
    """The outputs a step completes with: its figures, `text`, and an approval's decision."""
    extra = list(DECISION_OUTPUTS) if command.approval else []
    return [*command.outputs, (TEXT, "The reply, in plain text"), *extra]


def function_definition(command: Command[Any, Any]) -> dict[str, Any]:
    """The step's entry in the manifest's `functions` (its callback_id is the key)."""
    inputs = {
        name: _parameter(
            name,
            slack_type(info),
            name.replace("_", " ").capitalize(),
            info.description or name,
            info.is_required(),
        )
        for name, info in command.args.model_fields.items()
    }
    inputs[REQUESTED_BY] = _parameter(
        REQUESTED_BY,
        "slack#/types/user_id",
        "Requested by",
        "who the step runs as: their role is checked, and an approval needs someone else",
        True,
    )
    outputs = {
        name: _parameter(name, "string", title, title, name in (TEXT, "approval_id"))
        for name, title in step_outputs(command)
    }
    waits = " It waits for a second person's approval." if command.approval else ""
    return {
        "title": f"/{command.path}",
        "description": f"{command.summary[:1].upper()}{command.summary[1:]}.{waits}",
        "input_parameters": inputs,
        "output_parameters": outputs,
    }


def functions_manifest(steps: Mapping[str, Command[Any, Any]]) -> dict[str, Any]:
    """The manifest's `functions`: every step by its callback_id."""
    return {name: function_definition(c) for name, c in sorted(steps.items())}


def declared_steps(providers: Sequence[Provider[Any, Any]]) -> dict[str, Command[Any, Any]]:
    """Every step the providers declare, by callback_id (no runtime needed: docs, tests)."""
    return {callback_id(p.name, c): c for p in providers for c in p.commands if c.step}


def input_values(command: Command[Any, Any], inputs: Mapping[str, Any]) -> dict[str, str]:
    """Slack's typed inputs as the text the grammar reads (`true` → `yes`); empty ones left out,
    so a field's default applies."""
    values: dict[str, str] = {}
    for name, value in inputs.items():
        if name == REQUESTED_BY or value is None or value == "":
            continue
        if isinstance(value, bool):
            values[name] = "yes" if value else "no"
        elif isinstance(value, list | tuple):
            values[name] = ",".join(str(v) for v in value)
        else:
            values[name] = str(value)
    return values


def reply_text(reply: Reply) -> str:
    """The reply as plain text: headline, sections, fields, table rows."""
    lines = [mrkdwn.plain(reply.text), *(mrkdwn.plain(s) for s in reply.sections)]
    lines += [f"{label}: {mrkdwn.plain(value)}" for label, value in reply.fields]
    if reply.table is not None:
        lines += [" | ".join(reply.table.columns)]
        lines += [" | ".join(row) for row in reply.table.rows]
    return "\n".join(line for line in lines if line)


def outputs_of(command: Command[Any, Any], reply: Reply) -> dict[str, str]:
    declared = {name for name, _ in command.outputs}
    figures = {k: v for k, v in reply.figures.items() if k in declared}
    return {**figures, TEXT: redact(reply_text(reply))}


def file_of(command: Command[Any, Any], reply: Reply) -> File | None:
    """The file whose link is an output (a step declaring `file_permalink`)."""
    wanted = any(name == FILE_PERMALINK for name, _ in command.outputs)
    return reply.files[0] if wanted and reply.files else None


# --- completing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """What a step completes with: outputs, or an error sentence. `file` is posted in `channel`
    first and its link becomes `file_permalink`; `card` is the approval card to note on if the
    workflow has stopped waiting."""

    execution: str
    outputs: dict[str, str] | None = None
    error: str | None = None
    file: File | None = None
    channel: str = ""
    card: int | None = None


class Completions(Protocol):
    """Where completions wait to be sent (the outbox in Slack; the console prints them)."""

    async def queue(self, conn: AsyncConnection, completion: Completion) -> int | None:
        """Queue it in the caller's transaction; returns what `send` takes."""
        ...

    async def send(self, queued: int | None) -> None:
        """Try to send it now (it stays queued if Slack fails)."""
        ...


class StepIntake(Protocol):
    """The dispatcher's entry point for a step: role check, validation, then as typed."""

    async def run_step(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> bool: ...


class Decisions(Protocol):
    async def get(self, approval_id: int) -> Approval | None: ...


@dataclass(frozen=True)
class StepEvent:
    """Slack's `function_executed` event, as much of it as a run needs (never its token)."""

    callback_id: str
    inputs: Mapping[str, Any]
    execution: str
    workflow: str


class StepSurface(SurfaceWrapper):
    """A step's view of what dispatch shows: private notes are kept (the last one is a failed
    step's sentence), a read's reply is kept as its outputs, and an approval's card goes on to
    the billing channel (its number noted from the card's key, and `linked` before the card is
    shown: nobody can approve it before the run knows which step waits for it)."""

    def __init__(
        self,
        inner: Surface,
        *,
        approval: bool,
        linked: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(inner)
        self.approval_step = approval
        self.linked = linked
        self.sentences: list[str] = []
        self.reply: Reply | None = None
        self.approval: int | None = None

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        if key is not None and (number := card_of(key)) is not None and self.approval is None:
            self.approval = number
            if self.linked is not None:
                await self.linked(number)
        if self.approval_step and not reply.private:
            return await self.inner.send(reply, key=key)
        if not reply.private:
            self.reply = reply
        return None

    async def private(self, text: str) -> None:
        self.sentences.append(text)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        if self.approval_step:
            await self.inner.update(ref, reply, key=key)


class Completer:
    """Completes steps once: a read's at once, an approval step's once its request is decided
    (as the flow's `Notifier`: `decided`, and `sweep` for any a restart left)."""

    def __init__(self, *, runs: StepRuns, approvals: Decisions, completions: Completions) -> None:
        self.runs = runs
        self.approvals = approvals
        self.completions = completions

    async def finish(self, completion: Completion) -> Completion | None:
        """Queue the completion unless this execution's was queued already; then send it."""

        async def queue(conn: AsyncConnection) -> int | None:
            return await self.completions.queue(conn, completion)

        won, queued = await self.runs.queue_once(completion.execution, queue)
        if not won:
            return None
        await self.completions.send(queued)
        return completion

    async def requested(self, row: Approval) -> None:
        return None

    async def decided(self, approval_id: int) -> None:
        """Complete the step waiting for this request, once it has ended; never raises."""
        try:
            run = await self.runs.of_approval(approval_id)
            if run is None or run.queued:
                return
            row = await self.approvals.get(approval_id)
            if row is None or row.status in (Status.PENDING, Status.EXECUTING):
                return
            ended = decision(row, run.function_execution_id, run.outputs, run.file, run.file_name)
            await self.finish(ended)
        except Exception:
            logged_reference(log, f"completing the step of approval #{approval_id} failed")

    async def sweep(self) -> None:
        """Steps whose request ended while nobody completed them (a restart in between)."""
        for approval_id in await self.runs.waiting():
            await self.decided(approval_id)


class Steps:
    """Runs a step as its `requested_by`, through the path of a typed command."""

    def __init__(
        self,
        *,
        catalog: Owners,
        intake: StepIntake,
        runs: StepRuns,
        audit: AuditLog,
        completer: Completer,
        surfaces: Callable[[str], Surface],
        channel: str | None,
    ) -> None:
        self.steps = steps_of(catalog)
        self.intake = intake
        self.runs = runs
        self.audit = audit
        self.completer = completer
        self.surfaces = surfaces
        self.channel = channel

    async def approval_of(self, execution: str) -> int | None:
        """The approval a step's run is waiting for, if any."""
        run = await self.runs.get(execution)
        return run.approval_id if run is not None else None

    async def run(self, event: StepEvent) -> Completion | None:
        """Run one step. Returns the completion queued (None while an approval step waits, or
        when this execution was run already)."""
        command = self.steps.get(event.callback_id)
        user = str(event.inputs.get(REQUESTED_BY) or "")
        if not await self.runs.start(event.execution, event.workflow, event.callback_id, user):
            log.info("step execution %s arrived again; it runs once", event.execution)
            return None
        await self.audit.record(
            Entry(
                user_id=user[:40] or "?",
                channel=(self.channel or "")[:40],
                command=command.audit_name if command else event.callback_id[:120],
                args={k: redact(str(v))[:200] for k, v in event.inputs.items()},
                decision="step",
                outcome="started",
                detail=(
                    f"workflow {event.workflow}, execution {event.execution}, "
                    f"step {event.callback_id}, requested by {user or 'nobody'}"
                ),
            )
        )
        refusal = self._refusal(command, user)
        if refusal is not None or command is None or self.channel is None:
            return await self.completer.finish(Completion(event.execution, error=refusal))

        async def linked(approval: int) -> None:
            await self.runs.link(event.execution, approval)

        surface = StepSurface(
            guarded(self.surfaces(self.channel)), approval=command.approval, linked=linked
        )
        values = input_values(command, event.inputs)
        ok = await self.intake.run_step(
            command, values, user=user, channel=self.channel, surface=surface
        )
        if command.approval and ok and surface.approval is not None:
            await self.completer.decided(surface.approval)  # decided already (a quick reject)?
            return None
        if not ok or surface.reply is None:
            said = surface.sentences[-1] if surface.sentences else "The step did not run."
            return await self.completer.finish(
                Completion(event.execution, error=mrkdwn.plain(said))
            )
        completion = Completion(
            event.execution,
            outputs=outputs_of(command, surface.reply),
            file=file_of(command, surface.reply),
            channel=self.channel,
        )
        return await self.completer.finish(completion)

    def _refusal(self, command: Command[Any, Any] | None, user: str) -> str | None:
        if command is None:
            return "This app offers no such step any more; remove it from the workflow."
        if not USER_ID.match(user):
            return "requested_by must be a person (a Slack user ID such as U012AB3CD)."
        if self.channel is None:
            return "BILLING_CHANNEL is not set, so the bot has no channel for a step's work."
        return None


def decision(
    row: Approval,
    execution: str,
    outputs: Mapping[str, str],
    content: bytes | None,
    file_name: str | None,
) -> Completion:
    """An ended request as its step's completion: outputs when done, else the reason."""
    if row.status is Status.DONE:
        decided = {
            "approval_id": str(row.id),
            "state": row.status.value,
            "decided_by": row.decided_by or "",
        }
        file = (
            File(filename=file_name or "file", content=content, title=file_name or "file")
            if content is not None
            else None
        )
        return Completion(
            execution,
            outputs={**outputs, **decided},
            file=file,
            channel=row.channel,
            card=row.id,
        )
    return Completion(execution, error=reason(row), card=row.id)


def reason(row: Approval) -> str:
    """Why an approval step failed, in one sentence a workflow's people can act on."""
    number = f"Approval #{row.id} (/{row.command_path})"
    if row.status is Status.REJECTED:
        why = f": {row.reason}" if row.reason else ""
        if row.decided_by == row.requester:
            return f"{number} was withdrawn by its requester{why}."
        return f"{number} was rejected by <@{row.decided_by}>{why}."
    if row.status is Status.EXPIRED:
        return f"{number} expired: nobody decided it in time. Nothing was sent."
    if row.status is Status.UNKNOWN:
        return (
            f"{number}: the outcome is unknown ({row.outcome}); it may have happened. Do not "
            f"run it again: check it first with `/billing check-outcome {row.id}`."
        )
    return f"{number} failed: {row.outcome or 'no reason given'}."


# --- an approved run's outputs, and who is told -------------------------------------------------


class KeepingRunner:
    """The flow's runner, keeping what an approved run of a step produced (its outputs, its
    file) for the step's completion; the file is posted with the completion, so not twice."""

    def __init__(self, runner: Runner, runs: StepRuns) -> None:
        self.runner = runner
        self.runs = runs

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
        outcome = await self.runner.execute(
            command, args, user=user, channel=channel, surface=surface, approval=approval, note=note
        )
        reply = outcome.reply
        if approval is None or not command.step or reply is None:
            return outcome
        try:
            if await self.runs.of_approval(approval.id) is None:
                return outcome
            file = file_of(command, reply)
            kept = (file.filename, file.content) if file else None
            await self.runs.keep(approval.id, outputs_of(command, reply), kept)
        except Exception:
            logged_reference(log, f"keeping the outputs of approval #{approval.id} failed")
            return outcome
        if file is None:
            return outcome
        rest = tuple(f for f in reply.files if f is not file)
        return replace(outcome, reply=replace(reply, files=rest))

    async def probe(
        self, command: Command[Any, Any], args: Args, *, user: str, channel: str
    ) -> Evidence:
        return await self.runner.probe(command, args, user=user, channel=channel)


class Told:
    """Several notifiers as one (the approvers' notices, then the waiting steps)."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers: Sequence[Notifier] = notifiers

    async def requested(self, row: Approval) -> None:
        for notifier in self.notifiers:
            await notifier.requested(row)

    async def decided(self, approval_id: int) -> None:
        for notifier in self.notifiers:
            await notifier.decided(approval_id)

    async def sweep(self) -> None:
        for notifier in self.notifiers:
            await notifier.sweep()


class ShownCompletions:
    """`Completions` without Slack (the console, tests): each completion is shown in its
    channel as what Slack would be sent."""

    def __init__(self, surfaces: Callable[[str], Surface], channel: str | None) -> None:
        self.surfaces = surfaces
        self.channel = channel
        self.waiting: dict[int, Completion] = {}

    async def queue(self, conn: AsyncConnection, completion: Completion) -> int | None:
        number = len(self.waiting) + 1
        self.waiting[number] = completion
        return number

    async def send(self, queued: int | None) -> None:
        completion = self.waiting.pop(queued or 0, None)
        if completion is None or self.channel is None:
            return
        await guarded(self.surfaces(self.channel)).send(shown(completion))


def shown(completion: Completion) -> Reply:
    """A completion as people read it: the method Slack would get, and what with."""
    if completion.outputs is None:
        return Reply(
            text=f"Step `{completion.execution}`: `functions.completeError`",
            sections=[completion.error or ""],
        )
    fields = list(completion.outputs.items())
    if completion.file is not None:
        fields.append((FILE_PERMALINK, f"(the link of {completion.file.filename})"))
    return Reply(
        text=f"Step `{completion.execution}`: `functions.completeSuccess`",
        fields=[(k, v) for k, v in fields if k != TEXT],
        sections=[completion.outputs.get(TEXT, "")],
        files=[completion.file] if completion.file else (),
    )
