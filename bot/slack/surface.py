"""The Slack surface: one interaction's answers, handed to the outbox. Channel posts go through
the Web API, private notes through `response_url` while it lasts (5 uses), else the Web API;
forms open as modals. Nothing here raises for Slack's troubles: they delay what is shown, never
lose it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.slack.blocks import fallback_text, form_view, metadata_param, reply_blocks, section
from bot.slack.failures import classify
from bot.slack.outbox import RESPONSE_URL_USES, Outbox
from bot.surface import MessageRef
from commands.base import Command, Form, Reply
from commands.secrets import redact

log = logging.getLogger(__name__)


class SlackSurface:
    """Answers for one Slack interaction, handed to the outbox: channel posts through the Web
    API, private notes through `response_url` while it lasts (5 uses), else the Web API.
    Nothing here raises for Slack's troubles: they delay what is shown, never lose it."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        channel: str,
        user: str,
        response_url: str | None = None,
        trigger_id: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.channel = channel
        self.user = user
        self.response_url = response_url
        self.trigger_id = trigger_id
        self._response_url_uses = 0

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        if reply.private:
            await self._note(fallback_text(reply), reply_blocks(reply))
            for file in reply.files:
                await self.private(
                    f"`{file.filename}` is private to you and was not posted in the channel."
                )
            return None
        params = {
            "text": fallback_text(reply),
            "blocks": reply_blocks(reply),
            "unfurl_links": False,
            **metadata_param(reply),
        }
        return await self.outbox.post(
            self.channel,
            params,
            key=key,
            user=self.user or None,
            response_url=self._spend_response_url(),
            files=reply.files,
        )

    async def private(self, text: str) -> None:
        if not self.user:  # scheduled work: nobody to whisper to
            log.info("note for nobody in %s: %s", self.channel, redact(text))
            return
        await self._note(redact(text), [section(redact(text))])

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        params = {
            "text": fallback_text(reply),
            "blocks": reply_blocks(reply),
            **metadata_param(reply),
        }
        channel = ref.channel if ref else self.channel
        ts = ref.ts if ref and not key else None
        await self.outbox.update(channel, params, ts=ts, key=key)

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        if not self.trigger_id:
            return False
        metadata = json.dumps({"path": command.path, "channel": self.channel})
        try:
            await self.outbox.client.views_open(
                trigger_id=self.trigger_id, view=form_view(command, form, metadata)
            )
        except SlackApiError as exc:
            log.warning("views.open failed (%s); asking for typed values", classify(exc).error)
            return False
        return True

    async def _note(self, text: str, blocks: list[dict[str, Any]]) -> None:
        if not self.user:
            return
        await self.outbox.ephemeral(
            self.channel,
            self.user,
            {"text": text, "blocks": blocks},
            response_url=self._spend_response_url(),
        )

    def _spend_response_url(self) -> str | None:
        if not self.response_url or self._response_url_uses >= RESPONSE_URL_USES:
            return None
        self._response_url_uses += 1
        return self.response_url
