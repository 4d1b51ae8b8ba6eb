"""`billing-bot serve` as its own process: what its log shows for a request, and `/metrics`
behind `METRICS_TOKEN` on the public port and open on `--metrics-port`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bot.storage.store import audit
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from tests.support.e2e import (
    SlackSender,
    bot_environment,
    invoicexpress_env,
    table_rows,
    wait_until,
)
from tests.support.ports import free_port
from tests.support.processes import replicas
from tests.support.server import serve_asgi
from tests.support.slack_api import SlackApiDouble, serve_slack_double

SIGNING_SECRET = "e2e-serve-signing-6f0a"
BOT_TOKEN = "xoxb-e2e-serve-2c9d71"
API_KEY = "ix-e2e-serve-key-85be"
METRICS_TOKEN = "e2e-metrics-token-7d41c0a9e2"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_serve_logs_each_request_without_logging_errors_or_secrets(
    database_url: str, tmp_path: Path
) -> None:
    sandbox = InvoiceXpressSandbox(api_key=API_KEY)
    async with (
        serve_slack_double(SlackApiDouble(bot_token=BOT_TOKEN)) as slack,
        serve_asgi(sandbox.app(), thread=True) as ix_url,
    ):
        environment = bot_environment(
            database_url=database_url,
            slack=slack,
            secret=SIGNING_SECRET,
            providers=invoicexpress_env(ix_url, sandbox),
        )
        # Request lines (uvicorn's access log, each provider request) are DEBUG material.
        environment["LOG_LEVEL"] = "DEBUG"
        environment["METRICS_TOKEN"] = METRICS_TOKEN
        metrics_port = free_port()
        flags = ("--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1")

        async def audited() -> bool:
            return bool(await table_rows(database_url, audit))

        async with (
            replicas(environment, tmp_path, count=1, args=flags) as [replica],
            httpx.AsyncClient(timeout=30) as http,
        ):
            sender = SlackSender(slack=slack, url=replica.url, http=http, secret=SIGNING_SECRET)
            sent = await sender.slash("/invoicexpress", "sequences", user="U0VIEWER")
            await slack.wait_for("chat.postMessage", timeout=15)
            await wait_until(audited, "the command's audit row")
            bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            public = await http.get(f"{replica.url}/metrics", headers=bearer)
            wrong = {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}x"}
            refused = await http.get(f"{replica.url}/metrics", headers=wrong)
            private = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        log = replica.log_text()

    assert sent.answer.status_code == 200
    assert "Application shutdown complete" in log  # SIGTERM: a graceful stop
    assert '"POST /slack/events HTTP/1.1" 200' in log
    assert "/sequences.json" in log  # the request that carried the API key was logged
    assert "Logging error" not in log and "Traceback" not in log
    assert (public.status_code, refused.status_code, private.status_code) == (200, 401, 200)
    ran = 'command="/invoicexpress sequences"'
    assert ran in public.text and ran in private.text and ran not in refused.text
    assert '"GET /metrics HTTP/1.1" 200' in log and '"GET /metrics HTTP/1.1" 401' in log
    for secret in (SIGNING_SECRET, BOT_TOKEN, API_KEY, METRICS_TOKEN):
        assert secret not in log
