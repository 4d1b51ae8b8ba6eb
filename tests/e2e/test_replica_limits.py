"""Provider limits hold across two `billing-bot serve` processes on one PostgreSQL.

SMSC answers error 9 to a second document request from one login within a minute; VoIPcloud
grants a request budget per token. Both replicas use one SMSC login and one VoIPcloud token.
CI cannot wait minutes, so the SMSC sandbox's minute lasts `SPACING` real seconds (its clock
runs 60/SPACING times faster) and the bot is told the same spacing (SMSC_DOCUMENT_SPACING).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from bot.storage.store import audit
from commands.smsc.queue import MINUTE
from commands.smsc.sandbox import SmscSandbox
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.e2e import (
    SlackSender,
    bot_environment,
    smsc_env,
    table_rows,
    voipcloud_env,
    wait_until,
)
from tests.support.processes import replicas, upgrade_database
from tests.support.server import serve_asgi
from tests.support.slack_api import serve_slack_double

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SPACING = 1.0
BUDGET = 3


def rows_for(rows: list[dict[str, object]], command: str) -> list[dict[str, object]]:
    return [r for r in rows if r["command"] == command and r["decision"] == "ran"]


@on_postgresql
async def test_two_replicas_keep_smscs_minute_and_voipclouds_budget(
    database_url: str, tmp_path: Path
) -> None:
    smsc = SmscSandbox(clock=lambda: time.monotonic() * MINUTE / SPACING)
    voipcloud = VoipcloudSandbox()
    async with (
        serve_slack_double() as slack,
        serve_asgi(smsc.app(), thread=True) as smsc_url,
        serve_asgi(voipcloud.app(), thread=True) as voipcloud_url,
    ):
        environment = bot_environment(
            database_url=database_url,
            slack=slack,
            providers={
                **smsc_env(smsc_url, smsc),
                "SMSC_DOCUMENT_SPACING": str(SPACING),
                **voipcloud_env(voipcloud_url, voipcloud),
                "VOIPCLOUD_RATE_LIMIT": f"{BUDGET}/10m",
            },
        )
        await upgrade_database(environment, tmp_path)
        async with (
            replicas(environment, tmp_path, count=2) as running,
            httpx.AsyncClient(timeout=30) as http,
        ):
            senders = [SlackSender(slack=slack, url=r.url, http=http) for r in running]
            # Two documents asked on each replica at once, and twice the budget of balances.
            await asyncio.gather(
                *(
                    senders[n % 2].slash("/smsc", "invoice get acme 501", user="U0VIEWER")
                    for n in range(4)
                ),
                *(
                    senders[n % 2].slash("/voipcloud", "balance 10023", user="U0VIEWER")
                    for n in range(2 * BUDGET)
                ),
            )

            async def settled() -> bool:
                rows = await table_rows(database_url, audit)
                return (
                    len(rows_for(rows, "/smsc invoice get")) == 4
                    and len(rows_for(rows, "/voipcloud balance")) == 2 * BUDGET
                )

            await wait_until(settled, "every command audited", timeout=60)
        rows = await table_rows(database_url, audit)

    served = sorted(smsc.served, key=lambda s: s.at)
    assert [s.error_code for s in served] == [None] * 4  # no error 9
    gaps = [(b.at - a.at) for a, b in zip(served, served[1:], strict=False)]
    assert all(gap >= MINUTE for gap in gaps), gaps  # a sandbox minute apart at least
    assert [r["outcome"] for r in rows_for(rows, "/smsc invoice get")] == ["done"] * 4

    balances = [r for r in voipcloud.control.requests if r.method == "GET"]
    assert len(balances) == BUDGET
    outcomes = sorted(str(r["outcome"]) for r in rows_for(rows, "/voipcloud balance"))
    assert outcomes == ["done"] * BUDGET + ["failed"] * BUDGET
    refused = [r for r in rows_for(rows, "/voipcloud balance") if r["outcome"] == "failed"]
    assert all("request budget" in str(r["detail"]) for r in refused)
