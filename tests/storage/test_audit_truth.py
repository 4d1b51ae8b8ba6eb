"""The audit log tells the truth: plain-text details cut between words, and an export that
reaches only the person who asked for it unless they ask for the channel."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from bot.runtime import Runtime
from bot.storage.audit import DETAIL_LIMIT, AuditLog, Entry
from bot.storage.store import audit
from commands.words import ELLIPSIS
from tests.support import OpenBot, RecordingSurface, sandbox_of


async def details(runtime: Runtime) -> list[str]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit.c.detail).order_by(audit.c.id))).scalars()
        return [str(r) for r in rows]


async def test_a_result_is_audited_as_plain_text(runtime: Runtime) -> None:
    surface = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=surface
    )
    count = len(sandbox_of(runtime, "invoicexpress").sequences)
    shown = surface.sent[-1].text
    assert shown.startswith(f"*{count} invoice sequences*") and "`N/D`" in shown  # markup shown
    [detail] = await details(runtime)
    assert detail.startswith(f"{count} invoice sequences (★ default; ATCUD code N/D = not reg")
    for markup in ("*", "`"):
        assert markup not in detail


async def test_markup_links_and_long_details_are_stored_plain_and_cut_between_words(
    runtime: Runtime,
) -> None:
    log = AuditLog(runtime.engine)
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
    [detail] = await details(runtime)
    assert detail.startswith("Sent invoice 501 to the portal (https://example.com/a): word0 ")
    assert len(detail) <= DETAIL_LIMIT and detail.endswith(ELLIPSIS)
    last = detail.removesuffix(ELLIPSIS).split()[-1]
    assert last in words.split()  # a whole word, never cut inside one


async def test_the_audit_table_cuts_details_between_words(runtime: Runtime) -> None:
    await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=RecordingSurface()
    )
    approver = RecordingSurface(user="U2")
    await runtime.dispatcher.run("/billing audit 1", user="U2", channel="C1", surface=approver)
    reply = approver.sent[-1]
    assert reply.text == "*Last 1 audit entry*"
    assert reply.table is not None
    detail = reply.table.rows[0][-1]
    count = len(sandbox_of(runtime, "invoicexpress").sequences)
    assert detail == f"{count} invoice sequences (★ default; ATCUD…"


async def test_the_export_goes_to_the_requester_in_a_direct_message(
    runtime: Runtime,
) -> None:
    approver = RecordingSurface(user="U2", channel="C1")
    assert await runtime.dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31", user="U2", channel="C1", surface=approver
    )
    [told] = approver.sent
    assert told.private
    assert told.text == "Sent the audit log 2020-01-01 … 2099-12-31 to you in a direct message."
    assert told.files == ()
    direct = runtime.system_surface("U2")
    assert isinstance(direct, RecordingSurface)
    [export] = direct.sent
    assert export.text == "Audit log 2020-01-01 … 2099-12-31: 0 entries."
    [file] = export.files
    assert file.filename == "audit-2020-01-01-2099-12-31.csv" and file.mime == "text/csv"
    channel = runtime.system_surface("C1")
    assert isinstance(channel, RecordingSurface) and channel.sent == []


async def test_the_export_goes_to_the_channel_when_asked(runtime: Runtime) -> None:
    await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=RecordingSurface()
    )
    approver = RecordingSurface(user="U2", channel="C1")
    assert await runtime.dispatcher.run(
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
    direct = runtime.system_surface("U2")
    assert isinstance(direct, RecordingSurface) and direct.sent == []


async def test_a_wrong_destination_is_explained(runtime: Runtime) -> None:
    approver = RecordingSurface(user="U2", channel="C1")
    assert not await runtime.dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31 to=everyone",
        user="U2",
        channel="C1",
        surface=approver,
    )
    [message] = approver.privates
    assert message.startswith("`to`: 'everyone' is not one of the choices: use me or channel")
    assert approver.sent == []


class NoDirectMessages:
    async def open(self, user: str) -> None:
        return None


async def test_without_a_direct_message_nothing_is_exported(open_bot: OpenBot) -> None:
    runtime = await open_bot(direct=NoDirectMessages())
    approver = RecordingSurface(user="U2", channel="C1")
    assert not await runtime.dispatcher.run(
        "/billing audit export 2020-01-01 2099-12-31", user="U2", channel="C1", surface=approver
    )
    assert approver.privates == [
        "I could not open a direct message with you, so the audit export was not sent. "
        "Try again, or add `to=channel` to post it in this channel."
    ]
    assert approver.sent == []
    channel = runtime.system_surface("C1")
    assert isinstance(channel, RecordingSurface) and channel.sent == []


async def test_a_nul_character_in_typed_text_is_audited_on_every_database(
    runtime: Runtime,
) -> None:
    """PostgreSQL's text type refuses NUL; a refused command that quoted one is still audited
    (with U+FFFD in its place), and the person gets the grammar's one sentence."""
    surface = RecordingSurface(user="U1")
    ran = await runtime.dispatcher.run(
        "/voipcloud bal\x00ance 10023", user="U1", channel="C1", surface=surface
    )
    assert ran is False and len(surface.privates) == 1
    [detail] = await details(runtime)
    assert "\x00" not in detail and detail
    assert sandbox_of(runtime, "voipcloud").control.requests == []
