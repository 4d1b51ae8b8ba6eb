"""Dispatch end to end on the sandboxes: roles, validation, approvals, audit."""

from __future__ import annotations

import asyncio
import json

import sqlalchemy as sa

from bot.runtime import Runtime
from bot.slack.blocks import reply_blocks
from bot.storage.store import approvals, audit
from commands.base import Button, Reply
from tests.support import OpenBot, RecordingSurface, sandbox_of


async def audit_rows(runtime: Runtime) -> list[dict[str, object]]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit).order_by(audit.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def test_sequences_lists_with_buttons_and_audits(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U0VIEWER")
    assert await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U0VIEWER", channel="C1", surface=surface
    )
    reply = surface.sent[0]
    sandbox = sandbox_of(runtime, "invoicexpress")
    assert reply.table is not None
    assert len(reply.table.rows) == len(sandbox.sequences)
    default = [s for s in sandbox.sequences.values() if s.default][0]
    assert any(row[0] == f"★ {default.serie}" for row in reply.table.rows)
    commands = [b.command for b in reply.buttons]
    others = [s for s in sandbox.sequences.values() if not s.default]
    assert commands == [f"/invoicexpress sequence set-current id={s.id}" for s in others]
    rows = await audit_rows(runtime)
    assert rows[-1]["command"] == "/invoicexpress sequences"
    assert rows[-1]["user_id"] == "U0VIEWER" and rows[-1]["outcome"] == "done"


async def test_button_click_reenters_dispatch_as_the_clicker(runtime: Runtime) -> None:
    sandbox = sandbox_of(runtime, "invoicexpress")
    target = next(s for s in sandbox.sequences.values() if not s.default)
    viewer = RecordingSurface(user="U0VIEWER")
    # A viewer clicking "Set as default" is refused: the click carries the clicker's role.
    assert not await runtime.dispatcher.run(
        f"/invoicexpress sequence set-current {target.id}",
        user="U0VIEWER",
        channel="C1",
        surface=viewer,
    )
    assert "needs the *operator* role" in viewer.privates[0]
    assert "BILLING_OPERATORS" in viewer.privates[0]
    assert not target.default
    operator = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        f"/invoicexpress sequence set-current {target.id}",
        user="U1",
        channel="C1",
        surface=operator,
    )
    assert target.default
    assert sum(1 for s in sandbox.sequences.values() if s.default) == 1
    assert f"{target.serie}" in operator.sent[0].text


async def test_nobody_configured_means_nobody(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U9STRANGER")
    assert not await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U9STRANGER", channel="C1", surface=surface
    )
    assert "you have no billing role" in surface.privates[0]
    assert sandbox_of(runtime, "invoicexpress").control.requests == []


async def test_unknown_word_suggests_and_sends_nothing(runtime: Runtime) -> None:
    surface = RecordingSurface()
    assert not await runtime.dispatcher.run(
        "/invoicexpress sequnces", user="U1", channel="C1", surface=surface
    )
    assert "Did you mean `/invoicexpress sequences`?" in surface.privates[0]
    assert sandbox_of(runtime, "invoicexpress").control.requests == []


async def test_bad_id_names_field_form_and_example(runtime: Runtime) -> None:
    surface = RecordingSurface()
    assert not await runtime.dispatcher.run(
        "/invoicexpress sequence abc", user="U1", channel="C1", surface=surface
    )
    message = surface.privates[0]
    assert "`id`: 'abc' is not a positive whole number" in message
    assert "Expected: `/invoicexpress sequence <id>`" in message
    assert "Example: `/invoicexpress sequence 42`" in message
    assert sandbox_of(runtime, "invoicexpress").control.requests == []
    rows = await audit_rows(runtime)
    assert rows[-1]["decision"] == "invalid"


async def test_help_at_every_prefix(runtime: Runtime) -> None:
    surface = RecordingSurface()
    for line in (
        "/invoicexpress help",
        "/invoicexpress sequence help",
        "/invoicexpress sequence create help",
        "/billing help",
    ):
        assert await runtime.dispatcher.run(line, user="U1", channel="C1", surface=surface)
    top, prefix, single, overview = surface.privates
    assert "`/invoicexpress sequence set-current <id>`" in top
    assert (
        "/invoicexpress sequences" not in prefix
        and "/invoicexpress sequence register <id>" in prefix
    )
    assert "Usage: `/invoicexpress sequence create <serie> [default=<yes/no>]`" in single
    assert "`serie` (text, required)" in single
    assert "you are *operator*" in overview and "/invoicexpress sequences" in overview


async def test_provider_404_and_401_become_one_sentence(runtime: Runtime) -> None:
    surface = RecordingSurface()
    await runtime.dispatcher.run(
        "/invoicexpress sequence id=999", user="U1", channel="C1", surface=surface
    )
    assert (
        surface.privates[-1]
        == "`/invoicexpress sequence` failed: InvoiceXpress says no sequence 999."
    )
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.api_key = "rotated"
    await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=surface
    )
    assert "API key missing or wrong" in surface.privates[-1]
    assert "Traceback" not in surface.texts()


async def test_form_opens_when_typed_bare(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U0ADMIN", form_support=True)
    assert await runtime.dispatcher.run(
        "/invoicexpress at-communication", user="U0ADMIN", channel="C1", surface=surface
    )
    assert surface.forms == ["invoicexpress at-communication"]
    assert sandbox_of(runtime, "invoicexpress").control.requests == []


async def test_modal_errors_land_under_their_fields(runtime: Runtime) -> None:
    command, errors = await runtime.dispatcher.check_form(
        "invoicexpress at-communication",
        {"subuser": "12345/1", "communication_type": "fax"},
        user="U0ADMIN",
        channel="C1",
    )
    assert command is not None
    assert set(errors) == {"subuser", "password", "communication_type"}
    assert "9-digit NIF" in errors["subuser"]
    assert errors["password"] == "is required"
    assert sandbox_of(runtime, "invoicexpress").control.requests == []


async def test_modal_submission_runs_the_same_handler(runtime: Runtime) -> None:
    values = {"subuser": "123456789/3", "password": "s3cr3t-AT-pass", "communication_type": "auto"}
    command, errors = await runtime.dispatcher.check_form(
        "invoicexpress at-communication", values, user="U0ADMIN", channel="C1"
    )
    assert command is not None and errors == {}
    surface = RecordingSurface(user="U0ADMIN")
    assert (
        await runtime.dispatcher.run_values(
            command, values, user="U0ADMIN", channel="C1", surface=surface
        )
        is None
    )
    sandbox = sandbox_of(runtime, "invoicexpress")
    assert sandbox.at_settings == {"at_subuser": "123456789/3", "communication_type": "auto"}
    body = json.loads(sandbox.control.requests[-1].body)
    assert body["at_communication"]["at_password"] == "czNjcjN0LUFULXBhc3M="
    assert "s3cr3t-AT-pass" not in surface.texts()
    assert "czNjcjN0LUFULXBhc3M=" not in surface.texts()


async def test_approval_flow_runs_once_and_tells_the_story(runtime: Runtime) -> None:
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        "/invoicexpress sequence create 2027", user="U1", channel="C1", surface=requester
    )
    sandbox = sandbox_of(runtime, "invoicexpress")
    assert sandbox.control.requests == []  # nothing is sent before approval
    card = requester.sent[0]
    assert "Approval needed" in card.text and "#1" in card.text
    assert '"serie": "2027"' in card.sections[0]
    assert [b.command for b in card.buttons] == ["/billing approve 1", "/billing reject 1 form=yes"]

    # The requester (an operator) cannot approve.
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U1", channel="C1", surface=requester
    )
    assert "needs the *approver* role" in requester.privates[-1]
    # An operator who is not an approver is refused by role.
    operator = RecordingSurface(user="U0OPERATOR")
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U0OPERATOR", channel="C1", surface=operator
    )
    assert "needs the *approver* role" in operator.privates[-1]

    approver = RecordingSurface(user="U2")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=approver
    )
    assert [s.serie for s in sandbox.sequences.values()].count("2027") == 1
    final = approver.updates[-1][1]
    assert final.text.startswith("✅ #1 *done* — approved by <@U2>")
    assert final.buttons == []
    assert any("Sequence *2027* created" in r.text for r in approver.sent)

    # A second click changes nothing.
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=approver
    )
    assert "already done by <@U2>" in approver.privates[-1]
    assert [s.serie for s in sandbox.sequences.values()].count("2027") == 1

    async with runtime.engine.connect() as conn:
        row = (await conn.execute(sa.select(approvals))).mappings().one()
    assert row["status"] == "done" and row["decided_by"] == "U2"
    story = [(r["user_id"], r["decision"], r["outcome"]) for r in await audit_rows(runtime)]
    # In order, each row by whoever made that step: asked, approved, ran.
    steps = [s for s in story if s[1] in {"requested", "approved", "executed"}]
    assert steps == [
        ("U1", "requested", "pending"),
        ("U2", "approved", "executing"),
        ("U2", "executed", "done"),
    ]


async def test_an_approver_cannot_approve_their_own_request(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U2")
    await runtime.dispatcher.run(
        "/invoicexpress sequence create 2029", user="U2", channel="C1", surface=surface
    )
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=surface
    )
    assert "You requested #1 yourself" in surface.privates[-1]
    assert "two-person rule" in surface.privates[-1]
    assert sandbox_of(runtime, "invoicexpress").control.requests == []
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=surface
    )
    assert len(sandbox_of(runtime, "invoicexpress").control.requests) >= 1


async def test_reject_records_who_and_why(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequence create 2031", user="U1", channel="C1", surface=surface
    )
    approver = RecordingSurface(user="U2")
    assert await runtime.dispatcher.run(
        '/billing reject 1 "wrong year"', user="U2", channel="C1", surface=approver
    )
    assert approver.updates[-1][1].text == "🚫 #1 rejected by <@U2>: wrong year"
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=approver
    )
    assert sandbox_of(runtime, "invoicexpress").control.requests == []
    rows = await audit_rows(runtime)
    assert any(r["decision"] == "rejected" and r["detail"] == "wrong year" for r in rows)


async def test_twenty_concurrent_approvals_make_one_provider_call(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequence create 2040", user="U1", channel="C1", surface=surface
    )
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.control.hold()  # the winner stays with the provider until every other click is done
    clickers = ["U2", "U3", "U0APPROVER", "U0ADMIN"] * 5
    clicks = [
        asyncio.ensure_future(
            runtime.dispatcher.run(
                "/billing approve 1", user=u, channel="C1", surface=RecordingSurface(user=u)
            )
        )
        for u in clickers
    ]
    try:
        await sandbox.control.wait_held()
        pending = set(clicks)
        async with asyncio.timeout(30):
            while len(pending) > 1:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sandbox.control.release()
    [winner] = pending  # the other 19 were answered while the winner's call was in flight
    results = await asyncio.gather(*clicks)
    creates = [r for r in sandbox.control.requests if r.method == "POST"]
    assert len(creates) == 1
    assert results.count(True) == 1 and winner.result() is True
    assert [s.serie for s in sandbox.sequences.values()].count("2040") == 1


async def test_expired_requests_cannot_run(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequence register id=103", user="U1", channel="C1", surface=surface
    )
    async with runtime.engine.begin() as conn:
        await conn.execute(
            approvals.update().values(expires_at=runtime.executor.clock().replace(year=2000))
        )
    approver = RecordingSurface(user="U2")
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=approver
    )
    assert "has expired" in approver.privates[-1]
    await runtime.flow.sweep()
    system = runtime.system_surface("C1")
    assert any("expired unapproved" in r.text for _, r in system.updates)  # type: ignore[attr-defined]
    assert sandbox_of(runtime, "invoicexpress").control.requests == []


async def test_disabled_provider_says_so(open_bot: OpenBot) -> None:
    from bot.catalog import ProviderRuntime
    from commands.invoicexpress.commands import PROVIDER

    runtime = await open_bot(runtimes=[ProviderRuntime(PROVIDER, "disabled")])
    surface = RecordingSurface(user="U1")
    assert not await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=surface
    )
    assert "InvoiceXpress is not configured here" in surface.privates[0]
    assert "`INVOICEXPRESS_*`" in surface.privates[0]


async def test_a_button_too_long_for_slack_is_stored_and_still_works(
    runtime: Runtime,
) -> None:
    ids = ",".join(str(100_000_000 + n) for n in range(300))
    long_line = f"/activeplatform notify-closing period=2026-10 accounts={ids} reseller=1"
    assert len(long_line) > 2000
    reply = await runtime.executor._short_buttons(
        Reply(text="2 chunks failed", buttons=[Button(label="Retry", command=long_line)])
    )
    value = reply.buttons[0].command
    assert value.startswith("stored:") and len(value) < 20
    values = [
        e["value"] for b in reply_blocks(reply) if b["type"] == "actions" for e in b["elements"]
    ]
    assert values == [value]

    surface = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(value, user="U1", channel="C1", surface=surface)
    card = surface.sent[-1]
    assert "Approval needed" in card.text
    [row] = await runtime.approvals.open()
    assert row.args["accounts"] == ids  # the whole command came back
    # The card's field stays within Slack's 2,000 characters and says where the rest is.
    shown = dict(card.fields)["Command"]
    assert len(shown) < 2000 and shown.endswith("(the whole command: `/billing approvals`)")
    await runtime.dispatcher.run("stored:99999", user="U1", channel="C1", surface=surface)
    assert surface.privates[-1] == "That button has expired; type the command instead."


async def test_open_approvals_are_listed_with_links_and_buttons(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U1", channel="C0BILL")
    await runtime.dispatcher.run(
        "/invoicexpress sequence create 2041", user="U1", channel="C0BILL", surface=surface
    )
    viewer = RecordingSurface(user="U0VIEWER")
    assert await runtime.dispatcher.run(
        "/billing approvals", user="U0VIEWER", channel="C1", surface=viewer
    )
    listing = viewer.sent[-1]
    assert listing.text == "*1 open approval request*"
    assert "<https://slack.com/archives/C0BILL/p10001|open>" in listing.sections[0]
    assert "`/invoicexpress sequence create serie=2041 default=no`" in listing.sections[0]
    assert [b.command for b in listing.buttons] == [
        "/billing approve 1",
        "/billing reject 1 form=yes",
    ]


async def test_shutdown_waits_for_work_in_flight(runtime: Runtime) -> None:
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.control.hold()
    surface = RecordingSurface(user="U1")
    running = asyncio.ensure_future(
        runtime.dispatcher.run("/invoicexpress sequences", user="U1", channel="C1", surface=surface)
    )
    await sandbox.control.wait_held()  # the request is with the provider
    draining = asyncio.ensure_future(runtime.dispatcher.drain(timeout=30))
    await asyncio.sleep(0)  # one turn of the loop: the drain is now waiting
    assert not running.done() and not draining.done()
    sandbox.control.release()
    assert await draining  # returns once the request has finished...
    assert running.done() and surface.sent  # ...with its answer posted
    assert await runtime.dispatcher.drain(timeout=0.01)  # nothing in flight: immediate
