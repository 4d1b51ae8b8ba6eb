"""Workflow Builder steps in Slack: the `function_executed` listener, and completions sent
through the outbox.

    function_executed ─► FunctionExecuted (ack) ─► bot.steps.Steps.run as `requested_by`
    Completion ─► outbox row (`functions.complete`), in the transaction that marks it queued
               ─► StepDelivery: the file first (files.upload v2, its permalink kept), then
                  functions.completeSuccess | functions.completeError

The event's `bot_access_token` (a short-lived token for one execution) is never read: Slack
accepts `functions.completeSuccess` and `functions.completeError` with the app's own bot token
("Bot tokens: no scope required", https://api.slack.com/methods/functions.completeSuccess), so
completions are outbox rows like any message and nothing secret is stored. A 429 or a restart
leaves the row waiting; `execution_not_in_running_state` (the workflow stopped waiting: it was
cancelled, or timed out) is final: recorded, audited, and said in the card's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.approvals.cards import card_key
from bot.slack.failures import classify
from bot.steps import FILE_PERMALINK, Completion, StepEvent, Steps
from bot.storage.audit import AuditLog, Entry
from bot.storage.steps import StepRuns
from bot.storage.store import deliveries

log = logging.getLogger(__name__)

COMPLETE = "functions.complete"  # the outbox's method name for completions
NOT_RUNNING = "execution_not_in_running_state"  # functions.completeSuccess's documented error

Ack = Callable[..., Awaitable[object]]


class Notice(Protocol):
    """`Outbox.notice`: a message about another (a reply in the card's thread), queued."""

    async def __call__(self, channel: str, params: dict[str, Any], *, about: str) -> None: ...


class Rows(Protocol):
    """The outbox, as completions use it."""

    def queued(
        self, method: str, channel: str, params: dict[str, Any], *, content: bytes | None = None
    ) -> dict[str, Any]: ...

    async def attempt(self, row_id: int) -> Any: ...


class SlackCompletions:
    """`bot.steps.Completions` in Slack: outbox rows."""

    def __init__(self, outbox: Rows) -> None:
        self.outbox = outbox

    async def queue(self, conn: AsyncConnection, completion: Completion) -> int | None:
        params: dict[str, Any] = {"function_execution_id": completion.execution}
        if completion.outputs is not None:
            params["outputs"] = completion.outputs
        else:
            params["error"] = completion.error or "The step failed."
        if completion.file is not None:
            params["file"] = {"filename": completion.file.filename, "title": completion.file.title}
        if completion.card is not None:
            params["card"] = completion.card
        content = completion.file.content if completion.file else None
        values = self.outbox.queued(COMPLETE, completion.channel or "-", params, content=content)
        result = await conn.execute(deliveries.insert().values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def send(self, queued: int | None) -> None:
        if queued is not None:
            await self.outbox.attempt(queued)


class StepDelivery:
    """Sends one completion row (the outbox calls it); raises what the outbox should retry."""

    def __init__(self, runs: StepRuns, audit: AuditLog) -> None:
        self.runs = runs
        self.audit = audit

    async def deliver(
        self,
        client: AsyncWebClient,
        channel: str,
        params: dict[str, Any],
        content: bytes | None,
        notice: Notice,
    ) -> None:
        execution = str(params["function_execution_id"])
        error = params.get("error")
        try:
            if "outputs" in params:
                error = await self._success(client, execution, channel, params, content)
            else:
                await client.functions_completeError(
                    function_execution_id=execution, error=str(error)
                )
        except SlackApiError as exc:
            if classify(exc).error != NOT_RUNNING:
                raise
            await self._not_running(execution, channel, params, notice)
            return
        result = "failed" if error else "completed"
        await self.runs.finished(execution, result)
        await self._audit(execution, result, error)

    async def _success(
        self,
        client: AsyncWebClient,
        execution: str,
        channel: str,
        params: dict[str, Any],
        content: bytes | None,
    ) -> str | None:
        """functions.completeSuccess with the outputs. When Slack refuses them for good
        (`parameter_validation_failed`: a workflow saved against an older definition), the step
        fails instead, saying the command ran, so the workflow stops rather than waits; returns
        that sentence (None on success)."""
        outputs = {str(k): str(v) for k, v in dict(params["outputs"]).items()}
        if params.get("file"):
            outputs[FILE_PERMALINK] = await self._file(
                client, execution, channel, params["file"], content
            )
        try:
            await client.functions_completeSuccess(function_execution_id=execution, outputs=outputs)
            return None
        except SlackApiError as exc:
            failure = classify(exc)
            if failure.retry or failure.error == NOT_RUNNING:
                raise
            refused = (
                f"The command ran, but Slack refused its outputs ({failure.error}); open the "
                "workflow in Workflow Builder to update this step."
            )
        await client.functions_completeError(function_execution_id=execution, error=refused)
        return refused

    async def _file(
        self,
        client: AsyncWebClient,
        execution: str,
        channel: str,
        meta: dict[str, Any],
        content: bytes | None,
    ) -> str:
        """The file's link: posted once (a retried completion finds the link it kept)."""
        run = await self.runs.get(execution)
        if run is not None and run.permalink:
            return run.permalink
        answer = await client.files_upload_v2(
            channel=channel,
            file=content or b"",
            filename=str(meta.get("filename", "file")),
            title=str(meta.get("title", "")),
        )
        files = answer.get("files") or [answer.get("file") or {}]
        link = str(files[0].get("permalink") or "")
        await self.runs.remember_link(execution, link)
        return link

    async def _not_running(
        self, execution: str, channel: str, params: dict[str, Any], notice: Notice
    ) -> None:
        await self.runs.finished(execution, "not running")
        await self._audit(execution, "not running", "the workflow was no longer waiting")
        card = params.get("card")
        if card is None or channel == "-":
            return
        note = (
            "The workflow that asked for this was no longer waiting for it (Slack: "
            f"`{NOT_RUNNING}`), so its next steps did not run."
        )
        # A reply in the card's thread, through the outbox like the approvers' reminders
        # (bot.slack.notices: `thread` puts it under the card once the card has landed).
        await notice(
            channel, {"message": {"text": note}, "thread": True}, about=card_key(int(card))
        )

    async def _audit(self, execution: str, result: str, error: Any) -> None:
        run = await self.runs.get(execution)
        if run is None:
            return
        detail = f"workflow {run.workflow_execution_id}, execution {execution}, step "
        detail += f"{run.callback_id}" + (f": {error}" if error else "")
        await self.audit.record(
            Entry(
                user_id=run.requested_by[:40] or "?",
                channel="workflow",
                command=run.callback_id[:120],
                args={},
                decision="step",
                outcome=result,
                detail=detail,
                approval_id=run.approval_id,
            )
        )


class FunctionExecuted:
    """`function_executed` (https://api.slack.com/events/function_executed): ack, then run the
    step. The event's `bot_access_token` is left where it is."""

    def __init__(self, steps: Steps, after_ack: Callable[[Awaitable[Any], None], None]) -> None:
        self.steps = steps
        self.after_ack = after_ack

    async def __call__(self, ack: Ack, event: dict[str, Any]) -> None:
        await ack()
        step = StepEvent(
            callback_id=str((event.get("function") or {}).get("callback_id", "")),
            inputs=dict(event.get("inputs") or {}),
            execution=str(event.get("function_execution_id", "")),
            workflow=str(event.get("workflow_execution_id", "")),
        )
        self.after_ack(self.steps.run(step), None)
