"""`billing-bot check`: one line per provider, exit 1 on any failure, no secret printed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from commands.invoicexpress.sandbox import SANDBOX_API_KEY, InvoiceXpressSandbox
from tests.doubles.server import serve_asgi

ROOT = Path(__file__).resolve().parents[2]


async def check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "check"],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_check_reports_each_provider(tmp_path: Path) -> None:
    sandbox = InvoiceXpressSandbox()
    async with serve_asgi(sandbox.app(), thread=True) as url:
        base = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
            "INVOICEXPRESS_ACCOUNT": "acme",
            "INVOICEXPRESS_BASE_URL": url,
        }
        good = await check({**base, "INVOICEXPRESS_API_KEY": SANDBOX_API_KEY}, tmp_path)
        bad = await check({**base, "INVOICEXPRESS_API_KEY": "wrong-key-123456"}, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert lines[0] == "database: ok (sqlite)"
    assert "InvoiceXpress: ok — 3 sequences, default 2026" in lines
    assert "SMSC: not configured (skipped)" in lines
    assert bad.returncode == 1
    assert any(
        line.startswith("InvoiceXpress: FAILED — API key missing or wrong")
        for line in bad.stdout.splitlines()
    )
    assert "wrong-key-123456" not in bad.stdout + bad.stderr
    assert SANDBOX_API_KEY not in good.stdout + good.stderr


async def test_check_refuses_a_bad_variable_in_one_line(tmp_path: Path) -> None:
    result = await check({"APPROVAL_TTL_HOURS": "-3"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: APPROVAL_TTL_HOURS: Input should be greater than 0"
    )
    result = await check({"BILLING_ADMINS": "alice"}, tmp_path)
    assert result.stderr.strip() == (
        "configuration error: BILLING_ADMINS: alice is not a Slack user ID (U…/W…) or "
        "user-group ID (S…)"
    )
