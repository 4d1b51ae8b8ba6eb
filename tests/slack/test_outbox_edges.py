"""The outbox at its edges: one message's rows go in order, an older update never overwrites a
newer one, Slack's `Retry-After` is honoured, a row a dead process was sending is taken back
once its lease ends, `response_url` is used only while Slack still takes it, and a row that
keeps failing is given up with its error kept, redacted.

Each test runs the outbox on a SQLite file and the Slack Web API double, with a clock moved by
hand: a retry is due when the test says so, nothing waits for time to pass."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
import sqlalchemy as sa
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.slack.notices import NOTICE
from bot.slack.outbox import Outbox
from bot.slack.steps import COMPLETE, StepDelivery
from bot.storage.store import deliveries, make_engine, metadata
from bot.surface import MessageRef
from commands.base import File
from tests.support import Clock
from tests.support.slack_api import BOT_TOKEN, Fault, SlackApiDouble, serve_slack_double

CHANNEL = "C0BILLING1"
START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
KEY = "approval:7"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[SlackApiDouble]:
    """One double for the module (it serves from its own thread): starting one per test would
    cost more than the tests, which mutation runs repeat thousands of times."""
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
def slack(served: SlackApiDouble) -> SlackApiDouble:
    """The module's double as new: no calls, messages, faults or switches from a test before."""
    fresh = SlackApiDouble(base_url=served.base_url)
    for field in dataclasses.fields(SlackApiDouble):
        setattr(served, field.name, getattr(fresh, field.name))
    return served


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


class Places:
    """Remembers where keyed posts landed, and knows cards posted before keys were kept."""

    def __init__(self, known: dict[str, MessageRef] | None = None, *, broken: bool = False):
        self.known = dict(known or {})
        self.landed: list[tuple[str, MessageRef]] = []
        self.broken = broken

    async def posted(self, key: str, ref: MessageRef) -> None:
        if self.broken:
            raise RuntimeError("the approvals table is away")
        self.landed.append((key, ref))

    async def locate(self, key: str) -> MessageRef | None:
        return self.known.get(key)


OutboxOf = Callable[..., Outbox]


@pytest.fixture
async def outbox_of(
    engine: AsyncEngine, slack: SlackApiDouble, clock: Clock
) -> AsyncIterator[OutboxOf]:
    made: list[Outbox] = []

    def make(**options: Any) -> Outbox:
        handlers = options.pop("retry_handlers", None)
        timeout = options.pop("timeout", 30)
        client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN, timeout=timeout)
        if handlers is not None:
            client.retry_handlers = handlers
        made.append(Outbox(options.pop("engine", engine), client, clock=clock, **options))
        return made[-1]

    yield make
    for outbox in made:
        await outbox.http.aclose()


@pytest.fixture
def outbox(outbox_of: OutboxOf) -> Outbox:
    return outbox_of()


async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        query = sa.select(deliveries).order_by(deliveries.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


def statuses(found: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(r["method"], r["status"], r["attempts"]) for r in found]


def texts(slack: SlackApiDouble, method: str) -> list[str]:
    return [str(c.params.get("text")) for c in slack.calls_to(method) if c.ok]


def utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


# --- one message's rows in order ----------------------------------------------------------------


async def test_a_post_that_lands_at_once_returns_where_to_its_writer(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    places = Places()
    outbox = outbox_of(places=places)
    ref = await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    [message] = slack.messages.values()
    assert ref == MessageRef(CHANNEL, message["ts"])
    assert places.landed == []  # its writer has the ref and records it itself
    [row] = await rows(engine)
    assert (row["status"], row["result_ts"], row["attempts"]) == ("done", message["ts"], 1)
    assert utc(row["done_at"]) == START and row["lease_until"] is None


async def test_a_keyed_post_that_lands_later_is_remembered(
    outbox_of: OutboxOf, slack: SlackApiDouble, clock: Clock
) -> None:
    places = Places()
    outbox = outbox_of(places=places)
    slack.inject("chat.postMessage", Fault(status=503), Fault(status=503))
    assert await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY) is None
    assert await outbox.post(CHANNEL, {"text": "no key"}) is None
    clock.advance(seconds=60)
    await outbox.flush()
    [(channel, ts), _] = slack.messages
    assert places.landed == [(KEY, MessageRef(channel, ts))]  # only keyed posts are remembered


async def test_a_keyed_post_is_written_once_and_a_second_post_of_it_says_where_it_is(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    # An end shown again (after a database cut) posts under the same key: nothing is written.
    ref = await outbox.post(CHANNEL, {"text": "Done"}, key=KEY)
    assert ref is not None
    assert await outbox.post(CHANNEL, {"text": "Done, again"}, key=KEY) == ref
    # A keyed post still waiting for Slack: the second post neither writes nor claims a place.
    slack.inject("chat.postMessage", Fault(status=503))
    assert await outbox.post(CHANNEL, {"text": "Late"}, key="approval:8") is None
    assert await outbox.post(CHANNEL, {"text": "Late, again"}, key="approval:8") is None
    assert [(r["key"], r["status"]) for r in await rows(engine)] == [
        (KEY, "done"),
        ("approval:8", "pending"),
    ]
    clock.advance(seconds=60)
    await outbox.flush()
    assert texts(slack, "chat.postMessage") == ["Done", "Late"]


async def test_only_a_post_row_counts_as_its_message_s_post(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    # A reminder queued about a card whose post is not written yet does not stand for the post.
    await outbox.notice(CHANNEL, {"message": {"text": "Reminder"}, "thread": True}, about=KEY)
    ref = await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    assert ref is not None and slack.message(CHANNEL, ref.ts)["text"] == "Approval needed"
    assert [(r["method"], r["status"]) for r in await rows(engine)] == [
        (NOTICE, "done"),  # no thread to go to: dropped, logged
        ("chat.postMessage", "done"),
    ]


async def test_a_row_queued_by_a_caller_s_own_transaction_is_sent_as_written(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    # Workflow step completions are written this way, beside the run they complete.
    post = outbox.queued("chat.postMessage", CHANNEL, {"text": "Step done"})
    upload = outbox.queued(
        "file", CHANNEL, {"filename": "steps.csv", "title": "Steps"}, content=b"id,state\n1,done\n"
    )
    async with engine.begin() as conn:
        await conn.execute(deliveries.insert(), [post, upload])
    await outbox.flush()
    assert [
        (c.params["channel"], c.params["text"]) for c in slack.calls_to("chat.postMessage")
    ] == [(CHANNEL, "Step done")]
    assert [(f.filename, f.data) for f in slack.shared_files()] == [
        ("steps.csv", b"id,state\n1,done\n")
    ]
    assert [r["status"] for r in await rows(engine)] == ["done", "done"]


async def test_updates_wait_for_their_late_post_and_only_the_newest_is_shown(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=429, retry_after=5))
    assert await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY) is None
    await outbox.update(CHANNEL, {"text": "running…"}, key=KEY)
    await outbox.update(CHANNEL, {"text": "done"}, key=KEY)
    assert slack.calls_to("chat.update") == []  # nothing to update yet
    waiting = await rows(engine)
    assert statuses(waiting) == [
        ("chat.postMessage", "pending", 1),
        ("chat.update", "pending", 0),  # waiting its turn is not an attempt
        ("chat.update", "pending", 0),
    ]
    assert [utc(r["next_at"]) for r in waiting] == [
        START + timedelta(seconds=5),  # Slack's Retry-After
        START + timedelta(seconds=1),  # asks again in a second
        START + timedelta(seconds=1),
    ]
    clock.advance(seconds=5)
    await outbox.flush()
    [(channel, ts)] = slack.messages
    assert slack.message(channel, ts)["text"] == "done"
    assert texts(slack, "chat.update") == ["done"]  # "running…" would only step back
    assert statuses(await rows(engine)) == [
        ("chat.postMessage", "done", 2),
        ("chat.update", "superseded", 1),
        ("chat.update", "done", 1),
    ]


async def test_an_older_update_retried_after_a_newer_one_arrived_is_dropped(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    slack.inject("chat.update", Fault(status=503))
    await outbox.update(CHANNEL, {"text": "running…"}, key=KEY)
    await outbox.update(CHANNEL, {"text": "done"}, key=KEY)  # waits behind the failed one
    clock.advance(seconds=1)
    await outbox.flush()
    [(channel, ts)] = slack.messages
    assert slack.message(channel, ts)["text"] == "done"
    assert texts(slack, "chat.update") == ["done"]
    assert [r["status"] for r in await rows(engine)] == ["done", "superseded", "done"]


async def test_an_update_without_a_key_or_of_another_message_is_never_held_back(
    outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    first = await outbox.post(CHANNEL, {"text": "one"}, key="approval:1")
    assert first is not None
    slack.inject("chat.postMessage", Fault(status=429, retry_after=5))
    await outbox.post(CHANNEL, {"text": "two"}, key="approval:2")
    await outbox.update(CHANNEL, {"text": "one, changed"}, key="approval:1")
    await outbox.update(CHANNEL, {"text": "one, by ts"}, ts=first.ts)
    assert texts(slack, "chat.update") == ["one, changed", "one, by ts"]
    assert slack.message(CHANNEL, first.ts)["text"] == "one, by ts"


async def test_a_post_s_files_follow_it_in_order_once_it_lands(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=429, retry_after=3))
    files = [
        File(filename="march.pdf", content=b"%PDF-1", title="March"),
        File(filename="april.pdf", content=b"%PDF-2", title="April"),
    ]
    assert await outbox.post(CHANNEL, {"text": "Invoices"}, files=files) is None
    assert slack.shared_files() == [] and slack.calls_to("files.getUploadURLExternal") == []
    clock.advance(seconds=3)
    await outbox.flush()
    methods = [c.method for c in slack.calls if c.ok and c.method != "upload"]
    assert methods[:2] == ["chat.postMessage", "files.getUploadURLExternal"]
    shared = slack.shared_files()
    assert [(f.filename, f.title, f.data) for f in shared] == [
        ("march.pdf", "March", b"%PDF-1"),
        ("april.pdf", "April", b"%PDF-2"),
    ]
    assert all(f.channels == [CHANNEL] for f in shared)
    found = await rows(engine)
    assert len({r["key"] for r in found}) == 1 and found[0]["key"]
    # What was shown is Slack's now: the bodies are not kept.
    assert [(r["status"], r["params"], r["content"]) for r in found] == [("done", "{}", None)] * 3


async def test_a_notice_waits_for_its_card_but_never_holds_the_card_s_update_back(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=429, retry_after=5))
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    await outbox.notice(CHANNEL, {"text": "Reminder", "thread": True}, about=KEY)
    [_, notice] = await rows(engine)
    assert notice["method"] == NOTICE and notice["attempts"] == 0
    assert utc(notice["next_at"]) == START + timedelta(seconds=10)  # its card wakes it
    await outbox.update(CHANNEL, {"text": "Approved"}, key=KEY)
    clock.advance(seconds=5)
    slack.inject("chat.postMessage", Fault(status=0), Fault(status=429, retry_after=30))
    await outbox.flush()  # the card lands; its notice is rate limited
    [(channel, ts)] = slack.messages
    assert slack.message(channel, ts)["text"] == "Approved"
    assert [(r["method"], r["status"]) for r in await rows(engine)] == [
        ("chat.postMessage", "done"),
        (NOTICE, "pending"),
        ("chat.update", "done"),
    ]


async def test_an_update_of_a_message_never_posted_here_sends_nothing(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="bot.slack.outbox")
    places = Places({"approval:9": MessageRef(CHANNEL, "1690000000.000100")})
    outbox = outbox_of(places=places)
    slack.not_in_channel.add(CHANNEL)
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY, user="U1")
    await outbox.update(CHANNEL, {"text": "Approved"}, key=KEY)  # it was shown privately
    await outbox.update(CHANNEL, {"text": "Approved"}, key="approval:nowhere")
    assert slack.calls_to("chat.update") == []
    assert [r["status"] for r in await rows(engine)][-2:] == ["done", "done"]
    assert places.landed == []
    assert "delivery 5: no message to update for approval:nowhere" in caplog.messages


async def test_a_card_posted_before_keys_were_kept_is_updated_where_it_is(
    outbox_of: OutboxOf, slack: SlackApiDouble
) -> None:
    ts = slack.add_message(CHANNEL, {"text": "Approval needed"})
    outbox = outbox_of(places=Places({"approval:3": MessageRef(CHANNEL, ts)}))
    await outbox.update(CHANNEL, {"text": "Approved"}, key="approval:3")
    await outbox.notice(
        CHANNEL, {"message": {"text": "Reminder"}, "thread": True}, about="approval:3"
    )
    assert slack.message(CHANNEL, ts)["text"] == "Approved"
    [reply] = slack.calls_to("chat.postMessage")
    assert (reply.params["text"], reply.params["thread_ts"]) == ("Reminder", ts)  # in its thread


async def test_an_update_goes_to_the_newest_post_of_its_key(
    outbox: Outbox, slack: SlackApiDouble
) -> None:
    await outbox.post(CHANNEL, {"text": "first"}, key=KEY)
    second = await outbox.post(CHANNEL, {"text": "again"}, key=KEY)
    assert second is not None
    await outbox.update(CHANNEL, {"text": "Approved"}, key=KEY)
    assert slack.message(CHANNEL, second.ts)["text"] == "Approved"


async def test_where_a_post_landed_is_sent_even_when_recording_it_fails(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine, caplog: Any
) -> None:
    outbox = outbox_of(places=Places(broken=True))
    slack.inject("chat.postMessage", Fault(status=503))
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)
    await outbox.update(CHANNEL, {"text": "Approved"}, key=KEY)
    outbox.clock.advance(seconds=1)  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR, logger="bot.slack.outbox"):
        await outbox.flush()
    [(channel, ts)] = slack.messages
    assert slack.message(channel, ts)["text"] == "Approved"
    assert f"recording where {KEY} landed failed" in caplog.messages


# --- retries: Retry-After, backoff, giving up -----------------------------------------------------


async def test_retry_after_is_honoured_to_the_second(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock, caplog: Any
) -> None:
    slack.inject("chat.postMessage", Fault(status=429, retry_after=7))
    with caplog.at_level(logging.INFO, logger="bot.slack.outbox"):
        await outbox.post(CHANNEL, {"text": "Result"})
    assert (
        f"delivery 1 (chat.postMessage to {CHANNEL}) failed with ratelimited; retrying in 7 s"
        in caplog.messages
    )
    [row] = await rows(engine)
    assert (row["status"], row["error"], row["lease_until"]) == ("pending", "ratelimited", None)
    clock.advance(seconds=6, microseconds=999999)
    await outbox.flush()
    assert slack.messages == {}
    clock.advance(microseconds=1)
    await outbox.flush()
    assert texts(slack, "chat.postMessage") == ["Result"]


async def test_without_retry_after_the_waits_double(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=503), Fault(status=502), Fault(status=500))
    await outbox.post(CHANNEL, {"text": "Result"})
    waits = []
    for _ in range(3):
        [row] = await rows(engine)
        waits.append(utc(row["next_at"]) - clock.now)  # type: ignore[operator]
        clock.now = utc(row["next_at"])  # type: ignore[assignment]
        await outbox.flush()
    assert waits == [timedelta(seconds=s) for s in (1, 2, 4)]
    assert texts(slack, "chat.postMessage") == ["Result"]


async def test_a_row_is_given_up_after_its_attempts_with_the_error_kept_redacted(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock, caplog: Any
) -> None:
    outbox = outbox_of(max_attempts=3)
    slack.inject("chat.postMessage", *[Fault(status=503)] * 3)
    await outbox.post(CHANNEL, {"text": "Result"})
    with caplog.at_level(logging.INFO, logger="bot.slack.outbox"):
        for _ in range(4):
            clock.advance(seconds=300)
            await outbox.flush()
    assert len(slack.calls_to("chat.postMessage")) == 3
    [row] = await rows(engine)
    assert (row["status"], row["attempts"], row["error"]) == ("dead", 3, "HTTP 503")
    assert utc(row["done_at"]) == START + timedelta(seconds=600)
    assert (
        f"delivery 1 (chat.postMessage to {CHANNEL}) given up after 3 attempts: HTTP 503"
        in caplog.messages
    )
    secret = "xoxb-1234567890-abcdefghij"
    slack.fail_next("chat.postMessage", f"invalid_auth {secret} " + "x" * 600)
    await outbox.post(CHANNEL, {"text": "Another"})
    [_, dead] = await rows(engine)
    assert dead["status"] == "dead" and dead["attempts"] == 1  # not worth another try
    assert secret not in dead["error"] and dead["error"].startswith("invalid_auth ")
    assert len(dead["error"]) == 500
    clock.advance(seconds=3600)  # long past the lease it was last sent under
    assert await outbox.attempt(dead["id"]) is None  # given up stays given up
    assert len(slack.calls_to("chat.postMessage")) == 4


async def test_twelve_attempts_are_made_by_default(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    slack.inject("chat.postMessage", *[Fault(status=503)] * 13)
    await outbox.post(CHANNEL, {"text": "Result"})
    for _ in range(12):
        clock.advance(seconds=300)
        await outbox.flush()
    assert len(slack.calls_to("chat.postMessage")) == 12
    assert [r["status"] for r in await rows(engine)] == ["dead"]


async def test_a_failing_call_is_not_retried_inside_the_call(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    own = AsyncConnectionErrorRetryHandler(max_retry_count=0)
    handlers = [
        AsyncRateLimitErrorRetryHandler(max_retry_count=1),
        AsyncServerErrorRetryHandler(max_retry_count=1),
        own,
    ]
    outbox = outbox_of(retry_handlers=handlers)
    # Calls outside the rows (views.open, …) keep every handler; rows keep the app's others.
    assert outbox.client.retry_handlers == handlers
    assert outbox.sender.retry_handlers == [own]
    slack.inject("chat.postMessage", Fault(status=429, retry_after=0))
    assert await outbox.post(CHANNEL, {"text": "Result"}) is None  # it waits in the table
    slack.inject("chat.update", Fault(status=500))
    await outbox.update(CHANNEL, {"text": "x"}, ts="1.1")
    assert len(slack.calls) == 2
    assert [r["status"] for r in await rows(engine)] == ["pending", "pending"]


async def test_the_worker_sends_a_retry_when_it_is_due(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    worker = asyncio.create_task(outbox.run(every=3600))
    try:
        slack.inject("chat.postMessage", Fault(status=429, retry_after=0))
        await outbox.post(CHANNEL, {"text": "Result"})
        await slack.wait_for("chat.postMessage", 2)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert texts(slack, "chat.postMessage") == ["Result"]


async def test_the_worker_wakes_for_a_retry_instead_of_sleeping_to_its_next_pass(
    outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    """A row retried after Retry-After: 1 is not due when anything else wakes the worker (the
    post itself); only the wake-up set for its time (a real second) sends it, long before the
    worker's hour-long pass."""
    worker = asyncio.create_task(outbox.run(every=3600))
    try:
        slack.inject("chat.postMessage", Fault(status=429, retry_after=1))
        await outbox.post(CHANNEL, {"text": "Result"})
        clock.advance(seconds=1)  # due by the outbox's clock; nothing has woken the worker
        await slack.wait_for("chat.postMessage", 2, timeout=15)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert texts(slack, "chat.postMessage") == ["Result"]


async def test_the_worker_outlives_a_database_that_is_away(
    outbox_of: OutboxOf, tmp_path: Path, caplog: Any
) -> None:
    away = outbox_of(engine=make_engine(f"sqlite:///{tmp_path / 'missing' / 'none.db'}"))
    with caplog.at_level(logging.WARNING, logger="bot.slack.outbox"):
        worker = asyncio.create_task(away.run(every=0.01))
        try:
            while len(caplog.messages) < 2:
                await asyncio.sleep(0.01)
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
    assert caplog.messages[:2] == ["delivery pass failed (OperationalError); trying again"] * 2


class Reports:
    """What the worker reports to the database watcher (`bot.ops.database`)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @property
    def down(self) -> bool:
        return any(what == "failed" for what, _ in self.seen)

    def failed(self, exc: BaseException, *, where: str) -> bool:
        self.seen.append((f"failed: {type(exc).__name__}", where))
        return True  # the watcher logs the outage once; the worker says nothing more

    async def ok(self, *, where: str) -> None:
        self.seen.append(("ok", where))


async def test_the_worker_reports_its_rounds_to_the_database_watcher(
    outbox_of: OutboxOf, tmp_path: Path, caplog: Any
) -> None:
    for engine, report in [
        (make_engine(f"sqlite:///{tmp_path / 'missing' / 'none.db'}"), "failed: OperationalError"),
        (None, "ok"),
    ]:
        reports = Reports()
        options = {"engine": engine} if engine is not None else {}
        worker_outbox = outbox_of(health=reports, **options)
        with caplog.at_level(logging.WARNING, logger="bot.slack.outbox"):
            worker = asyncio.create_task(worker_outbox.run(every=0.01))
            try:
                while len(reports.seen) < 2:
                    await asyncio.sleep(0.01)
            finally:
                worker.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await worker
        assert reports.seen[:2] == [(report, "the outbox worker")] * 2
    assert caplog.messages == []  # an outage the watcher took is not logged again here


class Steps:
    """Workflow step completions as the outbox hands them over (`bot.slack.steps`)."""

    def __init__(self) -> None:
        self.handed: list[tuple[Any, ...]] = []

    async def deliver(
        self,
        client: AsyncWebClient,
        channel: str,
        params: dict[str, Any],
        content: bytes | None,
        notice: Callable[..., Any],
    ) -> None:
        self.handed.append((client, channel, params, content, notice))


async def test_a_step_completion_is_handed_to_the_steps_with_what_sending_it_needs(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    steps = Steps()
    outbox = outbox_of(steps=cast(StepDelivery, steps))
    params = {"function_execution_id": "Fx1", "outputs": {"closing_balance": "242.08793"}}
    queued = outbox.queued(COMPLETE, CHANNEL, params, content=b"id,state\n")
    async with engine.begin() as conn:
        await conn.execute(deliveries.insert(), [queued])
    await outbox.post(CHANNEL, {"text": "Result"})  # anything else is sent as before
    await outbox.flush()
    assert steps.handed == [(outbox.sender, CHANNEL, params, b"id,state\n", outbox.notice)]
    assert texts(slack, "chat.postMessage") == ["Result"]
    assert [r["status"] for r in await rows(engine)] == ["done", "done"]


# --- a dead process's rows ---------------------------------------------------------------------


async def test_a_row_a_dead_process_was_sending_is_taken_back_when_its_lease_ends(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    dead, next_process = outbox_of(), outbox_of()
    slack.inject("chat.postMessage", Fault(status=503, stall=0.5))
    sending = asyncio.create_task(dead.post(CHANNEL, {"text": "Result"}))
    while slack.faults["chat.postMessage"]:  # Slack has the call: the process dies now
        await asyncio.sleep(0.01)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    [row] = await rows(engine)
    assert (row["status"], utc(row["lease_until"])) == ("sending", START + timedelta(seconds=120))
    assert await next_process.attempt(row["id"]) is None  # another replica asks: still held
    clock.advance(seconds=120)
    await next_process.flush()
    assert await next_process.attempt(row["id"]) is None  # to the microsecond
    assert await next_process.backlog() == (1, 120.0)
    assert texts(slack, "chat.postMessage") == []  # the lease still holds
    clock.advance(microseconds=1)
    await next_process.flush()
    await next_process.flush()
    assert texts(slack, "chat.postMessage") == ["Result"]
    assert statuses(await rows(engine)) == [("chat.postMessage", "done", 2)]
    # The dead process's call is answered (late, 503) before the double serves another test.
    await slack.wait_for("chat.postMessage", 2)


async def test_the_backlog_counts_waiting_rows_and_the_age_of_the_oldest(
    outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    assert await outbox.backlog() == (0, None)
    slack.inject("chat.postMessage", *[Fault(status=429, retry_after=60)] * 2)
    await outbox.post(CHANNEL, {"text": "one"})
    assert await outbox.backlog() == (1, 0.0)
    clock.advance(seconds=30)
    await outbox.post(CHANNEL, {"text": "two"})
    await outbox.post(CHANNEL, {"text": "three"})  # lands at once
    assert await outbox.backlog() == (2, 30.0)
    clock.advance(seconds=60)
    await outbox.flush()
    assert await outbox.backlog() == (0, None)
    assert texts(slack, "chat.postMessage") == ["three", "one", "two"]  # oldest first


# --- private notes and response_url --------------------------------------------------------------


async def test_a_private_note_goes_through_response_url_while_slack_takes_it(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    url = slack.response_url("r1")
    for n in range(6):
        await outbox.ephemeral(CHANNEL, "U1", {"text": f"note {n}"}, response_url=url)
    used = slack.calls_to("response_url")
    assert [c.params for c in used[:5]] == [
        {"response_type": "ephemeral", "replace_original": False, "text": f"note {n}"}
        for n in range(5)
    ]
    assert [c.status for c in used] == [200] * 5 + [404]  # Slack takes five
    assert [(e["user"], e["text"]) for e in slack.ephemerals] == [("U1", "note 5")]
    assert [r["response_url"] for r in await rows(engine)] == [None] * 6  # not kept


@pytest.mark.parametrize(("status", "through"), [(299, "response_url"), (300, "web api")])
async def test_only_a_2xx_answer_from_response_url_counts_as_delivered(
    outbox: Outbox, slack: SlackApiDouble, status: int, through: str, caplog: Any
) -> None:
    slack.inject("response_url", Fault(status=status))
    with caplog.at_level(logging.INFO, logger="bot.slack.outbox"):
        await outbox.ephemeral(
            CHANNEL, "U1", {"text": "note"}, response_url=slack.response_url("r")
        )
    assert len(slack.ephemerals) == (1 if through == "web api" else 0)
    if through == "web api":
        assert f"response_url answered {status}; using the Web API" in caplog.messages


async def test_a_note_retried_after_a_failure_uses_the_web_api_only(
    outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    slack.inject("response_url", Fault(status=500))
    slack.inject("chat.postEphemeral", Fault(status=429, retry_after=2))
    await outbox.ephemeral(CHANNEL, "U1", {"text": "note"}, response_url=slack.response_url("r"))
    assert slack.ephemerals == []
    clock.advance(seconds=2)
    await outbox.flush()
    assert [e["text"] for e in slack.ephemerals] == ["note"]
    assert len(slack.calls_to("response_url")) == 1  # it may have been used: not again


async def test_a_response_url_that_cannot_be_reached_falls_back_to_the_web_api(
    outbox: Outbox, slack: SlackApiDouble, caplog: Any
) -> None:
    unreachable = "http://127.0.0.1:9/response/r"  # the discard port: nothing listens
    with caplog.at_level(logging.INFO, logger="bot.slack.outbox"):
        await outbox.ephemeral(CHANNEL, "U1", {"text": "note"}, response_url=unreachable)
    assert [e["text"] for e in slack.ephemerals] == ["note"]
    assert "response_url failed (ConnectError); using the Web API" in caplog.messages


async def note_left_behind(engine: AsyncEngine, created: datetime, url: str) -> None:
    """A note an earlier process wrote and never tried (it stopped right after)."""
    async with engine.begin() as conn:
        await conn.execute(
            deliveries.insert().values(
                method="ephemeral",
                channel=CHANNEL,
                user_id="U1",
                params='{"text": "late note"}',
                response_url=url,
                status="pending",
                attempts=0,
                next_at=created,
                created_at=created,
            )
        )


@pytest.mark.parametrize(("minutes", "through"), [(29.99, "response_url"), (30, "web api")])
async def test_response_url_is_used_for_thirty_minutes_only(
    outbox: Outbox,
    slack: SlackApiDouble,
    engine: AsyncEngine,
    clock: Clock,
    minutes: float,
    through: str,
) -> None:
    await note_left_behind(engine, START, slack.response_url("r"))
    clock.advance(minutes=minutes)
    await outbox.flush()
    used = [c.params.get("text") for c in slack.calls_to("response_url")]
    shown = [e["text"] for e in slack.ephemerals]
    expected = (["late note"], []) if through == "response_url" else ([], ["late note"])
    assert (used, shown) == expected


async def test_a_note_to_nobody_is_dropped_quietly(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    slack.inject("response_url", Fault(status=500))
    await outbox.ephemeral(CHANNEL, "", {"text": "note"}, response_url=slack.response_url("r"))
    await outbox.ephemeral(CHANNEL, "", {"text": "note"})
    assert slack.calls_to("chat.postEphemeral") == []
    assert [r["status"] for r in await rows(engine)] == ["done", "done"]


# --- a channel the bot is not in ---------------------------------------------------------------


NOT_MEMBER = (
    "I am not a member of this channel, so only you see this. Invite me with "
    "`/invite @billing-bot` so results, approvals and files can be posted here."
)


async def test_a_post_where_the_bot_is_not_a_member_is_shown_to_the_requester(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    slack.not_in_channel.add(CHANNEL)
    url = slack.response_url("r")
    metadata_ = {"event_type": "billing_request", "event_payload": {"id": 1}}
    ref = await outbox.post(
        CHANNEL, {"text": "Result", "metadata": metadata_}, user="U1", response_url=url
    )
    assert ref is None
    assert [c.params for c in slack.calls_to("response_url")] == [
        {"response_type": "ephemeral", "replace_original": False, "text": "Result"},
        {
            "response_type": "ephemeral",
            "replace_original": False,
            "text": NOT_MEMBER,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": NOT_MEMBER}}],
        },
    ]
    assert [r["status"] for r in await rows(engine)] == ["done", "done", "done"]


async def test_a_file_where_the_bot_is_not_a_member_is_explained(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine
) -> None:
    slack.fail_next("files.completeUploadExternal", "not_in_channel")
    url = slack.response_url("r")
    files = [File(filename="may.pdf", content=b"%PDF", title="May")]
    ref = await outbox.post(CHANNEL, {"text": "Invoice"}, user="U1", response_url=url, files=files)
    assert ref is not None  # the message landed; its file could not follow
    note = (
        "I could not post `may.pdf` because I am not a member of this channel. Invite me with "
        "`/invite @billing-bot`, then run the command again."
    )
    assert [c.params.get("text") for c in slack.calls_to("response_url")] == [note]
    assert slack.shared_files() == []
    assert [r["status"] for r in await rows(engine)] == ["done", "done", "done"]


async def test_without_response_url_the_requester_is_addressed_through_the_web_api(
    outbox: Outbox, slack: SlackApiDouble
) -> None:
    slack.not_in_channel.add(CHANNEL)
    await outbox.post(CHANNEL, {"text": "Result"}, user="U1")
    calls = slack.calls_to("chat.postEphemeral")
    assert [(c.params.get("user"), c.params.get("text")) for c in calls] == [
        ("U1", "Result"),
        ("U1", NOT_MEMBER),
    ]


async def test_nobody_to_tell_means_nothing_is_sent(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, caplog: Any
) -> None:
    slack.not_in_channel.add(CHANNEL)
    with caplog.at_level(logging.WARNING, logger="bot.slack.outbox"):
        assert await outbox.post(CHANNEL, {"text": "Scheduled report"}) is None
    assert slack.ephemerals == [] and slack.calls_to("response_url") == []
    assert caplog.messages == [f"cannot post in {CHANNEL} (not a member); nobody to tell"]


# --- more than one message, more than one replica ----------------------------------------------


async def test_a_retry_is_not_sent_early_even_when_a_replica_asks_for_it(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    slack.inject("chat.postMessage", Fault(status=429, retry_after=5))
    await outbox.post(CHANNEL, {"text": "Result"})
    [row] = await rows(engine)
    clock.advance(seconds=4)
    assert await outbox.attempt(row["id"]) is None  # listed by another replica's pass
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_another_message_s_retry_keeps_its_own_retry_after(
    outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    slack.inject(
        "chat.postMessage", Fault(status=429, retry_after=5), Fault(status=429, retry_after=30)
    )
    await outbox.post(CHANNEL, {"text": "card"}, key=KEY)
    await outbox.post(CHANNEL, {"text": "other"}, key="approval:8")
    clock.advance(seconds=5)
    await outbox.flush()  # the card lands; the other message still has 25 s to wait
    assert texts(slack, "chat.postMessage") == ["card"]
    clock.advance(seconds=25)
    await outbox.flush()
    assert texts(slack, "chat.postMessage") == ["card", "other"]


async def test_rows_woken_by_their_message_are_its_own_and_newer_never_a_waiting_retry(
    outbox: Outbox, slack: SlackApiDouble, engine: AsyncEngine, clock: Clock
) -> None:
    """When a row goes, only the rows of the same message written after it are woken (their
    turn has come, whatever their next_at); a rate-limited notice of that message and another
    message's retry keep their Retry-After."""
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=KEY)  # 1: lands
    slack.inject("chat.postMessage", Fault(status=429, retry_after=60))
    notice = {"message": {"text": "Approvers told"}, "thread": True}
    await outbox.notice(CHANNEL, notice, about=KEY)  # 2: rate limited
    slack.inject("chat.update", Fault(status=503))
    await outbox.update(CHANNEL, {"text": "Approved"}, key=KEY)  # 3: fails, retried in 1 s
    await outbox.update(CHANNEL, {"text": "Running"}, key=KEY)  # 4: waits behind 3
    slack.inject("chat.postMessage", Fault(status=429, retry_after=60))
    await outbox.post(CHANNEL, {"text": "Another result"}, key="approval:8")  # 5: rate limited
    clock.advance(seconds=5)
    await outbox.flush()  # 3 is superseded by 4, which it wakes
    assert [r["status"] for r in await rows(engine)] == [
        "done",
        "pending",
        "superseded",
        "done",
        "pending",
    ]
    assert texts(slack, "chat.postMessage") == ["Approval needed"]
    clock.advance(seconds=60)
    await outbox.flush()
    assert sorted(texts(slack, "chat.postMessage")) == [
        "Another result",
        "Approval needed",
        "Approvers told",
    ]


async def test_a_retried_update_is_shown_whatever_else_happened_meanwhile(
    outbox: Outbox, slack: SlackApiDouble, clock: Clock
) -> None:
    card = await outbox.post(CHANNEL, {"text": "card"}, key=KEY)
    other = await outbox.post(CHANNEL, {"text": "other"}, key="approval:8")
    assert card is not None and other is not None
    slack.inject("chat.update", Fault(status=503))
    await outbox.update(CHANNEL, {"text": "Approved"}, key=KEY)
    await outbox.update(CHANNEL, {"text": "other, changed"}, key="approval:8")  # another message
    await outbox.notice(CHANNEL, {"message": {"text": "Reminder"}, "thread": True}, about=KEY)
    clock.advance(seconds=1)
    await outbox.flush()
    assert slack.message(CHANNEL, card.ts)["text"] == "Approved"
    assert slack.message(CHANNEL, other.ts)["text"] == "other, changed"
    [reminder] = [m for m in slack.messages.values() if m["text"] == "Reminder"]
    assert reminder["thread_ts"] == card.ts  # it waited for the update, then followed


async def test_one_pass_sends_at_most_two_hundred_rows(outbox: Outbox, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            deliveries.insert(),
            [
                {
                    "method": "ephemeral",
                    "channel": CHANNEL,
                    "user_id": "",  # to nobody: nothing to send, so the pass stays cheap
                    "params": "{}",
                    "status": "pending",
                    "attempts": 0,
                    "next_at": START,
                    "created_at": START,
                }
            ]
            * 201,
        )
    await outbox.flush()
    assert [r["status"] for r in await rows(engine)].count("pending") == 1
    await outbox.flush()
    assert [r["status"] for r in await rows(engine)].count("pending") == 0


async def test_a_call_slack_does_not_answer_in_time_is_tried_again_later(
    outbox_of: OutboxOf, slack: SlackApiDouble, engine: AsyncEngine, caplog: Any
) -> None:
    outbox = outbox_of(timeout=0.3)
    slack.inject("chat.postMessage", Fault(status=0, stall=1.0))
    with caplog.at_level(logging.WARNING, logger="bot.slack.outbox"):
        assert await outbox.post(CHANNEL, {"text": "Result"}) is None
    [row] = await rows(engine)
    assert (row["status"], row["error"]) == ("pending", "TimeoutError")
    assert caplog.messages == ["delivery 1 (chat.postMessage) raised TimeoutError"]
    await slack.wait_for("chat.postMessage")  # the late answer lands in this test, not the next


async def test_a_file_is_sent_as_it_is_even_when_empty(
    outbox: Outbox, slack: SlackApiDouble
) -> None:
    await outbox.post(
        CHANNEL, {"text": "Export"}, files=[File(filename="none.csv", content=b"", title="None")]
    )
    assert [(f.filename, f.data) for f in slack.shared_files()] == [("none.csv", b"")]


LATER = START + timedelta(hours=1)


@pytest.mark.parametrize(
    "others",
    [
        {"status": "done", "next_at": START},
        {"status": "pending", "next_at": LATER},  # retries not due yet
        {"status": "sending", "next_at": START, "lease_until": LATER},  # held by a live process
        {"status": "sending", "next_at": START, "lease_until": START},  # held to this instant
        {"status": "dead", "next_at": START, "lease_until": START - timedelta(seconds=1)},
    ],
    ids=["done", "not-due", "leased", "lease-ends-now", "given-up"],
)
async def test_rows_that_cannot_be_sent_never_crowd_a_due_one_out_of_a_pass(
    outbox: Outbox, engine: AsyncEngine, others: dict[str, Any]
) -> None:
    row = {
        "method": "ephemeral",
        "channel": CHANNEL,
        "user_id": "",  # to nobody: nothing to send, so the pass stays cheap
        "params": "{}",
        "attempts": 1,
        "created_at": START,
    }
    async with engine.begin() as conn:
        await conn.execute(deliveries.insert(), [{**row, **others}] * 200)
        await conn.execute(deliveries.insert(), [{**row, "status": "pending", "next_at": START}])
    await outbox.flush()
    assert (await rows(engine))[-1]["status"] == "done"
