"""Checking and settling an unknown outcome: who may, where its card is updated, what next."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.slack.blocks import reply_blocks
from bot.storage.store import approvals
from bot.surface import MessageRef
from commands.base import Reply
from commands.http import OutcomeUnknown
from tests.support import RecordingSurface
from tests.support.drill import Bot, in_a_later_release, story, system


async def lost(bot: Bot, requester: str = "U1", approver: str = "U2") -> None:
    """Request #1, a move, and have it approved; its answer is lost (the move happened)."""
    await bot.run("/drill move r1", requester)
    bot.client.raises = OutcomeUnknown("drill", "no answer", status=None)
    await bot.run("/billing approve 1", approver)
    bot.client.raises = None
    assert await bot.status() == "unknown"


async def test_a_check_reads_the_provider_as_the_checker_and_is_audited(bot: Bot) -> None:
    await lost(bot)
    bot.client.contexts.clear()
    done, surface = await bot.run("/billing check-outcome 1", "U3")
    assert done
    [ctx] = bot.client.contexts
    assert (ctx.user_id, ctx.channel_id) == ("U3", "C1")
    found = surface.sent[-1]
    assert found.sections == ["r1 is at the provider"] and "it happened" in found.text
    assert [b.label for b in found.buttons] == ["Mark done", "Mark not done"]
    assert (await story(bot))[-1] == ("U3", "checked", "done", "r1 is at the provider")


def button_values(reply: Reply) -> dict[str, str]:
    """Each button's label and the value Slack sends back when it is clicked."""
    return {
        e["text"]["text"]: e["value"]
        for b in reply_blocks(reply)
        if b["type"] == "actions"
        for e in b["elements"]
    }


@pytest.mark.parametrize(
    ("at_provider", "found", "done_reason", "not_done_reason"),
    [
        (
            True,
            "r1 is at the provider",
            "checked: r1 is at the provider",
            "marked not done against the check, which found: r1 is at the provider",
        ),
        (
            False,
            "r1 is not at the provider",
            "marked done against the check, which found: r1 is not at the provider",
            "checked: r1 is not at the provider",
        ),
    ],
)
async def test_each_check_button_gives_the_reason_for_what_it_settles(
    bot: Bot, at_provider: bool, found: str, done_reason: str, not_done_reason: str
) -> None:
    await lost(bot)
    if not at_provider:
        bot.client.calls.clear()  # the write never got there
    _, checker = await bot.run("/billing check-outcome 1", "U3")
    assert checker.sent[-1].sections == [found]
    assert button_values(checker.sent[-1]) == {
        "Mark done": f'/billing resolve id=1 outcome=done reason="{done_reason}"',
        "Mark not done": f'/billing resolve id=1 outcome=not-done reason="{not_done_reason}"',
    }
    against = next(b for b in checker.sent[-1].buttons if b.style is None)
    _, settled = await bot.run(against.command, "U3")
    [card] = [c for _, c in settled.updates if "settled" in c.text]
    reason = not_done_reason if at_provider else done_reason
    assert f"Reason: {reason}" in card.sections
    assert (await story(bot))[-1][3] == reason


async def test_only_someone_who_may_settle_it_is_offered_to(bot: Bot) -> None:
    await lost(bot, requester="U2", approver="U3")  # an approver may request too
    _, requester = await bot.run("/billing check-outcome 1", "U2")
    assert requester.sent[-1].buttons == []  # the requester may look, not settle
    _, other = await bot.run("/billing check-outcome 1", "U3")
    assert other.sent[-1].buttons  # another approver may
    await bot.run('/billing resolve 1 done reason="seen"', "U3")
    _, later = await bot.run("/billing check-outcome 1", "U3")
    assert later.sent[-1].buttons == []  # settled already


async def test_a_check_of_nothing_or_of_a_command_gone_says_so(
    bot: Bot, make_settings: Callable[..., Settings]
) -> None:
    done, surface = await bot.run("/billing check-outcome 999", "U3")
    assert not done and surface.privates[-1] == "There is no approval request #999."
    await lost(bot)
    checker = await in_a_later_release(bot, make_settings, "/billing check-outcome 1", "U3")
    assert checker.privates[-1] == "/drill move no longer exists; check at the provider."


async def test_settling_as_not_done_updates_the_card_and_offers_the_request_again(
    bot: Bot,
) -> None:
    await lost(bot)
    done, surface = await bot.run('/billing resolve 1 not-done reason="not there"', "U3")
    assert done
    [(ref, card)] = [(r, c) for r, c in surface.updates if "settled" in c.text]
    assert ref == MessageRef("C1", "1.0001") and "approval:1" in surface.keys
    assert ("Settled", "2030-01-06 18:00 JST") in card.fields
    said = surface.sent[-1]
    assert said.private and said.text.startswith("Approval #1 settled as not done.")
    [again] = said.buttons
    assert (again.label, again.command, again.style) == (
        "Request it again",
        "/drill move ref=r1",
        "primary",
    )
    assert (await story(bot))[-1] == ("U3", "resolved", "not done", "not there")


async def test_settling_as_done_offers_nothing_more(bot: Bot) -> None:
    await lost(bot)
    _, surface = await bot.run('/billing resolve 1 done reason="there"', "U3")
    assert surface.sent[-1].buttons == []


async def test_settling_from_another_channel_updates_the_card_where_it_is(bot: Bot) -> None:
    await lost(bot)
    elsewhere = RecordingSurface(channel="C2", user="U3")
    await bot.runtime.dispatcher.run(
        '/billing resolve 1 done reason="there"', user="U3", channel="C2", surface=elsewhere
    )
    assert not [c for _, c in elsewhere.updates if "settled" in c.text]
    [(ref, card)] = [(r, c) for r, c in system(bot).updates if "settled" in c.text]
    assert ref == MessageRef("C1", "1.0001")


async def test_a_not_done_whose_arguments_no_longer_read_offers_no_request(bot: Bot) -> None:
    await lost(bot)
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().where(approvals.c.id == 1).values(args="{}"))
    done, surface = await bot.run('/billing resolve 1 not-done reason="not there"', "U3")
    assert done and surface.sent[-1].buttons == []
    assert (await bot.row())["resolution"] == "not done"
