"""`GET /metrics` is not public by accident: on `serve`'s public port it answers only the bearer
token `METRICS_TOKEN`, and is not there at all without one; `--metrics-port` serves it open on
a port of its own. The token never reaches the logs, Slack or the database.

A missing or wrong token gets 401 with a `WWW-Authenticate: Bearer` challenge, not 403: RFC 6750
§3.1 keeps 403 for a valid token that lacks a scope, and RFC 9110 §15.5.2 has 401 say how to
authenticate; Prometheus's `authorization` setting sends exactly this header.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from commands.secrets import redact
from tests.support.e2e import every_row, recorded_text, running_bot
from tests.support.ports import free_port

TOKEN = "m3trics-e2e-token-0c9f2b71d4a6"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@ON_SQLITE
async def test_the_public_port_answers_metrics_only_to_the_bearer_token(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(database_url, variables={"METRICS_TOKEN": TOKEN}) as bot:
        await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        await bot.slack.wait_for("chat.postMessage")
        url = f"{bot.url}/metrics"
        bare = await bot.http.get(url)
        wrong = await bot.http.get(url, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        longer = await bot.http.get(url, headers={"Authorization": f"Bearer {TOKEN}x"})
        empty = await bot.http.get(url, headers={"Authorization": "Bearer"})
        basic = await bot.http.get(url, headers={"Authorization": f"Basic {TOKEN}"})
        right = await bot.http.get(url, headers=BEARER)
        any_case = await bot.http.get(url, headers={"Authorization": f"bearer  {TOKEN}"})
        health = await bot.http.get(f"{bot.url}/healthz")
        masked = redact(f"Authorization: Bearer {TOKEN}")  # registered like every secret
    rows = await every_row(database_url)

    for refused in (bare, empty, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "billing_" not in refused.text
    for refused in (wrong, longer):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == (
            'Bearer realm="metrics", error="invalid_token"'
        )
        assert "billing_" not in refused.text
    assert right.status_code == any_case.status_code == 200
    assert right.headers["content-type"].startswith("text/plain; version=")
    assert 'command="/invoicexpress sequences"' in right.text
    assert health.status_code == 200  # the health checks ask for no token
    assert masked == "Authorization: Bearer ••••••"
    assert TOKEN not in caplog.text
    assert TOKEN not in recorded_text(bot.slack)
    assert not [row for row in rows if TOKEN in row]


@ON_SQLITE
async def test_without_a_token_the_public_port_has_no_metrics(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        bare = await bot.http.get(f"{bot.url}/metrics")
        carrying = await bot.http.get(f"{bot.url}/metrics", headers=BEARER)
        ready = await bot.http.get(f"{bot.url}/readyz")
    assert bare.status_code == carrying.status_code == 404
    assert "billing_" not in bare.text + carrying.text
    assert ready.status_code == 200


@ON_SQLITE
async def test_the_metrics_port_serves_them_open_beside_the_guarded_public_port(
    database_url: str,
) -> None:
    port = free_port()
    variables = {"METRICS_TOKEN": TOKEN}
    async with running_bot(database_url, variables=variables, metrics_port=port) as bot:
        await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        await bot.slack.wait_for("chat.postMessage")
        private = await bot.http.get(f"http://127.0.0.1:{port}/metrics")
        public = await bot.http.get(f"{bot.url}/metrics")
        events = await bot.http.get(f"http://127.0.0.1:{port}/slack/events")
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):  # it stopped with the app
            await http.get(f"http://127.0.0.1:{port}/metrics")

    assert private.status_code == 200
    assert 'command="/invoicexpress sequences"' in private.text
    assert public.status_code == 401
    assert events.status_code == 404  # that port serves metrics and nothing else


def test_a_short_token_stops_the_start_and_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-metrics-short")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-metrics-short")
    monkeypatch.setenv("METRICS_TOKEN", "tiny-token-9")
    assert main(["serve", "--port", "3999"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "configuration error: METRICS_TOKEN: must be at least 16 characters "
        "(`openssl rand -hex 32`)"
    )
    assert "tiny-token-9" not in err


def test_the_metrics_port_must_differ_from_the_http_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-metrics-port")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-metrics-port")
    assert main(["serve", "--port", "3998", "--metrics-port", "3998"]) == 2
    assert capsys.readouterr().err.strip() == (
        "configuration error: --metrics-port must differ from the HTTP port"
    )
