"""Audit anchors in a running bot, on a clock moved by hand: the day's anchor is posted once at
00:05 in BILLING_TIMEZONE (one across replicas, caught up after downtime), `/billing audit anchor`
posts one at once, an anchor kept but never posted is posted by the next check, and without
BILLING_CHANNEL nothing is anchored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bot.anchors import EVENT_TYPE
from bot.runtime import Runtime
from bot.storage.anchors import COMMAND
from bot.storage.audit import Entry
from bot.storage.store import audit
from tests.support import Clock, OpenBot, RecordingSurface, sandbox_of
from tests.support.e2e import wait_until

CHANNEL = "C0BILLING"
TOKYO = "Asia/Tokyo"
# 2026-11-02 00:04 in Tokyo (UTC+9): a minute before that day's anchor is due.
BEFORE = datetime(2026, 11, 1, 15, 4, tzinfo=UTC)
DUE = datetime(2026, 11, 1, 15, 5, tzinfo=UTC)


def entry(n: int) -> Entry:
    return Entry(
        user_id="U1",
        channel=CHANNEL,
        command="/billing status",
        args={},
        decision="ran",
        outcome="done",
        detail=f"run {n}",
        provider="billing",
    )


async def anchoring_bot(open_bot: OpenBot, clock: Clock, **settings: str) -> Runtime:
    values = {"billing_channel": CHANNEL, "billing_timezone": TOKYO, **settings}
    return await open_bot(clock=clock, **values)


def posts(runtime: Runtime, channel: str = CHANNEL) -> RecordingSurface:
    surfaces: dict[str, RecordingSurface] = runtime.system_surfaces  # type: ignore[attr-defined]
    return surfaces.setdefault(channel, RecordingSurface(channel=channel, user=""))


async def chain(runtime: Runtime) -> list[dict[str, object]]:
    async with runtime.engine.connect() as conn:
        found = await conn.execute(sa.select(audit).order_by(audit.c.seq))
        return [dict(r) for r in found.mappings()]


def no_provider_called(runtime: Runtime) -> bool:
    return all(
        sandbox_of(runtime, name).control.requests == []
        for name in ("invoicexpress", "smsc", "voipcloud", "activeplatform")
    )


async def test_the_day_s_anchor_is_posted_once_naming_the_log_as_it_stood_at_0005(
    open_bot: OpenBot,
) -> None:
    clock = Clock(BEFORE)
    runtime = await anchoring_bot(open_bot, clock)
    await runtime.audit.record(entry(1), at=BEFORE - timedelta(hours=1))  # 23:04 on the 1st
    await runtime.audit.record(entry(2), at=BEFORE + timedelta(seconds=30))  # 00:04:30

    assert await runtime.anchors.daily() is None  # 00:04: the 1st's time had nothing before it
    assert posts(runtime).sent == []

    clock.now = DUE + timedelta(seconds=40)
    await runtime.audit.record(entry(3), at=DUE + timedelta(seconds=20))  # 00:05:20: too late
    anchor = await runtime.anchors.daily()

    rows = await chain(runtime)
    assert anchor is not None and (anchor.seq, anchor.hash) == (2, rows[1]["hash"])
    assert anchor.day == datetime(2026, 11, 2).date()
    [post] = posts(runtime).sent
    assert posts(runtime).keys == [f"anchor:{anchor.id}"]
    assert post.text == f"Audit anchor: row 2, hash `{anchor.hash}`"
    assert "The audit log as it stood at 00:05 on 2026-11-02 (Asia/Tokyo)." in post.sections[0]
    assert post.metadata is not None and post.metadata.event_type == EVENT_TYPE
    assert dict(post.metadata.payload) == {
        "seq": "2",
        "hash": anchor.hash,
        "how": "daily",
        "at": "2026-11-01T15:05:40+00:00",
    }
    own = rows[-1]
    assert (own["seq"], own["user_id"], own["decision"]) == (4, "daily-anchor", "anchored")
    assert own["detail"] == (
        f"anchored row 2 (the last row written by 00:05 on 2026-11-02), hash {anchor.hash}"
    )
    [kept] = await runtime.anchors.store.kept()
    assert (kept.ts, kept.sent_at) == ("1.0001", clock.now)

    clock.advance(hours=20)
    assert await runtime.anchors.daily() is None
    assert len(posts(runtime).sent) == 1

    clock.now = DUE + timedelta(days=1)  # 00:05 on the 3rd
    following = await runtime.anchors.daily()
    assert following is not None and following.seq == 4  # the first anchor's own row
    assert len(posts(runtime).sent) == 2
    assert (await runtime.audit.verify()).broken is None


async def test_a_bot_back_after_downtime_takes_the_day_s_anchor_once(open_bot: OpenBot) -> None:
    clock = Clock(BEFORE)
    runtime = await anchoring_bot(open_bot, clock)
    for n in range(1, 4):
        await runtime.audit.record(entry(n), at=BEFORE + timedelta(days=n))  # 00:04 each day

    clock.now = DUE + timedelta(days=3, hours=14)  # down from the 2nd to the 5th, 14:05
    anchor = await runtime.anchors.daily()

    assert anchor is not None and anchor.seq == 3  # as the 5th's anchor would have been
    assert anchor.day == datetime(2026, 11, 5).date()
    assert await runtime.anchors.daily() is None
    assert len(posts(runtime).sent) == 1  # the days it missed are not made up


async def test_replicas_take_one_anchor_a_day(open_bot: OpenBot) -> None:
    clock = Clock(DUE + timedelta(minutes=1))
    first = await anchoring_bot(open_bot, clock)
    second = await anchoring_bot(open_bot, clock)
    await first.audit.record(entry(1), at=BEFORE)

    taken = await asyncio.gather(*(r.anchors.daily() for r in (first, second, first, second)))

    assert len([a for a in taken if a is not None]) == 1
    assert len(posts(first).sent) + len(posts(second).sent) == 1
    assert [r["decision"] for r in await chain(first)] == ["ran", "anchored"]


async def test_the_sweeper_takes_the_day_s_anchor(open_bot: OpenBot) -> None:
    clock = Clock(DUE + timedelta(minutes=1))
    runtime = await anchoring_bot(open_bot, clock)
    await runtime.audit.record(entry(1), at=BEFORE)
    runtime.start_sweeper(every=0.05)
    await wait_until(lambda: posts(runtime).sent, "the daily anchor in the channel")
    [post] = posts(runtime).sent
    assert post.text.startswith("Audit anchor: row 1, hash `")


async def test_an_anchor_a_stopped_process_kept_but_never_posted_is_posted_by_the_next_check(
    open_bot: OpenBot,
) -> None:
    clock = Clock(DUE + timedelta(hours=1))
    runtime = await anchoring_bot(open_bot, clock)
    await runtime.audit.record(entry(1), at=DUE + timedelta(minutes=30))  # after the day's time
    store = runtime.anchors.store
    left = await store.take(  # kept, then the process stopped before posting it
        how=COMMAND,
        by="U2",
        channel=CHANNEL,
        at=clock.now,
        describe=lambda a: Entry(
            user_id="U2",
            channel=CHANNEL,
            command="/billing audit anchor",
            args={},
            decision="anchored",
            outcome="done",
        ),
    )
    assert left is not None

    clock.advance(minutes=1)  # it may still be on its way
    await runtime.anchors.daily()
    assert posts(runtime).sent == []

    clock.advance(minutes=2)
    await runtime.anchors.daily()
    await runtime.anchors.daily()

    [post] = posts(runtime).sent
    assert post.text == f"Audit anchor: row 1, hash `{left.hash}`"
    [kept] = await store.kept()
    assert kept.ts == "1.0001"


async def test_audit_anchor_posts_the_head_and_answers_with_its_row_and_hash(
    open_bot: OpenBot,
) -> None:
    clock = Clock(DUE + timedelta(hours=2))
    runtime = await anchoring_bot(open_bot, clock)
    await runtime.audit.record(entry(1), at=clock.now)
    head = await runtime.audit.head()
    assert head is not None
    surface = RecordingSurface(channel="C0ELSEWHERE", user="U2")

    await runtime.dispatcher.run(
        "/billing audit anchor", user="U2", channel="C0ELSEWHERE", surface=surface
    )

    [answer] = surface.sent
    assert answer.private
    assert answer.text == (
        f"Anchored the audit log at row 1, hash `{head.hash}`; posted to <#{CHANNEL}>."
    )
    [post] = posts(runtime).sent
    assert post.text == f"Audit anchor: row 1, hash `{head.hash}`"
    assert "Taken by <@U2> at 2026-11-02 02:05 JST." in post.sections[0]
    assert post.metadata is not None and post.metadata.payload["how"] == "command"
    rows = await chain(runtime)
    assert [(r["seq"], r["decision"], r["user_id"]) for r in rows] == [
        (1, "ran", "U1"),
        (2, "anchored", "U2"),  # the anchor's own row comes right after the row it names
        (3, "ran", "U2"),  # the command's
    ]
    assert rows[1]["detail"] == (f"anchored row 1 (the row just before this one), hash {head.hash}")
    assert no_provider_called(runtime)


async def test_audit_anchor_on_an_empty_log_says_there_is_nothing_to_anchor(
    open_bot: OpenBot,
) -> None:
    runtime = await anchoring_bot(open_bot, Clock(DUE))
    surface = RecordingSurface(channel=CHANNEL, user="U2")
    await runtime.dispatcher.run(
        "/billing audit anchor", user="U2", channel=CHANNEL, surface=surface
    )
    assert surface.privates == ["The audit log is empty: there is nothing to anchor yet."]
    assert posts(runtime).sent == []
    assert await runtime.anchors.store.kept() == []
    assert no_provider_called(runtime)


async def test_audit_anchor_needs_an_approver(open_bot: OpenBot) -> None:
    runtime = await anchoring_bot(open_bot, Clock(DUE))
    await runtime.audit.record(entry(1), at=DUE)
    surface = RecordingSurface(channel=CHANNEL, user="U1")
    await runtime.dispatcher.run(
        "/billing audit anchor", user="U1", channel=CHANNEL, surface=surface
    )
    [refusal] = surface.privates
    assert "approver" in refusal and "BILLING_APPROVERS" in refusal
    assert posts(runtime).sent == []
    assert await runtime.anchors.store.kept() == []
    assert no_provider_called(runtime)


async def test_without_a_billing_channel_nothing_is_anchored(open_bot: OpenBot) -> None:
    clock = Clock(DUE + timedelta(hours=1))
    runtime = await open_bot(clock=clock, billing_timezone=TOKYO)
    await runtime.audit.record(entry(1), at=BEFORE)
    surface = RecordingSurface(channel="C0ELSEWHERE", user="U2")

    assert await runtime.anchors.daily() is None
    await runtime.dispatcher.run(
        "/billing audit anchor", user="U2", channel="C0ELSEWHERE", surface=surface
    )

    assert surface.privates == [
        "Anchors are posted to BILLING_CHANNEL, which is not set. An admin must set it to a "
        "channel ID (like C0123456789) and restart; nothing was anchored."
    ]
    assert await runtime.anchors.store.kept() == []
    assert [r["decision"] for r in await chain(runtime)] == ["ran", "ran"]  # no "anchored"
    assert no_provider_called(runtime)
