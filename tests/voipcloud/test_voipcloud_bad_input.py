"""Bad input is answered with what is wrong, the expected form and an example, and no request
reaches the portal."""

from __future__ import annotations

import pytest

from bot.runtime import Runtime
from commands import grammar
from commands.types import COMMA
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.commands import COMMANDS
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support import RecordingSurface, sandbox_of
from tests.support.voipcloud import run

LONG = "x" * 256

CASES = [
    # (typed text, the sentence the user must see)
    ("balance abc", "`account`: 'abc' is not an account number (digits only, like 10023)"),
    ("balance 10023x", "`account`: '10023x' is not an account number (digits only, like 10023)"),
    ("confirm-email -5", "`account`: '-5' is not an account number"),
    ("login-url 1002 3", "Too many words: `3` is not expected."),
    ("reset-password acme", "`account`: 'acme' is not an account number"),
    ("move-funds ten 5 x", "`account`: 'ten' is not an account number"),
    ("move-funds 10023 0 top-up", "`amount`: must not be zero (the sign gives the direction)"),
    ("move-funds 10023 -0.00 top-up", "`amount`: must not be zero"),
    ("move-funds 10023 1.234 top-up", "`amount`: use at most two decimals"),
    ("move-funds 10023 ten top-up", "`amount`: 'ten' is not a number (use digits and a dot"),
    ("move-funds 10023 1e3 top-up", "`amount`: '1e3' is not a number"),
    # A comma is never guessed at: a decimal comma, a thousands separator, or both.
    ("move-funds 10023 1,50 top-up", f"`amount`: '1,50' has a comma: {COMMA}"),
    ("move-funds 10023 1,000 top-up", f"`amount`: '1,000' has a comma: {COMMA}"),
    ("move-funds 10023 -1,000.50 top-up", f"`amount`: '-1,000.50' has a comma: {COMMA}"),
    (
        "move-funds 10023 99999999999999999999 top-up",
        "`amount`: 99999999999999999999 is too large: the most one command may move or invoice "
        "is 1000000; check the amount, or split it",
    ),
    ("move-funds 10023 -1000000.01 top-up", "`amount`: -1000000.01 is too large"),
    ("move-funds 10023 50", "`description`: is required"),
    ('move-funds 10023 50 description=" "', "`description`: is required: say why the funds move"),
    (f"move-funds 10023 50 {LONG}", "`description`: is 256 characters long; the limit is 255"),
    ("balance 10023 01/11/2026", "`from_date`: '01/11/2026' is not a date in the form YYYY-MM-DD"),
    ("balance 10023 2026-11-01 17.11.2026", "`to_date`: '17.11.2026' is not a date in the form"),
    ("balance 10023 2026-02-30", "`from_date`: '2026-02-30' is not a real date"),
    (
        "balance 10023 2026-11-10 2026-11-01",
        "`to_date`: 2026-11-01 is before from_date 2026-11-10; the period must run forwards",
    ),
    ("partner-balance 2026-11 2026-11-30", "`from_date`: '2026-11' is not a date in the form"),
    (
        "partner-balance 2026-11-10 2026-10-01",
        "`to_date`: 2026-10-01 is before from_date 2026-11-10",
    ),
    (
        "register last_name=Lima email=ana@example.com phone=+351912345678",
        "`first_name`: is required",
    ),
    (
        'register first_name="" last_name=Lima email=ana@example.com phone=+351912345678',
        "`first_name`: is required",
    ),
    (
        "register first_name=Ana last_name=Lima email=ana.example.com phone=+351912345678",
        "`email`: 'ana.example.com' is not an e-mail address (like jane@example.com)",
    ),
    (
        "register first_name=Ana last_name=Lima email=ana@example phone=+351912345678",
        "`email`: 'ana@example' is not an e-mail address",
    ),
    (
        "register first_name=Ana last_name=Lima email=ana@example.com phone=0412345678",
        "`phone`: '0412345678' is not in international format: start with + and the country "
        "code, like +61412345678",
    ),
    (
        "register first_name=Ana last_name=Lima email=ana@example.com phone=+61-4x",
        "`phone`: '+61-4x' is not in international format",
    ),
    (
        f"register first_name=Ana last_name=Lima email=ana@example.com phone=+351912345678 "
        f"company={'C' * 101}",
        "`company`: is longer than 100 characters",
    ),
    ("register first_name=Ana nickname=A", "`/voipcloud register` has no option `nickname`."),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:40] for c in CASES])
async def test_bad_input_is_explained_and_never_sent(
    sandbox: VoipcloudSandbox, client: VoipcloudClient, text: str, expected: str
) -> None:
    with pytest.raises((grammar.FieldErrors, grammar.GrammarError)) as caught:
        await run(client, text)
    assert isinstance(caught.value, grammar.FieldErrors | grammar.GrammarError)
    message = caught.value.message
    assert expected in message
    command = text.split()[0]
    assert f"Expected: `/voipcloud {command}" in message
    assert f"Example: `/voipcloud {command}" in message
    assert sandbox.control.requests == []


async def test_several_bad_fields_are_all_named(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    with pytest.raises(grammar.FieldErrors) as caught:
        await run(client, "register first_name=Ana email=nope phone=123")
    assert set(caught.value.errors) == {"last_name", "email", "phone"}
    assert sandbox.control.requests == []


def test_good_input_passes() -> None:
    # The same validators accept what the help shows, so the cases above fail for their reason.
    for text in (
        "balance 10023",
        "balance 10023 2026-11-01 2026-11-01",
        "move-funds 10023 -0.5 refund",
        "move-funds 10023 1000000 top-up",
        "move-funds 10023 -1000000 refund",
        f"move-funds 10023 50 {'x' * 255}",
        "register first_name=Ana last_name=Lima email=ana@example.com phone=+351912345678",
    ):
        parsed = grammar.parse("voipcloud", text, COMMANDS)
        assert isinstance(parsed, grammar.Parsed)
        assert grammar.validate(parsed.command, parsed.values)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1,50", f"`amount`: '1,50' has a comma: {COMMA}"),
        ("1,000.50", f"`amount`: '1,000.50' has a comma: {COMMA}"),
        ("99999999999999999999", "`amount`: 99999999999999999999 is too large"),
    ],
)
async def test_a_refused_amount_never_reaches_an_approval_card(
    runtime: Runtime, amount: str, expected: str
) -> None:
    """Through the bot itself: refused privately, no card posted, nothing stored or sent."""
    surface = RecordingSurface(user="U1", channel="C1")
    done = await runtime.dispatcher.run(
        f"/voipcloud move-funds 10023 {amount} top-up", user="U1", channel="C1", surface=surface
    )
    assert not done
    [message] = surface.privates
    assert expected in message
    assert surface.sent == [] and surface.updates == []
    assert await runtime.approvals.open() == []
    assert sandbox_of(runtime, "voipcloud").control.requests == []
