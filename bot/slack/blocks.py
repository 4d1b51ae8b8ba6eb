"""Reply → Block Kit: pure builders for messages, buttons and modals, within Slack's limits."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from commands.base import Button, Command, Form, Reply, Table
from commands.secrets import redact

log = logging.getLogger(__name__)

MAX_BLOCKS = 50
MAX_TEXT = 2900  # a section's text may hold 3000 characters
MAX_BUTTONS_PER_ACTIONS = 5
ACTION_PREFIX = "run:"
NOT_MEMBER_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "not_allowed_token_type"}


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


def section(text: str) -> dict[str, Any]:
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
    blocks: list[dict[str, Any]] = [section(chunk) for chunk in _chunks(shown(reply, reply.text))]
    for text in reply.sections:
        blocks.extend(section(chunk) for chunk in _chunks(redact(text)))
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
        blocks.append(section(f"```\n{redact(table_text(reply.table))}\n```"))
    buttons = list(reply.buttons)
    room = MAX_BLOCKS - len(blocks)
    for start in range(0, len(buttons), MAX_BUTTONS_PER_ACTIONS):
        if room <= 1:
            blocks.append(section(f"_{len(buttons) - start} more actions: type them as commands._"))
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


# Metadata values kept whole: a number, or a hex SHA-256 digest (an audit anchor's hash, read
# back to verify the chain). A registered secret's digits may occur inside one by chance, and
# masking them would unmake the value; neither can carry a secret the bot shows.
VERBATIM = re.compile(r"[0-9]+|[0-9a-f]{64}")


def metadata_param(reply: Reply) -> dict[str, Any]:
    """The `metadata` argument of chat.postMessage and chat.update for a reply that carries
    some (https://api.slack.com/metadata/using: `event_type` and an `event_payload` object),
    redacted like every other text; {} for one that carries none. Ephemeral messages take none.
    """
    if reply.metadata is None or reply.private:
        return {}
    payload = {
        key: value if VERBATIM.fullmatch(value) else redact(value)
        for key, value in reply.metadata.payload.items()
    }
    return {"metadata": {"event_type": reply.metadata.event_type, "event_payload": payload}}


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
