"""What the approval flow does when the work around it is cancelled, for any adapter: a request
cut off while it is made is withdrawn (its own, only), an approved run cut off while it runs
ends "outcome unknown" and is never run again; and `withdraw` takes back only the requester's
own pending request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot import messages
from bot.approvals.flow import CUT_OFF, WITHDRAWN
from bot.approvals.state import Outcome, Status
from bot.runtime import Runtime
from bot.storage.store import audit
from bot.surface import MessageRef
from commands import grammar
from commands.base import Reply
from tests.support import Clock, OpenBot, RecordingSurface, sandbox_of

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CREATE = "/invoicexpress sequence create 2027"
PAGE = 50  # `Approvals.open`'s default page of open requests


TOKYO = ZoneInfo("Asia/Tokyo")


def PROVIDER_HINT(runtime: Runtime) -> Reply | None:  # noqa: N802
    """How the sequence's creation is checked by hand: the card of a lost run shows it."""
    command = runtime.catalog.command("invoicexpress sequence create")
    assert command is not None and command.unknown_hint is not None
    return command.unknown_hint(grammar.validate(command, {"serie": "2027"}))


async def audit_rows(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(audit).order_by(audit.c.id))
        return [dict(r) for r in rows.mappings()]


async def request(
    runtime: Runtime, line: str = CREATE, user: str = "U1", channel: str = "C1"
) -> RecordingSurface:
    surface = RecordingSurface(user=user, channel=channel)
    assert await runtime.dispatcher.run(line, user=user, channel=channel, surface=surface)
    return surface


# --- withdraw ----------------------------------------------------------------------------------


async def test_only_the_requester_withdraws_and_only_a_pending_request(
    open_bot: OpenBot,
) -> None:
    runtime = await open_bot(billing_timezone="Asia/Tokyo")  # the card's times are in it
    await request(runtime)
    flow = runtime.flow
    before = len(await audit_rows(runtime))

    assert not await flow.withdraw(1, by="U2", reason="not mine")  # someone else's
    assert not await flow.withdraw(99, by="U1", reason="no such request")
    row = await runtime.approvals.get(1)
    assert row is not None and row.status is Status.PENDING
    assert len(await audit_rows(runtime)) == before

    told = RecordingSurface(user="U1")
    assert await flow.withdraw(1, by="U1", reason="changed my mind", surface=told)
    row = await runtime.approvals.get(1)
    assert row is not None and row.status is Status.REJECTED
    assert (row.decided_by, row.reason) == ("U1", "changed my mind")
    last = (await audit_rows(runtime))[-1]
    assert (last["user_id"], last["decision"], last["outcome"], last["detail"]) == (
        "U1",
        "withdrawn",
        "not run",
        "changed my mind",
    )
    assert last["approval_id"] == 1 and last["command"] == "/invoicexpress sequence create"
    assert (
        told.privates
        == [messages.withdrawn(1)]
        == ["Approval request #1 withdrawn: the command was cancelled."]
    )
    # The card is updated where it was posted, in order with its other messages.
    channel = runtime.system_surface("C1")
    ref, card = channel.updates[-1]  # type: ignore[attr-defined]
    assert ref == row.ref and ref is not None
    assert replace(card, metadata=None) == messages.approval_rejected(row, runtime.settings.tz)
    assert card.metadata is not None and card.metadata.payload["state"] == "rejected"
    assert channel.keys[-1] == "approval:1"  # type: ignore[attr-defined]

    rows = len(await audit_rows(runtime))
    assert not await flow.withdraw(1, by="U1", reason="again", surface=told)  # no longer pending
    assert len(await audit_rows(runtime)) == rows and len(told.privates) == 1
    assert sandbox_of(runtime, "invoicexpress").control.requests == []


async def test_withdrawing_without_a_surface_or_a_posted_card_tells_nobody(
    runtime: Runtime,
) -> None:
    class Unposted(RecordingSurface):
        async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
            await super().send(reply, key=key)
            return None  # Slack has not taken the card yet

    surface = Unposted(user="U1")
    assert await runtime.dispatcher.run(CREATE, user="U1", channel="C1", surface=surface)
    assert await runtime.flow.withdraw(1, by="U1", reason="cut off")
    row = await runtime.approvals.get(1)
    assert row is not None and row.status is Status.REJECTED and row.ref is None
    assert runtime.system_surface("C1").updates == []  # type: ignore[attr-defined]
    assert surface.privates == []


async def test_a_request_past_its_time_is_not_withdrawn(open_bot: OpenBot) -> None:
    clock = Clock(START)
    runtime = await open_bot(clock=clock)
    await request(runtime)
    clock.advance(hours=runtime.settings.approval_ttl_hours)  # expired, not swept yet
    row = await runtime.approvals.get(1)
    assert row is not None and row.status is Status.PENDING
    assert not await runtime.flow.withdraw(1, by="U1", reason="too late")
    assert [r["decision"] for r in await audit_rows(runtime)] == ["requested"]


# --- a request cut off while it is made ---------------------------------------------------------


def stop_after(target: Any, name: str) -> asyncio.Event:
    """`target.name` does its work, then waits until cancelled; the event says it got there."""
    real: Callable[..., Awaitable[Any]] = getattr(target, name)
    reached = asyncio.Event()

    async def stopped(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        reached.set()
        await asyncio.Event().wait()
        return result

    setattr(target, name, stopped)
    return reached


async def test_a_request_cut_off_while_it_is_made_withdraws_only_itself(
    open_bot: OpenBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(START)
    runtime = await open_bot(clock=clock)
    # Pending requests the cut-off one must leave alone: made earlier, by someone else, in
    # another channel, of another command; and more of them than a page of open requests.
    await request(runtime)  # #1: same person, channel and command, but earlier
    clock.advance(minutes=1)
    await request(runtime, user="U3")  # #2
    await request(runtime, channel="C2")  # #3
    await request(runtime, "/invoicexpress sequence register 101")  # #4
    for _ in range(PAGE):
        await request(runtime, user="U3", channel="C9")
    clock.advance(minutes=1)

    reached = stop_after(runtime.approvals, "create")
    surface = RecordingSurface(user="U1")
    task = asyncio.create_task(
        runtime.dispatcher.run(CREATE, user="U1", channel="C1", surface=surface)
    )
    await reached.wait()  # the newest request is in the database; its card is not shown
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    newest = 4 + PAGE + 1
    rows = [await runtime.approvals.get(i) for i in range(1, newest + 1)]
    statuses = {row.id: row.status for row in rows if row}
    assert statuses == {**dict.fromkeys(range(1, newest), Status.PENDING), newest: Status.REJECTED}
    cut = await runtime.approvals.get(newest)
    assert cut is not None and (cut.reason, cut.decided_by) == (WITHDRAWN, "U1")
    assert surface.privates == [messages.withdrawn(newest)]
    assert surface.sent == []  # no card was shown for it
    last = (await audit_rows(runtime))[-1]
    assert (last["decision"], last["approval_id"], last["detail"]) == (
        "withdrawn",
        newest,
        WITHDRAWN,
    )


# --- an approved run cut off while it runs ----------------------------------------------------


async def test_an_approved_run_cut_off_while_it_runs_ends_unknown_once(open_bot: OpenBot) -> None:
    runtime = await open_bot(billing_timezone="Asia/Tokyo")  # the card's times are in it
    await request(runtime)
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.control.hold()
    approver = RecordingSurface(user="U2", channel="C1")
    before = asyncio.all_tasks()
    task = asyncio.create_task(
        runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)
    )
    await sandbox.control.wait_held()  # the write reached the provider; its answer is out
    # Cut off as the console's Ctrl-C does: the command and every task it started.
    started = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert task in started and len(started) > 1  # `/billing approve` runs in a task of its own
    for each in started:
        each.cancel()
    await asyncio.gather(*started, return_exceptions=True)
    sandbox.control.release()

    row = await runtime.approvals.get(1)
    assert row is not None and (row.status, row.outcome) == (Status.UNKNOWN, CUT_OFF)
    last = (await audit_rows(runtime))[-1]
    assert (last["user_id"], last["decision"], last["outcome"], last["detail"]) == (
        "U2",
        "approved",
        "unknown",
        CUT_OFF,
    )
    ref, card = approver.updates[-1]
    assert ref == row.ref and approver.keys[-1] == "approval:1"
    hint = PROVIDER_HINT(runtime)
    shown = messages.approval_done(row, Outcome(Status.UNKNOWN, CUT_OFF, hint), TOKYO)
    assert replace(card, metadata=None) == shown
    assert card.metadata is not None and card.metadata.payload["state"] == "unknown"
    assert card.sections[1].startswith(f"{CUT_OFF}. It will not be retried.")
    assert approver.privates[-1] == messages.cut_off(1)
    assert messages.cut_off(1).startswith("❓ Approval #1 was cancelled while it ran")

    again = RecordingSurface(user="U3", channel="C1")
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=again
    )
    assert "already unknown" in again.privates[-1]
    assert len([r for r in sandbox.control.requests if r.method == "POST"]) == 1


def test_the_cut_off_and_withdrawal_reasons_say_what_happened() -> None:
    assert WITHDRAWN == "cancelled before the request was complete"
    assert CUT_OFF == "cancelled while it ran; it may or may not have happened"
