"""What an approval's messages tell other apps (`bot.approvals.metadata`), drawn from the row:
its number, command, state (the row's, or the outcome a card is finishing), the amount exactly
as stored, and how an unknown outcome was settled."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.approvals.metadata import EVENT_TYPE, approval_metadata, tagged
from bot.approvals.state import Approval, Status
from commands.base import MessageMetadata, Reply
from commands.registry import PROVIDERS

AT = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
COMMANDS = {c.path: c for p in PROVIDERS for c in p.commands}
MOVE = COMMANDS["voipcloud move-funds"]


def row(**changes: Any) -> Approval:
    base = Approval(
        id=7,
        command_line='/voipcloud move-funds account=10023 amount=-12.50 description="refund"',
        command_path="voipcloud move-funds",
        provider="voipcloud",
        args={"account": "10023", "amount": "-12.50", "description": "refund"},
        description="customer 10023 → partner: 12.50",
        requester="U1",
        origin="U1",
        channel="C1",
        message_ts="1700000000.000001",
        status=Status.PENDING,
        created_at=AT,
        expires_at=AT + timedelta(hours=24),
        decided_by=None,
        decided_at=None,
        reason=None,
        outcome=None,
        runner=None,
        heartbeat_at=None,
        approve_label="Approve",
        reject_label="Reject",
        snooze_hours=None,
    )
    return replace(base, **changes)


def test_the_payload_is_the_rows_number_command_state_and_stored_amount() -> None:
    metadata = approval_metadata(row(), MOVE)
    assert metadata == MessageMetadata(
        event_type=EVENT_TYPE,
        payload={
            "approval_id": "7",
            "command": "/voipcloud move-funds",
            "state": "pending",
            "amount": "-12.50",
            "resolution": "",
        },
    )


def test_a_card_finishing_an_outcome_says_the_outcome_not_the_rows_executing() -> None:
    running = row(status=Status.EXECUTING)
    assert approval_metadata(running, MOVE).payload["state"] == "executing"
    assert approval_metadata(running, MOVE, Status.DONE).payload["state"] == "done"


def test_a_settled_unknown_outcome_says_how() -> None:
    settled = row(status=Status.UNKNOWN, resolution="not done")
    payload = approval_metadata(settled, MOVE).payload
    assert (payload["state"], payload["resolution"]) == ("unknown", "not done")


def test_no_amount_without_a_money_argument_or_once_the_command_is_gone() -> None:
    create = COMMANDS["invoicexpress sequence create"]
    sequence = row(command_path=create.path, args={"serie": "2031"})
    assert approval_metadata(sequence, create).payload["amount"] == ""
    assert approval_metadata(row(), None).payload["amount"] == ""


def test_a_reply_is_tagged_unless_it_carries_metadata_of_its_own() -> None:
    plain = Reply(text="Funds moved")
    assert tagged(plain, row(), MOVE, Status.DONE).metadata == approval_metadata(
        row(), MOVE, Status.DONE
    )
    own = MessageMetadata(event_type="voipcloud_transfer", payload={"id": "t-1"})
    assert tagged(replace(plain, metadata=own), row(), MOVE).metadata == own
