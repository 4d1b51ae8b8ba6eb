"""Scheduled posts of read commands: `/billing schedule add post "<cron>" "/voipcloud …"`.

The command line is read once, when the schedule is added; a run goes through the executor
as the creator, with the role they hold when it fires."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.config import Settings
from bot.runtime import Runtime, open_providers, open_runtime
from bot.schedules.commands import PATH_KEY, POST
from bot.schedules.engine import Scheduler
from bot.storage import store
from bot.storage.store import audit
from commands.base import Command, NoArgs, Reply, Role
from commands.registry import PROVIDERS as REGISTRY
from tests.support import OpenBot, RecordingSurface, sandbox_of

CHANNEL = "C0BILLING"
PROVIDERS = tuple(p.name for p in REGISTRY)
SLASHES = ", ".join(f"`/{s}`" for s in sorted(["billing", *PROVIDERS]))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """The clock the test moves: a Monday morning, before nine."""
    return Clock(datetime(2026, 11, 16, 8, 0, tzinfo=UTC))


OpenOnClock = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def open_on_clock(
    make_settings: Callable[..., Settings], database_url: str, clock: Clock
) -> AsyncIterator[OpenOnClock]:
    """Opens bots as `open_bot` does, posting to CHANNEL and on `clock`; keyword arguments
    override settings. They share one database: a bot opened again with other roles is the
    bot restarted with them."""
    opened: list[Runtime] = []
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)

    async def open_one(**overrides: Any) -> Runtime:
        surfaces: dict[str, RecordingSurface] = {}

        def system_surface(channel: str) -> RecordingSurface:
            return surfaces.setdefault(channel, RecordingSurface(channel=channel, user=""))

        runtime = await open_runtime(
            make_settings(billing_channel=CHANNEL, **overrides),
            system_surface=system_surface,
            runtimes=open_providers(use_sandboxes=True),
            working_after=5.0,
            clock=clock,
        )
        opened.append(runtime)
        return runtime

    try:
        yield open_one
    finally:
        for runtime in opened:
            await runtime.close()


@pytest.fixture
async def runtime(open_on_clock: OpenOnClock) -> Runtime:
    """A bot posting to CHANNEL, on the clock the test moves."""
    return await open_on_clock()


@pytest.fixture
def scheduler(runtime: Runtime) -> Scheduler:
    """The bot's scheduler, on the clock the test moves: a Monday morning, before nine."""
    assert runtime.scheduler is not None
    return runtime.scheduler


def clock_of(scheduler: Scheduler) -> Clock:
    assert isinstance(scheduler.clock, Clock)
    return scheduler.clock


async def as_user(runtime: Runtime, user: str, line: str) -> RecordingSurface:
    surface = RecordingSurface(user=user, channel=CHANNEL)
    await runtime.dispatcher.run(line, user=user, channel=CHANNEL, surface=surface)
    return surface


def channel_of(runtime: Runtime) -> RecordingSurface:
    surface = runtime.system_surface(CHANNEL)
    assert isinstance(surface, RecordingSurface)
    return surface


def provider_requests(runtime: Runtime) -> list[Any]:
    return [r for name in PROVIDERS for r in sandbox_of(runtime, name).control.requests]


async def audit_rows(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit).order_by(audit.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def test_a_read_command_is_posted_on_time(runtime: Runtime, scheduler: Scheduler) -> None:
    clock = clock_of(scheduler)
    added = await as_user(
        runtime, "U0ADMIN", '/billing schedule add post "0 9 * * 1" "/voipcloud balance 10023"'
    )
    assert added.privates == []
    assert added.sent[0].text.startswith(
        "Schedule #1 added: post `/voipcloud balance account=10023` `0 9 * * 1` "
        "(at 09:00, only on Monday) → <#C0BILLING>; next run 2026-11-16 09:00 UTC."
    )
    assert added.sent[0].text.endswith("It runs with the role <@U0ADMIN> holds when it fires.")
    assert provider_requests(runtime) == []  # adding reads nothing from the provider
    # Kept as the validated arguments by field, not as a line to read again.
    [row] = await runtime.schedules.all()
    assert (row.kind, row.args, row.created_by) == (
        POST,
        {PATH_KEY: "voipcloud balance", "account": "10023"},
        "U0ADMIN",
    )
    listing = await as_user(runtime, "U0VIEWER", "/billing schedules")
    table = listing.sent[0].table
    assert table is not None and table.rows[0][1] == POST
    assert table.rows[0][6] == "/voipcloud balance account=10023"

    clock.now = datetime(2026, 11, 16, 8, 59, 59, tzinfo=UTC)
    assert await scheduler.tick() == 0
    assert channel_of(runtime).sent == [] and provider_requests(runtime) == []

    clock.now = datetime(2026, 11, 16, 9, 0, 5, tzinfo=UTC)
    assert await scheduler.tick() == 1
    [posted] = channel_of(runtime).sent
    requests = sandbox_of(runtime, "voipcloud").control.requests
    assert [r.method for r in requests] == ["GET"]
    assert "10023" in (requests[0].path + str(requests[0].query))
    # The post is what the command says when typed.
    typed = await as_user(runtime, "U0VIEWER", "/voipcloud balance 10023")
    assert (posted.text, posted.fields, posted.table) == (
        typed.sent[0].text,
        typed.sent[0].fields,
        typed.sent[0].table,
    )
    assert await scheduler.tick() == 0  # once
    assert len(channel_of(runtime).sent) == 1

    runs = [r for r in await audit_rows(runtime) if r["channel"] == CHANNEL]
    scheduled = [r for r in runs if r["detail"].startswith("schedule #1")]
    assert len(scheduled) == 1
    entry = scheduled[0]
    assert (entry["user_id"], entry["command"], entry["decision"], entry["outcome"]) == (
        "U0ADMIN",
        "/voipcloud balance",
        "ran",
        "done",
    )
    assert entry["detail"].startswith("schedule #1 ran it, due 2026-11-16T09:00:00+00:00: ")
    assert entry["provider"] == "voipcloud"


async def test_the_target_may_be_typed_without_quotes(runtime: Runtime) -> None:
    added = await as_user(
        runtime, "U0ADMIN", '/billing schedule add post "0 9 * * 1" /voipcloud partner-balance'
    )
    assert added.sent[0].text.startswith("Schedule #1 added: post `/voipcloud partner-balance` ")
    [row] = await runtime.schedules.all()
    assert row.args == {PATH_KEY: "voipcloud partner-balance"}
    await as_user(runtime, "U0ADMIN", "/billing schedule run 1")
    [posted] = channel_of(runtime).sent
    typed = await as_user(runtime, "U0VIEWER", "/voipcloud partner-balance")
    assert posted.text == typed.sent[0].text


WRITES = [
    (
        "/voipcloud move-funds 10023 50.00 top-up",
        "Nothing was scheduled: `/voipcloud move-funds` changes something and needs a second "
        "person's approval, and a schedule may post only commands that read.",
    ),
    (
        "/voipcloud reset-password 10023",
        "Nothing was scheduled: `/voipcloud reset-password` changes something rather than only "
        "reading, and a schedule may post only commands that read.",
    ),
    (
        "/invoicexpress sequence set-current 5",  # repeatable, but a write all the same
        "Nothing was scheduled: `/invoicexpress sequence set-current` changes something rather "
        "than only reading, and a schedule may post only commands that read.",
    ),
    (
        "/billing schedule pause 1",
        "Nothing was scheduled: `/billing schedule pause` changes something rather than only "
        "reading, and a schedule may post only commands that read.",
    ),
]


@pytest.mark.parametrize(("line", "sentence"), WRITES)
async def test_a_write_is_refused_as_a_target(runtime: Runtime, line: str, sentence: str) -> None:
    surface = await as_user(runtime, "U0ADMIN", f'/billing schedule add post "0 9 * * 1" "{line}"')
    assert surface.privates == [sentence]
    assert surface.sent == []
    assert await runtime.schedules.all() == []
    assert provider_requests(runtime) == []


BAD_TARGETS = [
    (
        "voipcloud partner-balance",
        "Nothing was scheduled: `voipcloud partner-balance` does not start with one of my "
        f"commands ({SLASHES}); give "
        'the whole command to post, in quotes, like "/voipcloud partner-balance".',
    ),
    (
        "/nope balance",
        "Nothing was scheduled: `/nope balance` does not start with one of my commands",
    ),
    (
        "/voipcloud partner-balanse",
        "Nothing was scheduled. `/voipcloud partner-balanse` is not a command. Did you mean "
        "`/voipcloud partner-balance`?",
    ),
    (
        "/voipcloud",
        "Nothing was scheduled: `/voipcloud` names no single command; give the whole command to "
        "post, like `/voipcloud help` lists them.",
    ),
    (
        "/voipcloud balance 10023 2026-13-01",
        "Nothing was scheduled: the command to post has bad input.\n`from_date`: ",
    ),
    (
        "/voipcloud balance",
        "Nothing was scheduled: the command to post has bad input.\n`account`: is required\n"
        "Expected: `/voipcloud balance <account> [from_date] [to_date]`",
    ),
    (
        '/voipcloud balance 10023 "unclosed',
        "Nothing was scheduled. Could not read the command: No closing quotation (close every "
        "quote).",
    ),
]


@pytest.mark.parametrize(("line", "message"), BAD_TARGETS)
async def test_a_bad_target_is_explained_and_nothing_runs(
    runtime: Runtime, line: str, message: str
) -> None:
    quoted = line.replace('"', '\\"')
    surface = await as_user(
        runtime, "U0ADMIN", f'/billing schedule add post "0 9 * * 1" "{quoted}"'
    )
    [said] = surface.privates
    assert said.startswith(message)
    assert surface.sent == []
    assert await runtime.schedules.all() == []
    assert provider_requests(runtime) == []


async def test_bad_cron_or_missing_target_is_refused(runtime: Runtime) -> None:
    often = await as_user(
        runtime,
        "U0ADMIN",
        '/billing schedule add post "*/30 * * * *" "/voipcloud partner-balance"',
    )
    assert often.privates[0].startswith("`cron`: '*/30 * * * *' runs 2 times an hour")
    assert (
        'Example: `/billing schedule add post "0 9 * * 1" "/voipcloud partner-balance"`'
        in (often.privates[0])
    )
    bare = await as_user(runtime, "U0ADMIN", '/billing schedule add post "0 9 * * 1"')
    assert bare.privates[0].startswith("`command`: is required")
    assert await runtime.schedules.all() == []
    assert provider_requests(runtime) == []


async def test_a_post_needs_billing_channel_and_an_admin(open_bot: OpenBot) -> None:
    runtime = await open_bot()
    assert runtime.settings.billing_channel is None
    line = '/billing schedule add post "0 9 * * 1" "/voipcloud partner-balance"'
    surface = await as_user(runtime, "U0ADMIN", line)
    assert surface.privates == [
        "Schedules post to BILLING_CHANNEL, which is not set. An admin must set it to a channel "
        "ID (like C0123456789) and restart; nothing was scheduled."
    ]
    operator = await as_user(runtime, "U1", line)
    assert operator.privates[0].startswith(
        "`/billing schedule add post` needs the *admin* role and you are operator."
    )
    assert runtime.scheduler is not None and await runtime.schedules.all() == []
    assert provider_requests(runtime) == []


def settings_with(runtime: Runtime, **roles: str) -> Settings:
    return runtime.settings.model_copy(update=roles)


async def test_a_creator_who_lost_the_role_stops_their_schedules(
    runtime: Runtime,
    scheduler: Scheduler,
    open_on_clock: OpenOnClock,
) -> None:
    clock = clock_of(scheduler)
    await as_user(
        runtime, "U0ADMIN", '/billing schedule add post "0 9 * * 1" "/voipcloud partner-balance"'
    )
    await as_user(
        runtime,
        "U0ADMIN",
        '/billing schedule add post "0 9 * * 1" "/billing audit export 2026-11-01 2026-11-15"',
    )
    # The admin becomes a viewer: a viewer may still read balances, not the audit log. Roles
    # come from settings, so the bot restarts with the new ones (on the same database).
    demoted = await open_on_clock(billing_admins="U0OTHER", billing_viewers="U0VIEWER,U0ADMIN")
    clock.now = datetime(2026, 11, 16, 9, 0, 5, tzinfo=UTC)
    assert await demoted.scheduler.tick() == 2
    posts = channel_of(demoted).sent
    texts = [r.text for r in posts]
    typed = await as_user(demoted, "U0VIEWER", "/voipcloud partner-balance")
    assert typed.sent[0].text in texts  # the balance, read with the viewer role
    paused_note = (
        "⏸️ Schedule #2 is paused and did not post `/billing audit export`: <@U0ADMIN>, who added "
        "it, no longer holds the approver role it needs (an admin can resume it once they do, or "
        "add it again)."
    )
    assert texts.count(paused_note) == 1
    assert not any(r.files for r in posts)  # no audit CSV reached the channel
    second = await demoted.schedules.get(2)
    assert second is not None and second.paused and second.next_run_at is None
    await demoted.scheduler.stop()  # it stops leading, as a bot that restarts does

    # Then removed altogether: the balance schedule stops too, and says so once.
    removed = await open_on_clock(billing_admins="U0OTHER")
    before = len(sandbox_of(removed, "voipcloud").control.requests)
    for week in (1, 2):
        clock.now = datetime(2026, 11, 16, 9, 0, 5, tzinfo=UTC) + timedelta(weeks=week)
        assert await removed.scheduler.tick() == (1 if week == 1 else 0)
    stopped = (
        "⏸️ Schedule #1 is paused and did not post `/voipcloud partner-balance`: <@U0ADMIN>, who "
        "added it, no longer holds the viewer role it needs (an admin can resume it once they "
        "do, or add it again)."
    )
    assert [r.text for r in channel_of(removed).sent].count(stopped) == 1
    assert len(sandbox_of(removed, "voipcloud").control.requests) == before
    first = await removed.schedules.get(1)
    assert first is not None and first.paused

    refused = [r for r in await audit_rows(removed) if r["decision"] == "refused"]
    assert [(r["user_id"], r["command"], r["outcome"]) for r in refused] == [
        ("U0ADMIN", "/billing audit export", "denied"),
        ("U0ADMIN", "/voipcloud partner-balance", "denied"),
    ]
    assert refused[0]["detail"].endswith("needs approver; schedule #2 paused")
    assert refused[1]["detail"].startswith("schedule #1 ran it, due 2026-11-23T09:00:00+00:00")


async def test_a_private_reply_is_not_posted_to_the_channel(runtime: Runtime) -> None:
    await as_user(runtime, "U0ADMIN", '/billing schedule add post "0 9 * * 1" "/billing audit 5"')
    await as_user(runtime, "U0ADMIN", "/billing schedule run 1")
    channel = channel_of(runtime)
    assert [r.text for r in channel.sent] == [
        "Schedule #1: `/billing audit` answers only the person who asks, so its result is not "
        "posted in the channel."
    ]
    assert all(r.table is None for r in channel.sent)
    [entry] = [r for r in await audit_rows(runtime) if r["command"] == "/billing audit"]
    assert (entry["user_id"], entry["decision"], entry["outcome"]) == ("U0ADMIN", "ran", "done")
    assert entry["detail"].startswith("schedule #1 ran it, now: ")


async def test_a_provider_failure_is_told_in_the_channel(runtime: Runtime) -> None:
    await as_user(
        runtime, "U0ADMIN", '/billing schedule add post "0 9 * * 1" "/voipcloud partner-balance"'
    )
    sandbox_of(runtime, "voipcloud").control.fail_status = 401
    await as_user(runtime, "U0ADMIN", "/billing schedule run 1")
    [said] = channel_of(runtime).sent
    assert said.text.startswith("⚠️ Schedule #1 failed: `/voipcloud partner-balance` failed: ")
    [entry] = [r for r in await audit_rows(runtime) if r["command"] == "/voipcloud partner-balance"]
    assert (entry["user_id"], entry["decision"], entry["outcome"]) == ("U0ADMIN", "ran", "failed")
    assert entry["provider_status"] == 401


async def test_a_target_that_stopped_being_a_read_is_skipped(runtime: Runtime) -> None:
    """Stored schedules outlive declarations: a path that no longer reads is not run."""
    await runtime.schedules.add(
        kind=POST,
        cron="0 9 * * 1",
        args={PATH_KEY: "voipcloud confirm-email", "account": "10023"},
        channel=CHANNEL,
        created_by="U0ADMIN",
    )
    await as_user(runtime, "U0ADMIN", "/billing schedule run 1")
    [said] = channel_of(runtime).sent
    assert said.text == (
        "⚠️ Schedule #1 skipped: `/voipcloud confirm-email` is no longer a command that only "
        "reads; remove the schedule, or add it again."
    )
    assert provider_requests(runtime) == []


async def test_stored_arguments_that_no_longer_fit_are_not_run(runtime: Runtime) -> None:
    await runtime.schedules.add(
        kind=POST,
        cron="0 9 * * 1",
        args={PATH_KEY: "voipcloud balance", "account": "10023", "period": "2026-10"},
        channel=CHANNEL,
        created_by="U0ADMIN",
    )
    await as_user(runtime, "U0ADMIN", "/billing schedule run 1")
    [said] = channel_of(runtime).sent
    assert said.text.startswith(
        "⚠️ Schedule #1 skipped: the arguments it keeps for `/voipcloud balance` no longer fit it "
        "(period: is not an option of this command)"
    )
    assert provider_requests(runtime) == []
    [entry] = [r for r in await audit_rows(runtime) if r["decision"] == "invalid"]
    assert (entry["user_id"], entry["command"]) == ("U0ADMIN", "/voipcloud balance")


def test_read_only_is_declared_on_reads_and_never_on_writes(runtime: Runtime) -> None:
    reads = {c.audit_name for c in runtime.catalog.commands if c.read_only}
    assert {
        "/activeplatform accounts",
        "/billing report balances",
        "/billing schedules",
        "/billing status",
        "/invoicexpress sequence",
        "/invoicexpress sequences",
        "/smsc act get",
        "/smsc invoice get",
        "/voipcloud balance",
        "/voipcloud partner-balance",
    } <= reads
    # Repeatable writes: idempotent, no approval, and still not reads.
    assert not reads & {
        "/invoicexpress sequence set-current",
        "/voipcloud confirm-email",
        "/billing approve",
        "/billing reject",
        "/billing snooze",
        "/billing schedule pause",
        "/billing schedule run",
        "/billing schedule add post",
    }
    for command in runtime.catalog.commands:
        if command.read_only:
            assert command.idempotent and not command.approval, command.audit_name
            # The stored mapping keeps the path under PATH_KEY: no field may share its name.
            assert PATH_KEY not in command.args.model_fields, command.audit_name


@pytest.mark.parametrize(
    ("approval", "idempotent"), [(True, True), (False, False)], ids=["approval", "not idempotent"]
)
def test_a_read_only_declaration_that_writes_is_refused(approval: bool, idempotent: bool) -> None:
    async def handler(client: object, args: NoArgs, ctx: object) -> Reply:
        return Reply(text="")

    with pytest.raises(ValueError, match="a read-only command is idempotent, with no approval"):
        Command(
            slash="x",
            words=("y",),
            summary="",
            args=NoArgs,
            handler=handler,
            role=Role.VIEWER,
            approval=approval,
            idempotent=idempotent,
            read_only=True,
        )
