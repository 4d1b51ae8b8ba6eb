"""An approval card's Command line writes each amount as its summary does, in cents
(`sum=100.00`), while what is stored, approved and sent stays the exact value typed."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa

from bot.console.app import Console
from bot.runtime import Runtime
from bot.slack.blocks import reply_blocks
from bot.storage.store import approvals
from commands.base import Reply
from tests.support import RecordingSurface, sandbox_of


def command_field(card: Reply) -> str:
    """The card's Command field as Slack shows it (the field's mrkdwn text)."""
    [text] = [
        f["text"]
        for block in reply_blocks(card)
        for f in block.get("fields", [])
        if f["text"].startswith("*Command*\n")
    ]
    return str(text).removeprefix("*Command*\n")


async def stored_args(runtime: Runtime) -> dict[str, Any]:
    async with runtime.engine.connect() as conn:
        [row] = (await conn.execute(sa.select(approvals.c.args))).all()
    args: dict[str, Any] = json.loads(row.args)
    return args


async def test_an_invoice_sum_is_shown_in_cents_and_sent_exactly(runtime: Runtime) -> None:
    sandbox = sandbox_of(runtime, "smsc")
    user = next(iter(sandbox.sub_clients.values()))
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        f"/smsc invoice create {user} 100", user="U1", channel="C1", surface=requester
    )
    [card] = requester.sent
    assert command_field(card) == f"`/smsc invoice create user={user} sum=100.00`"
    assert "*100.00*" in card.sections[0]  # the summary writes it the same way
    assert (await stored_args(runtime))["sum"] == "100"  # stored exact, as typed

    approver = RecordingSurface(user="U2")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=approver
    )
    [create] = [r for r in sandbox.control.requests if "sum" in r.query or b"sum=" in r.body]
    params = create.query or {k: v[0] for k, v in parse_qs(create.body.decode()).items()}
    assert Decimal(params["sum"]) == Decimal(100)
    [running] = [card for _, card in approver.updates if card.text.startswith("⏳")]
    assert command_field(running) == f"`/smsc invoice create user={user} sum=100.00`"


@pytest.mark.parametrize(
    ("typed", "shown", "kept"),
    [("-12.5", "-12.50", "-12.5"), ("7", "7.00", "7"), ("0.01", "0.01", "0.01")],
)
async def test_a_transfer_amount_is_shown_in_cents_and_moved_exactly(
    runtime: Runtime, typed: str, shown: str, kept: str
) -> None:
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        f"/voipcloud move-funds 10023 {typed} refund", user="U1", channel="C1", surface=requester
    )
    [card] = requester.sent
    assert command_field(card) == (
        f"`/voipcloud move-funds account=10023 amount={shown} description=refund`"
    )
    assert f"amount={shown}" in card.sections[0]  # the summary's form line
    assert (await stored_args(runtime))["amount"] == kept


async def test_the_console_shows_the_amount_in_cents_too(runtime: Runtime, tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(
        intake=runtime.dispatcher,
        providers=runtime.catalog,
        open_roles=runtime.roles.open_console,
        user="U1",
        channel="C1",
        files_dir=tmp_path / "files",
        out=out,
    )
    assert await console.handle("/voipcloud move-funds 10023 5 top-up")
    assert "/voipcloud move-funds account=10023 amount=5.00 description=top-up" in out.getvalue()
    assert "amount=5 " not in out.getvalue()
