"""PostgreSQL restarting in the middle of a burst: nothing lost, nothing doubled, the outbox drains.

The bot reaches PostgreSQL through a loopback proxy (`tests/support/db_proxy.py`) that the test
cuts as a restart does: every connection closed at once, new ones refused for a while, then
accepted again. PostgreSQL only: the scenario is its own (SQLite is a file, not a server).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from bot.storage.store import approvals, deliveries
from tests.support.db_proxy import db_proxy
from tests.support.e2e import Bot, Sent, message_text, running_bot, table_rows, wait_until

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

MOVES = 4  # approvals in flight
BALANCES = 4  # direct commands in flight
FINAL = ("done", "failed", "unknown")


def cards(bot: Bot) -> dict[int, str]:
    """Approval number → the ts of its card in the channel."""
    found = {}
    for (_, ts), message in list(bot.slack.messages.items()):
        text = message_text(message)
        if "Approval needed" in text and (number := _number(text)) is not None:
            found[number] = ts
    return found


def _number(text: str) -> int | None:
    head, sep, rest = text.partition("#")
    digits = "".join(c for c in rest[:8] if c.isdigit()) if sep else ""
    return int(digits) if digits else None


def answers(bot: Bot) -> list[Any]:
    """What reached Slack for people: channel posts and private answers."""
    return [c for c in bot.slack.calls if c.ok and c.method in ("chat.postMessage", "response_url")]


def amount(body: bytes) -> str:
    """The amount a VoIPcloud funds move carried (its form field)."""
    found = re.search(rb'(?:name="amount"\r\n\r\n|amount=)([0-9.]+)', body)
    return found.group(1).decode() if found else "?"


def puts(bot: Bot) -> list[bytes]:
    return [r.body for r in bot.voipcloud.control.requests if r.method == "PUT"]


async def outbox_empty(bot: Bot) -> bool:
    rows = await table_rows(bot.database_url, deliveries)
    return not [r for r in rows if r["status"] in ("pending", "sending")]


async def quietly(sent: Any) -> Sent | None:
    """A request Slack sent; None when the app's HTTP answer itself was lost in the cut."""
    try:
        return await sent  # type: ignore[no-any-return]
    except Exception:
        return None


@on_postgresql
async def test_a_restart_mid_burst_loses_and_doubles_nothing(database_url: str) -> None:
    # A run is called stale after 5 s and a row being sent is retaken after 5 s (2 min and
    # 120 s in production, where they outlast any provider call and Slack's retries); a
    # heartbeat each second keeps a healthy run from ever looking stale.
    async with (
        db_proxy(database_url) as proxy,
        running_bot(
            proxy.url,
            sweep_every=0.2,
            stale_after=timedelta(seconds=5),
            outbox_lease=timedelta(seconds=5),
            heartbeat_every=1.0,
        ) as bot,
    ):
        # The requests are made, and the pool holds connections a restart will kill.
        for n in range(1, MOVES + 1):
            await bot.slash("/voipcloud", f"move-funds 10023 {n}.00 top-up", user="U1")
        await wait_until(lambda: len(cards(bot)) == MOVES, "every card in the channel", 20)
        card_ts = cards(bot)

        # The burst: every approval and some balances at once; the server "restarts" as the
        # first provider call lands, with the rest in flight.
        burst = [
            *(bot.click(bot.message(card_ts[n]), "Approve", user="U2") for n in card_ts),
            *(bot.slash("/voipcloud", "balance 10023", user="U1") for _ in range(BALANCES)),
        ]
        running = [asyncio.ensure_future(quietly(s)) for s in burst]
        await wait_until(lambda: bool(puts(bot)), "the first provider call", 20)
        proxy.cut()
        during = await quietly(bot.slash("/voipcloud", "balance 10023", user="U1"))
        await asyncio.gather(*running)
        # Down until someone has knocked (the sweeper every 0.2 s): a restart refuses too.
        await wait_until(lambda: proxy.refused >= 1, "a connection refused while down", 20)
        proxy.resume()

        # After the restart: new connections (the pool's dead ones are not handed out), and
        # an approval whose click the cut refused is clicked again, as its approver would.
        async def settled() -> bool:
            rows = await table_rows(bot.database_url, approvals)
            return len(rows) == MOVES and all(r["status"] != "executing" for r in rows)

        # A claim whose commit the cut cut off may have committed: its row waits out the
        # sweeper's stale_after before it is called outcome unknown.
        await wait_until(settled, "every approval out of executing", 60)
        for row in await table_rows(bot.database_url, approvals):
            if row["status"] == "pending":
                await bot.click(bot.message(card_ts[row["id"]]), "Approve", user="U2")
        await wait_until(settled, "every approval decided", 30)
        # A row the cut caught while it was being sent waits out its lease (in case another
        # replica is sending it), then goes: the outbox drains.
        await wait_until(lambda: outbox_empty(bot), "the outbox to drain", 60)
        shown = len(answers(bot))
        after = await bot.slash("/voipcloud", "balance 10023", user="U1")
        await wait_until(lambda: len(answers(bot)) > shown, "a balance after the restart", 20)

        rows = await table_rows(bot.database_url, approvals)
        calls = puts(bot)
        finals = {ts: message_text(bot.slack.message(c, ts)) for (c, ts) in bot.slack.messages}
    assert proxy.cuts == 1 and proxy.refused >= 1
    assert during is None or during.answer.status_code == 200
    assert after.answer.status_code == 200
    assert sorted(r["status"] for r in rows) and all(r["status"] in FINAL for r in rows), rows
    # Each approval's provider call happened at most once, and once for each that is done; an
    # approval whose run the cut caught without a kept answer is outcome unknown, for a person.
    made = Counter(amount(body) for body in calls)
    assert all(times == 1 for times in made.values()), made
    for row in rows:
        ended = row["resolution"] or row["status"]
        n = made[amount(row["command_line"].encode())]
        assert n == 1 if ended == "done" else n <= 1, (row, made)
        assert ended in ("done", "unknown", "not done", "failed"), row
    # Each card was posted once, and shows how its approval ended.
    posts = [c for c in bot.slack.calls_to("chat.postMessage") if c.ok]
    card_posts = [c for c in posts if "Approval needed" in str(c.params.get("text", ""))]
    assert len(card_posts) == MOVES
    for row in rows:
        card = finals[card_ts[row["id"]]].lower()
        ended = row["resolution"] or row["status"]  # "unknown", settled "not done" by a kept answer
        assert "running…" not in card and ended in card, (row, card)
