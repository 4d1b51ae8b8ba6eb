"""`/activeplatform accounts page=<n>`: a long list is read page by page, with buttons to move."""

from __future__ import annotations

import pytest

from commands.activeplatform.commands import SHOWN_ROWS
from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.base import Reply
from tests.support.activeplatform import attempt, context, open_client

USAGE = (
    "Expected: `/activeplatform accounts [reseller=<number>] [email=<e-mail>] [page=<number>]`\n"
    "Example: `/activeplatform accounts reseller=1`"
)


async def test_a_middle_page_shows_its_rows_and_both_buttons(
    sandbox: ActivePlatformSandbox,
) -> None:
    reply = await attempt("accounts page=2", open_client(sandbox), context())

    assert isinstance(reply, Reply) and reply.table is not None
    assert reply.text == (
        "*230 accounts* of reseller 1: page 2 of 6 (accounts 41–80; add `page=<n>` for another)"
    )
    expected = [str(a.id) for a in sandbox.accounts["1"][SHOWN_ROWS : 2 * SHOWN_ROWS]]
    assert [row[0] for row in reply.table.rows] == expected
    assert [(b.label, b.command) for b in reply.buttons] == [
        ("Previous page", "/activeplatform accounts page=1"),
        ("Next page", "/activeplatform accounts page=3"),
    ]


async def test_the_last_page_is_short_and_keeps_the_filters(sandbox: ActivePlatformSandbox) -> None:
    reply = await attempt("accounts reseller=1 page=6", open_client(sandbox), context())

    assert isinstance(reply, Reply) and reply.table is not None
    assert reply.text.startswith("*230 accounts* of reseller 1: page 6 of 6 (accounts 201–230;")
    assert [row[0] for row in reply.table.rows] == [str(a.id) for a in sandbox.accounts["1"][200:]]
    assert [(b.label, b.command) for b in reply.buttons] == [
        ("Previous page", "/activeplatform accounts reseller=1 page=5")
    ]


async def test_a_short_list_has_one_page_and_no_buttons(sandbox: ActivePlatformSandbox) -> None:
    reply = await attempt("accounts reseller=2", open_client(sandbox), context())

    assert isinstance(reply, Reply)
    assert reply.text == "*4 accounts* of reseller 2"
    assert not reply.buttons


async def test_a_page_past_the_end_says_how_many_there_are(sandbox: ActivePlatformSandbox) -> None:
    answer = await attempt("accounts page=7", open_client(sandbox), context())

    assert answer == "There is no page 7: the 230 accounts of reseller 1 fill 6 pages of 40."


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("accounts page=0", "`page`: '0' is not a positive whole number"),
        ("accounts page=two", "`page`: 'two' is not a positive whole number"),
        ("accounts page=", "`page`: '' is not a positive whole number"),
    ],
)
async def test_a_bad_page_is_explained_and_nothing_is_sent(
    sandbox: ActivePlatformSandbox, text: str, first_line: str
) -> None:
    answer = await attempt(text, open_client(sandbox), context())

    assert answer == f"{first_line}\n{USAGE}"
    assert sandbox.control.requests == []
