"""A write whose answer never comes ends as "outcome unknown", and is never run again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import sqlalchemy as sa

from bot.runtime import Runtime
from bot.storage.store import approvals
from tests.approvals.hang_approver import IN_FLIGHT
from tests.support import RecordingSurface, sandbox_of

ROOT = Path(__file__).resolve().parents[2]


async def status_of(runtime: Runtime, approval_id: int) -> str:
    async with runtime.engine.connect() as conn:
        value = (
            await conn.execute(sa.select(approvals.c.status).where(approvals.c.id == approval_id))
        ).scalar_one()
    return str(value)


async def test_lost_answer_on_a_write_is_unknown_and_not_retried(runtime: Runtime) -> None:
    requester = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequence create 2033", user="U1", channel="C1", surface=requester
    )
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.control.drop = True  # the provider acts, the answer is lost on the way back
    approver = RecordingSurface(user="U2")
    await runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)

    posts = [r for r in sandbox.control.requests if r.method == "POST"]
    assert len(posts) == 1  # sent once, never retried
    assert [s.serie for s in sandbox.sequences.values()].count("2033") == 1
    assert await status_of(runtime, 1) == "unknown"
    card = approver.updates[-1][1]
    assert "*outcome unknown*" in card.text
    assert "It will not be retried" in card.sections[1]
    assert "Check whether sequence *2033* exists" in card.sections[1]
    assert [b.command for b in card.buttons] == [
        "/billing check-outcome 1",
        "/invoicexpress sequences",
    ]

    # Another click cannot run it again.
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=approver
    )
    assert "already unknown" in approver.privates[-1]
    assert len([r for r in sandbox.control.requests if r.method == "POST"]) == 1


async def test_a_killed_runner_is_settled_as_unknown_after_restart(
    runtime: Runtime, database_url: str
) -> None:
    requester = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/invoicexpress sequence create 2034", user="U1", channel="C1", surface=requester
    )
    card_ts = requester.sent[0]

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "approvals" / "hang_approver.py"),
        database_url,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        # The other process says when its provider call is in flight (generous: a busy machine).
        line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        assert line.decode().strip() == IN_FLIGHT, "the approving process died early"
        assert await status_of(runtime, 1) == "executing"
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            process.kill()
        await process.communicate()

    await runtime.flow.sweep()  # what every replica does at start and every 30 s
    assert await status_of(runtime, 1) == "unknown"
    surface = runtime.system_surface("C1")
    updated = [r for _, r in surface.updates]  # type: ignore[attr-defined]
    assert any("*outcome unknown*" in r.text for r in updated)
    assert any("Check whether sequence *2034* exists" in " ".join(r.sections) for r in updated)
    assert card_ts.text.startswith("🔐 *Approval needed*")

    # This process never ran it, and nobody can run it now.
    sandbox = sandbox_of(runtime, "invoicexpress")
    approver = RecordingSurface(user="U3")
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=approver
    )
    assert "already unknown" in approver.privates[-1]
    assert [r for r in sandbox.control.requests if r.method == "POST"] == []
    await runtime.flow.sweep()  # a second sweep changes nothing
    assert await status_of(runtime, 1) == "unknown"
