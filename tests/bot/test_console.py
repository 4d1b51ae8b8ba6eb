"""The terminal adapter: readable replies, numbered buttons, saved files, exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from bot.console import Console
from bot.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]


def console_for(runtime: Runtime, tmp_path: Path, user: str = "U1") -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    console = Console(
        runtime.dispatcher, user=user, channel="C1", files_dir=tmp_path / "files", out=out
    )
    return console, out


async def test_buttons_are_numbered_and_picking_one_clicks_it(
    runtime: Runtime, tmp_path: Path
) -> None:
    console, out = console_for(runtime, tmp_path)
    assert await console.handle("/invoicexpress sequences")
    text = out.getvalue()
    assert "★ 2026" in text
    assert "[1] Set 2025 as default  → /invoicexpress sequence set-current id=101" in text
    assert await console.handle("1")
    assert "(clicked “Set 2025 as default” as U1)" in out.getvalue()
    assert "★ Sequence 2025 (id 101) is now the default." in out.getvalue()


async def test_approval_tried_alone_with_as(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path)
    assert await console.handle("/invoicexpress sequence create 2027")
    assert "[1] Approve  → /billing approve 1" in out.getvalue()
    assert not await console.handle("1")  # an operator cannot approve
    assert await console.handle(":as U2")
    assert await console.handle("1")
    assert "✅ #1 done — approved by @U2" in out.getvalue()
    assert not await console.handle("1")  # and it ran once
    assert "already done" in out.getvalue()


async def test_files_are_saved_and_their_path_printed(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path, user="U0VIEWER")
    assert await console.handle("/smsc act get acme num=7")
    saved = tmp_path / "files" / "smsc-act-7.pdf"
    assert saved.read_bytes().startswith(b"%PDF-")
    assert "saved" in out.getvalue() and str(saved.resolve()) in out.getvalue()


async def test_bad_input_and_unknown_lines_fail(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path)
    assert not await console.handle("/smsc invoice create acme 0")
    assert "`sum`: must be greater than zero" in out.getvalue()
    assert not await console.handle("sequences")
    assert not await console.handle("9")
    assert "there is no button [9]" in out.getvalue()


def test_one_command_mode_exit_codes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "console", *args],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("-c", "/invoicexpress sequences")
    assert ok.returncode == 0, ok.stderr
    assert "invoice sequences" in ok.stdout
    bad = run("-c", "/invoicexpress sequence abc")
    assert bad.returncode == 1
    assert "'abc' is not a positive whole number" in bad.stdout
    assert (tmp_path / "billing-bot.db").exists()
    config = subprocess.run(
        [sys.executable, "-m", "bot.cli", "console", "-c", "/billing help"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "BILLING_TIMEZONE": "Mars/Base"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert config.returncode == 2
    assert config.stderr.strip() == (
        "configuration error: BILLING_TIMEZONE: 'Mars/Base' is not an IANA time zone such as "
        "Europe/Lisbon"
    )


def test_plain_text_keeps_cron_asterisks() -> None:
    from bot.console import plain

    assert plain("*Schedule #1* added: `0 8 * * 1`") == "Schedule #1 added: `0 8 * * 1`"
    assert plain("_nothing_ for *you*") == "nothing for you"
