"""With the database away, a person who asks is told so in one sentence, through a path that
needs no database (the ack, the response_url, the modal's errors); no provider is called and no
card is posted; once the database is back, the same command works without a restart.

The outage is made as it happens: SQLite's file (and its -wal) made read-only under the running
bot; PostgreSQL behind a loopback proxy that is cut (every connection closed, new ones refused).
A full SQLite disk is tested where it can be made reliably (tests/slack/test_database_down.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from starlette.types import Receive, Scope, Send

from bot import messages
from tests.support.e2e import CHANNEL, Bot, Sent, running_bot, wait_until
from tests.support.outage import proxied, unwritable
from tests.support.slack_api import Call

MOVE = "move-funds 10023 5.00 March top-up"


def provider_calls(bot: Bot) -> int:
    return sum(len(answers) for answers in bot.answered.values())


def cards(bot: Bot) -> list[Call]:
    """What was posted to the billing channel (the approvers' DMs go elsewhere)."""
    return [c for c in bot.slack.calls_to("chat.postMessage") if c.params.get("channel") == CHANNEL]


async def told(bot: Bot, sent: Sent) -> str:
    """The sentence a slash command or a click got: in the ack's body when the bot already knew
    the database was down, else through its response_url."""
    assert sent.answer.status_code == 200
    if sent.answer.content not in (b"", b"{}"):
        return str(sent.answer.json()["text"])
    return await bot.private(sent.respond, containing=messages.DATABASE_DOWN)


async def ready(bot: Bot) -> None:
    async def writable() -> bool:
        return (await bot.http.get(f"{bot.url}/readyz")).status_code == 200

    await wait_until(writable, "/readyz to say the database is back", timeout=20)


async def the_outage_is_told_and_survived(
    bot: Bot, outage: Callable[[], contextlib.AbstractContextManager[object]]
) -> None:
    await bot.slash("/voipcloud", MOVE, user="U1")
    [card_post] = await bot.slack.wait_for("chat.postMessage")
    card = bot.message(card_post.response["ts"])
    await bot.slash("/invoicexpress", "at-communication", user="U0ADMIN")
    [opened] = await bot.slack.wait_for("views.open")
    view = opened.response["view"]
    calls, posts = provider_calls(bot), len(cards(bot))

    with outage():
        first = await told(bot, await bot.slash("/voipcloud", MOVE, user="U1"))
        again = await told(bot, await bot.slash("/voipcloud", MOVE, user="U1"))
        click = await told(bot, await bot.click(card, "Approve", user="U2"))
        form = await bot.submit(
            view,
            {"subuser": "123456789/3", "password": "pw", "communication_type": "manual"},
            user="U0ADMIN",
        )
        during = await bot.http.get(f"{bot.url}/readyz")
        calls_during = provider_calls(bot)
        posts_during = len(cards(bot))

    await ready(bot)
    back = await bot.slash("/voipcloud", MOVE, user="U1")
    await wait_until(lambda: len(cards(bot)) > posts_during, "the card, once the database is back")
    new_card = cards(bot)[posts_during]

    assert first == again == click == messages.DATABASE_DOWN
    assert form.status_code == 200
    assert form.json()["response_action"] == "errors"
    assert list(form.json()["errors"].values()) == [messages.DATABASE_DOWN]
    assert during.status_code == 503
    assert calls_during == calls  # no provider was called
    assert posts_during == posts  # and no card posted
    assert back.answer.status_code == 200
    assert "Approval needed" in str(new_card.params.get("text", "")) + str(
        new_card.params.get("blocks", "")
    )


async def test_people_are_told_while_the_database_is_away(
    database_url: str,
) -> None:
    if database_url.startswith("sqlite"):
        path = Path(make_url(database_url).database or "")
        async with running_bot(database_url) as bot:
            await the_outage_is_told_and_survived(bot, lambda: unwritable(path))
        return
    with proxied(database_url) as (url, proxy):

        @contextlib.contextmanager
        def cut() -> Iterator[None]:
            proxy.cut()
            try:
                yield
            finally:
                proxy.mend()

        async with running_bot(url) as bot:
            await the_outage_is_told_and_survived(bot, cut)


async def test_a_command_the_provider_answered_is_not_told_nothing_was_done(
    tmp_path: Path,
) -> None:
    """A command with no approval reaches its provider before anything is written; when its
    audit row then cannot be written, the person must not read "nothing was done"."""
    path = tmp_path / "bot.db"
    async with running_bot(f"sqlite:///{path}") as bot:
        await ready(bot)
        calls = provider_calls(bot)
        sandbox = bot.answered["invoicexpress"]
        provider = sandbox.app
        with contextlib.ExitStack() as outage:

            async def failing_once_reached(scope: Scope, receive: Receive, send: Send) -> None:
                # The file turns read-only as the provider takes the request, not before: a
                # background loop seeing it first would turn the command away at its ack.
                outage.enter_context(unwritable(path))
                await provider(scope, receive, send)

            sandbox.app = failing_once_reached
            sent = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
            said = await bot.private(sent.respond, containing="reached the provider")
            calls_during = provider_calls(bot)
        await ready(bot)

    assert said == messages.DATABASE_DOWN_AFTER_PROVIDER
    assert calls_during == calls + 1
