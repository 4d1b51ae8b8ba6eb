"""Every write of an approval, failed by the database: nothing runs twice, nothing is lost.

Each case fails one statement of one approval (`tests/support/db_faults.py`), then lets the
database answer again and runs the sweeper (which replays the spool). Whatever failed, the
provider was called at most once, the approval ends in a final state or *outcome unknown*
settled with the provider's own answer, the people involved were told, and the audit chain
verifies.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from bot.approvals.late import KEPT, LATE, NOT_ADMITTED, NOT_RUN
from tests.support import RecordingSurface
from tests.support.db_faults import AUDIT, CLAIM, FINISH, HEARTBEAT, REQUEST, VOTE, db_faults
from tests.support.drill import Bot, story, system


@dataclass(frozen=True)
class Case:
    name: str
    sql: str
    nth: int  # which statement of that kind, counted from the request
    calls: int  # provider calls in the end
    status: str  # the approval's final state
    resolution: str | None  # how a kept answer settled it
    told: str | None  # what the person whose step failed was told (a part of it)
    raises: bool  # the step raised the database's error, for the adapter's error boundary


CASES = [
    # The request's own row: nothing exists; the adapter's error boundary answers.
    Case("request", REQUEST, 1, 0, "none", None, None, True),
    # Its "requested" audit row: the half-made request is withdrawn, never left to approve.
    Case("requested audit row", AUDIT, 1, 0, "rejected", None, "withdrawn", True),
    # The approval's vote and the claim: nothing was decided; the approver is told it failed.
    Case("vote", VOTE, 1, 0, "pending", None, "hit an error inside the bot", False),
    Case("claim", CLAIM, 1, 0, "pending", None, "hit an error inside the bot", False),
    # The approval's audit row after the claim: not run, and said so.
    Case("approved audit row", AUDIT, 2, 0, "failed", None, NOT_ADMITTED.format(id=1), False),
    # The run's own audit row: the answer is spooled, the row ends unknown, then settled.
    Case("executed audit row", AUDIT, 3, 1, "unknown", "done", "Approval #1: unknown.", False),
    # The finish: the same, from the flow.
    Case("finish", FINISH, 1, 1, "unknown", "done", KEPT.format(id=1), False),
]


async def attempt(bot: Bot, line: str, surface: RecordingSurface) -> bool:
    """`line` typed; True when it raised the database's error (the adapter says so)."""
    try:
        await bot.dispatcher.run(line, user=surface.user, channel="C1", surface=surface)
    except OperationalError:
        return True
    return False


def spooled(bot: Bot) -> list[Path]:
    return sorted(bot.runtime.flow.spool.directory.glob("*.json"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_write_failed_by_the_database(bot: Bot, case: Case) -> None:
    with db_faults(bot.runtime.engine) as faults:
        faults.fail(case.sql, nth=case.nth)
        requester, approver = RecordingSurface(user="U1"), RecordingSurface(user="U2")
        raised = await attempt(bot, "/drill move r1", requester)
        if not raised:
            raised = await attempt(bot, "/billing approve 1", approver)
        assert faults.fired == 1
    assert raised is case.raises
    told = requester if case.nth == 1 and case.sql in (REQUEST, AUDIT) else approver
    if case.told is not None:
        assert case.told in told.texts(), told.texts()

    await bot.runtime.flow.sweep()  # the database is back: the sweeper replays what was kept
    assert spooled(bot) == []
    assert bot.client.calls == ["r1"] * case.calls
    rows = [] if case.status == "none" else [await bot.row()]
    assert [r["status"] for r in rows] == ([] if case.status == "none" else [case.status])
    if rows:
        assert rows[0]["resolution"] == case.resolution
    verdict = await bot.runtime.audit.verify()
    assert verdict.broken is None

    if case.status == "pending":  # nothing was decided: the next click runs it, once
        done, _ = await bot.run("/billing approve 1", "U2")
        assert done and await bot.status() == "done" and bot.client.calls == ["r1"]
    if case.resolution is not None:
        decisions = [(who, what, outcome) for who, what, outcome, _ in await story(bot)]
        assert ("system", "resolved", case.resolution) in decisions
        card = system(bot).updates[-1][1]
        assert "settled" in card.text.lower() or case.resolution in card.text.lower()
        # The requester is told how it ended, once it was settled (a direct message).
        direct = system(bot, "U1")
        heads = [r.text for r in direct.sent if r.text.startswith("Your request #1")]
        assert heads and f"*{case.resolution}*" in heads[-1], heads


async def test_a_failed_heartbeat_does_not_end_the_run(bot: Bot) -> None:
    """A heartbeat the database refuses is one missed beat: the run goes on and is recorded."""
    bot.runtime.executor.heartbeat_every = 0.01  # beats at once, not every 10 s
    with db_faults(bot.runtime.engine) as faults:
        faults.fail(HEARTBEAT, nth=1)
        faults.fail(r"^UPDATE approvals SET heartbeat_at=", nth=3, times=0)  # counts beats
        bot.client.hold = True
        await bot.run("/drill move r1", "U1")
        running = asyncio.ensure_future(bot.run("/billing approve 1", "U2"))
        await asyncio.wait_for(bot.client.entered.wait(), timeout=30)
        counter = faults.armed[1]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while counter.seen < 3:  # the failed beat, and two more after it
            assert loop.time() < deadline, "the heartbeats stopped after the failed one"
            await asyncio.sleep(0.01)
        bot.client.release.set()
        done, _ = await running
    assert faults.fired == 1
    assert done and await bot.status() == "done" and bot.client.calls == ["r1"]
    assert (await bot.runtime.audit.verify()).broken is None


async def test_a_kept_answer_is_redacted_and_settles_an_unknown_the_sweeper_made(
    bot: Bot,
) -> None:
    """While the database is away, another replica's sweeper may call the run unknown first;
    the kept answer then settles it, and the file never held a secret."""
    from commands.secrets import register_secret

    register_secret("hunter2-secret-value")
    spool = bot.runtime.flow.spool
    from bot.storage.spool import Answer

    await bot.run("/drill move r1", "U1")
    other = bot.replica("other-host:1:x")
    await other.claim(1, "U2")
    spool.keep(Answer(approval_id=1, approver="U2", status="done", summary="hunter2-secret-value"))
    [path] = spooled(bot)
    assert "hunter2-secret-value" not in path.read_text()
    assert json.loads(path.read_text())["status"] == "done"
    bot.clock.advance(minutes=10)
    await other.orphaned(stale_after=bot.runtime.flow.stale_after)  # unknown, by the sweeper
    await bot.runtime.flow.sweep()
    row = await bot.row()
    assert (row["status"], row["resolution"]) == ("unknown", "done")
    assert spooled(bot) == []
    assert bot.client.calls == []  # a kept answer is recorded, never run
    assert LATE not in row["outcome"] and NOT_RUN not in str(row["resolution_reason"])


async def test_an_answer_the_database_refused_twice_is_still_settled(bot: Bot) -> None:
    """The run's audit row refused, and the flow's try at recording it too (the database stays
    away): the run is over, so its kept answer no longer waits for it, and once the database
    is back the sweeper settles it. It used to stay "executing" for good, its answer unread."""
    with db_faults(bot.runtime.engine) as faults:
        faults.fail(AUDIT, nth=3, times=2)
        await attempt(bot, "/drill move r1", RecordingSurface(user="U1"))
        approver = RecordingSurface(user="U2")
        await attempt(bot, "/billing approve 1", approver)
        assert faults.fired == 2
    assert KEPT.format(id=1) in approver.texts()
    assert not bot.runtime.flow.approvals.in_flight(1)

    await bot.runtime.flow.sweep()
    row = await bot.row()
    assert (row["status"], row["resolution"]) == ("unknown", "done")
    assert spooled(bot) == []
    assert bot.client.calls == ["r1"]
