"""The outbox's statements (`bot.slack.claims`): the rows of one reply written in one INSERT,
the first claimed as it is written, and a superseded update waking the rows behind it.

The outbox runs on a clock moved by hand; nothing here waits for time to pass, except for a
Slack call held open on purpose while the worker looks at the row it is sending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals.cards import Cards
from bot.runtime import Runtime
from bot.slack.claims import UPDATE
from bot.slack.notices import NOTICE
from bot.slack.outbox import Outbox, Row
from bot.storage.store import deliveries
from commands.base import File
from tests.support import Clock
from tests.support.e2e import wait_until
from tests.support.slack_api import BOT_TOKEN, Fault, SlackApiDouble, serve_slack_double

CHANNEL = "C0BILLING1"
KEY = "card:1"
RATE_LIMITED = Fault(status=429, retry_after=5)
# A direct message about the card, as bot.slack.notices.SlackNotices.direct writes it.
YOURS = {"message": {"text": "Yours to approve"}, "card_channel": CHANNEL}


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))


@pytest.fixture
def outbox(runtime: Runtime, slack: SlackApiDouble, clock: Clock) -> Outbox:
    client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
    return Outbox(runtime.engine, client, places=Cards(runtime.approvals), clock=clock)


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every statement the runtime's engine sends, as sent."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(runtime.engine.sync_engine, "before_cursor_execute", note)
    yield seen
    sa.event.remove(runtime.engine.sync_engine, "before_cursor_execute", note)


async def rows(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        query = sa.select(deliveries).order_by(deliveries.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_a_message_and_its_files_are_written_in_one_insert_and_sent_in_order(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, statements: list[str]
) -> None:
    files = [
        File(filename=f"invoice-{n}.pdf", content=b"%PDF-1.4 " + bytes([n]), title=f"Invoice {n}")
        for n in (1, 2)
    ]
    ref = await outbox.post(CHANNEL, {"text": "Two invoices"}, files=files)
    inserts = [s for s in statements if s.startswith("INSERT INTO deliveries")]
    assert len(inserts) == 1
    assert ref is not None and slack.message(CHANNEL, ref.ts)["text"] == "Two invoices"
    written = await rows(runtime)
    assert [(r["method"], r["status"], r["attempts"]) for r in written] == [
        ("chat.postMessage", "done", 1),
        ("file", "done", 1),
        ("file", "done", 1),
    ]
    assert len({r["key"] for r in written}) == 1  # one message: its files wait for it
    assert [r["content"] for r in written] == [None, None, None]  # bodies are Slack's now


async def test_a_row_written_is_claimed_so_the_worker_leaves_it_while_it_is_sent(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox
) -> None:
    # Slack takes the post but answers late: the worker's pass comes meanwhile.
    slack.inject("chat.postMessage", Fault(status=0, stall=3))
    posting = asyncio.create_task(outbox.post(CHANNEL, {"text": "Funds moved"}))
    while not (written := await rows(runtime)):  # the row is written before Slack is called
        await asyncio.sleep(0.01)
    [row] = written
    assert (row["status"], row["attempts"]) == ("sending", 1)  # claimed as it was written
    await outbox.flush()  # the stalled call is still open
    [row] = await rows(runtime)
    assert (row["status"], row["attempts"]) == ("sending", 1)  # the worker left it alone
    assert await posting is not None
    [row] = await rows(runtime)
    assert (row["status"], row["attempts"], len(slack.calls_to("chat.postMessage"))) == (
        "done",
        1,
        1,
    )


async def test_a_retry_the_worker_claims_is_held_for_its_lease_while_it_is_sent(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=503))
    await outbox.post(CHANNEL, {"text": "Funds moved"})
    clock.advance(seconds=1)  # the retry is due
    slack.inject("chat.postMessage", Fault(status=0, stall=2))  # Slack takes it, answers late
    worker = asyncio.create_task(outbox.flush())

    async def claimed() -> bool:
        return bool((await rows(runtime))[0]["status"] == "sending")

    await wait_until(claimed, "the worker's claim", 1.5)  # within the stalled call
    [row] = await rows(runtime)
    lease_until = row["lease_until"].replace(tzinfo=UTC)
    assert (row["attempts"], lease_until) == (2, clock.now + outbox.lease)
    replica = Outbox(
        runtime.engine, AsyncWebClient(base_url=slack.url, token=BOT_TOKEN), clock=clock
    )
    await replica.flush()  # another replica's pass leaves it to the worker sending it
    await replica.http.aclose()
    await worker
    [row] = await rows(runtime)
    sent = [c for c in slack.calls_to("chat.postMessage") if c.ok]
    assert (row["status"], row["attempts"], len(sent)) == ("done", 2, 1)


async def test_a_superseded_update_wakes_the_newer_one_waiting_behind_it(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, clock: Clock
) -> None:
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    slack.inject("chat.update", RATE_LIMITED)
    await outbox.update(CHANNEL, {"text": "running…"}, key=KEY)  # Slack says: in 5 s
    await outbox.update(CHANNEL, {"text": "done"}, key=KEY)  # waits behind the first
    _, older, newer = await rows(runtime)
    assert (older["status"], newer["status"]) == ("pending", "pending")
    clock.advance(seconds=5)
    await outbox.attempt(older["id"])  # the older one only: nothing else tries the newer
    _, older, newer = await rows(runtime)
    assert (older["status"], newer["status"]) == ("superseded", "done")
    [card] = [m for (c, _), m in slack.messages.items() if c == CHANNEL]
    assert card["text"] == "done"
    assert len(slack.calls_to("chat.update")) == 2  # the rate-limited try, then "done"


async def test_a_notice_whose_turn_came_while_it_was_written_goes_at_once(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox
) -> None:
    """The interleaving, step by step (the outbox's own steps, as two tasks ran them under
    load): a notice about the card is written, claimed, while an update of that card is being
    sent, so it is behind; the update finishes before the notice goes back to pending, and
    sees nothing pending behind it to wake. The notice must see that and go now: before, it
    waited for the worker's pass 10 s later."""
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    update = await outbox._insert([outbox._row(UPDATE, CHANNEL, {"text": "running…"}, key=KEY)])
    notice = await outbox._insert([outbox._row(NOTICE, "U2", YOURS, key=KEY)])
    assert notice.behind  # the update is still being sent
    await outbox._deliver(update)  # done: nothing pending behind it
    await outbox._deliver(notice)  # the clock has not moved
    _, sent_update, sent_notice = await rows(runtime)
    assert (sent_update["status"], sent_notice["status"]) == ("done", "done")
    assert sent_notice["attempts"] == 1  # claimed twice, tried once
    told = [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == "U2"]
    assert len(told) == 1 and "Yours to approve" in str(told[0].params)


async def test_a_notice_still_behind_its_card_waits_for_it(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, clock: Clock
) -> None:
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    update = await outbox._insert([outbox._row(UPDATE, CHANNEL, {"text": "running…"}, key=KEY)])
    notice = await outbox._insert([outbox._row(NOTICE, "U2", YOURS, key=KEY)])
    await outbox._deliver(notice)  # the update is still being sent
    _, _, waiting = await rows(runtime)
    next_at = waiting["next_at"].replace(tzinfo=UTC)
    assert (waiting["status"], waiting["attempts"], waiting["lease_until"]) == ("pending", 0, None)
    assert next_at == clock.now + timedelta(seconds=10)
    await outbox._deliver(update)  # done: it wakes the notice pending behind it
    _, _, sent = await rows(runtime)
    assert (sent["status"], sent["attempts"]) == ("done", 1)
    assert [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == "U2"]


async def test_a_row_another_replica_sends_when_its_turn_comes_is_not_sent_again(
    runtime: Runtime,
    slack: SlackApiDouble,
    outbox: Outbox,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same interleaving, and another replica's pass takes the notice between its going
    back to pending and this process claiming it again: one of them sends it, once."""
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    update = await outbox._insert([outbox._row(UPDATE, CHANNEL, {"text": "running…"}, key=KEY)])
    notice = await outbox._insert([outbox._row(NOTICE, "U2", YOURS, key=KEY)])
    await outbox._deliver(update)
    replica = Outbox(
        runtime.engine, AsyncWebClient(base_url=slack.url, token=BOT_TOKEN), clock=clock
    )
    claim = outbox._claim

    async def replica_first(row_id: int, *, due: bool) -> Row | None:
        await replica.attempt(row_id, due=False)
        return await claim(row_id, due=due)

    monkeypatch.setattr(outbox, "_claim", replica_first)
    assert await outbox._deliver(notice) is None
    await replica.http.aclose()
    _, _, sent = await rows(runtime)
    assert (sent["status"], sent["attempts"]) == ("done", 1)
    told = [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == "U2"]
    assert len(told) == 1
