"""Bad input to `/billing report balances` (and to its schedule) is explained with the expected
form and an example, and no request reaches the portal."""

from __future__ import annotations

import pytest

from bot.billing import schedule_add
from commands import grammar
from commands.base import CommandError
from commands.voipcloud.commands import PROVIDER, REPORT_LIMIT
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.reports import parse_billing, report_context, run_billing
from tests.support.voipcloud import open_client

HINT = "give account numbers like 10023,10024"
TOO_MANY = ",".join(str(10000 + n) for n in range(REPORT_LIMIT + 1))

CASES = [
    # (typed text after /billing, the sentence the user must see)
    ("report balances", "`accounts`: is required"),
    ("report balances 2026-11-01", "`accounts`: is required"),
    ("report balances accounts=", f"`accounts`: the list is empty; {HINT}"),
    ("report balances accounts=,,", f"`accounts`: the list is empty; {HINT}"),
    ("report balances accounts=10023,abc", f"`accounts`: not numbers: abc; {HINT}"),
    ("report balances accounts=acme,x-1", f"`accounts`: not numbers: acme, x-1; {HINT}"),
    ("report balances accounts=10023;10024", "`accounts`: not numbers: 10023;10024"),
    ("report balances accounts=-5", "`accounts`: not numbers: -5"),
    (
        f"report balances accounts={TOO_MANY}",
        f"`accounts`: {REPORT_LIMIT + 1} accounts is more than one report reads "
        f"({REPORT_LIMIT}); split them into several reports",
    ),
    (
        "report balances accounts=10023 01/11/2026",
        "`from_date`: '01/11/2026' is not a date in the form YYYY-MM-DD",
    ),
    (
        "report balances accounts=10023 2026-11-01 17.11.2026",
        "`to_date`: '17.11.2026' is not a date in the form YYYY-MM-DD",
    ),
    ("report balances accounts=10023 2026-11", "`from_date`: '2026-11' is not a date in the form"),
    ("report balances accounts=10023 2026-02-30", "`from_date`: '2026-02-30' is not a real date"),
    (
        "report balances accounts=10023 2026-11-10 2026-11-01",
        "`to_date`: 2026-11-01 is before from_date 2026-11-10; the period must run forwards",
    ),
    (
        "report balances accounts=10023 2026-11-01 2026-11-02 2026-11-03",
        "Too many words: `2026-11-03` is not expected.",
    ),
    ("report balances account=10023", "`/billing report balances` has no option `account`."),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:50] for c in CASES])
async def test_bad_input_is_explained_and_never_sent(
    sandbox: VoipcloudSandbox, text: str, expected: str
) -> None:
    with pytest.raises((grammar.FieldErrors, grammar.GrammarError)) as caught:
        await run_billing(open_client(sandbox), text, report_context())
    assert isinstance(caught.value, grammar.FieldErrors | grammar.GrammarError)
    message = caught.value.message
    assert expected in message
    assert "Expected: `/billing report balances [from_date] [to_date] accounts=<" in message
    assert "Example: `/billing report balances accounts=10023,10024,10025" in message
    assert sandbox.control.requests == []


async def test_a_start_after_today_is_refused_before_any_request(sandbox: VoipcloudSandbox) -> None:
    # Today is 2026-11-17 in the test context; with no to_date the period would run backwards.
    with pytest.raises(CommandError) as caught:
        await run_billing(
            open_client(sandbox), "report balances accounts=10023 2026-12-01", report_context()
        )
    assert caught.value.message == (
        "from_date 2026-12-01 is after today (2026-11-17); give to_date as well, or an earlier day."
    )
    assert sandbox.control.requests == []


def test_good_input_passes() -> None:
    # The same validators accept what the help shows, so the cases above fail for their reason.
    for text in (
        "report balances accounts=10023",
        "report balances accounts=10023,10024 2026-11-01",
        "report balances 2026-10-01 2026-10-31 accounts=10023",
        'report balances accounts="10023, 10024, 10023"',
    ):
        _, args = parse_billing(text)
        assert args.accounts[0] == "10023"  # type: ignore[attr-defined]
    _, args = parse_billing('report balances accounts="10023, 10024, 10023"')
    assert args.accounts == ("10023", "10024")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('schedule add balance-report "0 8 * * 1"', "`accounts`: is required"),
        (
            'schedule add balance-report "0 8 * * 1" accounts=10023,abc',
            f"`accounts`: not numbers: abc; {HINT}",
        ),
        ('schedule add balance-report "0 8 * * 1" accounts=', "`accounts`: the list is empty"),
    ],
)
def test_bad_schedule_arguments_are_explained(
    sandbox: VoipcloudSandbox, text: str, expected: str
) -> None:
    # The bot builds `schedule add balance-report` from the kind's own Args.
    command = schedule_add("balance-report", PROVIDER.schedule_kinds["balance-report"])
    parsed = grammar.parse("billing", text, [command])
    assert isinstance(parsed, grammar.Parsed)
    with pytest.raises(grammar.FieldErrors) as caught:
        grammar.validate(command, parsed.values)
    assert expected in caught.value.message
    assert (
        "Expected: `/billing schedule add balance-report <cron> accounts=<" in caught.value.message
    )
    assert sandbox.control.requests == []
