"""The audit log tells the truth: plain-text details cut between words, and an export that
reaches only the person who asked for it unless they ask for the channel."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from bot.audit import DETAIL_LIMIT, AuditLog, Entry
from bot.dispatch import Dispatcher
from bot.store import audit
from commands.words import ELLIPSIS
from tests.support import RecordingSurface, sandbox_of


async def details(dispatcher: Dispatcher) -> list[str]:
    async with dispatcher.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit.c.detail).order_by(audit.c.id))).scalars()
        return [str(r) for r in rows]


async def test_a_result_is_audited_as_plain_text(dispatcher: Dispatcher) -> None:
    surface = RecordingSurface(user="U1")
    await dispatcher.run("/invoicexpress sequences", user="U1", channel="C1", surface=surface)
    count = len(sandbox_of(dispatcher, "invoicexpress").sequences)
    shown = surface.sent[-1].text
    assert shown.startswith(f"*{count} invoice sequences*") and "`N/D`" in shown  # markup shown
    [detail] = await details(dispatcher)
    assert detail.startswith(f"{count} invoice sequences (★ default; ATCUD code N/D = not reg")
    for markup in ("*", "`"):
        assert markup not in detail


async def test_markup_links_and_long_details_are_stored_plain_and_cut_between_words(
    dispatcher: Dispatcher,
) -> None:
    log = AuditLog(dispatcher.engine)
    words = " ".join(f"word{n}" for n in range(600))  # far beyond the limit
    entry = Entry(
        user_id="U1",
        channel="C1",
        command="/smsc invoice get",
        args={},
        decision="ran",
        outcome="done",
        detail=f"*Sent* `invoice 501` to <https://example.com/a|the portal>: {words}",
    )
    await log.record(entry)
    [detail] = await details(dispatcher)
    assert detail.startswith("Sent invoice 501 to the portal (https://example.com/a): word0 ")
    assert len(detail) <= DETAIL_LIMIT and detail.endswith(ELLIPSIS)
    last = detail.removesuffix(ELLIPSIS).split()[-1]
    assert last in words.split()  # a whole word, never cut inside one


async def test_the_audit_table_cuts_details_between_words(dispatcher: Dispatcher) -> None:
    await dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=RecordingSurface()
    )
    approver = RecordingSurface(user="U2")
    await dispatcher.run("/billing audit 1", user="U2", channel="C1", surface=approver)
    reply = approver.sent[-1]
    assert reply.text == "*Last 1 audit entry*"
    assert reply.table is not None
    detail = reply.table.rows[0][-1]
    count = len(sandbox_of(dispatcher, "invoicexpress").sequences)
    assert detail == f"{count} invoice sequences (★ default; ATCUD…"


async def test_the_export_goes_to_the_requester_in_a_direct_message(
    dispatcher: Dispatcher,
) -> None:
    approver = RecordingSurface(user="U2", channel="C1")
    assert await dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31", user="U2", channel="C1", surface=approver
    )
    [told] = approver.sent
    assert told.private
    assert told.text == "Sent the audit log 2020-01-01 … 2099-12-31 to you in a direct message."
    assert told.files == ()
    direct = dispatcher.system_surface("U2")
    assert isinstance(direct, RecordingSurface)
    [export] = direct.sent
    assert export.text == "Audit log 2020-01-01 … 2099-12-31: 0 entries."
    [file] = export.files
    assert file.filename == "audit-2020-01-01-2099-12-31.csv" and file.mime == "text/csv"
    channel = dispatcher.system_surface("C1")
    assert isinstance(channel, RecordingSurface) and channel.sent == []


async def test_the_export_goes_to_the_channel_when_asked(dispatcher: Dispatcher) -> None:
    await dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=RecordingSurface()
    )
    approver = RecordingSurface(user="U2", channel="C1")
    assert await dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31 to=channel",
        user="U2",
        channel="C1",
        surface=approver,
    )
    [export] = approver.sent
    assert not export.private
    assert export.text == "Audit log 2020-01-01 … 2099-12-31: 1 entry."
    rows = list(csv.DictReader(io.StringIO(export.files[0].content.decode())))
    assert [r["command"] for r in rows] == ["/invoicexpress sequences"]
    direct = dispatcher.system_surface("U2")
    assert isinstance(direct, RecordingSurface) and direct.sent == []


async def test_a_wrong_destination_is_explained(dispatcher: Dispatcher) -> None:
    approver = RecordingSurface(user="U2", channel="C1")
    assert not await dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31 to=everyone",
        user="U2",
        channel="C1",
        surface=approver,
    )
    [message] = approver.privates
    assert message.startswith("`to`: 'everyone' is not one of the choices: use me or channel")
    assert approver.sent == []


async def test_without_a_direct_message_nothing_is_exported(dispatcher: Dispatcher) -> None:
    async def unavailable(user: str) -> None:
        return None

    dispatcher.direct_surface = unavailable
    approver = RecordingSurface(user="U2", channel="C1")
    assert not await dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31", user="U2", channel="C1", surface=approver
    )
    assert approver.privates == [
        "I could not open a direct message with you, so the audit export was not sent. "
        "Try again, or add `to=channel` to post it in this channel."
    ]
    assert approver.sent == []
    channel = dispatcher.system_surface("C1")
    assert isinstance(channel, RecordingSurface) and channel.sent == []
