"""Unreadable answers to the closing-documents notification: HTML, garbage, half of `null` or a
gateway's 502 are "outcome unknown", sent once, whether or not the accounts were notified; in a
chunked run the chunk is named and nothing after it is sent. Reads stay plain failures."""

from __future__ import annotations

from datetime import date

import pytest

from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.http import OutcomeUnknown, ProviderUnavailable
from commands.sandbox import Garble, GarbleKind
from tests.support.activeplatform import ProgressLog, open_client, posts

OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))
KINDS: tuple[GarbleKind, ...] = ("html", "garbage", "truncated", "502")


@pytest.mark.parametrize("acted", [True, False], ids=["after-acting", "before-acting"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreadable_answer_to_a_notification_is_outcome_unknown(
    sandbox: ActivePlatformSandbox, kind: GarbleKind, acted: bool
) -> None:
    client = open_client(sandbox)
    sandbox.control.garble = Garble(kind, acted=acted)

    with pytest.raises(OutcomeUnknown) as caught:
        await client.notify_closing("1", ["2003001", "2003002"], *OCTOBER)

    message = caught.value.message
    assert message.startswith("the notification of 2 accounts was sent")
    if kind == "502":
        assert "server error (HTTP 502), which does not say whether it happened" in message
    else:
        assert "could not be read" in message
    assert posts(sandbox) == 1
    assert len(sandbox.notifications) == (1 if acted else 0)


async def test_a_chunk_with_an_unreadable_answer_stops_the_run(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox, chunk_size=2)
    sandbox.control.garble = Garble("html", acted=True)
    with pytest.raises(OutcomeUnknown) as caught:
        await client.notify_closing_in_chunks(
            "1", ["2003001", "2003002", "2003003"], *OCTOBER, progress=ProgressLog()
        )

    assert caught.value.message == (
        "chunk 1 of 2 (accounts 2003001…2003002) the notification of 2 accounts was sent, but "
        "ActivePlatform's answer (HTTP 200, text/html) could not be read; 0 accounts in earlier "
        "chunks were notified; 1 accounts after it were not sent"
    )
    assert posts(sandbox) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreadable_answer_to_a_read_is_just_failed(
    sandbox: ActivePlatformSandbox, kind: GarbleKind
) -> None:
    client = open_client(sandbox)
    sandbox.control.garble = Garble(kind, acted=True, matches=lambda request: True)
    with pytest.raises(ProviderUnavailable) as caught:
        await client.accounts("1")
    assert not isinstance(caught.value, OutcomeUnknown)
