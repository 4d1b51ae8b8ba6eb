"""Helpers for the balance-report tests: a context that records progress and notes, the typed
`/billing report balances` path, and the figures the sandbox's ledgers give for a period."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from commands import grammar
from commands.base import Args, Command, Context, MemoryHistory, Reply
from commands.types import Period
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.commands import BILLING, COMMANDS
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.voipcloud import NOW


@dataclass
class Recorder:
    """Collects what a handler sends back while it works."""

    progress: list[tuple[int, int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    async def on_progress(self, done: int, total: int, label: str) -> None:
        self.progress.append((done, total, label))

    async def on_notify(self, text: str) -> None:
        self.notes.append(text)


def report_context(
    recorder: Recorder | None = None,
    history: MemoryHistory | None = None,
    *,
    now: datetime = NOW,
    tz: str = "UTC",
) -> Context:
    recorder = recorder or Recorder()
    return Context(
        user_id="U1",
        channel_id="C1",
        tz=ZoneInfo(tz),
        clock=lambda: now,
        progress=recorder.on_progress,
        notify=recorder.on_notify,
        history=history if history is not None else MemoryHistory(clock=lambda: now),
    )


def parse_billing(text: str) -> tuple[Command[Any, Any], Args]:
    parsed = grammar.parse(BILLING, text, COMMANDS)
    assert isinstance(parsed, grammar.Parsed), f"{text!r} did not select a command"
    return parsed.command, grammar.validate(parsed.command, parsed.values)


async def run_billing(client: VoipcloudClient, text: str, ctx: Context) -> Reply:
    """What the bot does with `/billing <text>` for a VoIPcloud command."""
    cmd, args = parse_billing(text)
    reply: Reply = await cmd.handler(client, args, ctx)
    return reply


def accounts_text(first: int, last: int) -> str:
    return ",".join(str(n) for n in range(first, last + 1))


def expected(sandbox: VoipcloudSandbox, account: str, period: Period) -> dict[str, Decimal]:
    """The statement the sandbox's ledger gives, with `change` = closing − opening."""
    figures = sandbox.customers[account].ledger.statement(period.start, period.end)
    figures["change"] = figures["closing_balance"] - figures["opening_balance"]
    return figures


def total(sandbox: VoipcloudSandbox, accounts: list[str], name: str, period: Period) -> Decimal:
    return sum((expected(sandbox, a, period)[name] for a in accounts), Decimal(0))


def file_named(reply: Reply, suffix: str) -> Any:
    matches = [f for f in reply.files if f.filename.endswith(suffix)]
    assert len(matches) == 1, [f.filename for f in reply.files]
    return matches[0]


def csv_rows(reply: Reply) -> list[dict[str, str]]:
    content = file_named(reply, ".csv").content.decode()
    return list(csv.DictReader(io.StringIO(content)))


def month_so_far(today: date) -> Period:
    return Period(today.replace(day=1), today)
