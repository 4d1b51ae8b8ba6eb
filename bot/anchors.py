"""Anchors of the audit chain: a row's place and hash posted to the billing channel, daily and on
`/billing audit anchor`, so that rewriting the whole chain after it shows.

The audit log is a hash chain (`bot/storage/chain.py`): a row edited, deleted or inserted breaks
it, but the chain rewritten from some row on with every hash recomputed, or its newest rows
deleted, is consistent in itself. An anchor is a row's `(seq, hash)` kept where the database
cannot change it: a message in BILLING_CHANNEL carrying Slack message metadata
(https://api.slack.com/metadata/using), all text:

    event_type      billing_audit_anchor
    event_payload   seq     the row's sequence number ("1234")
                    hash    its hash, 64 lowercase hex digits
                    how     daily | command
                    at      when the anchor was taken, UTC ISO 8601

Each anchor is also kept in `audit_anchors` (`bot/storage/anchors.py`) and gets an audit row of
its own, which extends the chain after the row it anchors. `billing-bot audit verify --anchors`
reads the channel back (`bot/slack/history.py`), checks the chain against every anchor and
compares the channel with the table (`compare`).

- **Daily**: the day's anchor names the chain as it stood at 00:05 in BILLING_TIMEZONE (its last
  row written by then). Every replica's sweeper asks every 30 seconds whether it is due; the day
  is unique in the table and taking it holds the appends' lock, so one replica takes it, once.
  A bot that was down at 00:05 takes it when it is back, naming the same row.
- **On command**: the head at once; its audit row is the very next row.
- **Posting** goes through the outbox (`system_surface(channel)`): a Slack failure delays an
  anchor, never loses it. One kept but never handed to the outbox (the process stopped in
  between) is posted by the next check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot import messages
from bot.storage.anchors import COMMAND, DAILY, Anchor, AnchorStore, anchor_key
from bot.storage.audit import Entry
from bot.storage.chain import Link
from bot.storage.store import utcnow
from bot.surface import Surface, guarded
from commands.base import MessageMetadata, Reply
from commands.words import plural

EVENT_TYPE = "billing_audit_anchor"
DAILY_AT = time(0, 5)
DAILY_BY = "daily-anchor"
COMMAND_NAME = "/billing audit anchor"
# An anchor kept this long without being handed to the outbox was left by a stopped process.
RESEND_AFTER = timedelta(minutes=2)
HASH = re.compile(r"[0-9a-f]{64}")


def anchor_metadata(anchor: Anchor) -> MessageMetadata:
    return MessageMetadata(
        event_type=EVENT_TYPE,
        payload={
            "seq": str(anchor.seq),
            "hash": anchor.hash,
            "how": anchor.how,
            "at": anchor.at.isoformat(),
        },
    )


def anchor_reply(anchor: Anchor, tz: ZoneInfo) -> Reply:
    """The anchor's message in the billing channel."""
    if anchor.how == DAILY:
        taken = f"The audit log as it stood at {DAILY_AT:%H:%M} on {anchor.day} ({tz.key})."
    else:
        taken = f"Taken by {messages._who(anchor.by)} at {messages.when(anchor.at, tz)}."
    return Reply(
        text=f"Audit anchor: row {anchor.seq}, hash `{anchor.hash}`",
        sections=[
            f"{taken} `billing-bot audit verify --anchors` checks the audit log against every "
            "anchor posted here."
        ],
        metadata=anchor_metadata(anchor),
    )


def anchor_entry(anchor: Anchor) -> Entry:
    """The anchor's audit row: which row it anchored, and which one that is."""
    if anchor.how == DAILY:
        which = f"the last row written by {DAILY_AT:%H:%M} on {anchor.day}"
    else:
        which = "the row just before this one"
    return Entry(
        user_id=anchor.by,
        channel=anchor.channel,
        command=COMMAND_NAME,
        args={"seq": str(anchor.seq), "hash": anchor.hash, "how": anchor.how},
        decision="anchored",
        outcome="done",
        detail=f"anchored row {anchor.seq} ({which}), hash {anchor.hash}",
        provider="billing",
    )


class Anchoring:
    """Takes anchors and posts them to `channel` (BILLING_CHANNEL; None: no anchors)."""

    def __init__(
        self,
        store: AnchorStore,
        *,
        system_surface: Callable[[str], Surface],
        channel: str | None,
        tz: ZoneInfo,
        clock: Callable[[], datetime] = utcnow,
        daily_at: time = DAILY_AT,
    ) -> None:
        self.store = store
        self.system_surface = system_surface
        self.channel = channel
        self.tz = tz
        self.clock = clock
        self.daily_at = daily_at

    async def take(self, *, by: str) -> Anchor | None:
        """An anchor of the head now, posted; None when the log is empty or there is no
        channel to post to."""
        if self.channel is None:
            return None
        anchor = await self.store.take(
            how=COMMAND, by=by, channel=self.channel, at=self.clock(), describe=anchor_entry
        )
        if anchor is not None:
            await self._post(anchor)
        return anchor

    def due_day(self, now: datetime) -> tuple[date, datetime]:
        """The latest day whose anchor time has come, and that time."""
        local = now.astimezone(self.tz)
        day = local.date() if local.time() >= self.daily_at else local.date() - timedelta(days=1)
        return day, datetime.combine(day, self.daily_at, self.tz)

    async def daily(self) -> Anchor | None:
        """The day's anchor, when it is due and no replica took it yet; and any anchor left
        unposted by a stopped process."""
        if self.channel is None:
            return None
        now = self.clock()
        for left in await self.store.unsent(before=now - RESEND_AFTER):
            if await self.store.claim(left.id, at=now):
                await self._post(left)
        day, until = self.due_day(now)
        if not await self.store.due(day, until):
            return None
        anchor = await self.store.take(
            how=DAILY,
            by=DAILY_BY,
            channel=self.channel,
            at=now,
            day=day,
            until=until,
            describe=anchor_entry,
        )
        if anchor is not None:
            await self._post(anchor)
        return anchor

    async def _post(self, anchor: Anchor) -> None:
        surface = guarded(self.system_surface(anchor.channel))
        ref = await surface.send(anchor_reply(anchor, self.tz), key=anchor_key(anchor.id))
        await self.store.sent(anchor.id, at=self.clock(), ts=ref.ts if ref else None)


# --- billing-bot audit verify --anchors ---------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """An anchor as read back from the channel: its message's `ts` and what its metadata says
    (`link` None when its payload does not read as one)."""

    ts: str
    link: Link | None


def posted(ts: str, payload: Mapping[str, object]) -> Posted:
    """An anchor message's payload read back: `seq` digits, `hash` a hex SHA-256."""
    seq, digest = payload.get("seq"), payload.get("hash")
    readable = isinstance(seq, str) and seq.isdigit()
    if readable and isinstance(digest, str) and HASH.fullmatch(digest):
        return Posted(ts, Link(int(str(seq)), digest))
    return Posted(ts, None)


@dataclass
class Comparison:
    """The channel's anchors beside the table's: every anchor to verify the chain against (the
    channel's win where both name one row), and what differs."""

    anchors: list[Link] = field(default_factory=list)
    summary: str = ""
    problems: list[str] = field(default_factory=list)  # these fail the verification
    notes: list[str] = field(default_factory=list)  # these do not

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [self.summary, *self.notes, *self.problems]


def compare(
    kept: Sequence[Anchor], found: Sequence[Posted], channel: str, *, others: int = 0
) -> Comparison:
    """`kept`: the anchors table; `found`: the bot's anchor messages in `channel`; `others`:
    messages of the same event type that someone else posted there (ignored)."""
    result = Comparison()
    here = [a for a in kept if a.channel == channel]
    result.summary = f"anchors: {len(found)} in {channel}, {len(here)} kept in the database"
    if others:
        result.notes.append(
            f"{plural(others, 'message')} of the same event type posted by another app or a "
            "person ignored"
        )
    if elsewhere := len(kept) - len(here):
        result.notes.append(
            f"{plural(elsewhere, 'anchor')} kept for another channel not compared "
            "(BILLING_CHANNEL changed since)"
        )
    in_table = {a.link for a in here}
    in_channel: dict[Link, str] = {}
    for message in found:
        if message.link is None:
            result.problems.append(
                f"the anchor message {message.ts} in the channel does not say which row it "
                "anchors (its metadata has no readable seq and hash)"
            )
        else:
            in_channel.setdefault(message.link, message.ts)
    for link, ts in sorted(in_channel.items(), key=lambda item: item[0].seq):
        if link not in in_table:
            result.problems.append(
                f"the anchor of row {link.seq} in the channel (message {ts}) is not in the "
                "anchors table"
            )
    for anchor in sorted(here, key=lambda a: a.seq):
        if anchor.link in in_channel:
            continue
        if anchor.ts is not None:
            result.problems.append(
                f"the anchor of row {anchor.seq} kept in the table (message {anchor.ts}) is not "
                "in the channel"
            )
        else:
            result.notes.append(
                f"the anchor of row {anchor.seq} taken {anchor.at.isoformat()} is not in the "
                "channel yet (waiting to be posted)"
            )
    result.anchors = [*in_table, *in_channel]
    return result
