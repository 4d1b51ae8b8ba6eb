"""The end of an approval, shown, and shown again when the database refused it the first time.

    ended (run, refused, rejected, withdrawn, expired, recovered, not run)
        ─► final card (an update, keyed by the card) ─► result (a post, `approval:<id>:result`)
        ─► the requester's note ─► shown_at (one UPDATE)
    sweep ─► final, shown_at unset, finished more than GRACE ago (never the flow showing it now)
        ─► claimed (shown_at set where unset: one replica) ─► the same card, result and note

Surfaces are guarded (showing never raises) but let the database's errors through here, so an
outbox row the database refused leaves `shown_at` unset instead of a card stuck at "running…"
and a result never posted. The outbox posts a key once (`bot.slack.outbox`), so a result the
first attempt handed in is not posted again; an update may be repeated harmlessly. A result is
shown again as its recorded summary: the provider's reply itself is not kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot import messages
from bot.approvals.cards import card_key
from bot.approvals.metadata import tagged
from bot.approvals.notices import Notifier
from bot.approvals.state import Approval, Approvals, Outcome, Status
from bot.storage.failures import DATABASE_ERRORS
from bot.storage.store import approvals as approval_rows
from bot.surface import Surface, guarded, letting_through
from commands import grammar
from commands.base import Command, Reply

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=60)
FINAL = (Status.DONE, Status.FAILED, Status.UNKNOWN, Status.REJECTED, Status.EXPIRED)


class Flow(Protocol):
    """What showing uses of the approval flow."""

    approvals: Approvals
    notices: Notifier
    tz: ZoneInfo
    system_surface: Callable[[str], Surface]

    @property
    def commands(self) -> Any: ...


def result_key(approval_id: int) -> str:
    """The outbox key of an approved run's result: posted once, however often it is shown."""
    return f"{card_key(approval_id)}:result"


async def show(
    flow: Flow, row: Approval, card: Reply | None, surface: Surface, result: Reply | None = None
) -> bool:
    """`row`'s final card, result and requester's note handed in, then marked shown; False when
    the database refused one of them (the sweeper shows it again)."""
    surface = guarded(surface)
    try:
        with letting_through(*DATABASE_ERRORS):
            if card is not None:
                await surface.update(row.ref, card, key=card_key(row.id))
            if result is not None:
                await surface.send(result, key=result_key(row.id))
            await flow.notices.decided(row.id)
        await _mark(flow.approvals, row.id)
    except DATABASE_ERRORS as exc:
        log.warning("approval #%s: its end is not shown yet (%s)", row.id, type(exc).__name__)
        return False
    return True


async def sweep(flow: Flow) -> None:
    """Show again the end of every final approval the database kept from being shown."""
    for row in await _unshown(flow.approvals, flow.approvals.clock() - GRACE):
        if not await _mark(flow.approvals, row.id):
            continue  # another replica shows it
        result = None
        if row.status is Status.DONE and row.outcome:
            result = _tagged(flow, row, Reply(text=row.outcome), row.status)
        surface = flow.system_surface(row.channel)
        if not await show(flow, row, await final_card(flow, row), surface, result):
            with contextlib.suppress(*DATABASE_ERRORS):  # else it stays as it is: not twice
                await _unmark(flow.approvals, row.id)
            continue
        log.info("approval #%s: its end was shown again", row.id)


async def final_card(flow: Flow, row: Approval) -> Reply:
    """The card a final approval ends with, as its own path drew it."""
    if row.status is Status.REJECTED:
        return _tagged(flow, row, messages.approval_rejected(row, flow.tz))
    if row.status is Status.EXPIRED:
        return _tagged(flow, row, messages.approval_expired(row, flow.tz))
    if row.status is Status.UNKNOWN and row.resolution is not None:
        return _tagged(flow, row, messages.approval_resolved(row, flow.tz))
    unknown = row.status is Status.UNKNOWN
    outcome = Outcome(row.status, row.outcome or "", hint(flow, row) if unknown else None)
    votes = await flow.approvals.votes(row.id)
    done = messages.approval_done(row, outcome, flow.tz, votes=votes)
    return _tagged(flow, row, done, row.status)


def hint(flow: Flow, row: Approval) -> Reply | None:
    """How to check a lost run by hand, when its command still exists and says."""
    command: Command[Any, Any] | None = flow.commands.command(row.command_path)
    if command is None or command.unknown_hint is None:
        return None
    try:
        return command.unknown_hint(grammar.validate(command, row.args))
    except grammar.FieldErrors:
        return None


def _tagged(flow: Flow, row: Approval, reply: Reply, state: Status | None = None) -> Reply:
    return tagged(reply, row, flow.commands.command(row.command_path), state)


async def _mark(approvals: Approvals, approval_id: int) -> bool:
    """shown_at set where unset: True for the one caller whose UPDATE changed it."""
    statement = (
        approval_rows.update()
        .where(approval_rows.c.id == approval_id, approval_rows.c.shown_at.is_(None))
        .values(shown_at=approvals.clock())
    )
    async with approvals.engine.begin() as conn:
        return bool((await conn.execute(statement)).rowcount == 1)


async def _unmark(approvals: Approvals, approval_id: int) -> None:
    statement = (
        approval_rows.update().where(approval_rows.c.id == approval_id).values(shown_at=None)
    )
    async with approvals.engine.begin() as conn:
        await conn.execute(statement)


async def _unshown(approvals: Approvals, before: datetime) -> list[Approval]:
    """Final approvals whose end was not shown, finished before `before`, oldest first."""
    query = (
        sa.select(approval_rows)
        .where(
            approval_rows.c.status.in_([s.value for s in FINAL]),
            approval_rows.c.shown_at.is_(None),
            approval_rows.c.finished_at <= before,
        )
        .order_by(approval_rows.c.id)
        .limit(100)
    )
    async with approvals.single.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [Approval.from_row(r) for r in rows]
