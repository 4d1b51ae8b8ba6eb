"""The bot's own messages of one metadata event type, read back from a channel's history (the
audit anchors, for `billing-bot audit verify --anchors`).

`conversations.history` (https://api.slack.com/methods/conversations.history) answers a page of
`messages`, newest first, and `response_metadata.next_cursor` for the next page (empty on the
last), which slack_sdk's response follows when iterated; `include_all_metadata` adds each
message's `metadata` (`event_type`, `event_payload`). It needs `channels:history` for a public
channel, `groups:history` for a private one. A message counts only when its `bot_id` is the one
`auth.test` names for the token (https://api.slack.com/methods/auth.test): another app or a
person may post the same event type, but nobody else posts as this bot. The client's retry
handlers (`bot.slack.app.web_client`) retry a 429 after its `Retry-After`, and 5xx answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

PAGE = 200  # Slack's advice for paginated methods: no more than 200 a page


@dataclass
class Found:
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (ts, payload)
    others: int = 0  # messages of the event type that someone else posted: not counted


async def bot_messages(client: AsyncWebClient, channel: str, event_type: str) -> Found:
    """Every message in `channel` that the bot posted with metadata of `event_type`, newest
    first. Slack's refusals (`not_in_channel`, `missing_scope`, …) raise `SlackApiError`."""
    me = await client.auth_test()
    bot_id = me.get("bot_id")
    found = Found()
    pages = await client.conversations_history(
        channel=channel, include_all_metadata=True, limit=PAGE
    )
    async for page in pages:
        for message in page.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") != event_type:
                continue
            if not bot_id or message.get("bot_id") != bot_id:
                found.others += 1
                continue
            payload = metadata.get("event_payload")
            payload = payload if isinstance(payload, dict) else {}
            found.messages.append((str(message.get("ts")), payload))
    return found
