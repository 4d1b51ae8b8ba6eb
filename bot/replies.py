"""Reply → Slack: Block Kit builders (pure functions) and the Slack surface.

A `Surface` is where one invocation's answers go. Dispatch only talks to this protocol, so the
Slack adapter (`SlackSurface`) and the terminal (`bot.console.ConsoleSurface`) share every rule
about what is private, what is posted, updated or uploaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from commands.base import Button, Command, File, Form, Reply, Table
from commands.secrets import redact

log = logging.getLogger(__name__)

MAX_BLOCKS = 50
MAX_TEXT = 2900  # a section's text may hold 3000 characters
MAX_BUTTONS_PER_ACTIONS = 5
ACTION_PREFIX = "run:"
NOT_MEMBER_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "not_allowed_token_type"}


@dataclass(frozen=True)
class MessageRef:
    channel: str
    ts: str


class Surface(Protocol):
    """Where one invocation's answers go."""

    async def send(self, reply: Reply) -> MessageRef | None:
        """Post to the channel (or privately when `reply.private`); upload its files."""
        ...

    async def private(self, text: str) -> None:
        """A note only the requester sees."""
        ...

    async def update(self, ref: MessageRef, reply: Reply) -> None: ...

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        """Show the command's form; False if this surface cannot."""
        ...


# --- builders ------------------------------------------------------------------------------


def table_text(table: Table, *, limit: int = MAX_TEXT - 10) -> str:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in table.align_right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(table.columns), line(["-" * w for w in widths])]
    shown = 0
    for row in table.rows:
        candidate = line(row)
        if sum(len(x) + 1 for x in lines) + len(candidate) > limit - 40:
            break
        lines.append(candidate)
        shown += 1
    if shown < len(table.rows):
        lines.append(f"… {len(table.rows) - shown} more rows not shown")
    return "\n".join(lines)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_TEXT]}}


def _chunks(text: str) -> list[str]:
    return [text[i : i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)] or [""]


def button_element(button: Button, index: int) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": button.label[:75], "emoji": True},
        "action_id": f"{ACTION_PREFIX}{index}",
        "value": button.command[:2000],
    }
    if button.style:
        element["style"] = button.style
    return element


def shown(reply: Reply, text: str) -> str:
    """Text as it may be shown: redacted, unless a private reply reveals it to its requester."""
    return text if reply.private and reply.reveal else redact(text)


def reply_blocks(reply: Reply) -> list[dict[str, Any]]:
    """Block Kit for a reply, within Slack's limits (50 blocks, 3000 chars a section)."""
    blocks: list[dict[str, Any]] = [_section(chunk) for chunk in _chunks(shown(reply, reply.text))]
    for text in reply.sections:
        blocks.extend(_section(chunk) for chunk in _chunks(redact(text)))
    fields = list(reply.fields)
    for start in range(0, len(fields), 10):
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}*\n{redact(value)}"[:2000]}
                    for label, value in fields[start : start + 10]
                ],
            }
        )
    if reply.table is not None:
        blocks.append(_section(f"```\n{redact(table_text(reply.table))}\n```"))
    buttons = list(reply.buttons)
    room = MAX_BLOCKS - len(blocks)
    for start in range(0, len(buttons), MAX_BUTTONS_PER_ACTIONS):
        if room <= 1:
            blocks.append(
                _section(f"_{len(buttons) - start} more actions: type them as commands._")
            )
            break
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button_element(b, start + i)
                    for i, b in enumerate(buttons[start : start + MAX_BUTTONS_PER_ACTIONS])
                ],
            }
        )
        room -= 1
    return blocks[:MAX_BLOCKS]


def fallback_text(reply: Reply) -> str:
    return shown(reply, reply.text)[:3000]


def form_view(command: Command[Any, Any], form: Form, metadata: str) -> dict[str, Any]:
    """A modal whose block ids are the Args field names, so errors land under the field."""
    blocks: list[dict[str, Any]] = []
    for f in form.fields:
        element: dict[str, Any]
        if f.kind == "select":
            element = {
                "type": "static_select",
                "action_id": "value",
                "options": [
                    {"text": {"type": "plain_text", "text": label}, "value": value}
                    for value, label in f.options
                ],
            }
        elif f.kind == "email":
            element = {"type": "email_text_input", "action_id": "value"}
        else:
            element = {
                "type": "plain_text_input",
                "action_id": "value",
                "multiline": f.kind == "multiline",
            }
        if f.placeholder and f.kind != "select":
            element["placeholder"] = {"type": "plain_text", "text": f.placeholder}
        block: dict[str, Any] = {
            "type": "input",
            "block_id": f.name,
            "label": {"type": "plain_text", "text": f.label},
            "element": element,
            "optional": f.optional,
        }
        if f.hint:
            block["hint"] = {"type": "plain_text", "text": f.hint}
        blocks.append(block)
    return {
        "type": "modal",
        "callback_id": "form",
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": form.title[:24]},
        "submit": {"type": "plain_text", "text": form.submit[:24]},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def form_values(state: dict[str, Any]) -> dict[str, str]:
    """`view.state.values` → {field: text}; empty inputs are left out."""
    values: dict[str, str] = {}
    for block_id, actions in state.items():
        for action in actions.values():
            if action.get("type") == "static_select":
                selected = action.get("selected_option") or {}
                value = selected.get("value")
            else:
                value = action.get("value")
            if value not in (None, ""):
                values[block_id] = str(value)
    return values


# --- the Slack surface ------------------------------------------------------------------------


class SlackSurface:
    """Answers for one Slack interaction: channel posts through the Web API, private ones
    through `response_url` when Slack gave one (else `chat.postEphemeral`)."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        user: str,
        response_url: str | None = None,
        trigger_id: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.user = user
        self.response_url = response_url
        self.trigger_id = trigger_id
        self.http = http

    async def send(self, reply: Reply) -> MessageRef | None:
        if reply.private:
            await self._ephemeral(fallback_text(reply), reply_blocks(reply))
            for file in reply.files:
                await self.private(
                    f"`{file.filename}` is private to you and was not posted in the channel."
                )
            return None
        ref: MessageRef | None = None
        try:
            response = await self.client.chat_postMessage(
                channel=self.channel,
                text=fallback_text(reply),
                blocks=reply_blocks(reply),
                unfurl_links=False,
            )
            ref = MessageRef(str(response["channel"]), str(response["ts"]))
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error not in NOT_MEMBER_ERRORS:
                raise
            await self._ephemeral(fallback_text(reply), reply_blocks(reply))
            await self.private(
                "I am not a member of this channel, so only you see this. "
                "Invite me with `/invite @billing-bot` so results, approvals and files "
                "can be posted here."
            )
        for file in reply.files:
            await self.upload(file, ref)
        return ref

    async def upload(self, file: File, ref: MessageRef | None) -> None:
        try:
            await self.client.files_upload_v2(
                channel=self.channel,
                file=file.content,
                filename=file.filename,
                title=file.title,
                thread_ts=None,
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error not in NOT_MEMBER_ERRORS:
                raise
            await self.private(
                f"I could not post `{file.filename}` because I am not a member of this channel "
                f"({error}). Invite me with `/invite @billing-bot`, then run the command again."
            )

    async def private(self, text: str) -> None:
        if not self.user:  # scheduled work: nobody to whisper to
            log.info("note for nobody in %s: %s", self.channel, text)
            return
        await self._ephemeral(redact(text), [_section(redact(text))])

    async def _ephemeral(self, text: str, blocks: list[dict[str, Any]]) -> None:
        if self.response_url:
            payload = {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": text,
                "blocks": blocks,
            }
            http = self.http or httpx.AsyncClient(timeout=10)
            try:
                response = await http.post(self.response_url, json=payload)
                if response.status_code < 300:
                    return
                log.warning("response_url answered %s", response.status_code)
            finally:
                if self.http is None:
                    await http.aclose()
        await self.client.chat_postEphemeral(
            channel=self.channel, user=self.user, text=text, blocks=blocks
        )

    async def update(self, ref: MessageRef, reply: Reply) -> None:
        await self.client.chat_update(
            channel=ref.channel, ts=ref.ts, text=fallback_text(reply), blocks=reply_blocks(reply)
        )

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        if not self.trigger_id:
            return False
        metadata = json.dumps({"path": command.path, "channel": self.channel})
        await self.client.views_open(
            trigger_id=self.trigger_id, view=form_view(command, form, metadata)
        )
        return True
