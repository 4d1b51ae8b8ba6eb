"""Closing an "outcome unknown": Check now asks the provider, an approver settles it.

Each provider's check runs against its sandbox in both states (the write happened, it did
not); resolutions are audited, refused for the requester, and "not done" offers the request
again. Unsettled unknowns stay listed in `/billing approvals` until settled.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from bot.runtime import Runtime
from bot.storage.store import approvals, audit
from tests.support import RecordingSurface, sandbox_of


async def rows(runtime: Runtime, table: sa.Table) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        query = sa.select(table).order_by(*table.primary_key.columns)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def run(runtime: Runtime, line: str, user: str) -> RecordingSurface:
    surface = RecordingSurface(user=user)
    await runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)
    return surface


async def lost_answer(runtime: Runtime, provider: str, line: str) -> None:
    """Request `line` as U1 and approve it as U2 while the provider's answer is lost."""
    await run(runtime, line, "U1")
    sandbox = sandbox_of(runtime, provider)
    sandbox.control.drop = True
    await run(runtime, "/billing approve 1", "U2")
    sandbox.control.drop = False
    [row] = await rows(runtime, approvals)
    assert row["status"] == "unknown"


async def unknown_without_sending(runtime: Runtime, line: str) -> None:
    """A request whose run was cut off before it reached the provider (the sweeper's case)."""
    await run(runtime, line, "U1")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            approvals.update().values(status="unknown", decided_by="U2", outcome="runner stopped")
        )


def check_of(surface: RecordingSurface) -> str:
    [reply] = surface.sent
    return "\n".join([reply.text, *reply.sections])


async def test_voipcloud_move_that_happened_is_shown_as_done(runtime: Runtime) -> None:
    await lost_answer(runtime, "voipcloud", "/voipcloud move-funds 10024 8.00 top-up")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    text = check_of(found)
    assert text.startswith("🔎 #1 `/voipcloud move-funds`: it happened")
    assert "Customer 10024's payments today" in text and "8.00" in text
    labels = [b.label for b in found.sent[0].buttons]
    assert labels == ["Mark done", "Mark not done"]
    assert found.sent[0].buttons[0].style == "primary"  # what the evidence suggests


async def test_voipcloud_move_that_did_not_happen_is_shown_as_not_done(
    runtime: Runtime,
) -> None:
    await unknown_without_sending(runtime, "/voipcloud move-funds 10024 8.00 top-up")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    assert check_of(found).startswith("🔎 #1 `/voipcloud move-funds`: it did not happen")
    assert "It has not been booked" in check_of(found)
    sandbox = sandbox_of(runtime, "voipcloud")
    assert [r.method for r in sandbox.control.requests] == ["GET"]  # a read, nothing moved


async def test_invoicexpress_sequence_create_in_both_states(runtime: Runtime) -> None:
    await lost_answer(runtime, "invoicexpress", "/invoicexpress sequence create 2033")
    done = await run(runtime, "/billing check-outcome 1", "U3")
    assert "InvoiceXpress lists sequence *2033*" in check_of(done)
    assert "it happened" in check_of(done)


async def test_invoicexpress_sequence_never_created_is_not_done(runtime: Runtime) -> None:
    await unknown_without_sending(runtime, "/invoicexpress sequence create 2044")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    assert "InvoiceXpress lists no sequence *2044*: it was not created." in check_of(found)


async def test_smsc_says_plainly_that_it_cannot_be_checked(runtime: Runtime) -> None:
    user = next(iter(sandbox_of(runtime, "smsc").sub_clients.values()))
    await unknown_without_sending(runtime, f"/smsc invoice create {user} 1500.00")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    text = check_of(found)
    assert ": unclear" in text
    assert "No read of the provider can show whether `/smsc invoice create` happened" in text
    assert not found.sent[0].buttons  # nothing to record from a check that saw nothing


async def test_resolving_is_audited_refused_for_the_requester_and_offers_a_new_request(
    runtime: Runtime,
) -> None:
    await unknown_without_sending(runtime, "/voipcloud move-funds 10024 8.00 top-up")
    listed = await run(runtime, "/billing approvals", "U0VIEWER")
    assert "1 unknown outcome to settle" in listed.sent[0].text

    own = await run(runtime, '/billing resolve 1 done reason="I checked"', "U1")
    assert own.privates[-1].startswith("`/billing resolve` needs the *approver* role")
    mine = await run(runtime, '/billing resolve 1 done reason="I checked"', "U0ADMIN")
    assert mine.sent[-1].text == "Approval #1 settled as done."
    again = await run(runtime, '/billing resolve 1 not-done reason="no trace"', "U3")
    assert again.privates[-1] == "Approval #1 was already settled as done by <@U0ADMIN>."

    [row] = await rows(runtime, approvals)
    assert (row["resolution"], row["resolved_by"]) == ("done", "U0ADMIN")
    assert row["resolution_reason"] == "I checked"
    story = [
        (r["user_id"], r["decision"], r["outcome"], r["detail"]) for r in await rows(runtime, audit)
    ]
    assert ("U0ADMIN", "resolved", "done", "I checked") in story
    after = await run(runtime, "/billing approvals", "U0VIEWER")
    assert after.sent[-1].text.startswith("No open approval requests")


async def test_the_requester_cannot_settle_their_own_unknown(runtime: Runtime) -> None:
    requester = RecordingSurface(user="U2")
    await runtime.dispatcher.run(
        "/voipcloud move-funds 10024 8.00 top-up", user="U2", channel="C1", surface=requester
    )
    async with runtime.engine.begin() as conn:
        await conn.execute(approvals.update().values(status="unknown", decided_by="U3"))
    own = await run(runtime, '/billing resolve 1 not-done reason="no trace"', "U2")
    assert own.privates[-1] == (
        "You requested #1 yourself: another approver must settle its outcome."
    )
    [row] = await rows(runtime, approvals)
    assert row["resolution"] is None


async def test_not_done_offers_the_same_request_again_as_a_new_approval(
    runtime: Runtime,
) -> None:
    await unknown_without_sending(runtime, "/voipcloud move-funds 10024 8.00 top-up")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    mark = next(b for b in found.sent[0].buttons if b.label == "Mark not done")
    settled = await run(runtime, mark.command, "U3")
    assert settled.sent[-1].text.startswith("Approval #1 settled as not done.")
    [again] = settled.sent[-1].buttons
    assert again.label == "Request it again"

    renewed = await run(runtime, again.command, "U3")
    assert "Approval needed" in renewed.sent[0].text
    first, second = await rows(runtime, approvals)
    assert (first["resolution"], first["resolved_by"]) == ("not done", "U3")
    assert first["resolution_reason"].startswith("checked: Customer 10024's payments today")
    assert json.loads(second["args"]) == json.loads(first["args"])
    assert (second["status"], second["requester"]) == ("pending", "U3")


async def test_a_check_of_a_known_outcome_is_refused(runtime: Runtime) -> None:
    await run(runtime, "/voipcloud move-funds 10024 8.00 top-up", "U1")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    assert found.privates[-1] == "Approval #1 is pending: its outcome is known."


async def test_invoicexpress_registration_in_both_states(runtime: Runtime) -> None:
    sandbox = sandbox_of(runtime, "invoicexpress")
    fresh = sandbox.add("2045", default=False)
    await lost_answer(runtime, "invoicexpress", f"/invoicexpress sequence register {fresh}")
    done = await run(runtime, "/billing check-outcome 1", "U3")
    assert f"Sequence {fresh} has the ATCUD code" in check_of(done)
    assert "it happened" in check_of(done)

    other = sandbox.add("2046", default=False)
    await run(runtime, f"/invoicexpress sequence register {other}", "U1")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            approvals.update().where(approvals.c.id == 2).values(status="unknown", decided_by="U2")
        )
    missing = await run(runtime, "/billing check-outcome 2", "U3")
    assert f"Sequence {other} still shows `N/D`: it is not registered." in check_of(missing)


async def test_activeplatform_says_plainly_that_it_cannot_be_checked(
    runtime: Runtime,
) -> None:
    await unknown_without_sending(runtime, "/activeplatform notify-closing 2026-10 reseller=1")
    found = await run(runtime, "/billing check-outcome 1", "U3")
    text = check_of(found)
    assert ": unclear" in text
    assert "No read of the provider can show whether `/activeplatform notify-closing`" in text
    assert "notifications log" in text  # what to look at instead
