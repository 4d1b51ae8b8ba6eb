"""Every client registers its secrets, and that is what keeps them out of sight.

Each sandbox can echo the raw credentials a request carried, bare, inside an error answer
(`control.echo_secrets`): in a sentence, not in an `api_key=…` or `token: …` shape that the
pattern redaction would mask anyway. A real command is then run through the dispatcher, and the
raw values must reach no log record, no message anyone sees, no audit row and no exception text.
Only the client's `register_secret` call can mask them there, so each case fails without it.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from bot.runtime import Runtime
from bot.storage.store import audit
from commands.activeplatform.sandbox import SANDBOX_TOKEN as ACTIVEPLATFORM_TOKEN
from commands.invoicexpress.sandbox import SANDBOX_API_KEY
from commands.sandbox import Recorded
from commands.secrets import MASK
from commands.smsc.sandbox import SANDBOX_PASSWORD
from commands.voipcloud.sandbox import SANDBOX_GOOGLE_CAPTCHA
from commands.voipcloud.sandbox import SANDBOX_TOKEN as VOIPCLOUD_TOKEN
from tests.support import RecordingSurface, sandbox_of

# Typed by an admin, so registered by the client only when it sends it.
AT_PASSWORD = f"AT-{uuid.uuid4().hex[:16]}"
AT_BASE64 = base64.b64encode(AT_PASSWORD.encode()).decode()


def at_password_in(request: Recorded) -> str:
    """The AT password an InvoiceXpress request carried (Base64 in the JSON body), decoded."""
    if not request.body:
        return ""
    encoded = json.loads(request.body)["at_communication"]["at_password"]
    return base64.b64decode(encoded).decode()


@dataclass(frozen=True)
class Case:
    provider: str
    secrets: dict[str, str]  # what each raw value is called → the value
    lines: tuple[tuple[str, str], ...]  # (user, typed command)
    shown: tuple[str, ...]  # the echo as people must see it: masked, but there
    carried: Callable[[Recorded], str]  # the raw secrets one request carried, as text


CASES = [
    Case(
        provider="invoicexpress",
        secrets={"API key": SANDBOX_API_KEY, "AT password": AT_PASSWORD, "AT Base64": AT_BASE64},
        lines=(
            ("U1", "/invoicexpress sequences"),
            (
                "U0ADMIN",
                "/invoicexpress at-communication subuser=123456789/3 "
                f"password={AT_PASSWORD} communication_type=auto",
            ),
        ),
        shown=(f"the key {MASK} may not do this", f"refused {MASK} (sent as {MASK})"),
        carried=lambda r: f"{r.query.get('api_key')} {r.body.decode()} {at_password_in(r)}",
    ),
    Case(
        provider="smsc",
        secrets={"password": SANDBOX_PASSWORD},
        lines=(("U1", "/smsc invoice get acme 501"),),
        shown=(f"login sandbox used {MASK}",),
        carried=lambda r: str(r.query.get("psw")),
    ),
    Case(
        provider="voipcloud",
        secrets={"token": VOIPCLOUD_TOKEN, "google_captcha": SANDBOX_GOOGLE_CAPTCHA},
        lines=(("U1", "/voipcloud balance 10023"), ("U1", "/voipcloud confirm-email 10025")),
        shown=(f"the key {MASK} is not a partner key here", f"and {MASK} failed the captcha"),
        carried=lambda r: f"{r.headers.get('token')} {r.body.decode()}",
    ),
    Case(
        provider="activeplatform",
        secrets={"API token": ACTIVEPLATFORM_TOKEN},
        lines=(("U1", "/activeplatform accounts"),),
        shown=(f"manager {MASK} may not use this installation",),
        carried=lambda r: str(r.headers.get("x-api-token")),
    ),
]


class Watched:
    """Stands in for a provider client and keeps every exception its calls raised."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.raised: list[BaseException] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.client, name)
        if not inspect.iscoroutinefunction(value):
            return value

        @functools.wraps(value)
        async def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                return await value(*args, **kwargs)
            except BaseException as exc:
                self.raised.append(exc)
                raise

        return watched


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything logged at DEBUG, from the moment the bot is built."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sqlalchemy", "aiosqlite", "commands", "bot"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def audit_text(runtime: Runtime) -> str:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit))).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def exception_texts(raised: list[BaseException]) -> str:
    texts = []
    for exc in raised:
        texts += [str(exc), repr(exc), str(getattr(exc, "message", ""))]
        texts += [str(exc.__cause__), str(exc.__context__)]
    return "\n".join(texts)


@pytest.mark.parametrize("case", CASES, ids=[c.provider for c in CASES])
async def test_a_secret_echoed_bare_by_the_provider_stays_masked(
    debug_logs: pytest.LogCaptureFixture, runtime: Runtime, case: Case
) -> None:
    provider = runtime.catalog.runtime(case.provider)
    assert provider is not None
    watched = Watched(provider.client)
    provider.client = watched
    sandbox = sandbox_of(runtime, case.provider)
    sandbox.control.echo_secrets = True

    surfaces = []
    for user, line in case.lines:
        surface = RecordingSurface(user=user)
        surfaces.append(surface)
        assert not await runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)

    system = runtime.system_surfaces.values()  # type: ignore[attr-defined]
    places = {
        "log records": debug_logs.text,
        "messages": "\n".join(s.texts() for s in [*surfaces, *system]),
        "audit rows": await audit_text(runtime),
        "exceptions": exception_texts(watched.raised),
    }
    # Not vacuous: every secret went out, and each command failed on the echoing answer.
    carried = " ".join(case.carried(r) for r in sandbox.control.requests)
    assert all(secret in carried for secret in case.secrets.values())
    assert len(watched.raised) == len(case.lines)
    assert debug_logs.records

    leaks = [
        f"the {case.provider} {what} reached the {where}"
        for where, text in places.items()
        for what, secret in case.secrets.items()
        if secret in text
    ]
    assert leaks == []
    # The echo was shown, masked, so the scan above looked at the provider's words.
    for fragment in case.shown:
        assert fragment in places["messages"]
        assert fragment in places["exceptions"]
    assert MASK in places["audit rows"]
