"""What is approved is what runs, however late: relative inputs are fixed at the request.

`/activeplatform notify-closing last-month` asked on 30 November stores October's dates, the
default reseller by number and, for `accounts=all`, the accounts listed then; an approval after
midnight (the 24 h TTL allows it) notifies exactly that. The clock is a fake one the tests move.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.config import Settings
from bot.runtime import Runtime, open_providers, open_runtime
from bot.storage import store
from bot.storage.store import approvals, audit
from commands.activeplatform.sandbox import ActivePlatformSandbox, StoredAccount
from tests.support import RecordingSurface, sandbox_of

REQUESTED = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clock_and_runtime(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[Clock, Runtime]]:
    clock = Clock(REQUESTED)
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    surfaces: dict[str, RecordingSurface] = {}

    def system_surface(channel: str) -> RecordingSurface:
        return surfaces.setdefault(channel, RecordingSurface(channel=channel, user=""))

    runtime = await open_runtime(
        make_settings(approval_ttl_hours=24, billing_channel="C0BILLING"),
        system_surface=system_surface,
        runtimes=open_providers(use_sandboxes=True),
        working_after=5.0,
        clock=clock,
    )
    try:
        yield clock, runtime
    finally:
        await runtime.close()


def activeplatform(runtime: Runtime) -> ActivePlatformSandbox:
    sandbox: ActivePlatformSandbox = sandbox_of(runtime, "activeplatform")
    return sandbox


async def stored_requests(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(approvals))).mappings().all()
    return [dict(r) for r in rows]


async def test_last_month_requested_on_30_november_notifies_october_after_midnight(
    clock_and_runtime: tuple[Clock, Runtime],
) -> None:
    clock, runtime = clock_and_runtime
    sandbox = activeplatform(runtime)
    listed = [a.id for a in sandbox.accounts["1"]]

    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        "/activeplatform notify-closing last-month", user="U1", channel="C1", surface=requester
    )
    # Only reads so far: the accounts were listed (every page) to fix the list.
    assert {r.method for r in sandbox.control.requests} == {"GET"}
    assert sandbox.notifications == []

    card = requester.sent[0]
    described = card.sections[0]
    assert "*2026-10* (2026-10-01..2026-10-31)" in described
    assert "Reseller: 1\n" in described
    assert f"Accounts: {len(listed)} accounts, exactly these" in described
    assert "`/activeplatform accounts reseller=1`" in described
    assert '"start_date":"2026-10-01","end_date":"2026-10-31"' in described
    for placeholder in ("<ACTIVEPLATFORM_RESELLER_ID>", "<first day>", "every account"):
        assert placeholder not in described
    [row] = await stored_requests(runtime)
    stored = json.loads(row["args"])
    assert stored == {
        "period": "2026-10",
        "accounts": ",".join(str(i) for i in listed),
        "reseller": "1",
    }

    # An account that appears after the request is not among those approved.
    sandbox.accounts["1"].append(StoredAccount(9999001, "1", "Latecomer", "late@example.com"))

    clock.now = REQUESTED + timedelta(hours=1, minutes=30)  # 1 December, 00:30
    approver = RecordingSurface(user="U2")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=approver
    )
    assert approver.updates[-1][1].text.startswith("✅ #1 *done*")

    assert sandbox.notifications, "the approved request ran"
    assert {(n.start_date, n.end_date) for n in sandbox.notifications} == {
        (date(2026, 10, 1), date(2026, 10, 31))
    }
    notified = [i for n in sandbox.notifications for i in n.account_ids]
    assert notified == listed
    assert {n.reseller for n in sandbox.notifications} == {"1"}


async def test_listed_accounts_and_an_explicit_reseller_are_kept_as_given(
    clock_and_runtime: tuple[Clock, Runtime],
) -> None:
    _, runtime = clock_and_runtime
    surface = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        "/activeplatform notify-closing 2026-09-01..2026-09-15 accounts=2005002,2005001 reseller=2",
        user="U1",
        channel="C1",
        surface=surface,
    )
    # Nothing relative to resolve: nothing is read.
    assert activeplatform(runtime).control.requests == []
    [row] = await stored_requests(runtime)
    assert json.loads(row["args"]) == {
        "period": "2026-09-01..2026-09-15",
        "accounts": "2005002,2005001",
        "reseller": "2",
    }
    assert "Accounts: 2 accounts, exactly these" in surface.sent[0].sections[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "/activeplatform notify-closing 2026-11-20..2026-12-02",
            "Cannot notify for that period: the period 2026-11-20..2026-12-02 has not ended yet "
            "(today is 2026-11-30). Nothing was put up for approval.",
        ),
        (
            "/activeplatform notify-closing 2026-12-01..2026-12-31",
            "Cannot notify for that period: the period 2026-12-01..2026-12-31 starts in the "
            "future. Nothing was put up for approval.",
        ),
    ],
)
async def test_a_period_that_cannot_be_fixed_is_refused_before_any_call(
    clock_and_runtime: tuple[Clock, Runtime], line: str, message: str
) -> None:
    _, runtime = clock_and_runtime
    surface = RecordingSurface(user="U1")
    assert not await runtime.dispatcher.run(line, user="U1", channel="C1", surface=surface)
    assert surface.privates == [message]
    assert surface.sent == []
    assert activeplatform(runtime).control.requests == []
    assert await stored_requests(runtime) == []


async def test_no_reseller_given_and_none_configured_is_refused_before_any_call(
    clock_and_runtime: tuple[Clock, Runtime],
) -> None:
    _, runtime = clock_and_runtime
    provider = runtime.catalog.runtime("activeplatform")
    assert provider is not None and provider.client is not None
    provider.client.default_reseller = None
    surface = RecordingSurface(user="U1")
    assert not await runtime.dispatcher.run(
        "/activeplatform notify-closing last-month", user="U1", channel="C1", surface=surface
    )
    assert surface.privates == [
        "No reseller given: add `reseller=<id>` or set ACTIVEPLATFORM_RESELLER_ID. "
        "Nothing was put up for approval."
    ]
    assert activeplatform(runtime).control.requests == []
    assert await stored_requests(runtime) == []


async def test_a_failed_listing_puts_nothing_up_for_approval(
    clock_and_runtime: tuple[Clock, Runtime],
) -> None:
    _, runtime = clock_and_runtime
    sandbox = activeplatform(runtime)
    surface = RecordingSurface(user="U1")
    assert not await runtime.dispatcher.run(
        "/activeplatform notify-closing last-month reseller=3",  # out of this manager's reach
        user="U1",
        channel="C1",
        surface=surface,
    )
    [note] = surface.privates
    assert note.startswith(
        "`/activeplatform notify-closing` was not put up for approval: ActivePlatform "
    )
    assert "ActivePlatform says ActivePlatform" not in note
    assert surface.sent == []
    assert {r.method for r in sandbox.control.requests} == {"GET"}
    assert await stored_requests(runtime) == []
    async with runtime.engine.connect() as conn:
        decisions = (await conn.execute(sa.select(audit.c.decision))).scalars().all()
    assert decisions == ["not requested"]


async def test_the_closing_reminder_proposes_concrete_values_and_they_run(
    clock_and_runtime: tuple[Clock, Runtime],
) -> None:
    clock, runtime = clock_and_runtime
    sandbox = activeplatform(runtime)
    listed = [a.id for a in sandbox.accounts["2"]]
    admin = RecordingSurface(user="U0ADMIN", channel="C0BILLING")
    for line in (
        '/billing schedule add closing-reminder "0 9 1 * *" reseller=2',
        "/billing schedule run 1",
    ):
        assert await runtime.dispatcher.run(
            line, user="U0ADMIN", channel="C0BILLING", surface=admin
        )
    card = runtime.system_surface("C0BILLING").sent[-1]  # type: ignore[attr-defined]
    assert card.text == f"Closing documents for October 2026: {len(listed)} accounts of reseller 2"
    shown = "\n".join(card.sections)
    assert "*2026-10* (2026-10-01..2026-10-31)" in shown
    assert "Reseller: 2\n" in shown
    [row] = await stored_requests(runtime)
    assert json.loads(row["args"])["accounts"] == ",".join(str(i) for i in listed)

    clock.now = REQUESTED + timedelta(hours=2)  # 1 December, within the 24 h TTL
    approver = RecordingSurface(user="U2", channel="C0BILLING")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C0BILLING", surface=approver
    )
    assert [i for n in sandbox.notifications for i in n.account_ids] == listed
    assert {(n.start_date, n.end_date) for n in sandbox.notifications} == {
        (date(2026, 10, 1), date(2026, 10, 31))
    }
    # The story of the request, in order, each row by whoever made that step.
    async with runtime.engine.connect() as conn:
        story = (
            await conn.execute(
                sa.select(audit.c.user_id, audit.c.decision)
                .where(audit.c.approval_id == 1)
                .order_by(audit.c.id)
            )
        ).all()
    assert [(user, decision) for user, decision in story] == [
        ("schedule:1", "requested"),
        ("U2", "approved"),
        ("U2", "executed"),
    ]
