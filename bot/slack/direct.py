"""A private note to one person that needs no database, for when the outbox cannot be used.

Everything else the bot shows is a row of the outbox first (bot/slack/outbox.py), which is
what makes it survive Slack's failures and restarts; but with the database away, a row cannot
be written, and the one sentence that says so would be lost with it. This path sends that
sentence straight to Slack:

    response_url        POST {"response_type": "ephemeral", "replace_original": false, "text"}
                        (https://api.slack.com/interactivity/handling#message_responses),
                        tried again after a connection error, a 429 or a 5xx
    chat.postEphemeral  through the Web API client, with its retry handlers
                        (https://api.slack.com/methods/chat.postEphemeral), when there is no
                        response_url (a modal's submission) or it kept failing

all within a short budget. It never raises: what cannot be said is logged, without a
traceback.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class DirectNotes:
    def __init__(
        self,
        client: AsyncWebClient,
        http: httpx.AsyncClient,
        *,
        attempts: int = 3,
        pause: float = 0.25,
        budget: float = 10.0,
    ) -> None:
        self.client = client
        self.http = http
        self.attempts = attempts
        self.pause = pause
        self.budget = budget

    async def tell(
        self, text: str, *, channel: str, user: str, response_url: str | None = None
    ) -> bool:
        """Say `text` to `user` only; True when Slack took it."""
        try:
            async with asyncio.timeout(self.budget):
                if response_url and await self._respond(response_url, text):
                    return True
                if not (channel and user):
                    log.warning("a note could not be shown: nowhere to send it")
                    return False
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
                return True
        except Exception as exc:  # Slack is away too: the log is all that is left
            log.warning("a note to %s could not be shown (%s)", user, type(exc).__name__)
            return False

    async def _respond(self, url: str, text: str) -> bool:
        payload = {"response_type": "ephemeral", "replace_original": False, "text": text}
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.pause * 2 ** (attempt - 1))
            try:
                answer = await self.http.post(url, json=payload)
            except httpx.HTTPError as exc:
                log.info("response_url failed (%s)", type(exc).__name__)
                continue
            if answer.status_code < 300:
                return True
            if answer.status_code not in RETRY_STATUSES:
                break  # expired or used up: the Web API is next
        log.info("response_url did not take the note; using chat.postEphemeral")
        return False
