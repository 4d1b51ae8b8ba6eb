"""The bot's Web API client in a long-running process (`serve`, `socket`): its calls share
kept-alive connections (`bot.slack.app.slack_session`), and a call that takes longer than
SLACK_TIMEOUT is still cut off, since slack_sdk passes no timeout of its own to a shared
session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.slack import app
from bot.slack.app import slack_session, web_client
from tests.support.slack_api import Fault, SlackApiDouble, serve_slack_double


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
def settings(slack: SlackApiDouble) -> Settings:
    return Settings(slack_bot_token=slack.bot_token, slack_api_url=slack.url)


async def test_calls_with_the_process_s_session_share_connections(
    settings: Settings, slack: SlackApiDouble
) -> None:
    async with slack_session() as session:
        client = web_client(settings, session=session)
        for n in range(5):
            await client.chat_postMessage(channel="C1", text=f"message {n}")
    shared = len(slack.connections)
    slack.connections.clear()
    alone = web_client(settings)  # slack_sdk's default: a session, and a connection, per call
    for n in range(5):
        await alone.chat_postMessage(channel="C1", text=f"message {n}")
    assert (shared, len(slack.connections)) == (1, 5)


async def test_a_call_over_the_time_limit_is_cut_off_with_the_shared_session(
    settings: Settings, slack: SlackApiDouble, monkeypatch: Any
) -> None:
    monkeypatch.setattr(app, "SLACK_TIMEOUT", 0.2)
    slack.inject("chat.postMessage", *[Fault(status=0, stall=2)] * 3)  # with its retries
    async with slack_session() as session:
        client = web_client(settings, session=session)
        client.retry_handlers = []
        with pytest.raises(TimeoutError):
            await client.chat_postMessage(channel="C1", text="late")
    assert session.timeout == aiohttp.ClientTimeout(total=0.2) and session.closed
