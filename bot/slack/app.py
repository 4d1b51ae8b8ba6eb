"""The Bolt AsyncApp: one listener per slash command, one for buttons, one for modals.

Every listener acknowledges first and then hands the request to the dispatcher in a task of its
own (`after_ack`), so Slack gets its 200 within milliseconds whatever the providers or Slack's
own Web API do, and a failure after the ack is handled in one place.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import uuid
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.ops.metrics import Metrics
from bot.slack.blocks import ACTION_PREFIX, form_values
from bot.slack.home import build_home
from bot.slack.outbox import Outbox
from bot.slack.surface import SlackSurface
from bot.surface import guarded

log = logging.getLogger(__name__)


def web_client(settings: Settings, metrics: Metrics | None = None) -> AsyncWebClient:
    """The bot's Slack Web API client; with `metrics`, every call attempt is counted."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    # slack_sdk's own handlers retry each call a little (connection errors; 429 after its
    # Retry-After; 500 and 503); bot.slack.outbox's outbox retries beyond that and across restarts.
    handlers: list[AsyncRetryHandler] = [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=2),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]
    if metrics is not None:
        handlers = [metrics.slack_observer(settings.slack_api_url), *handlers]
    return AsyncWebClient(
        token=token, base_url=settings.slack_api_url, retry_handlers=handlers, timeout=15
    )


def settle_heap() -> None:
    """Leave what start-up built (modules, clients, the app) out of every later garbage
    collection, once a long-running process (`serve`, `socket`) is ready.

    The bot starts with some 150,000 objects tracked by the garbage collector; a burst of
    commands soon triggers a full collection, which walked all of them for 100-300 ms on a busy
    2-core machine while no acknowledgement could be written (bench/ack_latency.py, profiled).
    `gc.freeze()` moves them to a permanent generation that collections skip
    (https://docs.python.org/3/library/gc.html#gc.freeze); the price is that any of them that
    later becomes a reference cycle stays in memory.
    """
    gc.collect()
    gc.freeze()


def group_lookup(client: AsyncWebClient) -> Any:
    async def members(group: str) -> list[str]:
        response = await client.usergroups_users_list(usergroup=group)
        users: list[object] = response.get("users", [])
        return [str(user) for user in users]

    return members


def build_app(settings: Settings, dispatcher: Dispatcher, outbox: Outbox) -> AsyncApp:
    client = outbox.client
    signing = settings.slack_signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=signing.get_secret_value() if signing else None,
        request_verification_enabled=signing is not None,
        # Every listener acknowledges and hands its work to `after_ack` itself, so Bolt may run
        # it inline: in its default mode Bolt starts a task per listener and polls for the ack
        # every 10 ms (slack_bolt/listener/asyncio_runner.py), a task and a sleep per request.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )
    running: set[asyncio.Task[None]] = set()

    def after_ack(work: Awaitable[Any], surface: SlackSurface | None) -> None:
        """Run `work` once Slack has its 200. Whatever it raises is handled here, in one
        place: logged with a reference, and the user told in one sentence."""

        async def run() -> None:
            try:
                await work
            except Exception:
                reference = uuid.uuid4().hex[:8]
                log.exception("a Slack request failed after its ack (reference %s)", reference)
                if surface is not None:
                    await guarded(surface).private(messages.failed_after_ack(reference))

        task = asyncio.create_task(run())
        running.add(task)
        task.add_done_callback(running.discard)

    def surface_of(body: dict[str, Any], channel: str, user: str) -> SlackSurface:
        return SlackSurface(
            outbox,
            channel=channel,
            user=user,
            response_url=body.get("response_url"),
            trigger_id=body.get("trigger_id"),
        )

    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        channel, user = str(body.get("channel_id", "")), str(body.get("user_id", ""))
        surface = surface_of(body, channel, user)
        line = f"{body.get('command', '')} {body.get('text') or ''}"
        after_ack(dispatcher.run(line, user=user, channel=channel, surface=surface), surface)

    # One listener for every slash command: Bolt tries listeners in turn, each match building
    # its arguments afresh, so one pattern beats a listener per command.
    slashes = "|".join(re.escape(slash) for slash in dispatcher.slashes)
    app.command(re.compile(f"^/(?:{slashes})$"))(on_command)

    @app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))
    async def on_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id", ""
        )
        user = str((body.get("user") or {}).get("id", ""))
        surface = surface_of(body, channel, user)
        value = str(action.get("value", ""))
        after_ack(dispatcher.run(value, user=user, channel=channel, surface=surface), surface)

    @app.view("form")
    async def on_form(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            path, channel = str(meta.get("path", "")), str(meta.get("channel", ""))
            user = str(body["user"]["id"])
            values = form_values(view["state"]["values"])
            command, errors = await dispatcher.check_form(path, values, user=user, channel=channel)
        except Exception:
            # The modal must still close or show errors; the failure is logged with a reference.
            reference = uuid.uuid4().hex[:8]
            log.exception("a form could not be checked (reference %s)", reference)
            await ack(response_action="errors", errors={"_": messages.failed_after_ack(reference)})
            return
        if errors or command is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        surface = SlackSurface(outbox, channel=channel, user=user)
        work = dispatcher.run_values(command, values, user=user, channel=channel, surface=surface)
        after_ack(work, surface)

    @app.event("app_home_opened")
    async def on_home(ack: AsyncAck, event: dict[str, Any]) -> None:
        await ack()
        if event.get("tab", "home") != "home":
            return
        user = str(event["user"])

        async def publish() -> None:
            await client.views_publish(user_id=user, view=await build_home(dispatcher, user))

        after_ack(publish(), None)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled %s while handling a Slack request", type(error).__name__)

    return app
