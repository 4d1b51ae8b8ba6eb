"""Each Slack listener is a unit: called with a fake `ack` and body, as Bolt would call it, it
acknowledges first, hands the request in once, and answers a form's errors in the ack."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runtime import Runtime
from bot.slack.listeners import AfterAck, ButtonClick, FormSubmitted, HomeOpened, SlashCommand
from bot.slack.outbox import Outbox
from bot.slack.surface import SlackSurface
from bot.surface import Surface
from commands.base import Command


@dataclass
class Ack:
    """Bolt's `ack`: records what it was called with, and when."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@dataclass
class Intake:
    """The dispatcher's entry points, recording what they were handed."""

    acked: Ack
    errors: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[str, str, str, bool]] = field(default_factory=list)
    values: list[Mapping[str, Any]] = field(default_factory=list)
    fail: bool = False
    command: Command[Any, Any] | None = None

    async def run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        self.lines.append((line, user, channel, bool(self.acked.calls)))
        if self.fail:
            raise RuntimeError("the dispatcher tripped")
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
        self.values.append(values)
        return None

    async def check_form(
        self, path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]:
        return self.command, dict(self.errors)


@pytest.fixture
def outbox(runtime: Runtime) -> Outbox:
    return Outbox(runtime.engine, AsyncWebClient(base_url="http://127.0.0.1:9/"))


async def settled(after_ack: AfterAck) -> None:
    await asyncio.gather(*after_ack.running)


async def test_a_slash_command_is_acknowledged_before_it_is_handed_in(outbox: Outbox) -> None:
    ack = Ack()
    intake = Intake(ack)
    after_ack = AfterAck()
    listener = SlashCommand(intake, outbox, after_ack)
    body = {"command": "/billing", "text": "status", "user_id": "U1", "channel_id": "C1"}

    await listener(ack, body)
    await settled(after_ack)

    assert ack.calls == [{}]
    assert intake.lines == [("/billing status", "U1", "C1", True)]


async def test_a_button_runs_its_command_as_the_person_who_clicked(outbox: Outbox) -> None:
    ack = Ack()
    intake = Intake(ack)
    after_ack = AfterAck()
    body = {"user": {"id": "U2"}, "container": {"channel_id": "C7"}}

    await ButtonClick(intake, outbox, after_ack)(ack, body, {"value": "/billing approve 3"})
    await settled(after_ack)

    assert ack.calls == [{}]
    assert intake.lines == [("/billing approve 3", "U2", "C7", True)]


def form(values: dict[str, str]) -> dict[str, Any]:
    return {
        "private_metadata": json.dumps({"path": "voipcloud register", "channel": "C1"}),
        "state": {"values": {k: {"value": {"value": v}} for k, v in values.items()}},
    }


async def test_a_form_with_errors_keeps_the_modal_open_and_runs_nothing(
    outbox: Outbox, runtime: Runtime
) -> None:
    ack = Ack()
    intake = Intake(ack, errors={"email": "not an e-mail address"})
    intake.command = runtime.catalog.command("voipcloud register")
    after_ack = AfterAck()

    await FormSubmitted(intake, outbox, after_ack)(
        ack, {"user": {"id": "U1"}}, form({"email": "x"})
    )
    await settled(after_ack)

    assert ack.calls == [
        {"response_action": "errors", "errors": {"email": "not an e-mail address"}}
    ]
    assert intake.values == []


async def test_a_valid_form_closes_then_runs(outbox: Outbox, runtime: Runtime) -> None:
    ack = Ack()
    intake = Intake(ack)
    intake.command = runtime.catalog.command("voipcloud register")
    after_ack = AfterAck()

    await FormSubmitted(intake, outbox, after_ack)(
        ack, {"user": {"id": "U1"}}, form({"email": "a@b.c"})
    )
    await settled(after_ack)

    assert ack.calls == [{}]
    assert intake.values == [{"email": "a@b.c"}]


async def test_a_form_carries_its_fixed_values_and_errors_land_under_its_inputs(
    outbox: Outbox, runtime: Runtime
) -> None:
    """The approval's form carries the request number in private_metadata; an error about it
    goes under the form's first input (Slack refuses errors naming a block the view lacks)."""
    ack = Ack()
    intake = Intake(ack, errors={"id": "no such request", "code": "required"})
    intake.command = runtime.catalog.command("billing approve")
    view = {
        "private_metadata": json.dumps(
            {"path": "billing approve", "channel": "C1", "fixed": {"id": "12"}}
        ),
        "blocks": [{"type": "input", "block_id": "code"}, {"type": "input", "block_id": "reason"}],
        "state": {"values": {"code": {"value": {"value": "123456"}}}},
    }
    seen: list[Mapping[str, Any]] = []

    async def check_form(
        path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]:
        seen.append(values)
        return intake.command, dict(intake.errors)

    intake.check_form = check_form  # type: ignore[method-assign]
    await FormSubmitted(intake, outbox, AfterAck())(ack, {"user": {"id": "U2"}}, view)

    assert seen == [{"code": "123456", "id": "12"}]
    assert ack.calls == [
        {"response_action": "errors", "errors": {"code": "no such request required"}}
    ]


async def test_a_form_that_cannot_be_checked_says_so_under_the_form(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    ack = Ack()
    intake = Intake(ack)

    await FormSubmitted(intake, outbox, AfterAck())(ack, {"user": {}}, form({}))  # no user id

    [call] = ack.calls
    assert call["response_action"] == "errors"
    [record] = [r for r in caplog.records if r.name == "bot.slack.listeners"]
    reference = record.getMessage().removeprefix("a form could not be checked (reference ")[:8]
    assert reference in call["errors"]["_"]


async def test_a_failure_after_the_ack_is_logged_with_a_reference_and_told_once(
    outbox: Outbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[str] = []

    async def private(self: SlackSurface, text: str) -> None:
        told.append(text)

    monkeypatch.setattr(SlackSurface, "private", private)
    ack = Ack()
    intake = Intake(ack, fail=True)
    after_ack = AfterAck()
    body = {"command": "/billing", "text": "status", "user_id": "U1", "channel_id": "C1"}

    with caplog.at_level(logging.ERROR):
        await SlashCommand(intake, outbox, after_ack)(ack, body)
        await settled(after_ack)

    [record] = [r for r in caplog.records if r.name == "bot.slack.listeners"]
    assert record.getMessage().startswith("a Slack request failed after its ack (reference ")
    reference = record.getMessage()[-9:-1]
    assert len(told) == 1 and reference in told[0]


async def test_the_home_tab_is_published_for_the_viewer_and_other_tabs_are_left(
    runtime: Runtime,
) -> None:
    published: list[dict[str, Any]] = []

    async def publish(**kwargs: Any) -> None:
        published.append(kwargs)

    after_ack = AfterAck()
    listener = HomeOpened(
        approvals=runtime.approvals,
        schedules=runtime.schedules,
        audit=runtime.audit,
        roles=runtime.roles,
        tz=runtime.settings.tz,
        publish=publish,
        after_ack=after_ack,
    )
    ack = Ack()
    await listener(ack, {"user": "U0VIEWER", "tab": "messages"})
    await listener(ack, {"user": "U0VIEWER", "tab": "home"})
    await settled(after_ack)

    assert ack.calls == [{}, {}]
    [call] = published
    assert call["user_id"] == "U0VIEWER" and call["view"]["type"] == "home"


def test_the_fixture_outbox_never_reaches_the_network(outbox: Outbox) -> None:
    assert isinstance(outbox.engine, AsyncEngine)
    assert outbox.client.base_url.startswith("http://127.0.0.1")
