"""`notify-closing` in chunks: progress after each chunk, partial failures with a retry button
for just the failed accounts, runs that stop early, and lost answers."""

from __future__ import annotations

from datetime import date

import pytest

from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.base import Reply
from commands.http import OutcomeUnknown, ProviderAuthError, ProviderRejected
from tests.support.activeplatform import (
    ProgressLog,
    attempt,
    context,
    open_client,
    posts,
)

OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))


def ids_of(sandbox: ActivePlatformSandbox, reseller: str = "1") -> list[int]:
    return [a.id for a in sandbox.accounts[reseller]]


def notified(sandbox: ActivePlatformSandbox) -> list[int]:
    return [i for n in sandbox.notifications for i in n.account_ids]


async def test_all_accounts_go_out_in_chunks_with_progress_after_each(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox, chunk_size=50)
    progress = ProgressLog()
    reply = await attempt("notify-closing 2026-10", client, context(progress))

    assert isinstance(reply, Reply)
    everyone = ids_of(sandbox)
    assert notified(sandbox) == everyone  # each account once, in order
    assert [len(n.account_ids) for n in sandbox.notifications] == [50, 50, 50, 50, 30]
    assert {(n.start_date, n.end_date) for n in sandbox.notifications} == {OCTOBER}
    assert progress.calls == [
        (50, 230, "chunk 1 of 5 sent"),
        (100, 230, "chunk 2 of 5 sent"),
        (150, 230, "chunk 3 of 5 sent"),
        (200, 230, "chunk 4 of 5 sent"),
        (230, 230, "chunk 5 of 5 sent"),
    ]
    assert "230 accounts of reseller 1" in reply.text
    assert "October 2026" in reply.text
    assert reply.buttons == ()


async def test_the_chunk_size_comes_from_the_client(sandbox: ActivePlatformSandbox) -> None:
    client = open_client(sandbox, chunk_size=100)
    progress = ProgressLog()
    await attempt("notify-closing 2026-10", client, context(progress))

    assert [len(n.account_ids) for n in sandbox.notifications] == [100, 100, 30]
    assert [c[0] for c in progress.calls] == [100, 200, 230]


async def test_a_refused_chunk_is_named_and_only_its_accounts_are_offered_again(
    sandbox: ActivePlatformSandbox,
) -> None:
    everyone = ids_of(sandbox)
    third_chunk = everyone[100:150]
    sandbox.fail_accounts = {third_chunk[4]: 422}
    client = open_client(sandbox, chunk_size=50)
    progress = ProgressLog()
    reply = await attempt("notify-closing 2026-10 reseller=1", client, context(progress))

    assert isinstance(reply, Reply)
    assert notified(sandbox) == everyone[:100] + everyone[150:]
    assert "180 of 230 accounts notified" in reply.text
    assert "1 of 5 chunks failed" in reply.text
    [section] = reply.sections
    assert section.startswith("Chunk 3 (50 accounts")
    assert f"account {third_chunk[4]} could not be notified" in section
    assert progress.calls[2] == (150, 230, "chunk 3 of 5 failed")

    [button] = reply.buttons
    assert button.command == (
        "/activeplatform notify-closing period=2026-10-01..2026-10-31 "
        f"accounts={','.join(map(str, third_chunk))} reseller=1"
    )

    # Clicking the button (once the account is fixed) sends exactly the failed accounts.
    sandbox.fail_accounts.clear()
    sandbox.notifications.clear()
    retried = await attempt(button.command.removeprefix("/activeplatform "), client, context())
    assert isinstance(retried, Reply)
    assert notified(sandbox) == third_chunk
    assert retried.buttons == ()


async def test_a_chunk_hitting_a_server_error_stops_the_run_as_outcome_unknown(
    sandbox: ActivePlatformSandbox,
) -> None:
    # The document promises nothing about a 5xx: the chunk may have been notified, so neither
    # it nor anything after it is sent, and the message says what became of each part.
    everyone = ids_of(sandbox)
    sandbox.fail_accounts = {everyone[60]: 500}
    client = open_client(sandbox, chunk_size=50)
    with pytest.raises(OutcomeUnknown) as caught:
        await attempt("notify-closing 2026-10", client, context())

    assert caught.value.message == (
        f"chunk 2 of 5 (accounts {everyone[50]}…{everyone[99]}) the notification of 50 accounts "
        "was sent and ActivePlatform answered with a server error (HTTP 500), which does not "
        "say whether it happened; 50 accounts in earlier chunks were notified; "
        "130 accounts after it were not sent"
    )
    assert posts(sandbox) == 2  # the unknown chunk is not retried, and nothing follows it
    assert notified(sandbox) == everyone[:50]


async def test_a_reseller_level_refusal_stops_the_run_and_offers_the_rest(
    sandbox: ActivePlatformSandbox,
) -> None:
    everyone = ids_of(sandbox)
    client = open_client(sandbox, chunk_size=50)

    class RevokeAfterFirstChunk(ProgressLog):
        async def __call__(self, done: int, total: int, label: str) -> None:
            await super().__call__(done, total, label)
            sandbox.token = "revoked"

    progress = RevokeAfterFirstChunk()
    reply = await attempt("notify-closing 2026-10", client, context(progress))

    assert isinstance(reply, Reply)
    assert notified(sandbox) == everyone[:50]
    assert posts(sandbox) == 2  # chunk 2 met the 401; chunks 3-5 were not sent
    assert progress.calls == [(50, 230, "chunk 1 of 5 sent"), (100, 230, "chunk 2 of 5 failed")]
    assert len(reply.sections) == 4
    assert "ACTIVEPLATFORM_API_TOKEN" in reply.sections[0]
    assert reply.sections[1].startswith("Chunk 3") and "not sent after chunk 2" in reply.sections[1]
    [button] = reply.buttons
    assert f"accounts={','.join(map(str, everyone[50:]))} " in button.command


async def test_a_refusal_before_anything_was_delivered_is_raised(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox, token="not-the-token", chunk_size=2)
    with pytest.raises(ProviderAuthError):
        await client.notify_closing_in_chunks(
            "1", ["2003001", "2003002", "2003003"], *OCTOBER, progress=ProgressLog()
        )
    assert posts(sandbox) == 1
    assert sandbox.notifications == []


async def test_when_every_chunk_fails_nothing_was_sent_and_it_says_so(
    sandbox: ActivePlatformSandbox,
) -> None:
    sandbox.fail_accounts = {2003001: 422, 2003003: 422}
    client = open_client(sandbox, chunk_size=2)
    with pytest.raises(ProviderRejected) as several:
        await client.notify_closing_in_chunks(
            "1", ["2003001", "2003002", "2003003"], *OCTOBER, progress=ProgressLog()
        )
    with pytest.raises(ProviderRejected) as single:
        await client.notify_closing_in_chunks("1", ["2003001"], *OCTOBER, progress=ProgressLog())

    assert several.value.message == (
        "no notifications were sent; chunk 1 of 2: account 2003001 could not be notified"
    )
    assert single.value.message == "account 2003001 could not be notified"
    assert posts(sandbox) == 3
    assert sandbox.notifications == []


async def test_a_lost_answer_stops_the_run_and_says_what_happened_to_each_part(
    sandbox: ActivePlatformSandbox,
) -> None:
    everyone = ids_of(sandbox)
    sandbox.lose_answer_for = {everyone[120]}
    sandbox.fail_accounts = {everyone[60]: 422}
    client = open_client(sandbox, chunk_size=50)
    with pytest.raises(OutcomeUnknown) as caught:
        await attempt("notify-closing 2026-10", client, context())

    message = caught.value.message
    assert f"chunk 3 of 5 (accounts {everyone[100]}…{everyone[149]})" in message
    assert "50 accounts in earlier chunks were notified and 50 failed" in message
    assert "80 accounts after it were not sent" in message
    assert posts(sandbox) == 3
    # Chunk 3 was acted on although its answer never came.
    assert notified(sandbox) == everyone[:50] + everyone[100:150]
