"""Commands run at once: what the person is told and what is audited, switched-off ones too."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from bot.approvals.state import Status
from bot.catalog import ProviderRuntime
from bot.config import Settings
from bot.executor import Executor
from bot.runtime import open_runtime
from bot.storage import store
from bot.storage.store import ReportHistory, StoredCommands, approvals
from commands.base import CommandError, NoArgs
from commands.http import OutcomeUnknown, ProviderError
from tests.support import RecordingSurface
from tests.support.drill import DRILL, Bot, last_audit


def plain(text: str) -> str:
    """What the audit log keeps of a message: its text without mrkdwn."""
    return text.replace("`", "")


async def test_a_direct_write_whose_answer_was_lost_is_unknown_with_its_hint(bot: Bot) -> None:
    bot.client.raises = OutcomeUnknown("drill", "no answer in 30 s", status=504)
    done, surface = await bot.run("/drill send r1", "U1")
    assert not done and bot.client.calls == ["r1"]
    assert surface.privates[-1] == (
        "❓ *Outcome unknown* for `/drill send`: no answer in 30 s. It was not retried, because "
        "it may already have happened. Check whether r1 moved."
    )
    [hint] = surface.sent  # once, to the person who ran it
    assert (hint.text, hint.private) == ("Check whether r1 moved.", True)
    assert [(b.label, b.command) for b in hint.buttons] == [("Look", "/drill peek r1")]
    assert await last_audit(bot) == ("ran", "unknown", "no answer in 30 s", 504)


async def test_a_direct_read_whose_answer_was_lost_says_to_check(bot: Bot) -> None:
    bot.client.raises = OutcomeUnknown("drill", "no answer", status=None)
    _, surface = await bot.run("/drill peek r1", "U1")
    assert surface.privates[-1].endswith(
        "Check at the provider whether it happened before asking again."
    )
    assert surface.sent == []  # no hint, so no buttons
    assert await last_audit(bot) == ("ran", "unknown", "no answer", None)


async def test_a_provider_refusal_is_one_sentence_and_failed(bot: Bot) -> None:
    bot.client.raises = ProviderError("drill", "Drill has no account r1", status=404)
    done, surface = await bot.run("/drill send r1", "U1")
    said = "`/drill send` failed: Drill has no account r1."
    assert not done and surface.privates[-1] == said and surface.sent == []
    assert await last_audit(bot) == ("ran", "failed", plain(said), 404)


async def test_a_handler_s_own_refusal_is_shown_as_it_said_it(bot: Bot) -> None:
    bot.client.raises = CommandError("r1 is closed; nothing was sent.")
    done, surface = await bot.run("/drill send r1", "U1")
    assert not done and surface.privates[-1] == "r1 is closed; nothing was sent."
    assert await last_audit(bot) == ("ran", "failed", "r1 is closed; nothing was sent.", None)


@pytest.mark.parametrize(
    ("line", "status", "tail"),
    [
        (
            "/drill send r1",
            "unknown",
            "It may or may not have reached the provider: check there before asking again.",
        ),
        ("/drill peek r1", "failed", "Nothing was retried."),
    ],
)
async def test_a_crash_in_a_direct_run_names_its_reference(
    bot: Bot, line: str, status: str, tail: str, caplog: pytest.LogCaptureFixture
) -> None:
    bot.client.crash = True
    done, surface = await bot.run(line, "U1")
    assert not done
    said = surface.privates[-1]
    [record] = [r for r in caplog.records if r.name == "bot.executor"]
    reference = re.fullmatch(
        rf"command {line[:-3]} failed \(reference ([0-9a-f]{{8}})\)", record.getMessage()
    )
    assert reference is not None, record.getMessage()
    assert f"(reference `{reference.group(1)}`)" in said
    assert said.startswith(f"`{line[:-3]}` hit an error inside the bot (reference `")
    assert said.endswith(f"`). {tail}")
    decision, outcome, detail, _ = await last_audit(bot)
    assert (decision, outcome, detail) == ("ran", status, plain(said))


async def test_a_direct_run_that_succeeds_shows_its_reply_and_progress(bot: Bot) -> None:
    done, surface = await bot.run("/drill send r1", "U1")
    assert done
    assert surface.privates == ["sending r1"]  # the handler's own note, and no "working"
    progress, reply = surface.sent
    assert progress.text.startswith("`/drill send` moved r1") and reply.text == "moved r1"
    assert await last_audit(bot) == ("ran", "done", "moved r1", None)
    [ctx] = bot.client.contexts
    assert (ctx.user_id, ctx.channel_id, ctx.approval_id) == ("U1", "C1", None)


async def test_a_slow_direct_run_says_it_is_working_and_an_approved_one_does_not(
    bot: Bot,
) -> None:
    bot.runtime.executor.working_after = 0.0
    bot.client.hold = True
    running = asyncio.ensure_future(bot.run("/drill send r1", "U1"))
    await asyncio.wait_for(bot.client.entered.wait(), timeout=30)
    bot.client.release.set()
    _, surface = await running
    assert surface.privates == [
        "sending r1",
        "⏳ Working on `/drill send`… the answer will be posted here when it is done.",
    ]
    await bot.run("/drill move r2", "U1")
    _, approver = await bot.run("/billing approve 1", "U2")
    assert not any("`/drill move`" in p for p in approver.privates)  # the card says it


async def test_a_switched_off_provider_takes_no_request(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    runtime = await open_runtime(
        make_settings(),
        system_surface=lambda c: RecordingSurface(channel=c, user=""),
        runtimes=[ProviderRuntime(DRILL, "disabled")],
    )
    try:
        surface = RecordingSurface(user="U1")
        assert not await runtime.dispatcher.run(
            "/drill move r1", user="U1", channel="C1", surface=surface
        )
        assert "Drill is not configured here" in surface.privates[-1]
        assert "`DRILL_*`" in surface.privates[-1]
        async with runtime.engine.connect() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(approvals))).scalar()
        assert count == 0
    finally:
        await runtime.close()


async def test_a_switched_off_provider_runs_nothing_and_says_so(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    off = await open_runtime(
        make_settings(),
        system_surface=lambda c: RecordingSurface(channel=c, user=""),
        runtimes=[ProviderRuntime(DRILL, "disabled")],
        clock=bot.clock,
    )
    try:
        surface = RecordingSurface(user="U1")
        done = await off.dispatcher.run("/drill send r1", user="U1", channel="C1", surface=surface)
    finally:
        await off.close()
    assert not done and bot.client.calls == []
    assert surface.privates[-1].startswith("Drill is not configured here")


async def test_billing_commands_without_their_client_say_so(bot: Bot) -> None:
    runtime = bot.runtime
    executor = Executor(
        catalog=runtime.catalog,
        audit=runtime.audit,
        approvals=runtime.approvals,
        stored=StoredCommands(runtime.engine),
        history=ReportHistory(runtime.engine),
        billing_client=lambda surface: None,
        tz=runtime.settings.tz,
        clock=bot.clock,
        spool=runtime.executor.spool,
    )
    command = runtime.catalog.command("billing approvals")
    assert command is not None
    surface = RecordingSurface(user="U2")
    outcome = await executor.execute(command, NoArgs(), user="U2", channel="C1", surface=surface)
    done = outcome.status is Status.DONE
    assert not done and surface.privates[-1] == "That provider is switched off."
    last = (await bot.audit())[-1]
    assert (last["outcome"], last["detail"]) == ("failed", "provider not configured")
