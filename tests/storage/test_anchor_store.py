"""Anchors as the database keeps them, on SQLite and PostgreSQL: an anchor and its audit row are
written together under the appends' lock, the row an anchor names is on the chain before its
audit row, a daily anchor names the last row written by its time, and a day keeps one."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.anchors import anchor_entry
from bot.storage import store
from bot.storage.anchors import COMMAND, DAILY, AnchorStore, anchor_key, anchor_of
from bot.storage.audit import AuditLog, Entry
from bot.storage.chain import Link
from bot.storage.store import audit, audit_anchors
from bot.surface import MessageRef

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def entry(n: int) -> Entry:
    return Entry(
        user_id="U1",
        channel="C1",
        command="/billing status",
        args={},
        decision="ran",
        outcome="done",
        detail=f"run {n}",
        provider="billing",
    )


async def rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        found = await conn.execute(sa.select(audit).order_by(audit.c.seq))
        return [dict(r) for r in found.mappings()]


async def kept_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(audit_anchors))).scalar_one()
        )


async def written(engine: AsyncEngine, count: int, *, start: datetime = AT) -> AuditLog:
    log = AuditLog(engine)
    for n in range(1, count + 1):
        await log.record(entry(n), at=start + timedelta(minutes=n))
    return log


async def test_an_anchor_names_the_head_and_its_audit_row_comes_next(engine: AsyncEngine) -> None:
    log = await written(engine, 3)
    head = await log.head()
    anchors = AnchorStore(engine, log)

    anchor = await anchors.take(
        how=COMMAND, by="U2", channel="C0BILLING", at=AT, describe=anchor_entry
    )

    assert anchor is not None and head is not None
    assert anchor.link == head == Link(3, head.hash)
    [*_, last] = await rows(engine)
    assert last["seq"] == 4 and last["prev_hash"] == head.hash
    assert (last["user_id"], last["command"], last["decision"]) == (
        "U2",
        "/billing audit anchor",
        "anchored",
    )
    assert last["detail"] == f"anchored row 3 (the row just before this one), hash {head.hash}"
    assert (await log.verify()).broken is None
    assert await anchors.kept() == [anchor]


async def test_an_empty_log_has_nothing_to_anchor(engine: AsyncEngine) -> None:
    log = AuditLog(engine)
    anchors = AnchorStore(engine, log)
    taken = await anchors.take(how=COMMAND, by="U2", channel="C1", at=AT, describe=anchor_entry)
    assert taken is None
    assert await rows(engine) == []
    assert await kept_rows(engine) == 0


async def test_a_daily_anchor_names_the_last_row_written_by_its_time(engine: AsyncEngine) -> None:
    log = await written(engine, 5)  # 09:01 … 09:05
    anchors = AnchorStore(engine, log)
    day = AT.date()
    assert await anchors.due(day, AT + timedelta(minutes=3, seconds=30))
    assert not await anchors.due(day, AT)  # nothing written by then

    anchor = await anchors.take(
        how=DAILY,
        by="daily-anchor",
        channel="C1",
        at=AT + timedelta(hours=1),
        day=day,
        until=AT + timedelta(minutes=3, seconds=30),
        describe=anchor_entry,
    )

    assert anchor is not None and anchor.seq == 3 and anchor.day == day
    [*_, third, _, _, own] = await rows(engine)
    assert anchor.hash == third["hash"]
    assert own["seq"] == 6
    assert own["detail"] == (
        f"anchored row 3 (the last row written by 00:05 on {day}), hash {third['hash']}"
    )
    assert not await anchors.due(day, AT + timedelta(hours=2))


async def test_a_day_keeps_one_anchor_whoever_asks_at_once(
    engine: AsyncEngine, database_url: str
) -> None:
    """Two replicas (two engines) ask for the same day's anchor at the same moment."""
    await written(engine, 2)
    other = store.make_engine(database_url)
    try:
        replicas = [AnchorStore(e, AuditLog(e)) for e in (engine, other, engine, other)]
        taken = await asyncio.gather(
            *(
                replica.take(
                    how=DAILY,
                    by="daily-anchor",
                    channel="C1",
                    at=AT + timedelta(hours=1),
                    day=date(2026, 11, 2),
                    until=AT + timedelta(hours=1),
                    describe=anchor_entry,
                )
                for replica in replicas
            )
        )
    finally:
        await other.dispose()
    assert len([a for a in taken if a is not None]) == 1
    assert await kept_rows(engine) == 1
    assert [r["decision"] for r in await rows(engine)] == ["ran", "ran", "anchored"]


async def test_the_table_refuses_a_second_anchor_for_a_day(engine: AsyncEngine) -> None:
    values = {"seq": 1, "hash": "ab" * 32, "at": AT, "by": "daily-anchor", "how": DAILY}
    values |= {"day": date(2026, 11, 2), "channel": "C1"}
    async with engine.begin() as conn:
        await conn.execute(audit_anchors.insert().values(**values))
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(audit_anchors.insert().values(**values))


async def test_a_note_that_fails_writes_nothing(engine: AsyncEngine) -> None:
    log = await written(engine, 2)

    async def write(conn: AsyncConnection, link: Link) -> Entry | None:
        await conn.execute(
            audit_anchors.insert().values(
                seq=link.seq, hash=link.hash, at=AT, by="U2", how=COMMAND, channel="C1"
            )
        )
        raise RuntimeError("the anchor could not be described")

    with pytest.raises(RuntimeError):
        await log.note(write)
    assert len(await rows(engine)) == 2
    assert await kept_rows(engine) == 0


async def test_where_an_anchor_landed_is_kept(engine: AsyncEngine) -> None:
    log = await written(engine, 1)
    anchors = AnchorStore(engine, log)
    anchor = await anchors.take(how=COMMAND, by="U2", channel="C1", at=AT, describe=anchor_entry)
    assert anchor is not None
    assert anchor_of(anchor_key(anchor.id)) == anchor.id
    assert anchor_of("approval:3") is None and anchor_of("anchor:x") is None

    await anchors.posted("approval:1", MessageRef("C1", "1.1"))  # not an anchor's: ignored
    await anchors.posted(anchor_key(anchor.id), MessageRef("C1", "1700000000.000042"))

    [kept] = await anchors.kept()
    assert kept.ts == "1700000000.000042"
    assert await anchors.locate(anchor_key(anchor.id)) is None
