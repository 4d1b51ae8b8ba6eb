"""`psw` rides in every query string; it must never show in a reply, a file, an error or a log."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
import pytest

from commands import grammar
from commands.base import Reply
from commands.http import ProviderError
from commands.secrets import install_log_redaction
from commands.smsc.commands import COMMANDS
from commands.smsc.queue import MINUTE
from commands.smsc.sandbox import SANDBOX_PASSWORD
from tests.support.smsc import make_env, mock_client, reply_texts, run_typed

WRONG_PASSWORD = "Wrong-Pa55word-for-SMSC"


def leaks(text: str) -> bool:
    return SANDBOX_PASSWORD in text or WRONG_PASSWORD in text


async def test_no_reply_file_note_error_or_log_line_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()  # as the bot's runtime does: httpx logs whole URLs, query included
    caplog.set_level(logging.DEBUG)
    env = make_env()
    replies: list[Reply] = []
    errors: list[BaseException] = []

    async def attempt(text: str) -> None:
        try:
            replies.append(await run_typed(env, text))
        except (ProviderError, grammar.FieldErrors, grammar.GrammarError) as exc:
            errors.append(exc)
        env.clock.now += MINUTE / 2  # soon enough that the next one waits in the queue

    for text in [
        'invoice create acme 12.30 service="SMS package"',
        "invoice get acme 501",
        "invoice get id:101 502",
        "act get acme 701",
        "act get globex num=8",
        "invoice get acme 9999",  # error 7
        "invoice get initech 501",  # error 6
        "invoice create acme -1",  # bad input
    ]:
        await attempt(text)
    env.sandbox.ip_blocked = True
    await attempt("act get acme num=7")  # error 4
    env.sandbox.ip_blocked = False
    env.sandbox.control.drop = True
    await attempt("invoice create acme 5")  # outcome unknown
    await attempt("invoice get acme 501")  # lost answer to a read
    env.sandbox.control.drop = False
    env.sandbox.control.fail_status = 502
    await attempt("invoice create acme 5")
    env.sandbox.control.fail_status = None
    env.clock.now += 2 * MINUTE  # the clients below have queues of their own
    first_client = env.client
    env.client = env.client_for(password=WRONG_PASSWORD)
    await attempt("invoice get acme 501")  # error 2
    other = env.client_for()
    await other.invoice_pdf("acme", 501)
    with pytest.raises(ProviderError) as too_soon:  # error 9: another queue on the same login
        await first_client.invoice_pdf("acme", 502)
    errors.append(too_soon.value)
    for client in (first_client, env.client, other):
        await client.aclose()

    assert len(replies) == 5 and all(r.files for r in replies)
    assert len(errors) == 9
    assert len(env.sandbox.control.requests) >= 12
    assert all(
        r.query["psw"] in {SANDBOX_PASSWORD, WRONG_PASSWORD} for r in env.sandbox.control.requests
    )
    for reply in replies:
        for text in reply_texts(reply):
            assert not leaks(text), text
        for file in reply.files:
            assert SANDBOX_PASSWORD.encode() not in file.content
    for error in errors:
        shown = str(getattr(error, "message", ""))
        assert not leaks(str(error)) and not leaks(repr(error)) and not leaks(shown)
        assert error.__cause__ is None or not leaks(str(error.__cause__))
    for note in env.notes.texts:
        assert not leaks(note)
    assert env.notes.texts, "some requests waited in the queue"
    assert caplog.records, "the HTTP layer logged the requests"
    assert "psw=••••••" in caplog.text  # the URLs were logged, masked
    assert not leaks(caplog.text)


def test_approval_and_unknown_outcome_texts_mask_the_password() -> None:
    create = next(c for c in COMMANDS if c.words == ("invoice", "create"))
    assert create.describe is not None and create.unknown_hint is not None
    args = grammar.validate(create, {"user": "acme", "sum": "10", "service": "x"})
    described = create.describe(args)
    assert "psw=••••••" in described
    assert not leaks(described)
    assert not any(leaks(t) for t in reply_texts(create.unknown_hint(args)))
    assert not any(leaks(v) for v in args.preview().values())


async def test_an_error_message_echoing_the_password_is_redacted() -> None:
    body = {"error": f"bad psw={SANDBOX_PASSWORD} for login sandbox", "error_code": 1}
    client = mock_client(httpx.MockTransport(lambda request: httpx.Response(200, json=body)))
    with pytest.raises(ProviderError) as caught:
        await client.create_invoice("acme", Decimal("1"))
    assert not leaks(str(caught.value))
    assert "••••••" in caught.value.message
