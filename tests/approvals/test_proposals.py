"""Proposals and reminders: a proposed command, its labels and snooze, a snoozed reminder."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest

from bot.approvals.flow import ApprovalFlow, Postponer
from bot.runtime import Runtime
from commands.base import Proposal
from tests.support import RecordingSurface
from tests.support.drill import DRILL, STALE, START, Bot, Ref, last_audit


async def test_a_proposal_from_an_approved_run_is_put_up_as_proposed(bot: Bot) -> None:
    bot.client.propose = Proposal(command="/drill look r2")
    await bot.run("/drill move r1", "U1")
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert approved and await bot.status(1) == "done"
    assert (await bot.row(1))["outcome"] == "moved r1"
    row = await bot.row(2)
    assert (row["status"], row["origin"], row["requester"], row["channel"]) == (
        "pending",
        "U2",
        "U2",
        "C1",
    )
    card = next(r for r in surface.sent if "Approval needed" in " ".join(r.sections))
    assert card.text == "moved r1"  # the reply that proposed it heads the card
    assert [b.command for b in card.buttons] == ["/billing approve 2", "/billing reject 2 form=yes"]
    assert [r.text for r in surface.sent if r.text == "moved r1"] == ["moved r1"]  # only there


async def test_a_proposal_from_a_direct_run_is_asked_of_the_channel_it_ran_in(bot: Bot) -> None:
    bot.client.propose = Proposal(command="/drill look r2")
    surface = RecordingSurface(user="U1", channel="C7")
    assert await bot.runtime.dispatcher.run(
        "/drill send r1", user="U1", channel="C7", surface=surface
    )
    row = await bot.row(1)
    assert (row["status"], row["origin"], row["requester"], row["channel"]) == (
        "pending",
        "U1",
        "U1",
        "C7",
    )
    card = next(r for r in surface.sent if "Approval needed" in " ".join(r.sections))
    assert card.text == "moved r1"
    assert bot.client.calls == ["r1"]  # the proposed look waits for its approval


async def test_labels_and_snooze_of_a_proposal_reach_its_card(bot: Bot) -> None:
    bot.client.propose = Proposal(
        command="/drill look r2", approve_label="Look now", reject_label="Skip", snooze_hours=4
    )
    await bot.run("/drill move r1", "U1")
    _, surface = await bot.run("/billing approve 1", "U2")
    row = await bot.row(2)
    assert (row["approve_label"], row["reject_label"], row["snooze_hours"]) == (
        "Look now",
        "Skip",
        4,
    )
    card = next(r for r in surface.sent if "Approval needed" in " ".join(r.sections))
    assert [b.label for b in card.buttons] == ["Look now", "Skip", "Snooze 4 h"]


@dataclass
class Postponed:
    """The scheduler as the flow sees it: records what it was asked."""

    calls: list[tuple[str, int, int]] = field(default_factory=list)
    again: datetime = START + timedelta(hours=4)

    async def postpone(self, schedule_id: int, hours: int) -> None:
        self.calls.append(("postpone", schedule_id, hours))

    async def asked_again(self, schedule_id: int, hours: int) -> datetime | None:
        self.calls.append(("asked_again", schedule_id, hours))
        return self.again


def flow_with(runtime: Runtime, schedules: Postponer) -> ApprovalFlow:
    """The runtime's approval flow, asking `schedules` about snoozed reminders."""
    return ApprovalFlow(
        approvals=runtime.approvals,
        audit=runtime.audit,
        runner=runtime.executor,
        commands=runtime.catalog,
        roles=runtime.roles,
        schedules=schedules,
        policy=runtime.policy,
        notices=runtime.flow.notices,
        gate=runtime.flow.gate,
        system_surface=runtime.system_surface,
        tz=runtime.settings.tz,
        stale_after=STALE,
        spool=runtime.flow.spool,
    )


async def test_a_snoozed_reminder_postpones_only_its_own_schedule(bot: Bot) -> None:
    scheduler = Postponed()
    flow = flow_with(bot.runtime, scheduler)
    await bot.run("/drill move r1", "U1")
    await flow.request(
        DRILL.commands[0],
        Ref(ref="r2"),
        user="U1",
        channel="C1",
        surface=RecordingSurface(),
        origin="schedule:12",
        snooze_hours=4,
    )
    typed, reminded = await flow.approvals.get(1), await flow.approvals.get(2)
    assert typed is not None and reminded is not None
    assert await flow.asked_again(reminded, 4) == START + timedelta(hours=4)
    await flow.snooze(reminded, 4)
    assert await flow.asked_again(typed, 4) is None  # typed by a person: no schedule to ask
    await flow.snooze(typed, 4)
    for origin in ("schedule:", "schedule:x", "scheduler:3", "U1"):
        odd = replace(reminded, origin=origin)
        assert await flow.asked_again(odd, 4) is None
        await flow.snooze(odd, 4)
    assert scheduler.calls == [("asked_again", 12, 4), ("postpone", 12, 4)]
    # The real store: a schedule that is gone (or never was) has nothing to ask again.
    stored = flow_with(bot.runtime, bot.runtime.schedules)
    assert await stored.asked_again(reminded, 4) is None
    await stored.snooze(reminded, 4)
    assert await bot.runtime.schedules.all() == []


@pytest.mark.parametrize(
    ("proposed", "why"),
    [
        ("/nowhere at all", "`/nowhere at all` is not a command."),
        ("/drill help", "it asks for help, not a command"),
        ("/drill move", "ref: "),
    ],
)
async def test_a_proposal_that_cannot_be_read_is_shown_as_the_reply_it_came_in(
    bot: Bot, caplog: pytest.LogCaptureFixture, proposed: str, why: str
) -> None:
    bot.client.propose = Proposal(command=proposed)
    done, surface = await bot.run("/drill send r1", "U1")
    assert done and bot.client.calls == ["r1"]
    assert [r.text for r in surface.sent if not r.private][-1] == "moved r1"
    [record] = [r for r in caplog.records if r.name == "bot.approvals.flow"]
    assert record.getMessage().startswith(f"cannot propose {proposed}: {why}")
    assert await last_audit(bot) == ("ran", "done", "moved r1", None)
    assert await bot.runtime.approvals.open() == []


async def test_a_proposal_that_cannot_be_put_up_is_shown_as_it_is(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot.client.propose = Proposal(command="/drill move r2")
    monkeypatch.setattr(bot.runtime.catalog, "disabled", lambda command: "Drill moves are off.")
    done, surface = await bot.run("/drill send r1", "U1")
    assert done and "Drill moves are off." in surface.privates
    assert [r.text for r in surface.sent if not r.private][-1] == "moved r1"
    assert await bot.audit() and not [r for r in await bot.audit() if r["approval_id"]]
