"""Shared helpers for the ActivePlatform tests: a client over the in-process sandbox, a fixed
clock, a recording progress callback and the typed-command path the bot takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx

from commands import grammar
from commands.activeplatform.client import ActivePlatformClient
from commands.activeplatform.commands import COMMANDS, SLASH
from commands.activeplatform.sandbox import SANDBOX_BASE_URL, SANDBOX_TOKEN, ActivePlatformSandbox
from commands.base import Args, Command, CommandError, Context, Reply

# 3 November 2026: "last month" is October 2026, and November has not ended.
NOW = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


@dataclass
class Sleeps:
    """Stands in for asyncio.sleep: remembers the delays instead of waiting."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class ProgressLog:
    calls: list[tuple[int, int, str]] = field(default_factory=list)

    async def __call__(self, done: int, total: int, label: str) -> None:
        self.calls.append((done, total, label))


def open_client(
    sandbox: ActivePlatformSandbox,
    *,
    token: str = SANDBOX_TOKEN,
    reseller: str | None = "1",
    page_size: int = 100,
    chunk_size: int = 50,
    sleeps: Sleeps | None = None,
) -> ActivePlatformClient:
    client = ActivePlatformClient.open(
        base_url=SANDBOX_BASE_URL,
        api_token=token,
        default_reseller=reseller,
        page_size=page_size,
        chunk_size=chunk_size,
        transport=httpx.ASGITransport(app=sandbox.app()),
    )
    client.http.sleep = sleeps or Sleeps()
    return client


def context(progress: ProgressLog | None = None, now: datetime = NOW, tz: str = "UTC") -> Context:
    return Context(
        user_id="U1",
        channel_id="C1",
        tz=ZoneInfo(tz),
        clock=lambda: now,
        progress=progress or ProgressLog(),
    )


def typed(text: str) -> tuple[Command[Args, ActivePlatformClient], Args]:
    """Parse and validate `/activeplatform <text>` as the bot does before any provider call."""
    parsed = grammar.parse(SLASH, text, COMMANDS)
    assert isinstance(parsed, grammar.Parsed), f"{text!r} asked for help"
    return parsed.command, grammar.validate(parsed.command, parsed.values)


async def attempt(text: str, client: ActivePlatformClient, ctx: Context) -> Reply | str:
    """The dispatch path: the Reply, or the sentence the requester sees for bad input."""
    try:
        command, args = typed(text)
        return await command.handler(client, args, ctx)
    except (grammar.GrammarError, grammar.FieldErrors, CommandError) as exc:
        return exc.message


def posts(sandbox: ActivePlatformSandbox) -> int:
    return sum(1 for r in sandbox.control.requests if r.method == "POST")
