"""The secret scan: with everything logged at DEBUG, the InvoiceXpress API key and the AT
password (and its Base64 form) appear in no log line, no message and no database row."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa

from bot.catalog import ProviderRuntime
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.runtime import Runtime, open_runtime
from bot.storage import store
from commands.invoicexpress.commands import PROVIDER
from commands.invoicexpress.sandbox import SANDBOX_BASE_URL, InvoiceXpressSandbox
from commands.secrets import MASK
from tests.support import RecordingSurface


@dataclass
class Leaky:
    """A bot whose InvoiceXpress credentials are known to the test (and to nobody else)."""

    runtime: Runtime
    sandbox: InvoiceXpressSandbox
    api_key: str
    at_password: str
    surfaces: list[RecordingSurface] = field(default_factory=list)
    system: dict[str, RecordingSurface] = field(default_factory=dict)

    @property
    def dispatcher(self) -> Dispatcher:
        return self.runtime.dispatcher

    @property
    def secrets(self) -> dict[str, str]:
        encoded = base64.b64encode(self.at_password.encode()).decode()
        return {"api_key": self.api_key, "AT password": self.at_password, "AT Base64": encoded}

    def messages(self) -> str:
        """Everything shown to anyone, channel posts by the bot itself included."""
        return "\n".join(s.texts() for s in [*self.surfaces, *self.system.values()])

    def surface(self, user: str) -> RecordingSurface:
        surface = RecordingSurface(user=user)
        self.surfaces.append(surface)
        return surface

    async def run(self, line: str, user: str = "U1") -> bool:
        return await self.dispatcher.run(line, user=user, channel="C1", surface=self.surface(user))

    async def rows(self) -> list[str]:
        """Every row of every table, as text."""
        texts = []
        async with self.runtime.engine.connect() as conn:
            for table in store.metadata.sorted_tables:
                for row in (await conn.execute(sa.select(table))).all():
                    texts.append(f"{table.name}: {tuple(row)!r}")
        return texts


@pytest.fixture
async def leaky(
    make_settings: Callable[..., Settings],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Leaky]:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sqlalchemy", "aiosqlite", "asyncio", "commands", "bot"):
        caplog.set_level(logging.DEBUG, logger=name)

    api_key = f"ixkey-{uuid.uuid4().hex}"
    at_password = f"AT/pw+{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("INVOICEXPRESS_ACCOUNT", "acme")
    monkeypatch.setenv("INVOICEXPRESS_API_KEY", api_key)
    monkeypatch.setenv("INVOICEXPRESS_BASE_URL", SANDBOX_BASE_URL)
    settings = PROVIDER.settings()
    assert PROVIDER.configured(settings)
    sandbox = InvoiceXpressSandbox(api_key=api_key)
    client = PROVIDER.open_client(settings, httpx.ASGITransport(app=sandbox.app()))

    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)
    system: dict[str, RecordingSurface] = {}

    def system_surface(channel: str) -> RecordingSurface:
        return system.setdefault(channel, RecordingSurface(channel=channel, user=""))

    runtime = await open_runtime(
        make_settings(),
        system_surface=system_surface,
        runtimes=[ProviderRuntime(PROVIDER, "sandbox", client, sandbox)],
        working_after=5.0,
    )
    try:
        yield Leaky(runtime, sandbox, api_key, at_password, system=system)
    finally:
        await runtime.close()


async def scan(bot: Leaky, caplog: pytest.LogCaptureFixture) -> None:
    places = {
        "logs": caplog.text,
        "messages": bot.messages(),
        "database": "\n".join(await bot.rows()),
    }
    for where, text in places.items():
        for what, secret in bot.secrets.items():
            assert secret not in text, f"the {what} leaked into the {where}"


async def test_no_secret_survives_a_day_of_work(
    leaky: Leaky, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = leaky.sandbox
    target = next(s for s in sandbox.sequences.values() if not s.default)

    assert await leaky.run("/invoicexpress sequences")
    assert not await leaky.run("/invoicexpress sequence 999")
    sandbox.api_key = "rotated-by-someone-else"
    assert not await leaky.run("/invoicexpress sequences")
    sandbox.api_key = leaky.api_key
    assert await leaky.run(f"/invoicexpress sequence set-current {target.id}")
    assert await leaky.run("/invoicexpress sequence create FT2031 default=yes")
    assert await leaky.run("/billing approve 1", user="U2")

    path = "invoicexpress at-communication"
    values = {
        "subuser": "123456789/3",
        "password": leaky.at_password,
        "communication_type": "auto",
    }
    command, errors = await leaky.dispatcher.check_form(path, values, user="U0ADMIN", channel="C1")
    assert command is not None and errors == {}
    outcome = await leaky.dispatcher.run_values(
        command, values, user="U0ADMIN", channel="C1", surface=leaky.surface("U0ADMIN")
    )
    assert outcome is None
    # A modal submission with a bad field is audited too.
    bad = {**values, "subuser": "123"}
    _, errors = await leaky.dispatcher.check_form(path, bad, user="U0ADMIN", channel="C1")
    assert set(errors) == {"subuser"}
    # And the typed twin, also once refused.
    typed = f"/{path} subuser=123456789/3 password={leaky.at_password} communication_type=auto"
    assert await leaky.run(typed, user="U0ADMIN")
    assert not await leaky.run(typed.replace("=auto", "=fax"), user="U0ADMIN")

    # The scan is not vacuous: the secrets did travel, and the traffic was logged.
    requests = sandbox.control.requests
    assert requests and all(r.query.get("api_key") == leaky.api_key for r in requests)
    at_bodies = [r.body for r in requests if r.path.endswith("at_communication.json")]
    assert len(at_bodies) == 2
    assert leaky.secrets["AT Base64"].encode() in at_bodies[0]
    assert sandbox.at_settings == {"at_subuser": "123456789/3", "communication_type": "auto"}
    assert [s.serie for s in sandbox.sequences.values()].count("FT2031") == 1
    assert caplog.text.count(f"api_key={MASK}") >= len(requests)
    messages = leaky.messages()
    assert "no sequence 999" in messages and "API key missing or wrong" in messages
    assert "AT communication saved" in messages
    rows = await leaky.rows()
    assert sum(row.startswith("audit:") for row in rows) >= 10
    assert any(row.startswith("approvals:") and "FT2031" in row for row in rows)

    await scan(leaky, caplog)


async def test_a_password_typed_with_a_misspelt_option_is_not_stored(
    leaky: Leaky, caplog: pytest.LogCaptureFixture
) -> None:
    line = (
        f"/invoicexpress at-communication subuser=123456789/3 "
        f"pasword={leaky.at_password} communication_type=auto"
    )
    assert not await leaky.run(line, user="U0ADMIN")
    assert leaky.sandbox.control.requests == []
    await scan(leaky, caplog)
