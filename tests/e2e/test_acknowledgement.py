"""How the app acknowledges: one listener answers every declared slash command (and no other),
and the Home tab is published after its event has been acknowledged."""

from __future__ import annotations

import json
import time

from bot.storage.store import audit
from commands.registry import PROVIDERS
from tests.support.e2e import running_bot, table_rows
from tests.support.slack_api import APP_ID, TEAM_ID


async def test_every_declared_slash_command_reaches_the_bot(database_url: str) -> None:
    slashes = sorted({"billing", *(c.slash for p in PROVIDERS for c in p.commands)})
    async with running_bot(database_url) as bot:
        sent = {slash: await bot.slash(f"/{slash}", "help", user="U0VIEWER") for slash in slashes}
        notes = {slash: await bot.private(s.respond) for slash, s in sent.items()}

    assert {slash: s.answer.status_code for slash, s in sent.items()} == dict.fromkeys(slashes, 200)
    for slash, note in notes.items():
        assert f"/{slash}" in note, (slash, note)


async def test_a_slash_command_the_bot_does_not_declare_is_left_alone(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        # Near misses of declared commands: the listener's pattern is anchored at both ends.
        others = [
            await bot.slash(command, "help", user="U0VIEWER")
            for command in ("/billingx", "/xbilling", "/invoice", "/weather")
        ]
        # A declared command afterwards, so whatever the others might have done has happened.
        last = await bot.slash("/billing", "help", user="U0VIEWER")
        await bot.private(last.respond)
        rows = await table_rows(database_url, audit)

    assert [s.answer.status_code for s in others] == [404] * len(others)
    assert all(bot.privates(s.respond) == [] for s in others)
    assert bot.slack.calls_to("chat.postMessage") == []
    assert rows == []  # help is not audited, and nothing else ran
    sandboxes = (bot.invoicexpress, bot.smsc, bot.voipcloud)
    assert [len(s.control.requests) for s in sandboxes] == [0, 0, 0]


async def test_the_home_tab_is_published_after_its_event_is_acknowledged(
    database_url: str,
) -> None:
    event = {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": "Ev0HOME0001",
        "event_time": int(time.time()),
        "event": {
            "type": "app_home_opened",
            "user": "U0VIEWER",
            "channel": "D0HOME0001",
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
        },
    }
    async with running_bot(database_url) as bot:
        answer = await bot.post(json.dumps(event).encode(), {"Content-Type": "application/json"})
        [publish] = await bot.slack.wait_for("views.publish")

    assert answer.status_code == 200
    assert publish.params["user_id"] == "U0VIEWER"
    assert "U0VIEWER" in bot.slack.home_views
