"""Who is told about a request besides its card: the people who can decide it, its requester.

    requested ─► everyone who could approve it (the role it needs, or higher: listed users
                 and the members of listed user groups; never the requester)
                 ─► notified_at (one conditional UPDATE) ─► a direct message each, with a link
    sweep     ─► requests nobody was told of yet (a group lookup failed, a replica stopped)
                 ─► as above
              ─► half its time to live gone, undecided ─► reminded_at (one conditional UPDATE)
                 ─► one reminder in the card's thread, naming who can still approve it
    decided   ─► its requester: a direct message with the decision or the expiry

The flow calls these after the state and the audit rows are written, and they never raise into
it: a notice that cannot be made now is logged, and the approvers' messages and the reminder
are tried again by the next sweep, since their mark is set only once the people are known.
Where they go is a `Post`: in Slack the outbox (`bot.slack.notices`), so a Slack failure delays
a notice and never loses it or holds the request back. The marks make several replicas tell
the approvers once and remind once. A notice decides nothing, so it is not audited: the log
says who was told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot import messages
from bot.approvals.state import Approval, Approvals, Status
from bot.errors import logged_reference
from bot.storage.store import approvals as approval_rows
from bot.surface import Surface, guarded, passes
from commands.base import Reply, Role

log = logging.getLogger(__name__)

# The flow tells the approvers of a request it has just made itself; the sweep takes over only
# after this long, so it never races the flow to a card that is not in the outbox yet.
GRACE = timedelta(minutes=1)


class Notifier(Protocol):
    """What the flow tells (`Notices`): never raises."""

    async def requested(self, row: Approval) -> None: ...

    async def decided(self, approval_id: int) -> None: ...

    async def sweep(self) -> None: ...


class Holders(Protocol):
    """Who holds a role (`bot.roles.Roles`)."""

    async def holders(self, role: Role) -> list[str]: ...


class Post(Protocol):
    """Where notices go: Slack's outbox (`bot.slack.notices.SlackNotices`) or, without Slack,
    the surfaces (`SurfaceNotices`)."""

    async def direct(self, user: str, reply: Reply, *, card: Approval) -> None:
        """`reply` to `user` alone, with a link to `card`'s message once it has landed."""
        ...

    async def thread(self, card: Approval, reply: Reply) -> None:
        """`reply` in the thread of `card`'s message, once it has landed."""
        ...


class Notices:
    def __init__(
        self,
        *,
        approvals: Approvals,
        roles: Holders,
        post: Post,
        tz: ZoneInfo,
        notify_approvers: bool,
    ) -> None:
        self.approvals = approvals
        self.roles = roles
        self.post = post
        self.tz = tz
        self.notify_approvers = notify_approvers

    async def requested(self, row: Approval) -> None:
        """A direct message to everyone who could approve a new request, unless
        BILLING_NOTIFY_APPROVERS is off."""
        if not self.notify_approvers:
            return
        try:
            people = await self._can_approve(row)
            if not await self._mark(row.id, approval_rows.c.notified_at):
                return  # decided already, or another replica told them
            reply = messages.approver_notice(row, self.tz)
            for user in people:
                await self.post.direct(user, reply, card=row)
        except Exception:
            logged_reference(log, f"telling the approvers of #{row.id} failed")
            return
        log.info("approval #%s: %s told", row.id, ", ".join(people) or "nobody")

    async def decided(self, approval_id: int) -> None:
        """The requester learns how their request ended (not a withdrawal of their own, and not
        a schedule, which has nobody to tell)."""
        try:
            row = await self.approvals.get(approval_id)
            if row is None or not _person(row.requester) or row.decided_by == row.requester:
                return
            if row.status in (Status.PENDING, Status.EXECUTING):
                return
            notice = messages.decision_notice(row, self.tz, await self.approvals.votes(row.id))
            await self.post.direct(row.requester, notice, card=row)
        except Exception as exc:
            if passes(exc):  # the end is shown again later (bot/approvals/shown.py)
                raise
            logged_reference(log, f"telling the requester of #{approval_id} failed")

    async def sweep(self) -> None:
        """Approvers nobody told yet, and the reminder of requests half their time to live."""
        now = self.approvals.clock()
        for row in await self._open_untold(now):
            if self.notify_approvers and row.notified_at is None and row.created_at <= now - GRACE:
                await self.requested(row)
            if row.reminded_at is None and _halfway(row) <= now:
                await self._remind(row)

    async def _remind(self, row: Approval) -> None:
        try:
            votes = await self.approvals.votes(row.id)
            people = await self._can_approve(row, votes)
            if not await self._mark(row.id, approval_rows.c.reminded_at):
                return
            reminder = messages.approval_reminder(row, votes, people, _needed(row), self.tz)
            await self.post.thread(row, reminder)
        except Exception:
            logged_reference(log, f"reminding of #{row.id} failed")
            return
        log.info("approval #%s: reminded in its thread", row.id)

    async def _can_approve(self, row: Approval, votes: Sequence[str] = ()) -> list[str]:
        """Who could approve `row` now: its role's holders, less its requester and its voters."""
        left_out = {row.requester, *votes}
        return [user for user in await self.roles.holders(_needed(row)) if user not in left_out]

    async def _mark(self, approval_id: int, column: sa.Column[datetime]) -> bool:
        """Set `column` on a pending request where it is unset: True for the one caller (of
        every replica) whose UPDATE changed the row."""
        statement = (
            approval_rows.update()
            .where(
                approval_rows.c.id == approval_id,
                approval_rows.c.status == Status.PENDING.value,
                column.is_(None),
            )
            .values({column: self.approvals.clock()})
        )
        async with self.approvals.engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount == 1)

    async def _open_untold(self, now: datetime) -> list[Approval]:
        """Pending requests, not expired, whose approvers or thread are still to be told."""
        query = (
            sa.select(approval_rows)
            .where(
                approval_rows.c.status == Status.PENDING.value,
                approval_rows.c.expires_at > now,
                sa.or_(
                    approval_rows.c.notified_at.is_(None), approval_rows.c.reminded_at.is_(None)
                ),
            )
            .order_by(approval_rows.c.id)
        )
        async with self.approvals.single.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Approval.from_row(r) for r in rows]


def _needed(row: Approval) -> Role:
    """The role a request's approvals need: the one its rules name, else approver."""
    return next((r for r in Role if r.label == row.approver_role), Role.APPROVER)


def _halfway(row: Approval) -> datetime:
    return row.created_at + (row.expires_at - row.created_at) / 2


def _person(who: str) -> bool:
    """A Slack user ID (U…/W…), not a schedule (`schedule:3`)."""
    return who[:1] in ("U", "W")


class Opener(Protocol):
    """Where a person's direct messages open (`bot.desk.DirectMessages`)."""

    async def open(self, user: str) -> Surface | None: ...


class SurfaceNotices:
    """Notices without Slack (the console, tests): a direct message goes where the runtime's
    direct messages open (the system surface of that user), a reminder to the card's channel,
    since a terminal has no threads; neither carries a link, the card being on the same screen."""

    def __init__(self, direct: Opener, channel: Callable[[str], Surface]) -> None:
        self.dms = direct
        self.channel = channel

    async def direct(self, user: str, reply: Reply, *, card: Approval) -> None:
        surface = await self.dms.open(user)
        if surface is not None:
            await guarded(surface).send(reply)

    async def thread(self, card: Approval, reply: Reply) -> None:
        await guarded(self.channel(card.channel)).send(reply)
