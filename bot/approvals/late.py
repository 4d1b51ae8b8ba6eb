"""An approved run the database could not follow: nothing runs twice, no answer is lost.

    claim ─► audit "approved" fails ─► not run: the answer "failed, not run" ──┐
    run ─► provider answers ─► audit "executed" / finish fails ─► the answer ──┤
                                                                               ▼
                                      the spool (bot/storage/spool.py), redacted, on local disk
                                                                               │ replay: at start
                                                                               ▼ and every sweep
        executing ─► unknown ("recovered", as the sweeper settles a run whose process is gone)
        unknown ─► settled with the kept answer (`ApprovalFlow.resolve`, as by a person: done |
                   not done, audited "resolved" by `system`) ─► card ─► requester told

So a provider call whose answer the database did not take ends *outcome unknown* and is settled
with that answer once the database is back; without a spool file (the disk refused it too, or
the process died first) it stays unknown for a person to check, as any lost answer does. The
provider is never called again: the spool holds an answer, never a request.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot import messages
from bot.approvals import shown
from bot.approvals.metadata import tagged
from bot.approvals.notices import Notifier
from bot.approvals.state import Approval, Approvals, Outcome, Status
from bot.storage.failures import DATABASE_ERRORS
from bot.storage.spool import Answer, Spool
from bot.surface import Surface, guarded
from commands.base import Reply

log = logging.getLogger(__name__)

NOT_RUN = "not run: the database failed as it was approved"
LATE = "the database could not record the answer; it was kept and is recorded now"
KEPT = (
    "Approval #{id} ran, but the database could not record its answer. The answer is kept "
    "and the card will show it once the database is back; it will not run again."
)
NOT_ADMITTED = (
    "Approval #{id} was not run: the database failed as it was approved. Nothing was sent; "
    "the card will say so once the database is back."
)
RESOLUTIONS = {Status.DONE.value: "done", Status.FAILED.value: "not done"}


class Flow(Protocol):
    """What the late path uses of the approval flow."""

    approvals: Approvals
    notices: Notifier
    spool: Spool
    tz: ZoneInfo
    system_surface: Callable[[str], Surface]

    @property
    def commands(self) -> Any: ...

    async def audit_decision(
        self, row: Approval, user: str, decision: str, outcome: str, detail: str
    ) -> None: ...

    async def resolve(
        self, approval_id: int, *, user: str, resolution: str, reason: str, surface: Surface
    ) -> Reply: ...


async def admitted(flow: Flow, row: Approval, user: str, detail: str) -> bool:
    """The approval that claimed a run is audited before the run; False when the database
    refused that row: then nothing runs, and "not run" is kept for the replay to record."""
    try:
        await flow.audit_decision(row, user, "approved", Status.EXECUTING.value, detail)
        return True
    except DATABASE_ERRORS as exc:
        log.warning("approval #%s: not run, its approval could not be audited (%s)", row.id, exc)
    try:
        await flow.approvals.finish(row.id, Status.FAILED, NOT_RUN)
    except DATABASE_ERRORS:  # still away: the replay records it (unknown, settled not done)
        flow.spool.keep(Answer(approval_id=row.id, approver=user, status="failed", summary=NOT_RUN))
        return False
    with contextlib.suppress(*DATABASE_ERRORS):
        await flow.audit_decision(row, user, "approved", Status.FAILED.value, NOT_RUN)
    card = _card(flow, row, Outcome(Status.FAILED, NOT_RUN))
    await shown.show(flow, row, card, flow.system_surface(row.channel))
    return False


async def recorded(
    flow: Flow, row: Approval, user: str, outcome: Outcome, unaudited: str | None
) -> bool:
    """The run's audit row (when the run did not write its own) and its finish; False when the
    database refused them: the answer is kept for the replay, the card left to it."""
    try:
        if unaudited:
            await flow.audit_decision(row, user, unaudited, outcome.status.value, outcome.summary)
        await flow.approvals.finish(row.id, outcome.status, outcome.summary)
        return True
    except DATABASE_ERRORS as exc:
        log.warning("approval #%s: its answer could not be recorded (%s)", row.id, exc)
    flow.approvals.let_go(row.id)  # else the replay would wait for this run, which is over
    await _keep(flow, answer_of(row.id, user, outcome))
    return False


def answer_of(approval_id: int, approver: str, outcome: Outcome) -> Answer:
    return Answer(
        approval_id=approval_id,
        approver=approver,
        status=outcome.status.value,
        summary=outcome.summary,
        provider_status=outcome.provider_status,
    )


async def _keep(flow: Flow, answer: Answer) -> None:
    """Kept on disk, then recorded at once if the database is back already (a blip)."""
    flow.spool.keep(answer)
    try:
        await replay(flow, only=answer.approval_id)
    except DATABASE_ERRORS:
        pass  # still away: the sweeper replays it


async def replay(flow: Flow, *, only: int | None = None) -> None:
    """Record every kept answer the database can take now (`only`: one approval's)."""
    for answer in flow.spool.pending():
        if only is not None and answer.approval_id != only:
            continue
        if flow.approvals.in_flight(answer.approval_id):
            continue  # its run is still recording it
        await _settle(flow, answer)
        flow.spool.drop(answer.approval_id)


async def _settle(flow: Flow, answer: Answer) -> None:
    row = await flow.approvals.get(answer.approval_id)
    if row is None:
        log.error("approval #%s: a kept answer for no approval; dropped", answer.approval_id)
        return
    if row.status is Status.EXECUTING:
        await flow.approvals.finish(row.id, Status.UNKNOWN, LATE)
        row = await flow.approvals.get(row.id)
        assert row is not None
        await flow.audit_decision(row, "system", "recovered", Status.UNKNOWN.value, LATE)
        if answer.status not in RESOLUTIONS:  # the provider's answer was itself lost
            card = _card(flow, row, Outcome(Status.UNKNOWN, LATE, shown.hint(flow, row)))
            await shown.show(flow, row, card, flow.system_surface(row.channel))
    if row.unresolved and answer.status in RESOLUTIONS:
        reason = f"the provider's answer, recorded late: {answer.summary}"
        surface = guarded(flow.system_surface(row.channel))
        resolution = RESOLUTIONS[answer.status]
        await flow.resolve(
            row.id, user="system", resolution=resolution, reason=reason, surface=surface
        )
        await shown.show(flow, row, None, surface)  # resolve updated its card
        log.info("approval #%s: settled %s with its kept answer", row.id, resolution)


def _card(flow: Flow, row: Approval, outcome: Outcome) -> Reply:
    command = flow.commands.command(row.command_path)
    return tagged(messages.approval_done(row, outcome, flow.tz), row, command, outcome.status)
