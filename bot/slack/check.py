"""What `billing-bot check` asks Slack: the token, its scopes, the billing channel.

Each check is one line for people: `slack token: ok — …` or `slack token: FAILED — …`.
Slack's answers used here (https://api.slack.com/methods/auth.test,
https://api.slack.com/methods/conversations.info): `auth.test` names the bot user and the
workspace; every Web API answer carries the token's scopes in its `x-oauth-scopes` header
(https://api.slack.com/concepts/token-types#scopes); `conversations.info` says whether the bot
`is_member` of the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings

# The bot scopes manifest.yml asks for (tests/test_manifest.py keeps the two equal).
BOT_SCOPES = frozenset(
    {
        "commands",
        "chat:write",
        "files:write",
        "usergroups:read",
        "channels:read",
        "groups:read",
        "im:write",
        "channels:history",
        "groups:history",
    }
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped
    text: str

    def line(self) -> str:
        if self.ok is None:
            return f"{self.name}: skipped — {self.text}"
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} — {self.text}"


async def check_slack(settings: Settings, client: AsyncWebClient) -> list[Check]:
    checks = [_mode(settings)]
    if settings.slack_bot_token is None:
        checks.append(Check("slack token", False, "SLACK_BOT_TOKEN is not set"))
        return checks
    try:
        identity = await client.auth_test()
    except SlackApiError as exc:
        error = _error(exc)
        checks.append(Check("slack token", False, f"Slack refused the bot token ({error})"))
        return checks
    except Exception as exc:  # no answer at all: unreachable, TLS, timeout
        where = settings.slack_api_url
        checks.append(
            Check("slack token", False, f"could not reach {where} ({type(exc).__name__})")
        )
        return checks
    checks.append(
        Check(
            "slack token",
            True,
            f"bot @{identity.get('user')} ({identity.get('user_id')}) in workspace "
            f"{identity.get('team')} ({identity.get('team_id')})",
        )
    )
    checks.append(_scopes(identity.headers.get("x-oauth-scopes")))
    checks.append(await _channel(settings, client, str(identity.get("user") or "billing-bot")))
    return checks


def _mode(settings: Settings) -> Check:
    modes = []
    if settings.slack_signing_secret is not None:
        modes.append("serve (SLACK_SIGNING_SECRET set)")
    if settings.slack_app_token is not None:
        modes.append("socket (SLACK_APP_TOKEN set)")
    if not modes:
        return Check(
            "slack mode",
            False,
            "set SLACK_SIGNING_SECRET for `serve` or SLACK_APP_TOKEN for `socket`",
        )
    return Check("slack mode", True, " and ".join(modes))


def _scopes(header: str | None) -> Check:
    if header is None:
        return Check("slack scopes", False, "Slack did not say which scopes the token has")
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = sorted(BOT_SCOPES - granted)
    if missing:
        return Check(
            "slack scopes",
            False,
            f"the token lacks {', '.join(missing)}: add them as in manifest.yml "
            "(OAuth & Permissions) and reinstall the app",
        )
    return Check("slack scopes", True, f"{len(BOT_SCOPES)} scopes manifest.yml asks for granted")


async def _channel(settings: Settings, client: AsyncWebClient, bot_name: str) -> Check:
    channel = settings.billing_channel
    if not channel:
        return Check("slack channel", None, "BILLING_CHANNEL is not set: schedules are refused")
    try:
        answer = await client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = _error(exc)
        if error == "channel_not_found":
            text = f"BILLING_CHANNEL {channel} does not exist or the bot cannot see it ({error})"
        else:
            text = f"Slack refused to describe BILLING_CHANNEL {channel} ({error})"
        return Check("slack channel", False, text)
    info: dict[str, Any] = answer.get("channel") or {}
    name = f"#{info['name']}" if info.get("name") else channel
    if not info.get("is_member"):
        return Check(
            "slack channel",
            False,
            f"the bot is not a member of {name} ({channel}): invite it with /invite @{bot_name}",
        )
    return Check("slack channel", True, f"{name} ({channel}), the bot is a member")


def _error(exc: SlackApiError) -> str:
    response: Any = exc.response
    try:
        return str(response.get("error") or "error")
    except Exception:
        return "error"
