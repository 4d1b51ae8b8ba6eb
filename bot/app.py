"""The Bolt AsyncApp: one listener per slash command, one for buttons, one for modals.

Every listener acknowledges first and then hands the request to the dispatcher, so Slack gets
its answer within milliseconds whatever the providers do (Bolt runs the rest after the ack).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import async_default_handlers
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.home import build_home
from bot.metrics import Metrics
from bot.replies import ACTION_PREFIX, SlackSurface, form_values

log = logging.getLogger(__name__)


def web_client(settings: Settings, metrics: Metrics | None = None) -> AsyncWebClient:
    """The bot's Slack Web API client; with `metrics`, every call attempt is counted."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    handlers = async_default_handlers()
    if metrics is not None:
        handlers = [metrics.slack_observer(settings.slack_api_url), *handlers]
    return AsyncWebClient(token=token, base_url=settings.slack_api_url, retry_handlers=handlers)


def group_lookup(client: AsyncWebClient) -> Any:
    async def members(group: str) -> list[str]:
        response = await client.usergroups_users_list(usergroup=group)
        users: list[object] = response.get("users", [])
        return [str(user) for user in users]

    return members


def build_app(settings: Settings, dispatcher: Dispatcher, client: AsyncWebClient) -> AsyncApp:
    signing = settings.slack_signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=signing.get_secret_value() if signing else None,
        request_verification_enabled=signing is not None,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )

    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        surface = SlackSurface(
            client,
            channel=body["channel_id"],
            user=body["user_id"],
            response_url=body.get("response_url"),
            trigger_id=body.get("trigger_id"),
        )
        line = f"{body['command']} {body.get('text') or ''}"
        await dispatcher.run(
            line, user=body["user_id"], channel=body["channel_id"], surface=surface
        )

    for slash in dispatcher.slashes:
        app.command(f"/{slash}")(on_command)

    @app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))
    async def on_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id", ""
        )
        user = body["user"]["id"]
        surface = SlackSurface(
            client,
            channel=channel,
            user=user,
            response_url=body.get("response_url"),
            trigger_id=body.get("trigger_id"),
        )
        await dispatcher.run(str(action["value"]), user=user, channel=channel, surface=surface)

    @app.view("form")
    async def on_form(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = json.loads(view.get("private_metadata") or "{}")
        path, channel = str(meta.get("path", "")), str(meta.get("channel", ""))
        user = body["user"]["id"]
        values = form_values(view["state"]["values"])
        command, errors = await dispatcher.check_form(path, values, user=user, channel=channel)
        if errors or command is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        surface = SlackSurface(client, channel=channel, user=user)
        await dispatcher.run_values(command, values, user=user, channel=channel, surface=surface)

    @app.event("app_home_opened")
    async def on_home(body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        user = str(event["user"])
        await client.views_publish(user_id=user, view=await build_home(dispatcher, user))

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled %s while handling a Slack request", type(error).__name__)

    return app
