"""The listeners with the database away: a request that fails because the database cannot
be used is told so through the direct path (never the outbox, which is in the database), and
while the database is known to be down nothing is handed in: the slash command hears so in its
ack, the click through its response_url, the form under its first input."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages, reached
from bot.errors import logged_reference
from bot.ops.database import DatabaseHealth
from bot.runtime import Runtime
from bot.slack.direct import DirectNotes
from bot.slack.listeners import AfterAck, ButtonClick, FormSubmitted, SlashCommand
from bot.slack.outbox import Outbox
from bot.slack.surface import SlackSurface
from bot.storage import store
from bot.surface import Surface
from commands.base import Command
from tests.support.outage import FullDisk
from tests.support.slack_api import SlackApiDouble, serve_slack_double


@dataclass
class Ack:
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@dataclass
class Intake:
    """The dispatcher's entry points: each records it was handed something, then fails as
    `fails` says (the database's own error, from a real full disk)."""

    fails: BaseException | None = None
    handed: list[str] = field(default_factory=list)
    command: Command[Any, Any] | None = None
    reaches_provider: bool = False

    async def run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        self.handed.append(line)
        if self.reaches_provider:
            reached.mark()  # as the executor does just before a handler runs
        if self.fails is not None:
            raise self.fails
        return True

    async def run_values(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> dict[str, str] | None:
        self.handed.append(f"form {dict(values)}")
        if self.fails is not None:
            raise self.fails
        return None

    async def check_form(
        self, path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]:
        return self.command, {}


@pytest.fixture
def disk_full(tmp_path: Path) -> BaseException:
    """The error SQLAlchemy raises when SQLite finds its disk full (through its synchronous
    sqlite3 driver: the same error, and no driver thread outliving the test's loop)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    disk = FullDisk()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x BLOB)"))
        disk.full = True
        with disk.installed(), pytest.raises(sa.exc.OperationalError) as caught:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (zeroblob(100000))"))
    finally:
        engine.dispose()
    return caught.value


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@dataclass
class Listening:
    health: DatabaseHealth
    after_ack: AfterAck
    outbox: Outbox
    slack: SlackApiDouble

    async def settled(self) -> None:
        await asyncio.gather(*self.after_ack.running)

    async def outbox_rows(self) -> int:
        async with self.outbox.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(store.deliveries)
            return int((await conn.execute(query)).scalar_one())


@pytest.fixture
async def listening(runtime: Runtime, slack: SlackApiDouble) -> AsyncIterator[Listening]:
    async def still_down() -> str | None:
        return "not writable"

    client = AsyncWebClient(base_url=slack.url, token=slack.bot_token)
    outbox = Outbox(runtime.engine, client)
    async with httpx.AsyncClient(timeout=5) as http:
        health = DatabaseHealth(still_down)
        after_ack = AfterAck(health=health, direct=DirectNotes(client, http, pause=0.0))
        yield Listening(health, after_ack, outbox, slack)


def slash_body(slack: SlackApiDouble) -> dict[str, Any]:
    return {
        "command": "/voipcloud",
        "text": "move-funds 10023 5.00 March top-up",
        "user_id": "U1",
        "channel_id": "C1",
        "response_url": slack.response_url("slash"),
    }


def notes(slack: SlackApiDouble, name: str) -> list[str]:
    return [str(c.params.get("text")) for c in slack.calls_to("response_url") if c.name == name]


async def test_a_command_that_finds_the_disk_full_is_told_without_the_outbox(
    listening: Listening, disk_full: BaseException
) -> None:
    intake = Intake(fails=disk_full)
    ack = Ack()

    await SlashCommand(intake, listening.outbox, listening.after_ack)(
        ack, slash_body(listening.slack)
    )
    await listening.settled()

    assert ack.calls == [{}]
    assert notes(listening.slack, "slash") == [messages.DATABASE_DOWN]
    assert await listening.outbox_rows() == 0  # not a row of the outbox
    assert listening.health.down and "database or disk is full" in str(listening.health.reason)


async def test_a_command_that_reached_its_provider_is_not_told_nothing_was_done(
    listening: Listening, disk_full: BaseException
) -> None:
    """The database failed after the provider had the request: it may have acted."""
    intake = Intake(fails=disk_full, reaches_provider=True)

    await SlashCommand(intake, listening.outbox, listening.after_ack)(
        Ack(), slash_body(listening.slack)
    )
    await listening.settled()

    assert notes(listening.slack, "slash") == [messages.DATABASE_DOWN_AFTER_PROVIDER]


async def test_while_down_a_slash_command_is_told_in_its_ack_and_not_handed_in(
    listening: Listening, disk_full: BaseException
) -> None:
    listening.health.failed(disk_full, where="a Slack request")
    intake = Intake()
    ack = Ack()

    await SlashCommand(intake, listening.outbox, listening.after_ack)(
        ack, slash_body(listening.slack)
    )
    await listening.settled()

    assert ack.calls == [{"text": messages.DATABASE_DOWN, "response_type": "ephemeral"}]
    assert intake.handed == [] and listening.slack.calls == []


async def test_a_request_while_known_down_checks_whether_the_database_is_back(
    listening: Listening, disk_full: BaseException
) -> None:
    """Known down, a request runs the write probe before its ack: once the probe passes, the
    request is handed in, whether or not a background loop has noticed yet."""
    answers = ["not writable", None]

    async def probe() -> str | None:
        return answers.pop(0)

    health = DatabaseHealth(probe)
    after_ack = AfterAck(health=health, direct=listening.after_ack.direct)
    health.failed(disk_full, where="the outbox worker")
    intake = Intake()
    listener = SlashCommand(intake, listening.outbox, after_ack)

    acks = []
    for _ in range(3):
        ack = Ack()
        await listener(ack, slash_body(listening.slack))
        await asyncio.gather(*after_ack.running)
        acks.append(ack.calls)

    refused = [{"text": messages.DATABASE_DOWN, "response_type": "ephemeral"}]
    assert acks == [refused, [{}], [{}]]
    assert answers == []  # once back, nothing is probed before an ack
    assert intake.handed == ["/voipcloud move-funds 10023 5.00 March top-up"] * 2


async def test_a_slow_check_turns_the_request_away_and_serves_the_next_one(
    listening: Listening, disk_full: BaseException
) -> None:
    """A probe that cannot answer within RECHECK does not hold the ack (Slack waits 3 s): the
    request is turned away, and the probe goes on for the requests after it."""
    answer = asyncio.Event()

    async def probe() -> str | None:
        await answer.wait()
        return None

    health = DatabaseHealth(probe)
    after_ack = AfterAck(health=health, direct=listening.after_ack.direct)
    health.failed(disk_full, where="the sweeper")
    intake = Intake()
    listener = SlashCommand(intake, listening.outbox, after_ack)

    first, second = Ack(), Ack()
    await listener(first, slash_body(listening.slack))
    answer.set()
    await asyncio.gather(*after_ack.running)
    await listener(second, slash_body(listening.slack))
    await asyncio.gather(*after_ack.running)

    assert first.calls == [{"text": messages.DATABASE_DOWN, "response_type": "ephemeral"}]
    assert second.calls == [{}] and len(intake.handed) == 1 and not health.down


async def test_while_down_a_click_is_told_through_its_response_url_and_not_handed_in(
    listening: Listening, disk_full: BaseException
) -> None:
    listening.health.failed(disk_full, where="a Slack request")
    intake = Intake()
    ack = Ack()
    body = {
        "user": {"id": "U2"},
        "container": {"channel_id": "C1"},
        "response_url": listening.slack.response_url("click"),
    }

    await ButtonClick(intake, listening.outbox, listening.after_ack)(
        ack, body, {"value": "/billing approve 3"}
    )
    await listening.settled()

    assert ack.calls == [{}]
    assert intake.handed == []
    assert notes(listening.slack, "click") == [messages.DATABASE_DOWN]


def form_view() -> dict[str, Any]:
    return {
        "private_metadata": json.dumps({"path": "voipcloud register", "channel": "C1"}),
        "blocks": [{"type": "input", "block_id": "email"}],
        "state": {"values": {"email": {"value": {"value": "a@b.c"}}}},
    }


async def test_while_down_a_form_shows_the_sentence_under_its_first_input(
    listening: Listening, disk_full: BaseException
) -> None:
    listening.health.failed(disk_full, where="a Slack request")
    intake = Intake()
    ack = Ack()

    await FormSubmitted(intake, listening.outbox, listening.after_ack)(
        ack, {"user": {"id": "U1"}}, form_view()
    )

    assert ack.calls == [{"response_action": "errors", "errors": {"email": messages.DATABASE_DOWN}}]
    assert intake.handed == []


async def test_a_form_that_fails_on_the_database_after_its_ack_is_told_ephemeral(
    listening: Listening, disk_full: BaseException, runtime: Runtime
) -> None:
    """A modal's submission has no response_url: the note goes by chat.postEphemeral."""
    intake = Intake(fails=disk_full, command=runtime.catalog.command("voipcloud register"))
    ack = Ack()

    await FormSubmitted(intake, listening.outbox, listening.after_ack)(
        ack, {"user": {"id": "U1"}}, form_view()
    )
    await listening.settled()

    assert ack.calls == [{}]
    [note] = listening.slack.calls_to("chat.postEphemeral")
    assert (note.params["channel"], note.params["user"]) == ("C1", "U1")
    assert note.params["text"] == messages.DATABASE_DOWN
    assert await listening.outbox_rows() == 0


async def test_another_failure_after_the_ack_still_goes_the_usual_way(
    listening: Listening,
) -> None:
    """Only the database's failures take the direct path: a bug is told with a reference,
    through the outbox as before."""
    intake = Intake(fails=RuntimeError("the dispatcher tripped"))
    surface = SlackSurface(listening.outbox, channel="C1", user="U1")

    listening.after_ack(intake.run("x", user="U1", channel="C1", surface=surface), surface)
    await listening.settled()

    assert not listening.health.down
    assert await listening.outbox_rows() == 1  # written to the outbox, then delivered from it
    assert messages.DATABASE_DOWN not in str([c.params for c in listening.slack.calls])


def test_the_error_boundary_logs_a_database_outage_as_one_line_without_a_traceback(
    disk_full: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """Telling approvers, a schedule, a late note: whatever the outage cuts short is one
    WARNING each (the watcher logs the outage itself once); anything else keeps its traceback."""
    log = logging.getLogger("bot.approvals.notices")
    with caplog.at_level(logging.WARNING, logger="bot.approvals.notices"):
        try:
            raise disk_full
        except Exception:
            away = logged_reference(log, "telling the approvers of #4 failed")
        try:
            raise RuntimeError("a defect")
        except RuntimeError:
            defect = logged_reference(log, "telling the requester of #4 failed")
    first, second = caplog.records
    assert (first.levelno, first.getMessage(), traceback_of(first)) == (
        logging.WARNING,
        f"telling the approvers of #4 failed (reference {away}): the database cannot be used "
        "(OperationalError: database or disk is full)",
        "",
    )
    assert (second.levelno, second.getMessage()) == (
        logging.ERROR,
        f"telling the requester of #4 failed (reference {defect})",
    )
    assert traceback_of(second).endswith("RuntimeError: a defect")


def traceback_of(record: logging.LogRecord) -> str:
    """A record's traceback: as exc_info, or as the text the log redaction made of it
    (`commands.secrets.install_log_redaction`, installed once any test configured logging)."""
    if record.exc_info:
        return "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return record.exc_text or ""
