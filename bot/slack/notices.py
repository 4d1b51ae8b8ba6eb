"""Notices about an approval card, as Slack shows them: through the outbox, after the card.

    SlackNotices.direct ─► outbox row (notice, keyed by the card) ─► chat.getPermalink of the card
                                                                   ─► chat.postMessage to a user ID
    SlackNotices.thread ─► outbox row (notice, keyed by the card) ─► chat.postMessage, thread_ts

A notice is a row of the outbox (`bot.slack.outbox`) like any message, so a Slack failure delays
it and never loses it. It carries its card's key: it waits while the card itself waits to be
posted (Slack was failing when the request was made), and the card's link or thread is found
when it is sent, never when it is queued. A card that never landed (the bot is not in its
channel, Slack gave up) leaves a direct message without its link, and a reminder with no
thread to go to: that one is dropped, logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals.cards import card_key
from bot.approvals.state import Approval
from bot.slack.blocks import fallback_text, reply_blocks, section
from bot.slack.failures import classify
from commands.base import Reply

log = logging.getLogger(__name__)

NOTICE = "notice"  # the outbox's method name for these rows


class Queue(Protocol):
    """Where notices wait to be sent (the outbox)."""

    async def notice(self, channel: str, params: dict[str, Any], *, about: str) -> None: ...


class SlackNotices:
    """`bot.approvals.notices.Post` in Slack."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def direct(self, user: str, reply: Reply, *, card: Approval) -> None:
        # A user ID as chat.postMessage's `channel` posts in the app's direct messages with that
        # person (the Messages tab of its App Home), with `chat:write` alone and no
        # conversations.open first (https://api.slack.com/methods/chat.postMessage).
        params = {"message": _message(reply), "card_channel": card.channel}
        await self.queue.notice(user, params, about=card_key(card.id))

    async def thread(self, card: Approval, reply: Reply) -> None:
        params = {"message": _message(reply), "thread": True}
        await self.queue.notice(card.channel, params, about=card_key(card.id))


def _message(reply: Reply) -> dict[str, Any]:
    return {"text": fallback_text(reply), "blocks": reply_blocks(reply), "unfurl_links": False}


async def deliver(
    client: AsyncWebClient,
    channel: str,
    params: dict[str, Any],
    card_ts: str | None,
    links: Permalinks,
) -> None:
    """Send one notice, its card now at `card_ts` (None: the card never landed). Raises what
    the outbox judges (`bot.slack.failures`): a 429 of either call sends it all again later."""
    message = dict(params.get("message") or {})
    if params.get("thread"):
        if card_ts is None:
            log.info("a reminder for a card that was never posted in %s is dropped", channel)
            return
        # `thread_ts`: the parent message's ts makes this a reply in its thread
        # (https://api.slack.com/methods/chat.postMessage#arg_thread_ts).
        message["thread_ts"] = card_ts
    elif card_ts is not None and (card_channel := params.get("card_channel")):
        link = await links.of(client, str(card_channel), card_ts)
        if link is not None:
            line = f"<{link}|Open the request>"
            message["text"] = f"{message.get('text', '')}\n{line}"
            message["blocks"] = [*message.get("blocks", []), section(line)]
    await client.chat_postMessage(channel=channel, **message)


async def permalink(client: AsyncWebClient, channel: str, ts: str) -> str | None:
    """The card's link: chat.getPermalink's `permalink` for `message_ts` in `channel`
    (https://api.slack.com/methods/chat.getPermalink; no scope beyond the bot's own). Passing
    trouble is raised, to be tried again; a final refusal (`message_not_found`, …) is None."""
    try:
        answer = await client.chat_getPermalink(channel=channel, message_ts=ts)
    except SlackApiError as exc:
        failure = classify(exc)
        if failure.retry:
            raise
        log.info("no link to the card %s/%s: %s", channel, ts, failure.error)
        return None
    link = answer.get("permalink")
    return str(link) if link else None


class Permalinks:
    """Card links already asked for, the most recent `size` of them. A message's permalink
    does not change, and one approval's direct messages (one to each approver, then the
    requester's) all link the same card: it is asked for once per card and process, not once
    per message, and messages sent at once share the one question. A link Slack would not give
    is not kept (asked again next time)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._asking: dict[tuple[str, str], asyncio.Future[str | None]] = {}

    async def of(self, client: AsyncWebClient, channel: str, ts: str) -> str | None:
        key = (channel, ts)
        if (link := self._known.get(key)) is not None:
            self._known.move_to_end(key)
            return link
        if (asking := self._asking.get(key)) is None:
            asking = self._asking[key] = asyncio.ensure_future(self._ask(client, key))
        # shield: a message given up on (its task cancelled) does not cancel the others' answer.
        return await asyncio.shield(asking)

    async def _ask(self, client: AsyncWebClient, key: tuple[str, str]) -> str | None:
        try:
            link = await permalink(client, *key)
        finally:
            del self._asking[key]
        if link is not None:
            self._known[key] = link
            if len(self._known) > self.size:
                self._known.popitem(last=False)
        return link
