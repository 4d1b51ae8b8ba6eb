"""What an approval's messages tell other apps: Slack message metadata `billing_approval`.

Every card of a request (its post, and each update: waiting for more approvals, running, done,
failed, unknown, rejected, expired, resolved) and the result posted after an approved run
carry, all as text (https://api.slack.com/metadata/using):

    event_type      billing_approval
    event_payload   approval_id   the request's number
                    command       its command as the audit log names it (`/smsc invoice create`)
                    state         pending, executing, done, failed, unknown, rejected or expired
                    amount        its money argument exactly as stored (`1500.00`); "" when none
                    resolution    how a person settled an unknown outcome: `done`, `not done`, or ""

so a workflow or another app can follow a request without reading its text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.approvals.state import Approval, Status
from commands.base import Command, MessageMetadata, Reply
from commands.types import money_field

EVENT_TYPE = "billing_approval"


def approval_metadata(
    row: Approval, command: Command[Any, Any] | None, state: Status | None = None
) -> MessageMetadata:
    """The request's metadata; `state` when a card shows a state the row does not hold yet (an
    outcome being finished), else the row's own."""
    field = money_field(command.args) if command is not None else None
    return MessageMetadata(
        event_type=EVENT_TYPE,
        payload={
            "approval_id": str(row.id),
            "command": f"/{row.command_path}",
            "state": (state or row.status).value,
            "amount": row.args.get(field, "") if field else "",
            "resolution": row.resolution or "",
        },
    )


def tagged(
    reply: Reply, row: Approval, command: Command[Any, Any] | None, state: Status | None = None
) -> Reply:
    """`reply` carrying the request's metadata (a reply with metadata of its own keeps it)."""
    if reply.metadata is not None:
        return reply
    return replace(reply, metadata=approval_metadata(row, command, state))
