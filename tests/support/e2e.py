"""End to end over loopback: the real app, a Slack Web API double and provider sandboxes.

    async with running_bot(database_url) as bot:
        sent = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        [post] = await bot.slack.wait_for("chat.postMessage")

`running_bot` serves the Slack double (its own thread), the InvoiceXpress and SMSC sandboxes and
`bot.slack.server.build_web` on 127.0.0.1 under uvicorn. The bot is configured as in production: the
contract's environment variables are set and read by `load_settings`, so nothing is wired by hand.
`SlackSender` sends what Slack sends: signed slash commands, clicks built from posted messages and
modal submissions built from opened views, each with its own response_url on the double.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import itertools
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.runtime import load_settings
from bot.slack.server import build_web
from bot.storage import store
from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from commands.smsc.sandbox import SmscSandbox
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.server import serve_asgi
from tests.support.signing import (
    block_actions_payload,
    function_executed_payload,
    interactivity_body,
    signed_headers,
    slash_command_body,
    view_submission_payload,
)
from tests.support.slack_api import SlackApiDouble, serve_slack_double

CHANNEL = "C0BILLING1"
SIGNING_SECRET = "e2e-signing-secret"
ROLES = {
    "BILLING_VIEWERS": "U0VIEWER",
    "BILLING_OPERATORS": "U0OPERATOR,U1",
    "BILLING_APPROVERS": "U0APPROVER,U2,U3",
    "BILLING_ADMINS": "U0ADMIN",
}
POLL = 0.02


# --- what a sandbox answered -------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes


class Answers:
    """ASGI middleware that records every answer the wrapped app finished sending.

    An answer is recorded once its last body chunk has gone out, so `len(answers)` says how many
    requests the provider has answered so far (a stalled sandbox has answered none).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.answers: list[Answer] = []

    def __len__(self) -> int:
        return len(self.answers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def recording(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
                    self.answers.append(
                        Answer(
                            method=scope["method"],
                            path=scope["path"],
                            status=int(start.get("status", 0)),
                            content_type=headers.get("content-type", ""),
                            body=b"".join(chunks),
                        )
                    )

        await self.app(scope, receive, recording)


# --- the environment the bot reads -------------------------------------------------------------


def bot_environment(
    *,
    database_url: str,
    slack: SlackApiDouble,
    secret: str = SIGNING_SECRET,
    providers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The contract's variables for a bot that talks to `slack` and the given providers."""
    return {
        "SLACK_SIGNING_SECRET": secret,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.url,
        "DATABASE_URL": database_url,
        "BILLING_CHANNEL": CHANNEL,
        **ROLES,
        **(providers or {}),
    }


def invoicexpress_env(url: str, sandbox: InvoiceXpressSandbox) -> dict[str, str]:
    return {
        "INVOICEXPRESS_ACCOUNT": "e2e",
        "INVOICEXPRESS_API_KEY": sandbox.api_key,
        "INVOICEXPRESS_BASE_URL": url,
    }


def smsc_env(url: str, sandbox: SmscSandbox) -> dict[str, str]:
    return {"SMSC_LOGIN": sandbox.login, "SMSC_PASSWORD": sandbox.password, "SMSC_BASE_URL": url}


def voipcloud_env(url: str, sandbox: VoipcloudSandbox) -> dict[str, str]:
    return {
        "VOIPCLOUD_BASE_URL": url,
        "VOIPCLOUD_TOKEN": sandbox.token,
        "VOIPCLOUD_GOOGLE_CAPTCHA": sandbox.google_captcha or "",
        "VOIPCLOUD_RATE_LIMIT": "off",
    }


def activeplatform_env(url: str, sandbox: ActivePlatformSandbox) -> dict[str, str]:
    return {
        "ACTIVEPLATFORM_BASE_URL": url,
        "ACTIVEPLATFORM_API_TOKEN": sandbox.token,
        "ACTIVEPLATFORM_RESELLER_ID": sandbox.manager_reseller,
    }


# --- what Slack sends ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """The app's HTTP answer to one request, and the response_url name the request carried."""

    answer: httpx.Response
    respond: str


_names = itertools.count(1)


@dataclass(kw_only=True)
class SlackSender:
    """Signed requests to one app's `POST /slack/events`, as Slack sends them."""

    slack: SlackApiDouble
    url: str
    http: httpx.AsyncClient
    secret: str = SIGNING_SECRET

    def response_url(self, kind: str) -> tuple[str, str]:
        name = f"{kind}-{next(_names)}"
        return name, self.slack.response_url(name)

    async def post(self, body: bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        signed = {**signed_headers(body, self.secret), **(headers or {})}
        return await self.http.post(f"{self.url}/slack/events", content=body, headers=signed)

    async def slash(self, command: str, text: str, *, user: str, channel: str = CHANNEL) -> Sent:
        name, url = self.response_url("command")
        body = slash_command_body(command, text, response_url=url, user_id=user, channel_id=channel)
        return Sent(await self.post(body), name)

    async def step(
        self, callback_id: str, inputs: dict[str, Any], *, execution: str, workflow: str = "Wx1"
    ) -> httpx.Response:
        """A workflow reaching one of the app's steps: a signed `function_executed` event."""
        payload = function_executed_payload(
            callback_id,
            inputs,
            execution=execution,
            workflow=workflow,
            token=self.slack.function_token,
        )
        body = json.dumps(payload).encode()
        return await self.post(body, {"Content-Type": "application/json"})

    def click_body(
        self, message: dict[str, Any], label: str, *, user: str, channel: str = CHANNEL
    ) -> tuple[bytes, str]:
        """A click on the button labelled `label` in `message` (as the double stores it)."""
        name, url = self.response_url("click")
        payload = block_actions_payload(
            message=message,
            action_id=action_id(message, label),
            channel_id=channel,
            response_url=url,
            user_id=user,
        )
        return interactivity_body(payload), name

    async def click(
        self, message: dict[str, Any], label: str, *, user: str, channel: str = CHANNEL
    ) -> Sent:
        body, name = self.click_body(message, label, user=user, channel=channel)
        return Sent(await self.post(body), name)

    async def submit(
        self, view: dict[str, Any], values: dict[str, Any], *, user: str
    ) -> httpx.Response:
        payload = view_submission_payload(view=view, values=values, user_id=user)
        return await self.post(interactivity_body(payload))

    def message(self, ts: str, channel: str = CHANNEL) -> dict[str, Any]:
        """The message as it stands now (a copy: later updates do not change it)."""
        return copy.deepcopy(self.slack.message(channel, ts))

    def privates(self, name: str) -> list[str]:
        """What the bot said through the response_url `name`."""
        return [
            str(call.params.get("text", ""))
            for call in self.slack.calls_to("response_url")
            if call.name == name
        ]

    async def private(self, name: str, *, containing: str = "", timeout: float = 10.0) -> str:
        """Wait for a note through response_url `name` that contains `containing`."""
        found: list[str] = []

        def arrived() -> bool:
            found[:] = [t for t in self.privates(name) if containing in t]
            return bool(found)

        await wait_until(arrived, f"a note containing {containing!r} at {name}", timeout)
        return found[0]


# --- reading messages ----------------------------------------------------------------------------


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Button label → action_id, over every actions block of a message."""
    found: dict[str, str] = {}
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                found[element["text"]["text"]] = element["action_id"]
    return found


def action_id(message: dict[str, Any], label: str) -> str:
    labelled = buttons(message)
    if label not in labelled:
        raise AssertionError(f"no button {label!r}; the message has {sorted(labelled)}")
    return labelled[label]


def message_text(message: dict[str, Any]) -> str:
    """The text people read in a message: section texts and fields, in order."""
    parts = [str(message.get("text", ""))]
    for block in message.get("blocks") or []:
        if text := block.get("text"):
            parts.append(str(text.get("text", "")))
        parts += [str(f.get("text", "")) for f in block.get("fields") or []]
    return "\n".join(parts)


def recorded_text(slack: SlackApiDouble) -> str:
    """Everything the bot sent to Slack, arguments and raw bodies, as one string."""
    parts = []
    for call in list(slack.calls):
        parts.append(json.dumps(call.params, ensure_ascii=False, default=str))
        parts.append(call.body.decode("utf-8", errors="replace"))
        parts += [f.filename + " " + (f.title or "") for f in call.files]
    return "\n".join(parts)


async def drain(baseline: set[asyncio.Task[Any]], timeout: float = 15.0) -> None:
    """Wait until every task started since `baseline` was taken has finished.

    That is the work the app goes on with after its ack (posting, auditing): stopping the app
    under it would cut it off, and the test would end on a half-done request.
    """
    me = asyncio.current_task()

    def idle() -> bool:
        return not [t for t in asyncio.all_tasks() if t not in baseline and t is not me]

    await wait_until(idle, "the app to finish the work it had started", timeout)


async def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` (a plain or an async callable) until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"expected {what} within {timeout} s")
        await asyncio.sleep(POLL)


# --- the database --------------------------------------------------------------------------------


async def table_rows(database_url: str, table: sa.Table) -> list[dict[str, Any]]:
    engine = store.make_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = sa.select(table).order_by(*table.primary_key.columns)
            rows = (await conn.execute(query)).mappings().all()
    finally:
        await engine.dispose()
    return [dict(row) for row in rows]


async def every_row(database_url: str) -> list[str]:
    """Every row of every table the bot keeps, as text."""
    rows: list[str] = []
    for table in store.metadata.sorted_tables:
        rows += [repr(row) for row in await table_rows(database_url, table)]
    return rows


# --- the running bot -----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Bot(SlackSender):
    invoicexpress: InvoiceXpressSandbox
    smsc: SmscSandbox
    voipcloud: VoipcloudSandbox
    answered: dict[str, Answers]
    database_url: str


@contextlib.asynccontextmanager
async def running_bot(
    database_url: str,
    *,
    slack: SlackApiDouble | None = None,
    invoicexpress: InvoiceXpressSandbox | None = None,
    smsc: SmscSandbox | None = None,
    voipcloud: VoipcloudSandbox | None = None,
    secret: str = SIGNING_SECRET,
    migrate: bool = True,
    variables: Mapping[str, str] | None = None,
    sweep_every: float = 30.0,
    metrics_port: int | None = None,
    **options: Any,
) -> AsyncIterator[Bot]:
    """The app as `billing-bot serve` runs it, on loopback, with InvoiceXpress, SMSC and
    VoIPcloud live against their sandboxes (ActivePlatform unconfigured, so switched off).
    `variables` adds to the environment (`METRICS_TOKEN`, `BILLING_POLICY_FILE`, …); `sweep_every`,
    `metrics_port` and `options` (`clock=…`) are `build_web`'s."""
    ix = invoicexpress or InvoiceXpressSandbox()
    sms = smsc or SmscSandbox()
    vc = voipcloud or VoipcloudSandbox()
    answered = {
        "invoicexpress": Answers(ix.app()),
        "smsc": Answers(sms.app()),
        "voipcloud": Answers(vc.app()),
    }
    if migrate and not database_url.startswith("sqlite"):
        await store.upgrade(database_url)  # PostgreSQL is migrated by `billing-bot db upgrade`
    async with contextlib.AsyncExitStack() as stack:
        double = await stack.enter_async_context(serve_slack_double(slack))
        ix_url = await stack.enter_async_context(serve_asgi(answered["invoicexpress"]))
        smsc_url = await stack.enter_async_context(serve_asgi(answered["smsc"]))
        vc_url = await stack.enter_async_context(serve_asgi(answered["voipcloud"]))
        environment = bot_environment(
            database_url=database_url,
            slack=double,
            secret=secret,
            providers={
                **invoicexpress_env(ix_url, ix),
                **smsc_env(smsc_url, sms),
                **voipcloud_env(vc_url, vc),
            },
        ) | dict(variables or {})
        # Answers the database could not take go to a folder of this test's own (beside the
        # SQLite file already; on PostgreSQL it would be the working directory).
        spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="billing-spool-"))
        environment.setdefault("BILLING_SPOOL_DIR", spool)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in environment.items():
            patch.setenv(name, value)
        web = build_web(
            load_settings(),
            sweep_every=sweep_every,
            metrics_port=metrics_port,
            metrics_host="127.0.0.1",
            **options,
        )
        app_url = await stack.enter_async_context(serve_asgi(web))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        baseline = asyncio.all_tasks()
        yield Bot(
            slack=double,
            url=app_url,
            http=http,
            secret=secret,
            invoicexpress=ix,
            smsc=sms,
            voipcloud=vc,
            answered=answered,
            database_url=database_url,
        )
        await drain(baseline)
