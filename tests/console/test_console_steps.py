"""`:step` in the console: a Workflow Builder step tried without Slack, wired as
`billing-bot console` wires it (the console is the runtime's system surface, so the billing
channel and the completions Slack would be sent print on its screen)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.console.app import CONSOLE_CHANNEL, Console
from bot.console.steps import parse
from bot.runtime import Runtime, open_providers, open_runtime
from bot.storage import store
from bot.surface import Surface
from commands.sandbox import Sandbox
from tests.support import sandbox_of


@dataclass
class Terminal:
    console: Console
    out: io.StringIO
    runtime: Runtime

    def text(self) -> str:
        return self.out.getvalue()


@pytest.fixture
async def terminal(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> AsyncIterator[Terminal]:
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    made: list[Console] = []

    def system_surface(channel: str) -> Surface:
        return made[0].surface(channel=channel, user="")

    runtime = await open_runtime(
        make_settings(billing_channel=CONSOLE_CHANNEL),
        system_surface=system_surface,
        runtimes=open_providers(use_sandboxes=True),
    )
    out = io.StringIO()
    console = Console(
        intake=runtime.dispatcher,
        providers=runtime.catalog,
        open_roles=runtime.roles.open_console,
        user="U1",
        channel=CONSOLE_CHANNEL,
        files_dir=tmp_path / "files",
        out=out,
        steps=runtime.steps,
    )
    made.append(console)
    try:
        yield Terminal(console, out, runtime)
    finally:
        await runtime.close()


def provider_calls(runtime: Runtime, name: str) -> list[Any]:
    sandbox: Sandbox = sandbox_of(runtime, name)
    return list(sandbox.control.requests)


async def test_a_read_step_prints_the_completion_slack_would_get(terminal: Terminal) -> None:
    assert await terminal.console.handle(":step voipcloud_balance account=10023 requested_by=U2")
    text = terminal.text()
    assert ": functions.completeSuccess" in text
    assert "closing_balance" in text and "242.08793" in text
    assert "Customer 10023" in text


async def test_a_bad_input_prints_the_error_and_calls_no_provider(terminal: Terminal) -> None:
    assert not await terminal.console.handle(":step voipcloud_balance account=12ab")
    text = terminal.text()
    assert ": functions.completeError" in text
    assert "account: '12ab' is not an account number (digits only, like 10023)" in text
    assert provider_calls(terminal.runtime, "voipcloud") == []


async def test_an_unknown_step_or_input_is_refused_by_name(terminal: Terminal) -> None:
    assert not await terminal.console.handle(":step voipcloud_balanse account=10023")
    assert "There is no step voipcloud_balanse. Steps: activeplatform_notify_closing," in (
        terminal.text()
    )
    assert not await terminal.console.handle(":step voipcloud_balance acount=10023")
    assert (
        "voipcloud_balance takes no input acount. Its inputs: account, from_date, to_date, "
        "requested_by." in terminal.text()
    )
    assert not await terminal.console.handle(":step voipcloud_balance 10023")
    assert "10023 is not name=value." in terminal.text()
    assert provider_calls(terminal.runtime, "voipcloud") == []


async def test_an_approval_step_waits_then_prints_its_completion(terminal: Terminal) -> None:
    console = terminal.console
    assert await console.handle(
        ':step voipcloud_move_funds account=10023 amount=8.00 description="refund form"'
    )
    assert "waits for approval #1. Once it is decided, the step completes with" in terminal.text()
    assert ": functions.complete" not in terminal.text()  # nothing completed yet
    assert [r for r in provider_calls(terminal.runtime, "voipcloud") if r.method == "PUT"] == []
    assert await console.handle(":as U2")
    assert await console.handle("/billing approve 1")
    text = terminal.text()
    assert ": functions.completeSuccess" in text
    assert "approval_id" in text and "decided_by" in text and "U2" in text
    assert len([r for r in provider_calls(terminal.runtime, "voipcloud") if r.method == "PUT"]) == 1


def test_requested_by_defaults_to_the_console_user() -> None:
    assert parse(":step smsc_invoice_get user=acme id=7", "U9") == (
        "smsc_invoice_get",
        {"user": "acme", "id": "7", "requested_by": "U9"},
    )
    assert parse(':step x a="b c" requested_by=U2', "U9") == (
        "x",
        {"a": "b c", "requested_by": "U2"},
    )
