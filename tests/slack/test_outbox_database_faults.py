"""The outbox's own writes, failed by the database: a card or a result is never posted twice,
and none is lost.

A row whose insert fails was never queued: the caller's error says so (the approval flow then
withdraws the request, see tests/approvals/test_database_faults.py). A row Slack took whose
"done" could not be recorded is recorded, not sent again, when its lease runs out; a row whose
failure could not be recorded is sent once its lease runs out. The clock is moved by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import OperationalError

from bot.runtime import Runtime
from bot.slack.outbox import Outbox
from bot.storage.store import deliveries
from tests.support import Clock
from tests.support.db_faults import OUTBOX, db_faults
from tests.support.e2e import table_rows
from tests.support.slack_api import BOT_TOKEN, Fault, SlackApiDouble, serve_slack_double

CHANNEL = "C0BILLING1"
# `_finish`: the row marked done once Slack answered (the SET clause follows the columns).
RECORDED = r"^UPDATE deliveries SET params=.*, result_ts="
# `_failed`: the row put back to wait for its retry.
RETRY = r"^UPDATE deliveries SET status=[^,]+, next_at=[^,]+, lease_until="
LEASE = timedelta(seconds=120)


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))


@pytest.fixture
def outbox(runtime: Runtime, slack: SlackApiDouble, clock: Clock) -> Outbox:
    client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
    return Outbox(runtime.engine, client, clock=clock, lease=LEASE)


def posts(slack: SlackApiDouble) -> list[str]:
    return [str(c.params.get("text")) for c in slack.calls_to("chat.postMessage") if c.ok]


async def statuses(runtime: Runtime) -> list[str]:
    return [r["status"] for r in await table_rows(runtime.settings.database_url, deliveries)]


async def test_a_post_whose_done_was_not_recorded_is_recorded_later_not_posted_again(
    runtime: Runtime, outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    with db_faults(runtime.engine) as faults:
        faults.fail(RECORDED)
        with pytest.raises(OperationalError):
            await outbox.post(CHANNEL, {"text": "Approval needed"}, key="approval:1")
        assert faults.fired == 1
    assert posts(slack) == ["Approval needed"]
    assert await statuses(runtime) == ["sending"]
    await outbox.flush()  # its lease holds: nobody takes it yet
    clock.advance(seconds=LEASE.total_seconds() + 1)
    await outbox.flush()
    assert posts(slack) == ["Approval needed"]  # once
    [row] = await table_rows(runtime.settings.database_url, deliveries)
    [(channel, ts)] = slack.messages
    assert (row["status"], row["result_ts"]) == ("done", ts)  # where it landed, kept


async def test_a_post_whose_failure_was_not_recorded_is_sent_once_its_lease_ends(
    runtime: Runtime, outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=500))
    with db_faults(runtime.engine) as faults:
        faults.fail(RETRY)
        with pytest.raises(OperationalError):
            await outbox.post(CHANNEL, {"text": "Funds moved"})
        assert faults.fired == 1, [s for s in faults.statements if "deliveries" in s]
    assert posts(slack) == []
    clock.advance(seconds=LEASE.total_seconds() + 1)
    await outbox.flush()
    assert posts(slack) == ["Funds moved"]
    assert await statuses(runtime) == ["done"]


async def test_a_row_the_database_did_not_take_is_not_sent(
    runtime: Runtime, outbox: Outbox, slack: SlackApiDouble
) -> None:
    with db_faults(runtime.engine) as faults:
        faults.fail(OUTBOX)
        with pytest.raises(OperationalError):
            await outbox.post(CHANNEL, {"text": "Funds moved"})
    await outbox.flush()
    assert posts(slack) == [] and await statuses(runtime) == []
