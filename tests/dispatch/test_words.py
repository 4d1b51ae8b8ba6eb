"""What people read: one provider name per failure, counts in the right number, a confirmation
said once, one "working" note per approval, choices instead of pydantic's words, help that says
when there is no such command, and a typo in the slash answered with the nearest one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.runtime import Runtime
from commands.invoicexpress.commands import COMMANDS as INVOICEXPRESS
from commands.words import adds_to, clip, plural
from tests.support import OpenBot, RecordingSurface, sandbox_of

README = Path(__file__).resolve().parents[2] / "README.md"


async def run(runtime: Runtime, line: str, user: str = "U1") -> RecordingSurface:
    surface = RecordingSurface(user=user)
    await runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)
    return surface


def requests(runtime: Runtime, name: str) -> list[object]:
    return list(sandbox_of(runtime, name).control.requests)


# --- the words themselves -----------------------------------------------------------------------


def test_counts_agree_with_their_number() -> None:
    assert [plural(n, "account") for n in (0, 1, 2)] == ["0 accounts", "1 account", "2 accounts"]
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


def test_a_note_that_only_repeats_the_headline_adds_nothing() -> None:
    headline = "E-mail of customer 10223 confirmed."
    assert not adds_to("Customer e-mail confirmed.", headline)
    assert adds_to("E-mail already confirmed.", headline)
    assert adds_to("A password reset e-mail was sent to the customer.", "Password reset.")


def test_clipping_cuts_between_words() -> None:
    assert clip("Sent to the whole team today", 17) == "Sent to the…"
    assert clip("short", 17) == "short"
    assert clip("x" * 30, 10) == "x" * 9 + "…"  # one long word is cut inside itself


# --- through the bot --------------------------------------------------------------------------


async def test_a_provider_failure_names_the_provider_once(runtime: Runtime) -> None:
    surface = await run(runtime, "/smsc invoice get acme 999")
    [message] = surface.privates
    assert message.startswith("`/smsc invoice get` failed: SMSC has no invoice 999 for sub-client")
    assert "SMSC says SMSC" not in message
    surface = await run(runtime, "/voipcloud balance 99999")
    assert surface.privates == [
        "`/voipcloud balance` failed: VoIPcloud says Customer not found (code 404)."
    ]


async def test_one_of_anything_is_singular(open_bot: OpenBot) -> None:
    runtime = await open_bot(billing_channel="C0BILLING")
    accounts = sandbox_of(runtime, "activeplatform").accounts["2"]
    target = accounts[2]
    surface = await run(runtime, f"/activeplatform accounts reseller=2 email={target.email}")
    assert surface.sent[0].text == f"*1 account* of reseller 2 with e-mail {target.email}"

    await run(runtime, '/billing schedule add closing-reminder "0 9 1 * *"', user="U0ADMIN")
    listing = await run(runtime, "/billing schedules", user="U0ADMIN")
    assert listing.sent[0].text.startswith("*1 schedule* (times in ")


async def test_a_confirmation_is_said_once(runtime: Runtime) -> None:
    first = await run(runtime, "/voipcloud confirm-email 10025")
    [reply] = first.sent
    assert reply.text == "E-mail of customer 10025 confirmed."
    assert list(reply.sections) == []  # VoIPcloud's "Customer e-mail confirmed." repeats it
    again = await run(runtime, "/voipcloud confirm-email 10025")
    assert list(again.sent[0].sections) == ["E-mail already confirmed."]  # this one is news


async def test_an_approval_that_takes_long_says_working_once(runtime: Runtime) -> None:
    await run(runtime, "/invoicexpress sequence create 2027")
    sandbox = sandbox_of(runtime, "invoicexpress")
    runtime.executor.working_after = 0.0  # every run is "slow": the note is due at once
    sandbox.control.hold()
    approver = RecordingSurface(user="U2")
    approving = asyncio.ensure_future(
        runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)
    )
    await sandbox.control.wait_held()
    sandbox.control.release()
    assert await approving
    working = [p for p in approver.privates if p.startswith("⏳ Working on")]
    assert working == [
        "⏳ Working on `/billing approve`… the answer will be posted here when it is done."
    ]
    assert approver.updates[-1][1].text.startswith("✅ #1 *done*")


async def test_a_wrong_choice_lists_the_choices(runtime: Runtime) -> None:
    surface = await run(
        runtime,
        "/invoicexpress at-communication subuser=123456789/3 password=pw communication_type=fast",
        user="U0ADMIN",
    )
    [message] = surface.privates
    assert message.startswith(
        "`communication_type`: 'fast' is not one of the choices: "
        "use auto, guides, manual or portal_at\n"
    )
    assert "Input should be" not in message and "pw" not in message
    assert requests(runtime, "invoicexpress") == []


async def test_an_error_about_the_arguments_together_has_no_field_label(
    runtime: Runtime,
) -> None:
    surface = await run(runtime, "/smsc act get acme 701 num=7", user="U0VIEWER")
    [message] = surface.privates
    assert message.startswith("Give the act's ID or its number (num=<n>), not both.\n")
    assert "`arguments`" not in message
    assert requests(runtime, "smsc") == []


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("/billing help foo", "There is no command `foo`. `/billing help` lists every command."),
        (
            "/billing help smsx",
            "There is no command `smsx`. Did you mean `/billing help smsc`? "
            "`/billing help` lists every command.",
        ),
        (
            "/billing help aduit",
            "There is no command `aduit`. Did you mean `/billing help audit`? "
            "`/billing help` lists every command.",
        ),
    ],
)
async def test_help_for_no_such_command_says_so(runtime: Runtime, line: str, answer: str) -> None:
    surface = await run(runtime, line)
    assert surface.privates == [answer]


async def test_help_for_a_billing_command_or_a_provider_shows_just_that(
    runtime: Runtime,
) -> None:
    audit = await run(runtime, "/billing help audit")
    assert audit.privates[0].startswith("*/billing audit* commands:")
    assert "/billing audit export <start> <end> [to=<me|channel>]" in audit.privates[0]
    smsc = await run(runtime, "/billing help /smsc")
    assert smsc.privates[0].startswith("*/smsc* commands:")
    assert "/voipcloud" not in smsc.privates[0]


async def test_a_typo_in_the_slash_suggests_the_nearest(runtime: Runtime) -> None:
    surface = await run(runtime, "/invoicexpres sequences")
    assert surface.privates == [
        "`/invoicexpres` is not one of my commands. Did you mean `/invoicexpress`?"
    ]
    assert requests(runtime, "invoicexpress") == []
    far = await run(runtime, "/payroll run")
    assert far.privates[0].startswith("`/payroll` is not one of my commands. I know ")


def test_the_readme_and_the_product_agree_on_at_communication() -> None:
    """It runs at once for an admin (no approval would have to keep the AT password)."""
    [command] = [c for c in INVOICEXPRESS if c.words == ("at-communication",)]
    assert (command.approval, command.role.label) == (False, "admin")
    intro = " ".join(README.read_text().split("## Quick start")[0].split())
    assert "changes tax-authority settings needs" not in intro
    exception = (
        "The AT communication settings (`/invoicexpress at-communication`) are the exception"
    )
    assert exception in intro
    assert "an admin sets them at once" in intro
