"""The outbox rows of an approval's card and of its end, refused by the database.

The bot talks to the Slack Web API double through the real outbox, so a fault fails the very
INSERT a card, a result or a note would be (`tests/support/db_faults.py`, matched by the row's
key). A request whose card was refused is withdrawn and its requester told the database failed;
a run whose end was refused is recorded, and the sweeper shows that end once the grace is over:
the card, the result and the requester's note, each once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import OperationalError

from bot import messages
from bot.approvals import shown
from bot.approvals.flow import WITHDRAWN
from bot.catalog import ProviderRuntime
from bot.config import Settings
from bot.runtime import Runtime, open_runtime
from bot.slack.direct import DirectNotes
from bot.slack.listeners import AfterAck
from bot.slack.surface import SlackSurface
from bot.storage import store
from tests.support import Clock
from tests.support.db_faults import OUTBOX, db_faults
from tests.support.drill import DRILL, STALE, START, DrillClient
from tests.support.slack_api import BOT_TOKEN, SlackApiDouble, serve_slack_double

CHANNEL = "C1"


@dataclass
class Shop:
    runtime: Runtime
    client: DrillClient
    clock: Clock
    slack: SlackApiDouble

    def surface(self, user: str, respond: str) -> SlackSurface:
        url = self.slack.response_url(respond)
        return SlackSurface(self.runtime.outbox, channel=CHANNEL, user=user, response_url=url)  # type: ignore[arg-type]

    async def run(self, line: str, user: str) -> bool:
        return await self.runtime.dispatcher.run(
            line, user=user, channel=CHANNEL, surface=self.surface(user, f"{user}-{line}")
        )

    def posts(self, channel: str = CHANNEL) -> list[str]:
        calls = self.slack.calls_to("chat.postMessage")
        return [str(c.params.get("text")) for c in calls if c.ok and c.params["channel"] == channel]

    def results(self) -> list[str]:
        """The run's result as posted (the card and the progress bar are posts too)."""
        return [t for t in self.posts() if t.startswith("moved r1")]

    def card(self) -> str:
        [first] = [c for c in self.slack.calls_to("chat.postMessage") if c.ok][:1]
        message = self.slack.message(CHANNEL, first.response["ts"])
        return str(message.get("text"))

    def told(self, user: str) -> list[str]:
        """The requester's notes: how their request ended, in their direct messages."""
        return [t for t in self.posts(user) if "Your request #1" in t]

    def notes(self, respond: str) -> list[str]:
        calls = self.slack.calls_to("response_url")
        return [str(c.params.get("text")) for c in calls if c.name == respond]


@pytest.fixture
async def shop(make_settings: Callable[..., Settings], database_url: str) -> AsyncIterator[Shop]:
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    async with serve_slack_double() as slack:
        client, clock = DrillClient(), Clock(START)
        runtime = await open_runtime(
            make_settings(billing_timezone="Asia/Tokyo"),
            slack=AsyncWebClient(base_url=slack.url, token=BOT_TOKEN),
            runtimes=[ProviderRuntime(DRILL, "live", client)],
            clock=clock,
            working_after=60.0,
            stale_after=STALE,
        )
        try:
            yield Shop(runtime, client, clock, slack)
        finally:
            client.release.set()
            await runtime.close()


class Injected:
    """The database's health as the listeners report it, taking the injected fault for the
    server gone (a real lost connection is classified in tests/slack/test_database_down.py)."""

    down = False

    def failed(self, exc: BaseException, *, where: str) -> bool:
        return isinstance(exc, OperationalError)

    async def ok(self, *, where: str) -> None:
        return None


async def row(shop: Shop) -> dict[str, object]:
    [found] = [r for r in await _rows(shop) if r["id"] == 1]
    return found


async def _rows(shop: Shop) -> list[dict[str, object]]:
    from tests.support.e2e import table_rows

    return await table_rows(shop.runtime.settings.database_url, store.approvals)


async def test_a_card_the_outbox_never_got_withdraws_the_request(shop: Shop) -> None:
    """Its approvers could not approve a request with no card: it is withdrawn, and the
    requester hears the database failed, through the path that needs no database."""
    surface = shop.surface("U1", "slash")

    async with httpx.AsyncClient(timeout=5) as http:
        direct = DirectNotes(AsyncWebClient(base_url=shop.slack.url, token=BOT_TOKEN), http)
        after_ack = AfterAck(health=Injected(), direct=direct)
        with db_faults(shop.runtime.engine) as faults:
            faults.fail(OUTBOX, params=r"'approval:1'")
            work = shop.runtime.dispatcher.run(
                "/drill move r1", user="U1", channel=CHANNEL, surface=surface
            )
            after_ack(work, surface)
            await asyncio.gather(*after_ack.running)
            assert faults.fired == 1

    found = await row(shop)
    assert (found["status"], found["reason"]) == ("rejected", WITHDRAWN)
    notes = shop.notes("slash")
    assert messages.withdrawn(1) in notes and messages.DATABASE_DOWN in notes, notes
    assert shop.posts() == []  # no card
    assert not await shop.run("/billing approve 1", "U2") or await _status(shop) == "rejected"
    assert shop.client.calls == []


async def _status(shop: Shop) -> object:
    return (await row(shop))["status"]


# Each row of the end, refused once: the final card's update (after "running…"), the result's
# post, the requester's note (the approvers' notes went out with the request).
ENDS = {
    "final card": (r"chat\.update", 2),
    "result": (r"'approval:1:result'", 1),
    "requester's note": (r"'notice', 'U1'", 1),
}


@pytest.mark.parametrize("refused", ENDS, ids=list(ENDS))
async def test_an_end_the_outbox_never_got_is_shown_once_by_the_sweeper(
    shop: Shop, refused: str
) -> None:
    assert await shop.run("/drill move r1", "U1")
    pattern, nth = ENDS[refused]
    with db_faults(shop.runtime.engine) as faults:
        faults.fail(OUTBOX, params=pattern, nth=nth)
        assert await shop.run("/billing approve 1", "U2")
        assert faults.fired == 1
    assert shop.client.calls == ["r1"]
    found = await row(shop)
    assert found["status"] == "done" and found["shown_at"] is None

    await shop.runtime.flow.sweep()  # within the grace: the flow may be showing it now
    assert (await row(shop))["shown_at"] is None

    shop.clock.advance(seconds=shown.GRACE.total_seconds() + 1)
    await shop.runtime.flow.sweep()
    assert (await row(shop))["shown_at"] is not None
    assert "✅" in shop.card() and "running" not in shop.card().lower(), shop.card()
    assert shop.results() == ["moved r1"]  # once, whatever was refused
    assert len(shop.told("U1")) == 1

    await shop.runtime.flow.sweep()  # shown: never again
    shop.clock.advance(minutes=10)
    await shop.runtime.flow.sweep()
    assert shop.results() == ["moved r1"] and len(shop.told("U1")) == 1
    assert shop.client.calls == ["r1"]


async def test_an_end_shown_at_once_is_marked_and_never_shown_again(shop: Shop) -> None:
    assert await shop.run("/drill move r1", "U1")
    assert await shop.run("/billing approve 1", "U2")
    assert (await row(shop))["shown_at"] is not None
    shop.clock.advance(minutes=10)
    await shop.runtime.flow.sweep()
    assert shop.results() == ["moved r1"] and len(shop.told("U1")) == 1


async def test_an_old_final_approval_is_never_shown_again(shop: Shop) -> None:
    """A final row marked shown (as the migration marks those from before it) stays as it is."""
    assert await shop.run("/drill move r1", "U1")
    assert await shop.run("/billing approve 1", "U2")
    posts = list(shop.posts())
    shop.clock.advance(days=30)
    await shop.runtime.flow.sweep()
    assert shop.posts() == posts and shop.client.calls == ["r1"]
