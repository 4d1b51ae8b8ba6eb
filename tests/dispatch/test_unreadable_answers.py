"""What people see when a provider's answer to a write cannot be read: "outcome unknown", never
"failed" (which invites a second send) nor "an error inside the bot". An approved request ends
`unknown`, its card says so, and the provider was called exactly once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from bot.runtime import Runtime
from bot.storage.store import approvals, audit
from commands.sandbox import Garble, GarbleKind, Recorded
from tests.support import RecordingSurface, sandbox_of


@dataclass(frozen=True)
class Write:
    provider: str
    line: str
    said: str  # how the unknown outcome names the write

    def sent(self, request: Recorded) -> bool:
        if self.provider == "smsc":  # SMSC writes with GET: the create carries add_account
            return request.query.get("add_account") == "1"
        return request.method != "GET"


APPROVED_WRITES = [
    Write(
        "voipcloud",
        "/voipcloud move-funds 10023 8.00 x",
        "the transfer for customer 10023 was sent",
    ),
    Write(
        "invoicexpress",
        "/invoicexpress sequence create 2040",
        "the creation of sequence 2040 was sent",
    ),
    Write(
        "smsc",
        "/smsc invoice create acme 1500.00",
        "the invoice request",
    ),
    Write(
        "activeplatform",
        "/activeplatform notify-closing last-month accounts=2003001,2003002",
        "the notification of 2 accounts was sent",
    ),
]


async def rows(runtime: Runtime, table: sa.Table) -> list[dict[str, object]]:
    async with runtime.engine.connect() as conn:
        found = (await conn.execute(sa.select(table).order_by(table.c.id))).mappings().all()
    return [dict(row) for row in found]


@pytest.mark.parametrize("kind", ["html", "garbage", "502"])
@pytest.mark.parametrize("write", APPROVED_WRITES, ids=lambda w: w.provider)
async def test_an_approved_write_with_an_unreadable_answer_ends_unknown(
    runtime: Runtime, write: Write, kind: GarbleKind
) -> None:
    requester = RecordingSurface(user="U1")
    await runtime.dispatcher.run(write.line, user="U1", channel="C1", surface=requester)
    sandbox = sandbox_of(runtime, write.provider)
    sandbox.control.garble = Garble(kind, acted=True, matches=write.sent)

    approver = RecordingSurface(user="U2")
    await runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)

    [row] = await rows(runtime, approvals)
    assert row["status"] == "unknown"
    card = approver.updates[-1][1]
    assert card.text.startswith("❓ #1 *outcome unknown*")
    assert write.said in card.sections[1]
    assert "It will not be retried" in card.sections[1]
    assert "failed" not in card.text
    assert "inside the bot" not in approver.texts()
    assert len([r for r in sandbox.control.requests if write.sent(r)]) == 1
    [executed] = [r for r in await rows(runtime, audit) if r["decision"] == "executed"]
    assert (executed["outcome"], executed["approval_id"]) == ("unknown", 1)
    assert write.said in str(executed["detail"])

    # It cannot be approved again: the provider still saw it once.
    await runtime.dispatcher.run("/billing approve 1", user="U3", channel="C1", surface=approver)
    assert "already unknown" in approver.privates[-1]
    assert len([r for r in sandbox.control.requests if write.sent(r)]) == 1


async def test_a_transfer_answered_with_html_is_not_reported_as_failed(
    runtime: Runtime,
) -> None:
    # The report that started this: HTTP 200 with an HTML page after the portal moved the money.
    sandbox = sandbox_of(runtime, "voipcloud")
    before = sandbox.customers["10023"].ledger.balance()
    await runtime.dispatcher.run(
        "/voipcloud move-funds 10023 8.00 x", user="U1", channel="C1", surface=RecordingSurface()
    )
    sandbox.control.garble = Garble("html", acted=True)
    approver = RecordingSurface(user="U2")
    await runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)

    card = approver.updates[-1][1]
    assert card.sections[1].startswith(
        "the transfer for customer 10023 was sent, but VoIPcloud's answer (HTTP 200, text/html) "
        "could not be read. It will not be retried."
    )
    assert "VOIPCLOUD_BASE_URL" not in approver.texts()
    assert sandbox.customers["10023"].ledger.balance() - before == 8


@pytest.mark.parametrize("kind", ["html", "garbage", "truncated", "502"])
async def test_a_write_without_approval_tells_the_requester_outcome_unknown(
    runtime: Runtime, kind: GarbleKind
) -> None:
    sandbox = sandbox_of(runtime, "voipcloud")
    sandbox.control.garble = Garble(kind, acted=True)
    requester = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/voipcloud reset-password 10023", user="U1", channel="C1", surface=requester
    )

    [said] = requester.privates
    assert said.startswith(
        "❓ *Outcome unknown* for `/voipcloud reset-password`: the password reset for customer "
        "10023 was sent"
    )
    assert "It was not retried, because it may already have happened." in said
    assert len([r for r in sandbox.control.requests if r.method == "POST"]) == 1
    assert sandbox.customers["10023"].password_resets == 1
    [entry] = await rows(runtime, audit)
    assert entry["outcome"] == "unknown"


async def test_invoicexpress_non_json_answers_are_no_longer_an_error_inside_the_bot(
    runtime: Runtime,
) -> None:
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.control.garble = Garble("html", acted=True, matches=lambda request: True)
    requester = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=requester
    )

    [said] = requester.privates
    assert said.startswith("`/invoicexpress sequences` failed: InvoiceXpress ")
    assert "HTTP 200 with something that is not JSON" in said
    assert "inside the bot" not in said
