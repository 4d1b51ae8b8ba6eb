"""The people who can decide are told: approvers by direct message when a request is made, the
card's thread at half its time to live, the requester once it is decided or expires.

Without Slack the direct messages go to each person's system surface and the reminder to the
card's channel (Slack's outbox path is in tests/slack/test_card_notices.py and end to end in
tests/e2e/test_notices.py). The clock is moved by hand; the sweep is called, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.approvals.notices import Notices
from bot.approvals.state import Approval
from bot.catalog import ProviderRuntime
from bot.runtime import ConfigError, Runtime, load_settings
from bot.storage.store import audit
from bot.surface import Surface
from commands.base import Reply
from tests.support import Clock, OpenBot, RecordingSurface
from tests.support.drill import DRILL, STALE, START, DrillClient, Ref

APPROVERS = ["U0APPROVER", "U2", "U3", "U0ADMIN"]  # the fixtures' approvers, then admins
ADMIN_ONLY = """
rules:
  - name: moves-need-an-admin
    command: drill move
    approver_role: admin
"""
TWO_APPROVALS = """
rules:
  - name: moves-need-two
    command: drill move
    approvals: 2
"""


@dataclass
class Drilled:
    runtime: Runtime
    clock: Clock
    client: DrillClient

    @property
    def surfaces(self) -> dict[str, RecordingSurface]:
        found: dict[str, RecordingSurface] = self.runtime.system_surfaces  # type: ignore[attr-defined]
        return found

    def sent(self, where: str) -> list[str]:
        """The headlines `where` (a channel, or a person's direct messages) was sent."""
        surface = self.surfaces.get(where)
        return [r.text for r in surface.sent] if surface else []

    def told(self) -> dict[str, list[str]]:
        """Every person's direct messages (system surfaces named by a user ID)."""
        return {w: self.sent(w) for w in sorted(self.surfaces) if w[:1] in ("U", "W")}

    async def run(self, line: str, user: str) -> RecordingSurface:
        surface = RecordingSurface(channel="C1", user=user)
        await self.runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)
        return surface


OpenDrill = Callable[..., Awaitable[Drilled]]


@pytest.fixture
def open_drill(open_bot: OpenBot, tmp_path: Path) -> OpenDrill:
    """A bot whose only provider is the drill, on a clock moved by hand; `policy` is the text
    of its policy file, other keywords go to `open_bot`."""

    async def open_(
        policy: str | None = None, clock: Clock | None = None, **overrides: Any
    ) -> Drilled:
        if policy is not None:
            path = tmp_path / "policy.yml"
            path.write_text(policy, encoding="utf-8")
            overrides["billing_policy_file"] = str(path)
        clock = clock or Clock(START)
        client = DrillClient()
        runtime = await open_bot(
            runtimes=[ProviderRuntime(DRILL, "live", client)],
            clock=clock,
            stale_after=STALE,
            **overrides,
        )
        return Drilled(runtime, clock, client)

    return open_


async def test_everyone_who_could_approve_is_told_and_never_the_requester(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill()
    await bot.run("/drill move r1", "U1")
    headline = "🔐 <@U1> asks for an approval: #1"
    assert bot.told() == {user: [headline] for user in APPROVERS}
    note = bot.surfaces["U2"].sent[0]
    assert note.sections[0] == "`/drill move ref=r1`"  # the card's summary
    assert "`/billing approve 1`" in note.sections[1]
    assert ("Expires", "2030-01-07 09:00 UTC") in note.fields
    await bot.run("/drill move r2", "U2")  # an approver's own request: the others are told
    assert [u for u, sent in bot.told().items() if len(sent) == 2] == [
        "U0ADMIN",
        "U0APPROVER",
        "U3",
    ]
    assert bot.sent("U2") == [headline]
    decisions = [row["decision"] for row in await audit_rows(bot)]
    assert decisions == ["requested", "requested"]  # a notice decides nothing: no audit row


async def test_a_request_only_admins_can_approve_tells_the_admins_and_their_group(
    open_drill: OpenDrill,
) -> None:
    async def members(group: str) -> Sequence[str]:
        return {"S0BOSSES": ["U1", "U7"]}[group]

    bot = await open_drill(ADMIN_ONLY, billing_admins="U0ADMIN,S0BOSSES", group_members=members)
    await bot.run("/drill move r1", "U1")  # U1 is in the group, but it is their request
    assert list(bot.told()) == ["U0ADMIN", "U7"]
    assert ("Approvals", "0 of 1: none yet · admins only") in bot.surfaces["U7"].sent[0].fields


async def test_at_half_its_time_to_live_one_reminder_names_who_can_still_approve(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill(TWO_APPROVALS)
    await bot.run("/drill move r1", "U1")
    await bot.run("/billing approve 1", "U2")
    card = len(bot.sent("C1"))
    bot.clock.advance(hours=11, minutes=59)
    await bot.runtime.flow.sweep()
    assert len(bot.sent("C1")) == card  # not yet half its 24 hours
    bot.clock.advance(minutes=1)
    await bot.runtime.flow.sweep()
    await bot.runtime.flow.sweep()
    assert bot.sent("C1")[card:] == [
        "⏰ #1 is still waiting for approval (1 of 2: <@U2>); it expires 2030-01-07 09:00 UTC. "
        "Who can still approve it: <@U0APPROVER>, <@U3>, <@U0ADMIN>."
    ]


async def test_a_reminder_nobody_can_answer_says_who_grants_the_role(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill(ADMIN_ONLY, billing_admins="U1")  # the only admin is the requester
    await bot.run("/drill move r1", "U1")
    assert bot.told() == {}
    bot.clock.advance(hours=12)
    await bot.runtime.flow.sweep()
    assert bot.sent("C1")[-1].endswith("Nobody listed in BILLING_ADMINS can approve it now.")


async def test_replicas_sweeping_together_remind_once(
    open_drill: OpenDrill, database_url: str
) -> None:
    clock = Clock(START)
    first = await open_drill(clock=clock)
    second = await open_drill(clock=clock)
    await first.run("/drill move r1", "U1")
    clock.advance(hours=13)
    await asyncio.gather(*(bot.runtime.flow.sweep() for bot in (first, second, first, second)))
    reminders = [t for bot in (first, second) for t in bot.sent("C1") if t.startswith("⏰")]
    assert len(reminders) == 1
    assert len(first.told()["U2"]) == 1  # and the approvers were told once, by the request


async def test_approvers_a_failed_group_lookup_left_out_are_told_by_the_sweep(
    open_drill: OpenDrill, caplog: pytest.LogCaptureFixture
) -> None:
    slack_down = True

    async def members(group: str) -> Sequence[str]:
        if slack_down:
            raise RuntimeError("usergroups.users.list answered 503")
        return ["U7"]

    bot = await open_drill(billing_approvers="U2,S0TEAM", group_members=members)
    with caplog.at_level(logging.ERROR, logger="bot.approvals.notices"):
        surface = await bot.run("/drill move r1", "U1")
    assert "Approval needed" in surface.sent[0].text and surface.privates == []
    assert bot.told() == {}  # nobody rather than some: the list was not complete
    assert "telling the approvers of #1 failed" in caplog.text
    slack_down = False
    await bot.runtime.flow.sweep()
    assert bot.told() == {}  # the flow's own try is a minute fresh: the sweep leaves it
    bot.clock.advance(minutes=1)
    await bot.runtime.flow.sweep()
    await bot.runtime.flow.sweep()
    assert {u: len(sent) for u, sent in bot.told().items()} == {"U0ADMIN": 1, "U2": 1, "U7": 1}


async def test_off_tells_no_approver_but_still_reminds_and_tells_the_requester(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill(billing_notify_approvers="off")
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=12, minutes=1)
    await bot.runtime.flow.sweep()
    assert bot.told() == {}
    assert bot.sent("C1")[-1].startswith("⏰ #1 is still waiting for approval; it expires")
    await bot.run("/billing reject 1 not this month", "U2")
    assert bot.told() == {"U1": ["🚫 Your request #1 was rejected by <@U2>"]}


@pytest.mark.parametrize(
    ("decide", "headline", "detail"),
    [
        ("/billing approve 1", "✅ Your request #1 was approved by <@U2>: *done*", "moved r1"),
        (
            '/billing reject 1 "wrong account"',
            "🚫 Your request #1 was rejected by <@U2>",
            "Reason: wrong account",
        ),
        (
            "crash",
            "❓ Your request #1, approved by <@U2>: *outcome unknown*",
            "an approver settles it with `/billing resolve 1 done|not-done",
        ),
        (
            "expire",
            "⌛ Your request #1 expired unapproved at 2030-01-07 09:00 UTC; nothing ran",
            None,
        ),
    ],
)
async def test_the_requester_is_told_how_their_request_ended(
    open_drill: OpenDrill, decide: str, headline: str, detail: str | None
) -> None:
    bot = await open_drill()
    await bot.run("/drill move r1", "U1")
    if decide == "expire":
        bot.clock.advance(hours=24)
        await bot.runtime.flow.sweep()
    else:
        bot.client.crash = decide == "crash"
        await bot.run("/billing approve 1" if decide == "crash" else decide, "U2")
    [told] = bot.surfaces["U1"].sent
    assert told.text == headline
    assert told.sections[0] == "`/drill move ref=r1`"
    if detail is not None:
        assert detail in told.sections[1]


async def test_the_requester_is_told_everyone_who_approved_in_order(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill(TWO_APPROVALS)
    await bot.run("/drill move r1", "U1")
    await bot.run("/billing approve 1", "U3")
    bot.clock.advance(minutes=1)
    await bot.run("/billing approve 1", "U2")
    assert bot.sent("U1") == ["✅ Your request #1 was approved by <@U3> and <@U2>: *done*"]


async def test_nobody_is_told_of_a_withdrawal_of_their_own_or_a_schedules_request(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill()
    await bot.run("/drill move r1", "U1")
    assert await bot.runtime.flow.withdraw(1, by="U1", reason="changed my mind")
    flow = bot.runtime.flow
    await flow.request(
        DRILL.commands[0],
        Ref(ref="r2"),
        user="schedule:12",
        channel="C1",
        surface=bot.runtime.system_surface("C1"),
        origin="schedule:12",
    )
    assert bot.sent("U2") == [
        "🔐 <@U1> asks for an approval: #1",
        "🔐 schedule:12 asks for an approval: #2",
    ]
    await bot.run("/billing approve 2", "U2")
    assert "U1" not in bot.told() and "schedule:12" not in bot.surfaces


async def test_a_notice_that_cannot_be_shown_never_fails_the_request(
    open_drill: OpenDrill, caplog: pytest.LogCaptureFixture
) -> None:
    class Closed:
        async def open(self, user: str) -> Surface | None:
            raise RuntimeError(f"no direct messages with {user}")

    bot = await open_drill(direct=Closed())
    with caplog.at_level(logging.ERROR):
        surface = await bot.run("/drill move r1", "U1")
        await bot.run("/billing approve 1", "U2")
    assert bot.client.calls == ["r1"] and surface.privates == []
    assert [r["decision"] for r in await audit_rows(bot)] == [
        "requested",
        "approved",
        "executed",
        "ran",
    ]
    assert "telling the approvers of #1 failed" in caplog.text
    assert "telling the requester of #1 failed" in caplog.text


async def audit_rows(bot: Drilled) -> list[dict[str, Any]]:
    async with bot.runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit).order_by(audit.c.id))).mappings().all()
    return [dict(r) for r in rows]


def test_the_setting_is_on_or_off_in_any_case_and_a_wrong_value_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().notify_approvers is True  # on unless turned off
    monkeypatch.setenv("BILLING_NOTIFY_APPROVERS", " OFF ")
    assert load_settings().notify_approvers is False
    monkeypatch.setenv("BILLING_NOTIFY_APPROVERS", "sometimes")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "configuration error: BILLING_NOTIFY_APPROVERS: Input should be 'on' or 'off'"
    )


@dataclass
class Recorded:
    """A `Post` that records (to whom, headline, card) in order."""

    sent: list[tuple[str, str, int]] = field(default_factory=list)

    async def direct(self, user: str, reply: Reply, *, card: Approval) -> None:
        self.sent.append((user, reply.text, card.id))

    async def thread(self, card: Approval, reply: Reply) -> None:
        self.sent.append(("thread", reply.text.split(";")[0], card.id))


async def test_each_notice_is_about_its_own_request_and_only_while_it_is_open(
    open_drill: OpenDrill,
) -> None:
    # The flow's own notices are off; these are asked for by hand, in the order the test says.
    bot = await open_drill(billing_notify_approvers="off", billing_operators="U1,W0GRID")
    post = Recorded()
    notices = Notices(
        approvals=bot.runtime.approvals,
        roles=bot.runtime.roles,
        post=post,
        tz=bot.runtime.settings.tz,
        notify_approvers=True,
    )
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=6)
    await bot.run("/drill move r2", "U1")
    await bot.run("/drill move r3", "W0GRID")  # an Enterprise Grid user ID
    await bot.run("/billing approve 3", "U2")
    first, done = await bot.runtime.approvals.get(1), await bot.runtime.approvals.get(3)
    assert first is not None and done is not None
    await notices.requested(done)  # decided already: nobody is asked
    await notices.requested(first)
    await notices.decided(3)
    bot.clock.advance(hours=6)  # #1 is halfway; #2 was never announced
    await notices.sweep()
    bot.clock.advance(hours=6)  # #2 is halfway
    await notices.sweep()
    await notices.sweep()
    asked = "🔐 <@U1> asks for an approval: #{}"
    assert post.sent == [
        *((user, asked.format(1), 1) for user in APPROVERS),
        ("W0GRID", "✅ Your request #3 was approved by <@U2>: *done*", 3),
        ("thread", "⏰ #1 is still waiting for approval", 1),
        *((user, asked.format(2), 2) for user in APPROVERS),
        ("thread", "⏰ #2 is still waiting for approval", 2),
    ]


async def test_times_are_told_in_the_bots_time_zone(open_drill: OpenDrill) -> None:
    bot = await open_drill(billing_timezone="Asia/Tokyo")
    await bot.run("/drill move r1", "U1")
    assert ("Expires", "2030-01-07 18:00 JST") in bot.surfaces["U2"].sent[0].fields
    bot.clock.advance(hours=12)
    await bot.runtime.flow.sweep()
    assert "it expires 2030-01-07 18:00 JST." in bot.sent("C1")[-1]
    bot.clock.advance(hours=12)
    await bot.runtime.flow.sweep()
    assert bot.sent("U1") == [
        "⌛ Your request #1 expired unapproved at 2030-01-07 18:00 JST; nothing ran"
    ]
