"""Approval cards and the audit story: where each card is updated, what it shows and records."""

from __future__ import annotations

import json
from typing import Any

from bot.approvals.cards import Cards
from bot.storage.store import ReportHistory
from bot.surface import MessageRef
from commands.base import Command, Reply
from tests.support import RecordingSurface
from tests.support.drill import START, TOKYO_EXPIRY, Bot, story, system


async def test_a_card_posted_elsewhere_is_updated_where_it_is(bot: Bot) -> None:
    billing = RecordingSurface(channel="C0BILL", user="U1")
    await bot.runtime.dispatcher.run("/drill move r1", user="U1", channel="C1", surface=billing)
    row = await bot.row()
    assert (row["channel"], row["message_ts"]) == ("C0BILL", "1.0001")
    await bot.run("/billing approve 1", "U2")
    system = bot.runtime.system_surface("C0BILL")
    assert [ref for ref, _ in system.updates][-1] == MessageRef("C0BILL", "1.0001")  # type: ignore[attr-defined]


async def test_a_rejection_shows_and_records_who_and_why(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    rejected, surface = await bot.run('/billing reject 1 "wrong customer id"', "U2")
    assert rejected
    assert surface.sent[-1].text == "Approval #1 rejected." and surface.sent[-1].private
    ref, card = surface.updates[-1]
    assert ref == MessageRef("C1", "1.0001") and surface.keys == ["approval:1", None]
    assert card.text == "🚫 #1 rejected by <@U2>: wrong customer id"
    assert ("Decided", "2030-01-06 18:00 JST") in card.fields
    assert (await story(bot, 1))[-1] == ("U2", "rejected", "not run", "wrong customer id")
    await bot.run('/billing reject 2 "wrong account"', "U2")
    assert (await story(bot, 2))[-1] == ("U2", "rejected", "not run", "wrong account")


async def test_an_approval_updates_its_card_in_place(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert approved
    cards = [k for k in surface.keys if not (k or "").startswith("progress:")]
    assert cards[:2] == ["approval:1", "approval:1"]  # running…, then the outcome
    [(first_ref, running), (final_ref, final)] = surface.updates
    assert first_ref == final_ref == MessageRef("C1", "1.0001")
    assert running.text.startswith("⏳ #1 approved by <@U2>")
    assert final.text.startswith("✅ #1 *done* — approved by <@U2>")
    assert ("Decided", "2030-01-06 18:00 JST") in final.fields


async def test_an_approved_run_tells_the_handler_where_and_for_whom(bot: Bot) -> None:
    _, requester = await bot.run("/drill move r1", "U1")
    assert [b.label for b in requester.sent[0].buttons] == ["Approve", "Reject"]
    _, approver = await bot.run("/billing approve 1", "U2")
    [ctx] = bot.client.contexts
    assert (ctx.user_id, ctx.channel_id, ctx.approval_id) == ("U2", "C1", 1)
    assert str(ctx.tz) == "Asia/Tokyo" and ctx.now() == START
    assert "sending r1" in approver.privates  # what the handler says on the way
    await ctx.history.record("drill", {"moved": 1})  # kept in the store, not in memory
    kept = ReportHistory(bot.runtime.engine)
    assert [data for _, data in await kept.recent("drill", 5)] == [{"moved": 1}]


async def test_a_card_posted_late_is_found_by_its_key_and_only_by_it(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    cards = Cards(bot.runtime.approvals)
    late = MessageRef("C9", "77.0001")
    for wrong in ("approval:x", "approval:", "schedule:2", "2", "approval:2:1"):
        await cards.posted(wrong, late)
        assert await cards.locate(wrong) is None
    assert await cards.locate("approval:2") == MessageRef("C1", "1.0001")  # untouched
    await cards.posted("approval:2", late)
    assert await cards.locate("approval:2") == late
    assert await cards.locate("approval:1") == MessageRef("C1", "1.0001")
    assert await cards.locate("approval:99") is None  # no such request


class Bare:
    """A surface that says nothing about its channel (the Surface protocol does not ask)."""

    def __init__(self) -> None:
        self.updates: list[Reply] = []

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        return None

    async def private(self, text: str) -> None:
        return None

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        self.updates.append(reply)

    async def open_form(self, command: Command[Any, Any], form: Any) -> bool:
        return False


async def test_a_surface_without_a_channel_leaves_the_card_to_its_channel(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bare = Bare()
    await bot.runtime.flow.reject(1, user="U2", reason="no", surface=bare)
    assert bare.updates == []
    assert "rejected" in system(bot).updates[-1][1].text


async def test_a_request_s_card_is_keyed_and_shows_its_local_expiry(bot: Bot) -> None:
    _, surface = await bot.run("/drill move r1", "U1")
    assert surface.keys[0] == "approval:1"
    assert ("Expires", TOKYO_EXPIRY) in surface.sent[0].fields


async def test_every_step_of_the_story_names_the_provider_and_the_values(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/billing approve 1", "U2")
    rows = [r for r in await bot.audit() if r["approval_id"] == 1]
    assert [r["decision"] for r in rows] == ["requested", "approved", "executed"]
    assert {r["provider"] for r in rows} == {"drill"}
    assert {r["args"] for r in rows} == {json.dumps({"ref": "r1"})}
