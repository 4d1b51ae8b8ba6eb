"""The note that needs no database (bot/slack/direct.py): through the response_url, tried
again when Slack answers 429 or 5xx; through chat.postEphemeral when there is no response_url
or it will not take the note; and never an exception, whatever Slack does."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.direct import DirectNotes
from tests.support.slack_api import Fault, SlackApiDouble, serve_slack_double

TEXT = "nothing was done; please try again in a minute."


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def notes(slack: SlackApiDouble, http: httpx.AsyncClient) -> DirectNotes:
    client = AsyncWebClient(base_url=slack.url, token=slack.bot_token)
    return DirectNotes(client, http, pause=0.0)


async def test_the_note_goes_through_the_response_url_as_an_ephemeral_message(
    slack: SlackApiDouble, http: httpx.AsyncClient
) -> None:
    taken = await notes(slack, http).tell(
        TEXT, channel="C1", user="U1", response_url=slack.response_url("r1")
    )

    assert taken is True
    [call] = slack.calls_to("response_url")
    assert call.params == {"response_type": "ephemeral", "replace_original": False, "text": TEXT}
    assert slack.calls_to("chat.postEphemeral") == []


async def test_a_response_url_that_answers_429_or_5xx_is_tried_again(
    slack: SlackApiDouble, http: httpx.AsyncClient
) -> None:
    slack.inject("response_url", Fault(status=503), Fault(status=429, retry_after=0))

    taken = await notes(slack, http).tell(
        TEXT, channel="C1", user="U1", response_url=slack.response_url("r2")
    )

    assert taken is True
    statuses = [c.status for c in slack.calls_to("response_url")]
    assert statuses == [503, 429, 200]
    assert slack.calls_to("chat.postEphemeral") == []


async def test_a_response_url_that_keeps_failing_gives_way_to_chat_post_ephemeral(
    slack: SlackApiDouble, http: httpx.AsyncClient
) -> None:
    slack.inject("response_url", *[Fault(status=500)] * 3)

    taken = await notes(slack, http).tell(
        TEXT, channel="C1", user="U1", response_url=slack.response_url("r3")
    )

    assert taken is True
    assert [c.status for c in slack.calls_to("response_url")] == [500, 500, 500]
    [call] = slack.calls_to("chat.postEphemeral")
    assert (call.params["channel"], call.params["user"], call.params["text"]) == ("C1", "U1", TEXT)


async def test_without_a_response_url_the_note_is_posted_ephemeral(
    slack: SlackApiDouble, http: httpx.AsyncClient
) -> None:
    taken = await notes(slack, http).tell(TEXT, channel="C1", user="U1")

    assert taken is True
    [call] = slack.calls_to("chat.postEphemeral")
    assert (call.params["channel"], call.params["user"]) == ("C1", "U1")


async def test_nowhere_to_send_is_logged_and_sends_nothing(
    slack: SlackApiDouble, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    taken = await notes(slack, http).tell(TEXT, channel="", user="U1")

    assert taken is False
    assert slack.calls == []
    [record] = [r for r in caplog.records if r.name == "bot.slack.direct"]
    assert record.levelno == logging.WARNING and record.exc_info is None


async def test_slack_away_too_is_logged_without_a_traceback_and_never_raises(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = "http://127.0.0.1:9"  # the discard port: nothing listens there
    client = AsyncWebClient(base_url=f"{nowhere}/api/", token="xoxb-test")
    direct = DirectNotes(client, http, pause=0.0)

    taken = await direct.tell(TEXT, channel="C1", user="U1", response_url=f"{nowhere}/r")

    assert taken is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["bot.slack.direct"]
    assert warnings[0].exc_info is None and TEXT not in warnings[0].getMessage()
