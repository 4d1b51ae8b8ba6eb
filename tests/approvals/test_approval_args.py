"""What the approver saw is what the provider receives: approvals keep validated arguments.

The reproduction that started it: `/voipcloud move-funds 10023 5.00 description="amount=5000"`
once showed 5.00 on the card and moved 5000.00, because the stored line was parsed again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa
from pydantic import Field, SecretStr

from bot.approvals.state import Status
from bot.config import Settings
from bot.runtime import Runtime, open_providers, open_runtime
from bot.storage import store
from bot.storage.store import approvals, audit, utcnow
from commands.base import Args, Command, Provider, Reply, Role
from commands.sandbox import Recorded
from tests.support import RecordingSurface, sandbox_of

MOVE = '/voipcloud move-funds 10023 5.00 description="amount=5000"'


def form_of(request: Recorded) -> dict[str, str]:
    """The fields of a multipart/form-data body (VoIPcloud's writes), as the sandbox read them."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=default).parsebytes(head + request.body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        fields[str(part.get_param("name", header="content-disposition"))] = payload.decode()
    return fields


def card_text(reply: Reply) -> str:
    return "\n".join([reply.text, *reply.sections, *(f"{k} {v}" for k, v in reply.fields)])


async def rows_of(runtime: Runtime, table: sa.Table) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        result = await conn.execute(sa.select(table).order_by(table.c.id))
        return [dict(r) for r in result.mappings()]


async def test_free_text_that_looks_like_an_option_moves_what_the_card_shows(
    runtime: Runtime,
) -> None:
    sandbox = sandbox_of(runtime, "voipcloud")
    before = sandbox.customers["10023"].ledger.balance()
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(MOVE, user="U1", channel="C1", surface=requester)
    [card] = requester.sent
    shown = card_text(card)
    assert "partner → customer 10023: 5.00" in shown
    assert "Description: amount=5000" in shown
    assert "5000.00" not in shown
    assert [r for r in sandbox.control.requests if r.method == "PUT"] == []

    approver = RecordingSurface(user="U2")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=approver
    )

    [put] = [r for r in sandbox.control.requests if r.method == "PUT"]
    sent = form_of(put)
    assert sent["account_number"] == "10023"
    assert sent["amount"] == "5.00"
    assert sent["description"] == "amount=5000"
    assert sandbox.customers["10023"].ledger.balance() - before == 5
    [row] = await rows_of(runtime, approvals)
    assert row["status"] == "done"
    assert json.loads(row["args"]) == {
        "account": "10023",
        "amount": "5.00",
        "description": "amount=5000",
    }


@pytest.mark.parametrize(
    ("typed", "account", "amount", "description"),
    [
        ("10024 -12.40 'refund, see ticket #88'", "10024", "-12.40", "refund, see ticket #88"),
        ('10023 7 description="account=99999 amount=1"', "10023", "7", "account=99999 amount=1"),
        ('10025 0.01 description="it\'s \\\\ “quoted” ünïcode"', "10025", "0.01", None),
    ],
)
async def test_move_funds_through_approval_sends_exactly_the_approved_values(
    runtime: Runtime, typed: str, account: str, amount: str, description: str | None
) -> None:
    sandbox = sandbox_of(runtime, "voipcloud")
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        f"/voipcloud move-funds {typed}", user="U1", channel="C1", surface=requester
    )
    [card] = requester.sent
    [row] = await rows_of(runtime, approvals)
    stored = json.loads(row["args"])
    assert stored["account"] == account and stored["amount"] == amount
    # The card is drawn from the stored values: what it says is what is sent.
    assert f"account_number={account} · amount=" in card_text(card)
    assert f"Description: {stored['description']}" in card_text(card)

    approver = RecordingSurface(user="U3")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=approver
    )
    [put] = [r for r in sandbox.control.requests if r.method == "PUT"]
    sent = form_of(put)
    assert sent["account_number"] == account
    assert Decimal(sent["amount"]) == Decimal(amount)
    assert sent["description"] == stored["description"]
    if description is not None:
        assert sent["description"] == description


async def test_smsc_invoice_create_through_approval_sends_the_shown_user_and_sum(
    runtime: Runtime,
) -> None:
    sandbox = sandbox_of(runtime, "smsc")
    user = next(iter(sandbox.sub_clients.values()))
    requester = RecordingSurface(user="U1")
    line = f'/smsc invoice create {user} 1500.50 service="sum=99999 user=other"'
    assert await runtime.dispatcher.run(line, user="U1", channel="C1", surface=requester)
    [card] = requester.sent
    assert "1500.50" in card_text(card) and "99999.00" not in card_text(card)
    assert sandbox.control.requests == []

    approver = RecordingSurface(user="U2")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=approver
    )
    [create] = [r for r in sandbox.control.requests if "sum" in r.query or b"sum=" in r.body]
    params = create.query or {k: v[0] for k, v in parse_qs(create.body.decode()).items()}
    assert params["user"] == user
    assert params["sum"] == "1500.50"
    assert params["service"] == "sum=99999 user=other"
    [row] = await rows_of(runtime, approvals)
    assert row["status"] == "done"


async def test_a_stored_request_that_no_longer_validates_fails_with_nothing_sent(
    runtime: Runtime,
) -> None:
    sandbox = sandbox_of(runtime, "voipcloud")
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        "/voipcloud move-funds 10023 5.00 top-up", user="U1", channel="C1", surface=requester
    )
    bad = {"account": "10023", "amount": "five", "description": "top-up"}
    async with runtime.engine.begin() as conn:
        await conn.execute(approvals.update().values(args=json.dumps(bad)))

    approver = RecordingSurface(user="U2")
    await runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)

    assert [r for r in sandbox.control.requests if r.method == "PUT"] == []
    [row] = await rows_of(runtime, approvals)
    assert row["status"] == "failed"
    assert "no longer validate" in row["outcome"]
    final = approver.updates[-1][1] if approver.updates else requester.updates[-1][1]
    assert "failed" in final.text and "no longer validate" in card_text(final)
    decisions = [(r["decision"], r["outcome"]) for r in await rows_of(runtime, audit)]
    assert ("not run", "failed") in decisions


class SecretArgs(Args):
    positional = ("password",)
    password: SecretStr = Field(description="a password")


async def _never(client: object, args: SecretArgs, ctx: object) -> Reply:
    raise AssertionError("must not run")


async def test_a_request_whose_arguments_cannot_be_stored_exactly_is_refused(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    command = Command(
        slash="vault",
        words=("rotate",),
        summary="rotate a password",
        args=SecretArgs,
        handler=_never,
        role=Role.OPERATOR,
        approval=True,
    )
    provider: Provider[Any, Any] = Provider(
        name="vault",
        title="Vault",
        settings=Settings,
        configured=lambda _: True,
        open_client=lambda *_: object(),
        sandbox=lambda: (Settings(), None),  # type: ignore[arg-type,return-value]
        commands=[command],
        check=_check,
    )
    runtime = await _runtime_with(make_settings, database_url, provider)
    try:
        surface = RecordingSurface(user="U1")
        await runtime.dispatcher.run(
            "/vault rotate s3cr3t-Value", user="U1", channel="C1", surface=surface
        )
        assert surface.sent == []
        assert surface.privates == [
            "`/vault rotate` cannot be put up for approval: its arguments cannot be stored "
            "exactly as given. Nothing was requested."
        ]
        assert await rows_of(runtime, approvals) == []
    finally:
        await runtime.close()


async def _check(client: object) -> str:
    return "ok"


async def _runtime_with(
    make_settings: Callable[..., Settings], database_url: str, provider: Provider[Any, Any]
) -> Runtime:
    from bot.catalog import ProviderRuntime

    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    runtimes = [
        *open_providers(use_sandboxes=True),
        ProviderRuntime(provider=provider, mode="live", client=object()),
    ]
    return await open_runtime(
        make_settings(),
        system_surface=lambda channel: RecordingSurface(channel=channel, user=""),
        runtimes=runtimes,
    )


async def test_a_request_stored_before_the_migration_runs_what_its_card_showed(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    """A row written at revision 0002 kept a re-parseable line and the preview its card showed;
    after the upgrade it runs the preview's values, not the line's."""
    from alembic import command as alembic

    await asyncio.to_thread(alembic.upgrade, store.migrations_config(database_url), "0002")
    engine = store.make_engine(database_url)
    now = utcnow()
    shown = {"account": "10023", "amount": "5.00", "description": "amount=5000"}
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO approvals (command_line, command_path, provider, args_preview, "
                "description, requester, origin, channel, status, created_at, expires_at, "
                "approve_label, reject_label) VALUES (:line, 'voipcloud move-funds', "
                "'voipcloud', :preview, :description, 'U1', 'user', 'C1', 'pending', :now, "
                ":expires, 'Approve', 'Reject')"
            ),
            {
                "line": "/voipcloud move-funds 10023 5.00 amount=5000",
                "preview": json.dumps(shown),
                "description": "Move funds partner → customer 10023: 5.00",
                "now": now.replace(tzinfo=None) if database_url.startswith("sqlite") else now,
                "expires": (now + timedelta(hours=24)).replace(tzinfo=None)
                if database_url.startswith("sqlite")
                else now + timedelta(hours=24),
            },
        )
    await engine.dispose()
    await store.upgrade(database_url)

    runtime = await open_runtime(
        make_settings(),
        system_surface=lambda channel: RecordingSurface(channel=channel, user=""),
        runtimes=open_providers(use_sandboxes=True),
    )
    try:
        sandbox = sandbox_of(runtime, "voipcloud")
        approver = RecordingSurface(user="U2")
        assert await runtime.dispatcher.run(
            "/billing approve 1", user="U2", channel="C1", surface=approver
        )
        [put] = [r for r in sandbox.control.requests if r.method == "PUT"]
        sent = form_of(put)
        assert (sent["amount"], sent["description"]) == ("5.00", "amount=5000")
        [row] = await rows_of(runtime, approvals)
        assert row["status"] == Status.DONE.value
    finally:
        await runtime.close()
