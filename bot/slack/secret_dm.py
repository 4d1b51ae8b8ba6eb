"""A person's direct message that is kept nowhere on the way: an enrolment's seed.

Everything else the bot shows is a row of the outbox before Slack sees it, so it survives
restarts; a seed must not rest in the database in plain, so this message goes straight to the
Web API instead: `conversations.open` (scope `im:write`), `chat.postMessage`, and the QR code
through `files.getUploadURLExternal` / `files.completeUploadExternal`, shared to the direct
message's channel id (https://api.slack.com/methods/files.completeUploadExternal). The client's
retry handlers wait out a 429's `Retry-After` and retry 5xx answers and dropped connections a
few times; when Slack still fails, the person is told and simply enrols again. Nothing here goes
through a `response_url`, so nothing can land in the channel the command was typed in.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import fallback_text, reply_blocks
from commands.base import Reply

log = logging.getLogger(__name__)


class SlackSecretMessages:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def send(self, user: str, reply: Reply) -> bool:
        try:
            opened = await self.client.conversations_open(users=user)
            channel = str(opened["channel"]["id"])
            await self.client.chat_postMessage(
                channel=channel,
                text=fallback_text(reply),
                blocks=reply_blocks(reply),
                unfurl_links=False,
            )
            for file in reply.files:
                await self.client.files_upload_v2(
                    channel=channel, file=file.content, filename=file.filename, title=file.title
                )
        except Exception as exc:  # Slack refused or is away: the caller tells the person
            log.warning("a direct message to %s could not be sent (%s)", user, type(exc).__name__)
            return False
        return True
