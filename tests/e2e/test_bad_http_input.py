"""Bad HTTP input at `POST /slack/events` is refused with a 4xx, never crashed on: undecodable
bytes, malformed `payload`s, a timestamp that is not a number, bodies over the cap (refused
before they are read into memory) and command text over Slack's own limit (refused before it is
parsed). Each is a real request over loopback into the app `billing-bot serve` runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from bot.slack.input_limits import MAX_BODY_BYTES
from bot.storage.store import approvals, audit
from commands.grammar import MAX_COMMAND_TEXT, text_refusal
from tests.support.e2e import CHANNEL, Bot, running_bot, table_rows
from tests.support.signing import FORM, form_body, slash_command_body


@dataclass(frozen=True)
class Bad:
    name: str
    body: bytes
    headers: Mapping[str, str] | None = None  # over the signed ones


BAD_INPUT = [
    Bad("undecodable bytes", b"\xff\xfe\x00command=%2Finvoicexpress\x9c\xc3\x28"),
    Bad("a payload that is not JSON", form_body({"payload": '{"type": "block_actions",'})),
    Bad("a payload that is a list", form_body({"payload": "[]"})),
    Bad("a payload that is a number", form_body({"payload": "123"})),
    Bad("a payload that is null", form_body({"payload": "null"})),
    Bad("an empty payload", form_body({"payload": ""})),
    Bad("a JSON body that is not an object", b"[1, 2]", {"Content-Type": "application/json"}),
    Bad(
        "a JSON body that is not JSON",
        b'{"type": "event_callback"',
        {"Content-Type": "application/json"},
    ),
    Bad(
        "a timestamp that is not a number",
        slash_command_body("/invoicexpress", "sequences", response_url="http://127.0.0.1:9/x"),
        {"X-Slack-Request-Timestamp": "soon"},
    ),
    Bad(
        "a timestamp that is a huge number",
        slash_command_body("/invoicexpress", "sequences", response_url="http://127.0.0.1:9/x"),
        {"X-Slack-Request-Timestamp": "9" * 400},
    ),
]


def nothing_ran(bot: Bot) -> list[str]:
    """What the app did on behalf of the requests, as text (empty when it did nothing)."""
    done = [f"{r.method} {r.path}" for r in bot.invoicexpress.control.requests]
    done += [f"{r.method} {r.path}" for r in bot.smsc.control.requests]
    done += [f"{r.method} {r.path}" for r in bot.voipcloud.control.requests]
    return done + [call.method for call in bot.slack.calls if call.method != "auth.test"]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
    ]


async def test_malformed_requests_are_refused_with_a_4xx_and_no_traceback(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(database_url) as bot:
        answers = {bad.name: await bot.post(bad.body, bad.headers) for bad in BAD_INPUT}
        done = nothing_ran(bot)
        # The app still serves a good request after all of them.
        good = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        await bot.slack.wait_for("chat.postMessage")

    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == dict.fromkeys(statuses, 400)
    for answer in answers.values():
        assert answer.json() == {"error": "bad request"}
    assert done == []
    assert tracebacks(caplog) == []
    assert good.answer.status_code == 200


async def raw_request(url: str, head: str, chunks: AsyncIterator[bytes]) -> tuple[int, int]:
    """Send `head` and then `chunks` on one connection until the app answers; return the
    status it answered with and how many body bytes had been sent by then."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    sent = 0

    async def send() -> None:
        nonlocal sent
        writer.write(head.encode())
        await writer.drain()
        async for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    sending = asyncio.ensure_future(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    return int(status_line.split()[1]), sent


async def endless(chunk: bytes, *, limit: int) -> AsyncIterator[bytes]:
    for _ in range(limit // len(chunk)):
        yield chunk


async def test_a_body_declared_over_the_cap_is_refused_before_any_of_it_is_sent(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        head = (
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {FORM}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
        )
        status, sent = await raw_request(bot.url, head, endless(b"", limit=0))
        done = nothing_ran(bot)

    assert (status, sent) == (413, 0)  # answered on the headers alone
    assert done == []


async def test_a_chunked_body_over_the_cap_is_refused_while_it_streams(database_url: str) -> None:
    chunk = b"text=" + b"a" * (64 * 1024 - 5)
    attempt = 256 * 1024 * 1024  # far more than the app may read, and than loopback buffers
    async with running_bot(database_url) as bot:
        head = (
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )

        async def chunked() -> AsyncIterator[bytes]:
            async for part in endless(chunk, limit=attempt):
                yield f"{len(part):x}\r\n".encode() + part + b"\r\n"

        status, sent = await raw_request(bot.url, head, chunked())
        done = nothing_ran(bot)

    assert status == 413
    assert sent < attempt  # the app answered long before the sender was done
    assert done == []


async def test_command_text_over_slacks_limit_gets_one_private_sentence_and_is_not_parsed(
    database_url: str,
) -> None:
    # 600,000 characters of quotes and words: under the body cap, and seconds of shlex work.
    text = "sequence create " + '"a b ' * 120_000
    at_limit = "sequence " + "x" * (MAX_COMMAND_TEXT - len("sequence "))
    async with running_bot(database_url) as bot:
        name, url = bot.response_url("command")
        body = slash_command_body(
            "/invoicexpress", text, response_url=url, user_id="U0ADMIN", channel_id=CHANNEL
        )
        answer = await bot.post(body)
        # Text at the limit is read as usual (and refused for its own reasons).
        fits = await bot.slash("/invoicexpress", at_limit, user="U0ADMIN")
        note = await bot.private(fits.respond)
        done = nothing_ran(bot)
        audited = await table_rows(bot.database_url, audit)
        requested = await table_rows(bot.database_url, approvals)

    assert answer.status_code == 200
    assert answer.json() == {
        "response_type": "ephemeral",
        "text": (
            f"That command is too long: Slack sends at most {MAX_COMMAND_TEXT:,} characters "
            f"after the command name, and this one has {len(text):,}."
        ),
    }
    assert bot.privates(name) == []  # the sentence was the answer itself; nothing followed
    assert fits.answer.status_code == 200 and fits.answer.content == b""
    assert "too long" not in note
    # Never parsed, so never taken for `/invoicexpress sequence create`.
    assert [row for row in audited if row["command"] == "/invoicexpress sequence create"] == []
    assert requested == []
    assert [d for d in done if d != "response_url"] == []  # no provider call, no post


def test_the_limit_counts_characters_and_its_refusal_is_one_sentence() -> None:
    assert text_refusal("é" * MAX_COMMAND_TEXT) is None
    refusal = text_refusal("é" * (MAX_COMMAND_TEXT + 1))
    assert refusal == (
        "That command is too long: Slack sends at most 4,000 characters after the command "
        "name, and this one has 4,001."
    )


async def test_a_slash_command_whose_text_says_payload_is_still_answered(
    database_url: str,
) -> None:
    """Bolt alone reads any form body with the word "payload" in it as an interactivity
    payload and drops the command; the bot reads it as the slash command it is."""
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/billing", "help payload", user="U0VIEWER")
        answer = await bot.private(sent.respond)
    assert sent.answer.status_code == 200
    assert answer  # an answer came back (help for /billing), not silence
