"""Bad input is answered with what is wrong, the expected form and an example, and nothing
reaches ActivePlatform."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands.activeplatform.sandbox import ActivePlatformSandbox
from tests.support.activeplatform import attempt, context, open_client

NOTIFY_USAGE = (
    "Expected: `/activeplatform notify-closing <period> [accounts=<id,id,…|all>] "
    "[reseller=<number>]`\nExample: `/activeplatform notify-closing last-month accounts=all`"
)
ACCOUNTS_USAGE = (
    "Expected: `/activeplatform accounts [reseller=<number>] [email=<e-mail>] "
    "[page=<number>]`\n"
    "Example: `/activeplatform accounts reseller=1`"
)
PERIOD_FORMS = "(YYYY-MM, last-month or YYYY-MM-DD..YYYY-MM-DD)"


@pytest.mark.parametrize(
    ("text", "first_line", "usage"),
    [
        ("notify-closing 2026-13", "`period`: '2026-13' has no month 13", NOTIFY_USAGE),
        (
            "notify-closing 2026-1",
            f"`period`: '2026-1' is not a period {PERIOD_FORMS}",
            NOTIFY_USAGE,
        ),
        (
            "notify-closing yesterday",
            f"`period`: 'yesterday' is not a period {PERIOD_FORMS}",
            NOTIFY_USAGE,
        ),
        (
            "notify-closing 2026-10-05..2026-10-01",
            "`period`: the period ends (2026-10-01) before it starts (2026-10-05)",
            NOTIFY_USAGE,
        ),
        (
            "notify-closing 2026-10-01..2026-10-32",
            "`period`: '2026-10-32' is not a real date",
            NOTIFY_USAGE,
        ),
        ("notify-closing", "`period`: is required", NOTIFY_USAGE),
        (
            "notify-closing 2026-10 accounts=",
            "`accounts`: the list is empty; give account ids like 2003421,2003565, or `all`",
            NOTIFY_USAGE,
        ),
        (
            "notify-closing 2026-10 accounts=12,abc",
            "`accounts`: not numbers: abc; give account ids like 2003421,2003565, or `all`",
            NOTIFY_USAGE,
        ),
        (
            "notify-closing 2026-10 accounts=everyone",
            "`accounts`: not numbers: everyone; give account ids like 2003421,2003565, or `all`",
            NOTIFY_USAGE,
        ),
        (
            "notify-closing 2026-10 reseller=abc",
            "`reseller`: 'abc' is not a number (digits only)",
            NOTIFY_USAGE,
        ),
        (
            "accounts email=nobody",
            "`email`: nobody is not an e-mail address (like billing@example.com)",
            ACCOUNTS_USAGE,
        ),
        (
            "accounts reseller=-1",
            "`reseller`: '-1' is not a number (digits only)",
            ACCOUNTS_USAGE,
        ),
    ],
)
async def test_bad_arguments_are_explained_and_nothing_is_sent(
    text: str, first_line: str, usage: str
) -> None:
    sandbox = ActivePlatformSandbox()
    answer = await attempt(text, open_client(sandbox), context())

    assert answer == f"{first_line}\n{usage}"
    assert sandbox.control.requests == []


async def test_a_misspelt_option_gets_a_suggestion() -> None:
    sandbox = ActivePlatformSandbox()
    answer = await attempt("notify-closing 2026-10 acounts=1,2", open_client(sandbox), context())

    assert isinstance(answer, str)
    assert answer.startswith(
        "`/activeplatform notify-closing` has no option `acounts`. Did you mean `accounts=`?"
    )
    assert sandbox.control.requests == []


@pytest.mark.parametrize(
    ("period", "sentence"),
    [
        ("2026-12", "the period 2026-12-01..2026-12-31 starts in the future"),
        ("2026-11", "the period 2026-11-01..2026-11-30 has not ended yet (today is 2026-11-03)"),
        (
            "2026-10-20..2026-11-04",
            "the period 2026-10-20..2026-11-04 has not ended yet (today is 2026-11-03)",
        ),
    ],
)
async def test_a_period_not_over_yet_is_refused_before_any_call(period: str, sentence: str) -> None:
    sandbox = ActivePlatformSandbox()
    answer = await attempt(f"notify-closing {period}", open_client(sandbox), context())

    assert answer == f"Cannot notify for that period: {sentence}."
    assert sandbox.control.requests == []


async def test_today_is_the_requesters_day_in_the_configured_zone() -> None:
    # 23:30 UTC on 31 October is already 1 November in Auckland (UTC+13).
    sandbox = ActivePlatformSandbox()
    late = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    text = "notify-closing 2026-11-01..2026-11-01 accounts=2003001"

    refused = await attempt(text, open_client(sandbox), context(now=late))
    assert refused == (
        "Cannot notify for that period: the period 2026-11-01..2026-11-01 starts in the future."
    )
    assert sandbox.control.requests == []

    accepted = await attempt(text, open_client(sandbox), context(now=late, tz="Pacific/Auckland"))
    assert not isinstance(accepted, str)
    assert [(n.start_date.isoformat(), n.account_ids) for n in sandbox.notifications] == [
        ("2026-11-01", (2003001,))
    ]


@pytest.mark.parametrize("text", ["accounts", "notify-closing 2026-10 accounts=2003001"])
async def test_no_reseller_anywhere_names_the_variable(text: str) -> None:
    sandbox = ActivePlatformSandbox()
    answer = await attempt(text, open_client(sandbox, reseller=None), context())

    assert answer == "No reseller given: add `reseller=<id>` or set ACTIVEPLATFORM_RESELLER_ID."
    assert sandbox.control.requests == []
