"""`billing-bot socket`: the same app over Socket Mode, against the Socket Mode double."""

from __future__ import annotations

import asyncio

import pytest

from bot.cli import open_socket
from bot.runtime import load_settings
from commands.invoicexpress import client as ix_api
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from tests.support.e2e import (
    CHANNEL,
    bot_environment,
    buttons,
    drain,
    invoicexpress_env,
)
from tests.support.server import serve_asgi
from tests.support.slack_api import serve_slack_double
from tests.support.socket_mode import serve_socket_mode_double


async def test_a_slash_command_over_socket_mode_is_acked_then_answered(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = InvoiceXpressSandbox()
    async with (
        serve_slack_double() as slack,
        serve_socket_mode_double(slack) as socket,
        serve_asgi(sandbox.app()) as ix_url,
    ):
        environment = bot_environment(
            database_url=database_url, slack=slack, providers=invoicexpress_env(ix_url, sandbox)
        )
        del environment["SLACK_SIGNING_SECRET"]  # Socket Mode needs no signing secret
        for name, value in {**environment, "SLACK_APP_TOKEN": slack.app_token}.items():
            monkeypatch.setenv(name, value)
        if not database_url.startswith("sqlite"):
            from bot.storage.store import upgrade

            await upgrade(database_url)
        handler, runtime = await open_socket(load_settings())
        try:
            await handler.connect_async()
            await socket.wait_connected()
            baseline = asyncio.all_tasks()
            envelope = await socket.push_slash_command(
                "/invoicexpress",
                "sequences",
                response_url=slack.response_url("socket"),
                user_id="U0VIEWER",
                channel_id=CHANNEL,
            )
            ack = await socket.wait_for_ack(envelope)
            [post] = await slack.wait_for("chat.postMessage")
            await drain(baseline)
        finally:
            await handler.close_async()
            await runtime.close()

    assert ack.payload in (None, {})
    [opened] = slack.calls_to("apps.connections.open")
    assert opened.token == slack.app_token
    assert post.params["channel"] == CHANNEL and post.token == slack.bot_token
    message = slack.message(CHANNEL, post.response["ts"])
    others = [s for s in sandbox.sequences.values() if not s.default]
    assert list(buttons(message)) == [f"Set {s.serie} as default" for s in others]
    [asked] = sandbox.control.requests
    assert (asked.method, asked.path) == ("GET", ix_api.SEQUENCES)
