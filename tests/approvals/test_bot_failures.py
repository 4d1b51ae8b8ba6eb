"""Approved runs that fail: crashing handlers, bot failures and their reference, gone commands."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from commands.base import Proposal
from commands.http import ProviderError
from tests.support.drill import Bot, in_a_later_release


async def test_a_crash_in_a_non_idempotent_handler_is_unknown_not_failed(bot: Bot) -> None:
    bot.client.crash = True
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert bot.client.calls == ["r1"]
    assert await bot.status() == "unknown"
    assert surface.sent[-1].text == "Approval #1: unknown."
    assert surface.sent[-1].private  # the approver's own note; the card tells the channel
    card = surface.updates[-1][1]
    assert card.text.startswith("❓ #1 *outcome unknown*")
    assert "It may or may not have reached the provider" in card.sections[1]
    assert "the client broke" not in surface.texts()  # the exception stays in the log
    executed = [r for r in await bot.audit() if r["decision"] == "executed"]
    assert [r["outcome"] for r in executed] == ["unknown"]

    # ... and nobody can run it again.
    again, other = await bot.run("/billing approve 1", "U3")
    assert not again and "already unknown" in other.privates[-1]
    assert bot.client.calls == ["r1"]


async def test_a_crash_in_an_idempotent_handler_is_failed(bot: Bot) -> None:
    bot.client.crash = True
    await bot.run("/drill look r1", "U1")
    await bot.run("/billing approve 1", "U2")
    assert await bot.status() == "failed"
    assert "Nothing was retried." in str((await bot.row())["outcome"])


def trip_over_proposals(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler's reply proposes a command, and putting it up fails inside the bot."""
    bot.client.propose = Proposal(command="/drill look r9")

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the bot tripped over the proposal")

    monkeypatch.setattr(bot.runtime.flow, "propose", broken)


def logged_reference(caplog: pytest.LogCaptureFixture) -> str:
    """The reference the flow logged its failure under."""
    [record] = [r for r in caplog.records if r.name == "bot.approvals.flow"]
    found = re.fullmatch(
        r"approval #1 failed inside the bot \(reference ([0-9a-f]{8})\)", record.getMessage()
    )
    assert found is not None, record.getMessage()
    return found.group(1)


async def test_a_bot_failure_after_a_write_was_sent_is_unknown(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write is sent and answered; then the bot trips over what the answer proposes.
    trip_over_proposals(bot, monkeypatch)
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert bot.client.calls == ["r1"]
    row = await bot.row()
    reference = logged_reference(caplog)
    assert row["status"] == "unknown"
    assert row["outcome"] == f"the bot failed while running it (reference {reference})"
    assert surface.sent[-1].text == "Approval #1: unknown."
    last = [r for r in await bot.audit() if r["approval_id"] == 1][-1]
    assert (last["decision"], last["outcome"], last["detail"]) == (
        "executed",
        "unknown",
        row["outcome"],
    )
    again, _ = await bot.run("/billing approve 1", "U3")
    assert not again and bot.client.calls == ["r1"]


async def test_a_bot_failure_around_a_safe_read_is_failed(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    trip_over_proposals(bot, monkeypatch)
    await bot.run("/drill look r1", "U1")
    await bot.run("/billing approve 1", "U2")
    row = await bot.row()
    reference = logged_reference(caplog)
    assert row["status"] == "failed"
    assert row["outcome"] == f"not run: the bot failed (reference {reference})"
    last = [r for r in await bot.audit() if r["approval_id"] == 1][-1]
    assert (last["decision"], last["outcome"]) == ("not run", "failed")


async def test_a_command_gone_since_the_request_fails_and_sends_nothing(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    await bot.run("/drill move r1", "U1")
    # The next release no longer has the command; it is approved there.
    approver = await in_a_later_release(bot, make_settings, "/billing approve 1", "U2")
    row = await bot.row()
    assert (row["status"], row["outcome"]) == ("failed", "not run: /drill move no longer exists")
    assert approver.sent[-1].text == "Approval #1: failed."
    assert bot.client.calls == []
    story = [(r["decision"], r["outcome"]) for r in await bot.audit() if r["approval_id"] == 1]
    assert story == [("requested", "pending"), ("approved", "executing"), ("not run", "failed")]


async def test_a_failed_approved_run_tells_the_approver_once(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.client.raises = ProviderError("drill", "Drill refused r1", status=409)
    _, approver = await bot.run("/billing approve 1", "U2")
    assert [r.text for r in approver.sent if r.private] == ["Approval #1: failed."]
    assert None not in approver.sent
