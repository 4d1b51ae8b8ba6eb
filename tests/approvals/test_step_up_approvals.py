"""Approving with a step-up code and a reason, rejecting with a reason, and `/billing mfa`.

The drill's `/drill move` is behind a policy whose rule asks for the approver's code and
reason; codes are made with pyotp at the bot's clock. What the approver is told, what is
audited, what the card shows, and that the drill was called once or never."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

from bot.catalog import ProviderRuntime
from bot.config import Settings
from bot.runtime import ConfigError, open_runtime
from bot.storage import store
from tests.support import Clock, RecordingSurface
from tests.support.drill import DRILL, STALE, START, Bot, DrillClient

KEY = base64.b64encode(bytes(range(32))).decode()

POLICY = """
rules:
  - name: moves-need-a-code
    command: drill move
    step_up: totp
  - name: moves-need-a-reason
    command: drill move
    reason: required
"""

TWO_WITH_REASONS = """
rules:
  - name: two-who-say-why
    command: drill move
    approvals: 2
    reason: required
"""

OpenDrill = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def open_drill(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> AsyncIterator[OpenDrill]:
    opened: list[Bot] = []
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)

    async def open_(policy: str = POLICY, **settings: Any) -> Bot:
        path = tmp_path / "policy.yml"
        path.write_text(policy, encoding="utf-8")
        client = DrillClient()
        clock = Clock(START)
        surfaces: dict[str, RecordingSurface] = {}
        runtime = await open_runtime(
            make_settings(billing_policy_file=str(path), **settings),
            system_surface=lambda c: surfaces.setdefault(c, RecordingSurface(channel=c, user="")),
            runtimes=[ProviderRuntime(DRILL, "live", client)],
            clock=clock,
            working_after=60.0,
            stale_after=STALE,
        )
        runtime.system_surfaces = surfaces  # type: ignore[attr-defined]
        opened.append(Bot(runtime, client, clock))
        return opened[-1]

    try:
        yield open_
    finally:
        for bot in opened:
            bot.client.release.set()
            await bot.runtime.close()


@pytest.fixture
async def bot(open_drill: OpenDrill) -> Bot:
    return await open_drill(billing_secret_key=KEY)


async def enrol(bot: Bot, user: str = "U2") -> pyotp.TOTP:
    """Enrolled through `/billing mfa enroll` and `confirm`, a step before the bot's clock."""
    done, _ = await bot.run("/billing mfa enroll", user)
    assert done
    dm = direct(bot, user)
    seed = dm.sent[-1].text.split("secret=")[1].split("&")[0]
    totp = pyotp.TOTP(seed)
    bot.clock.advance(seconds=-30)
    confirmed, surface = await bot.run(f"/billing mfa confirm {totp.at(bot.clock.now)}", user)
    bot.clock.advance(seconds=30)
    assert confirmed, surface.privates
    return totp


def direct(bot: Bot, user: str) -> RecordingSurface:
    """What `user` was sent in their direct messages (without Slack: the runtime's surface)."""
    surfaces: dict[str, RecordingSurface] = getattr(bot.runtime, "system_surfaces")  # noqa: B009
    return surfaces[user]


def said(surface: RecordingSurface) -> str:
    return "\n".join([*surface.privates, *(t for r in surface.sent for t in [r.text, *r.sections])])


async def steps(bot: Bot) -> list[tuple[str, str, str]]:
    return [
        (r["user_id"], r["decision"], r["outcome"])
        for r in await bot.audit()
        if r["decision"] in ("step-up", "approved", "executed")
    ]


async def test_a_valid_code_and_a_reason_approve_and_the_move_runs_once(bot: Bot) -> None:
    totp = await enrol(bot)
    await bot.run("/drill move r1", "U1")
    code = totp.at(bot.clock.now)
    done, surface = await bot.run(
        f'/billing approve 1 code={code} reason="checked the ledger"', "U2"
    )
    again, twice = await bot.run(
        f'/billing approve 1 code={code} reason="checked the ledger"', "U3"
    )
    card = surface.updates[-1][1]
    rows = await bot.audit()

    assert done and "Approval #1: done." in said(surface)
    assert bot.client.calls == ["r1"]
    assert not again and "already done" in said(twice)
    assert await steps(bot) == [
        ("U2", "step-up", "ok"),
        ("U2", "approved", "executing"),
        ("U2", "executed", "done"),
    ]
    approved = next(r for r in rows if r["decision"] == "approved")
    assert approved["detail"] == "by U2; reason: checked the ledger"
    assert "*Reason* (<@U2>): checked the ledger" in card.sections
    assert not [r for r in rows if code in repr(r)]


async def test_a_click_without_the_answers_opens_the_form_and_counts_for_nothing(
    bot: Bot,
) -> None:
    await enrol(bot)
    await bot.run("/drill move r1", "U1")
    clicking = RecordingSurface(user="U2", form_support=True)
    opened = await bot.runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=clicking
    )
    typed, surface = await bot.run("/billing approve 1", "U2")  # nowhere to open a form

    assert opened and clicking.forms == ["billing approve"]
    [form] = clicking.form_specs
    assert dict(form.fixed) == {"id": "1"} and [f.name for f in form.fields] == ["code", "reason"]
    assert [(r.text, r.private) for r in clicking.sent] == [
        (
            "Approval #1 needs your authenticator code and a reason: asked in the form that "
            "opened.",
            True,
        )
    ]
    assert not typed
    assert 'type `/billing approve 1 code=<6 digits> reason="…"`' in said(surface)
    assert await bot.status() == "pending" and bot.client.calls == []
    assert await steps(bot) == []


async def test_wrong_replayed_and_locked_codes_never_approve(bot: Bot) -> None:
    totp = await enrol(bot)
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    why = 'reason="checked the ledger"'
    wrong = totp.at(bot.clock.now - timedelta(hours=1))
    _, first_wrong = await bot.run(f"/billing approve 1 code={wrong} {why}", "U2")
    code = totp.at(bot.clock.now)
    await bot.run(f"/billing approve 1 code={code} {why}", "U2")
    _, replayed = await bot.run(f"/billing approve 2 code={code} {why}", "U2")
    for _ in range(5):
        _, last_wrong = await bot.run(f"/billing approve 2 code={wrong} {why}", "U2")
    fresh = totp.at(bot.clock.now + timedelta(seconds=30))
    _, locked = await bot.run(f"/billing approve 2 code={fresh} {why}", "U2")

    assert said(first_wrong).startswith(
        "Approval #1 was not approved: the code is wrong (4 tries left before a 15-minute lock)"
    )
    assert "that code was used already" in said(replayed)
    assert "too many wrong codes, so your step-up is locked until 2030-01-06 09:15 UTC" in said(
        last_wrong
    )
    assert "locked until" in said(locked)
    assert bot.client.calls == ["r1"]
    assert await bot.status(2) == "pending"
    outcomes = [o for _, d, o in await steps(bot) if d == "step-up"]
    assert outcomes == ["wrong code", "ok", "replayed", *["wrong code"] * 5, "locked"]


async def test_an_approver_not_enrolled_is_told_how_and_their_click_does_not_count(
    bot: Bot,
) -> None:
    await bot.run("/drill move r1", "U1")
    clicking = RecordingSurface(user="U3", form_support=True)
    done = await bot.runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C1", surface=clicking
    )
    assert not done and clicking.forms == []
    assert said(clicking).startswith("Approval #1 needs your authenticator code, and you have no")
    assert "run `/billing mfa enroll`" in said(clicking) and "did not count" in said(clicking)
    assert await bot.status() == "pending" and bot.client.calls == []
    assert await steps(bot) == [("U3", "step-up", "not enrolled")]


async def test_a_reason_too_short_is_refused_before_the_code_is_spent(bot: Bot) -> None:
    totp = await enrol(bot)
    await bot.run("/drill move r1", "U1")
    code = totp.at(bot.clock.now)
    _, short = await bot.run(f"/billing approve 1 code={code} reason=fine", "U2")
    done, _ = await bot.run(f'/billing approve 1 code={code} reason="fine by me"', "U2")
    assert "Approving #1 needs a reason of at least 2 words" in said(short)
    assert done and bot.client.calls == ["r1"]


async def test_the_requester_and_a_second_vote_are_refused_without_a_form(
    open_drill: OpenDrill,
) -> None:
    bot = await open_drill(TWO_WITH_REASONS)
    await bot.run("/drill move r1", "U1")
    own = RecordingSurface(user="U1", form_support=True)
    await bot.runtime.dispatcher.run("/billing approve 1", user="U1", channel="C1", surface=own)
    first, _ = await bot.run('/billing approve 1 reason="first look fine"', "U2")
    twice = RecordingSurface(user="U2", form_support=True)
    await bot.runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=twice)
    done, surface = await bot.run('/billing approve 1 reason="second look fine"', "U3")
    card = surface.updates[-1][1]

    assert own.forms == [] and "needs the *approver* role" in said(own)
    assert first and twice.forms == [] and "already approved #1" in said(twice)
    assert done and bot.client.calls == ["r1"]
    assert "*Reason* (<@U2>): first look fine" in card.sections
    assert "*Reason* (<@U3>): second look fine" in card.sections


async def test_rejecting_takes_a_reason_typed_or_asked_by_the_button(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    _, bare = await bot.run("/billing reject 1", "U2")
    _, short = await bot.run("/billing reject 1 no", "U2")
    button = RecordingSurface(user="U2", form_support=True)
    await bot.runtime.dispatcher.run(
        "/billing reject 1 form=yes", user="U2", channel="C1", surface=button
    )
    pending = await bot.status()
    done, surface = await bot.run('/billing reject 1 "wrong account number"', "U2")

    assert "Rejecting #1 needs a reason: `/billing reject 1 <why>`" in said(bare)
    assert "Rejecting #1 needs a reason of at least 2 words" in said(short)
    assert button.forms == ["billing reject"] and pending == "pending"
    assert done and await bot.status() == "rejected"
    assert surface.updates[-1][1].text == "🚫 #1 rejected by <@U2>: wrong account number"


async def test_the_policy_shows_the_code_and_the_reason(bot: Bot) -> None:
    _, surface = await bot.run("/billing policy", "U2")
    text = said(surface)
    assert "*moves-need-a-code*: `/drill move` needs the approver's authenticator code" in text
    assert "*moves-need-a-reason*: `/drill move` needs a reason" in text


async def test_a_policy_asking_for_codes_stops_the_start_without_a_key(
    open_drill: OpenDrill,
) -> None:
    with pytest.raises(ConfigError) as caught:
        await open_drill()
    [line] = str(caught.value).splitlines()
    assert line.startswith("configuration error: BILLING_SECRET_KEY: the approval policy asks")


def test_a_bad_key_stops_the_start_without_showing_it(
    make_settings: Callable[..., Settings],
) -> None:
    from pydantic import ValidationError

    from bot.config import config_error_lines

    with pytest.raises(ValidationError) as caught:
        make_settings(billing_secret_key="c2hvcnQ=")
    assert config_error_lines(caught.value, Settings) == [
        "configuration error: BILLING_SECRET_KEY: must be the base64 of 32 random bytes "
        "(make one with `openssl rand -base64 32`)"
    ]


# --- /billing mfa ------------------------------------------------------------------------------


async def test_enrolling_answers_in_the_direct_message_alone(bot: Bot) -> None:
    done, surface = await bot.run("/billing mfa enroll", "U2")
    [dm] = direct(bot, "U2").sent
    seed = dm.text.split("secret=")[1].split("&")[0]
    rows = await bot.audit()

    assert done and said(surface) == (
        "Sent to your direct messages: scan the QR code there, then confirm with the first code."
    )
    assert seed not in said(surface) and "otpauth" not in said(surface)
    assert dm.private and dm.reveal and "otpauth://totp/billing-bot:U2?secret=" in dm.text
    assert not dm.files  # without Slack the QR is not saved anywhere; the link and key are
    assert [(b.label, b.command) for b in dm.buttons] == [
        ("Enter the first code", "/billing mfa confirm")
    ]
    assert not [r for r in rows if seed in repr(r)]
    assert rows[-1]["detail"] == "new enrolment sent as a direct message"


async def test_confirming_takes_the_first_valid_code_and_enrolling_again_is_refused(
    bot: Bot,
) -> None:
    await bot.run("/billing mfa enroll", "U2")
    seed = direct(bot, "U2").sent[-1].text.split("secret=")[1].split("&")[0]
    totp = pyotp.TOTP(seed)
    _, pending = await bot.run("/billing mfa status", "U2")
    _, wrong = await bot.run(f"/billing mfa confirm {totp.at(START - timedelta(hours=1))}", "U2")
    confirmed, right = await bot.run(f"/billing mfa confirm {totp.at(START)}", "U2")
    _, enrolled = await bot.run("/billing mfa status", "U2")
    _, again = await bot.run("/billing mfa enroll", "U2")
    _, twice = await bot.run(f"/billing mfa confirm {totp.at(START)}", "U2")
    form = RecordingSurface(user="U2", form_support=True)
    await bot.runtime.dispatcher.run("/billing mfa confirm", user="U2", channel="D2", surface=form)
    rows = await bot.audit()

    assert "waits for its first code" in said(pending)
    assert "That code is wrong (4 tries left" in said(wrong)
    assert confirmed and "Step-up enrolled" in said(right)
    assert said(enrolled) == "You are enrolled for step-up codes."
    assert "You are enrolled already" in said(again)
    assert "nothing to confirm" in said(twice)
    assert form.forms == ["billing mfa confirm"]  # the DM's button asks in a form
    assert not [r for r in rows if totp.at(START) in repr(r)]


async def test_an_admin_resets_an_enrolment_and_its_person_is_told(bot: Bot) -> None:
    await enrol(bot, "U2")
    _, denied = await bot.run("/billing mfa reset <@U2>", "U3")
    done, surface = await bot.run("/billing mfa reset <@U2|someone>", "U0ADMIN")
    _, none = await bot.run("/billing mfa reset U2", "U0ADMIN")
    _, status = await bot.run("/billing mfa status", "U2")
    told = direct(bot, "U2").sent[-1]
    rows = await bot.audit()

    assert "needs the *admin* role" in said(denied)
    assert done and said(surface) == (
        "Step-up enrolment of <@U2> reset; they were told in a direct message."
    )
    assert "<@U0ADMIN> reset your step-up enrolment" in told.text
    assert "<@U2> has no step-up enrolment" in said(none)
    assert "You are not enrolled" in said(status)
    reset = [r for r in rows if r["command"] == "/billing mfa reset" and r["outcome"] == "done"]
    assert [(r["user_id"], r["args"]) for r in reset] == [("U0ADMIN", '{"user": "U2"}')]


async def test_without_a_key_enrolling_says_what_is_missing(open_drill: OpenDrill) -> None:
    bot = await open_drill("rules: []")
    done, surface = await bot.run("/billing mfa enroll", "U2")
    assert not done
    assert said(surface).startswith("Step-up codes are not set up here: an admin must set")
    assert "U2" not in getattr(bot.runtime, "system_surfaces")  # noqa: B009


# --- what the gate asks and records -----------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "refused"),
    [
        ("ab cdefg", False),  # two words, eight characters: just enough
        ("  ab cdefg  ", False),
        ("ab cdef", True),  # seven characters
        ("abcdefghijkl", True),  # one word
        ("", True),
    ],
)
def test_a_reason_needs_two_words_and_eight_characters(reason: str, refused: bool) -> None:
    from bot.approvals.gate import reason_problem

    problem = reason_problem(reason, "Approving #4")
    assert (problem is not None) is refused
    if refused:
        assert problem == (
            "Approving #4 needs a reason of at least 2 words (why, for the audit log)."
        )


def test_the_approval_form_asks_the_code_unseen_and_carries_the_request_number() -> None:
    from bot.approvals.gate import approval_form, reject_form

    both = approval_form(7, code=True, reason=True)
    code_only = approval_form(7, code=True, reason=False)
    reason_only = approval_form(7, code=False, reason=True)
    reject = reject_form(7)

    assert (both.title, both.submit, dict(both.fixed)) == ("Approve #7", "Approve", {"id": "7"})
    assert [(f.name, f.kind, f.optional) for f in both.fields] == [
        ("code", "secret", False),
        ("reason", "multiline", False),
    ]
    [code] = code_only.fields
    assert (code.label, code.placeholder) == ("Authenticator code", "123456")
    assert code.hint == "the 6 digits your authenticator app shows now for billing-bot"
    [why] = reason_only.fields
    assert why.label == "Why do you approve?"
    assert why.hint == "a few words; shown on the card and kept in the audit log"
    assert (reject.title, reject.submit, dict(reject.fixed)) == ("Reject #7", "Reject", {"id": "7"})
    assert reject.fields[0].hint == "a few words; shown on the card and kept in the audit log"
    assert [(f.name, f.kind, f.label) for f in reject.fields] == [
        ("reason", "multiline", "Why do you reject it?")
    ]


async def test_each_try_is_an_audit_row_of_its_request_without_the_code(bot: Bot) -> None:
    totp = await enrol(bot)
    await bot.run("/drill move r1", "U1")
    wrong = totp.at(bot.clock.now - timedelta(hours=1))
    await bot.run(f'/billing approve 1 code={wrong} reason="checked the ledger"', "U2")
    [row] = [r for r in await bot.audit() if r["decision"] == "step-up"]
    assert {k: row[k] for k in ("user_id", "channel", "command", "outcome", "detail")} == {
        "user_id": "U2",
        "channel": "C1",
        "command": "/drill move",
        "outcome": "wrong code",
        "detail": "approval #1",
    }
    assert (row["provider"], row["approval_id"], row["args"]) == ("drill", 1, '{"ref": "r1"}')
    assert wrong not in repr(await bot.audit())


async def test_only_the_answers_a_rule_asks_for_are_asked(open_drill: OpenDrill) -> None:
    bot = await open_drill(TWO_WITH_REASONS)
    await bot.run("/drill move r1", "U1")
    clicking = RecordingSurface(user="U2", form_support=True)
    await bot.runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=clicking
    )
    assert clicking.forms == ["billing approve"]
    assert "Approval #1 needs a reason: asked in the form" in said(clicking)
    assert await bot.audit() and [r for r in await bot.audit() if r["decision"] == "step-up"] == []


CODE_ONLY = """
rules:
  - name: moves-need-a-code
    command: drill move
    step_up: totp
"""


async def test_a_rule_asking_only_for_a_code_asks_only_for_the_code(open_drill: OpenDrill) -> None:
    bot = await open_drill(CODE_ONLY, billing_secret_key=KEY, billing_timezone="Asia/Tokyo")
    totp = await enrol(bot)
    await bot.run("/drill move r1", "U1")
    clicking = RecordingSurface(user="U2", form_support=True)
    await bot.runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=clicking
    )
    wrong = totp.at(bot.clock.now - timedelta(hours=1))
    for _ in range(5):
        _, locked = await bot.run(f"/billing approve 1 code={wrong}", "U2")

    [form] = clicking.form_specs
    assert [f.name for f in form.fields] == ["code"]
    assert "Approval #1 needs your authenticator code: asked in the form" in said(clicking)
    assert "locked until 2030-01-06 18:15 JST" in said(locked)  # in BILLING_TIMEZONE
    assert await bot.status() == "pending" and bot.client.calls == []


async def test_a_code_in_a_line_that_does_not_read_stays_out_of_the_audit(bot: Bot) -> None:
    done, surface = await bot.run("/billing mfa confirm 493817 extra", "U2")
    rows = await bot.audit()
    assert not done and said(surface)
    assert rows[-1]["decision"] == "invalid" and rows[-1]["args"] == '{"words": "mfa confirm"}'
    assert "493817" not in repr(rows)
