"""The Bolt AsyncApp and its Web API client: the listeners of `bot.slack.listeners` put
together, behind the middleware that bounds what comes in.

Every listener acknowledges first and then hands the request in (`Intake`, the dispatcher) in a
task of its own, so Slack gets its 200 within milliseconds whatever the providers or Slack's own
Web API do, and a failure after the ack is handled in one place (`AfterAck`).
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.ops.metrics import Metrics
from bot.slack.blocks import ACTION_PREFIX
from bot.slack.listeners import ButtonClick, FormSubmitted, HomeOpened, SlashCommand
from bot.slack.outbox import Outbox
from bot.slack.steps import FunctionExecuted

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
    # No shared aiohttp session: slack_sdk then opens one, and a connection, for each call.
    # Kept-alive connections were measured (bench/approval_cost.py): every call on one waited
    # about 44 ms against the loopback Slack double, 2.5 ms without, and one approval at a time
    # took 53 ms longer; more calls at once gained 10-18 %. Nor do they save CPU, which is what
    # a burst of approvals waits for: 1.2 ms of the caller's per chat.postMessage either way
    # (a session per call or one kept, 200 calls against the double). The default stays.
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


@dataclass(frozen=True)
class Listeners:
    command: SlashCommand
    button: ButtonClick
    form: FormSubmitted
    home: HomeOpened
    step: FunctionExecuted


def build_app(
    *,
    settings: Settings,
    outbox: Outbox,
    slashes: Sequence[str],
    listeners: Listeners,
    steps: Sequence[str] = (),
    middleware: Sequence[Callable[..., Awaitable[Any]]] = (),
) -> AsyncApp:
    """The Bolt app: `middleware` first (before any listener reads text), then one listener for
    every slash command, one for buttons, one for modals and one for the App Home."""
    signing = settings.slack_signing_secret
    app = AsyncApp(
        client=outbox.client,
        signing_secret=signing.get_secret_value() if signing else None,
        request_verification_enabled=signing is not None,
        # Every listener acknowledges and hands its work to `after_ack` itself, so Bolt may run
        # it inline: in its default mode Bolt starts a task per listener and polls for the ack
        # every 10 ms (slack_bolt/listener/asyncio_runner.py), a task and a sleep per request.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        # A step's `bot_access_token` is never used: completions go through the outbox with
        # the app's own token (bot.slack.steps), so the token stays out of every client.
        attaching_function_token_enabled=False,
    )
    for step in middleware:
        app.use(step)
    # One listener for every slash command: Bolt tries listeners in turn, each match building
    # its arguments afresh, so one pattern beats a listener per command.
    pattern = "|".join(re.escape(slash) for slash in slashes)
    app.command(re.compile(f"^/(?:{pattern})$"))(listeners.command)
    app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))(listeners.button)
    app.view("form")(listeners.form)
    app.event("app_home_opened")(listeners.home)
    if steps:  # Workflow Builder steps: one listener for every callback_id, as for commands
        names = "|".join(re.escape(step) for step in steps)
        app.function(re.compile(f"^(?:{names})$"), auto_acknowledge=False)(listeners.step)
    app.error(on_error)
    return app


async def on_error(error: Exception, body: dict[str, Any]) -> None:
    log.error("unhandled %s while handling a Slack request", type(error).__name__)
