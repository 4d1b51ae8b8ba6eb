"""The sweeper: expired requests, lost runs settled as unknown, races with both, its cards."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.runtime import open_runtime
from bot.storage.store import approvals
from bot.surface import MessageRef
from tests.support import RecordingSurface
from tests.support.drill import LOST, STALE, TOKYO_EXPIRY, Bot, story, system


@contextlib.contextmanager
def just_before_update(engine: AsyncEngine, marker: str, sql: str) -> Iterator[list[str]]:
    """Run `sql` on the same connection just before the first `UPDATE approvals` whose values
    include `marker`: another replica's write landing between a read and the update it decides.
    Yields the statements it went before (one, once it has)."""
    seen: list[str] = []

    def hook(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        values = parameters if isinstance(parameters, tuple | list) else ()
        if not seen and statement.lstrip().startswith("UPDATE approvals") and marker in values:
            seen.append(statement)
            cursor.execute(sql)

    event.listen(engine.sync_engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", hook)


async def test_expiry_takes_only_requests_past_their_time(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=1)
    await bot.run("/drill move r2", "U1")
    await bot.run("/drill move r3", "U1")
    await bot.run("/billing approve 3", "U2")
    bot.clock.advance(hours=24)  # #1 is an hour past its time, #2 just due
    sweeper = bot.replica("host-b:1:b")
    assert [a.id for a in await sweeper.expire_due()] == [1, 2]
    assert [await bot.status(n) for n in (1, 2, 3)] == ["expired", "expired", "done"]
    await bot.run("/drill move r4", "U1")
    assert await sweeper.expire_due() == []
    assert await bot.status(4) == "pending"


async def test_a_decision_landing_during_expiry_stands(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=25)
    engine = bot.runtime.engine
    withdrawn = "UPDATE approvals SET status = 'rejected', reason = 'withdrawn' WHERE id = 1"
    with just_before_update(engine, "expired", withdrawn) as raced:
        assert await bot.replica("host-b:1:b").expire_due() == []
    assert raced  # the withdrawal did land between the sweeper's read and its update
    assert await bot.status() == "rejected"


async def test_an_answer_landing_during_a_sweep_stands(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.replica("host-a:101:aaaa").claim(1, "U2")
    bot.clock.advance(minutes=10)
    engine = bot.runtime.engine
    answered = "UPDATE approvals SET status = 'done', outcome = 'answered' WHERE id = 1"
    with just_before_update(engine, "unknown", answered) as raced:
        assert await bot.replica("host-b:202:bbbb").orphaned(stale_after=STALE) == []
    assert raced
    row = await bot.row()
    assert (row["status"], row["outcome"]) == ("done", "answered")


async def test_one_sweep_settles_every_lost_run_and_only_those(bot: Bot) -> None:
    for n in range(3):
        await bot.run(f"/drill move r{n}", "U1")
    runner = bot.replica("host-a:101:aaaa")
    for n in (1, 2, 3):
        await runner.claim(n, "U2")
    bot.clock.advance(minutes=3)
    await runner.heartbeat(1)  # #1 is still being worked on; #2 and #3 went quiet
    settled = await bot.replica("host-b:202:bbbb").orphaned(stale_after=STALE)
    assert [a.id for a in settled] == [2, 3]
    assert [await bot.status(n) for n in (1, 2, 3)] == ["executing", "unknown", "unknown"]


async def test_the_sweeper_settles_and_shows_what_it_did(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    await bot.replica("host-a:101:aaaa").claim(2, "U2")
    bot.clock.advance(hours=24)  # #1 is due; #2's runner has been quiet for a day
    await bot.runtime.flow.sweep()

    shown = system(bot)
    assert [ref for ref, _ in shown.updates] == [MessageRef("C1", "1.0001")] * 2
    assert shown.keys == ["approval:1", "approval:2"]
    expired, lost = (reply for _, reply in shown.updates)
    assert expired.text == f"⌛ #1 expired unapproved at {TOKYO_EXPIRY}; nothing ran."
    assert lost.text.startswith("❓ #2 *outcome unknown* — approved by <@U2>")
    assert lost.sections[1].startswith(f"{LOST}. It will not be retried. Check whether r2 moved.")
    assert "/drill look r2" in [b.command for b in lost.buttons]
    assert ("Decided", "2030-01-06 18:00 JST") in lost.fields
    assert (await story(bot, 1))[-1] == ("system", "expired", "not run", "")
    assert (await story(bot, 2))[-1] == ("system", "recovered", "unknown", LOST)


async def test_a_lost_run_whose_request_no_longer_reads_is_still_settled(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")
    await runner.claim(1, "U2")
    await runner.claim(2, "U2")
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().where(approvals.c.id == 1).values(args="{}"))
    bot.clock.advance(minutes=10)
    await bot.runtime.flow.sweep()  # #1's arguments no longer validate: no hint, still settled
    assert [await bot.status(n) for n in (1, 2)] == ["unknown", "unknown"]
    first = system(bot).updates[0][1]
    assert "/drill look" not in " ".join(b.command for b in first.buttons)

    # A release without the command settles a lost run of it too.
    await bot.run("/drill move r3", "U1")
    await runner.claim(3, "U2")
    bot.clock.advance(minutes=10)
    shown: dict[str, RecordingSurface] = {}
    later = await open_runtime(
        make_settings(),
        system_surface=lambda c: shown.setdefault(c, RecordingSurface(channel=c, user="")),
        runtimes=[],
        clock=bot.clock,
    )
    try:
        await later.flow.sweep()
    finally:
        await later.close()
    assert await bot.status(3) == "unknown"
    assert shown["C1"].updates[0][1].text.startswith("❓ #3 *outcome unknown*")


async def test_the_sweeper_settles_runs_whose_command_gives_no_hint(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    await bot.run("/drill look r1", "U1")  # a read: no hint to give
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")
    await runner.claim(1, "U2")
    await runner.claim(2, "U2")
    bot.clock.advance(hours=1)
    await bot.runtime.flow.sweep()
    [(_, read)] = [(r, c) for r, c in system(bot).updates if c.text.startswith("❓ #1")]
    assert "Check at the provider before asking again." in read.sections[1]
    assert [b.label for b in read.buttons] == ["Check now"]
