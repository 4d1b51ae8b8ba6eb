"""Shared helpers for the VoIPcloud tests: a settable clock, sleeps that move it, a client over
the in-process sandbox, and the typed-command path the bot takes (parse → validate → handler)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from commands import grammar
from commands.base import Args, Command, Context, Reply
from commands.sandbox import Recorded
from commands.voipcloud.budget import RateLimit
from commands.voipcloud.client import Paths, VoipcloudClient
from commands.voipcloud.commands import COMMANDS, SLASH
from commands.voipcloud.sandbox import (
    SANDBOX_BASE_URL,
    SANDBOX_GOOGLE_CAPTCHA,
    SANDBOX_TOKEN,
    VoipcloudSandbox,
)

# 17 November 2026, a Tuesday: "this month so far" is 2026-11-01..2026-11-17.
NOW = datetime(2026, 11, 17, 9, 30, tzinfo=UTC)
TODAY = NOW.date()


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Sleeps:
    """Stands in for asyncio.sleep: remembers each delay and moves the clock past it."""

    clock: Clock
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


def new_sandbox(today: date = TODAY) -> VoipcloudSandbox:
    return VoipcloudSandbox(today=lambda: today)


def open_client(
    sandbox: VoipcloudSandbox,
    *,
    token: str = SANDBOX_TOKEN,
    google_captcha: str | None = SANDBOX_GOOGLE_CAPTCHA,
    rate_limit: RateLimit | None = None,
    paths: Paths | None = None,
    clock: Clock | None = None,
) -> VoipcloudClient:
    clock = clock or Clock()
    return VoipcloudClient.open(
        base_url=SANDBOX_BASE_URL,
        token=token,
        google_captcha=google_captcha,
        paths=paths or Paths(),
        rate_limit=rate_limit,
        transport=httpx.ASGITransport(app=sandbox.app()),
        clock=clock,
        sleep=Sleeps(clock),
    )


def context(now: datetime = NOW, tz: str = "UTC") -> Context:
    return Context(user_id="U1", channel_id="C1", tz=ZoneInfo(tz), clock=lambda: now)


def command(words: str) -> Command[Any, VoipcloudClient]:
    return next(c for c in COMMANDS if " ".join(c.words) == words)


def parse(text: str) -> tuple[Command[Any, Any], Args]:
    parsed = grammar.parse(SLASH, text, COMMANDS)
    assert isinstance(parsed, grammar.Parsed), f"{text!r} did not select a command"
    return parsed.command, grammar.validate(parsed.command, parsed.values)


async def run(client: VoipcloudClient, text: str, ctx: Context | None = None) -> Reply:
    """What the bot does with `/voipcloud <text>` once roles and approvals are settled."""
    cmd, args = parse(text)
    reply: Reply = await cmd.handler(client, args, ctx or context())
    return reply


def rejection(text: str) -> str:
    """The message a user sees for bad typed input."""
    try:
        parse(text)
    except (grammar.FieldErrors, grammar.GrammarError) as exc:
        return exc.message
    raise AssertionError(f"{text!r} was accepted")


def form_fields(recorded: Recorded) -> dict[str, str]:
    """Read a multipart/form-data body with the standard library's MIME parser."""
    head = f"Content-Type: {recorded.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + recorded.body, policy=email.policy.HTTP)
    assert message.is_multipart(), "the body is not multipart"
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        fields[name] = payload.decode()
    return fields


def reply_texts(reply: Reply) -> list[str]:
    """Every piece of a reply people or the audit log can see."""
    texts = [reply.text, *reply.sections, reply.audit_note or ""]
    texts += [f"{k} {v}" for k, v in reply.fields]
    texts += [f"{b.label} {b.command}" for b in reply.buttons]
    texts += [f"{f.filename} {f.title}" for f in reply.files]
    if reply.table is not None:
        texts += [" ".join(reply.table.columns)]
        texts += [" ".join(row) for row in reply.table.rows]
    return texts
