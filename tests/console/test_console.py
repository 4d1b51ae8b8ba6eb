"""The terminal adapter in-process: readable replies, numbered buttons, saved files, cancelling,
completion, the sandboxes' saved state, and `billing-bot console` run as a program without a
terminal (`-c`, `--as`, `--help`, `--fresh`). tests/console/test_console_terminal.py drives it
through a pseudo-terminal."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from bot.approvals.state import Status
from bot.console.app import CONSOLE_CHANNEL, Console
from bot.console.completion import CommandCompleter
from bot.console.entry import ConsoleFiles
from bot.console.prompt import MaskedHistory
from bot.console.screen import plain
from bot.mrkdwn import Names
from bot.runtime import Runtime, open_providers
from commands.sandbox import Sandbox
from commands.sandbox_state import StateError, load_state, number_span, save_state
from tests.support import Clock, OpenBot, sandbox_of

ROOT = Path(__file__).resolve().parents[2]


def console_for(
    runtime: Runtime, tmp_path: Path, user: str = "U1", channel: str = "C1"
) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    console = Console(
        intake=runtime.dispatcher,
        providers=runtime.catalog,
        open_roles=runtime.roles.open_console,
        user=user,
        channel=channel,
        files_dir=tmp_path / "files",
        out=out,
    )
    return console, out


# --- replies --------------------------------------------------------------------------------


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


async def test_a_request_two_approved_names_both_in_order(
    open_bot: OpenBot, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "rules:\n  - name: two\n    command: voipcloud move-funds\n    approvals: 2\n",
        encoding="utf-8",
    )
    clock = Clock(datetime(2030, 1, 6, 9, 0, tzinfo=UTC))
    runtime = await open_bot(billing_policy_file=str(policy), clock=clock)
    console, out = console_for(runtime, tmp_path)
    assert await console.handle("/voipcloud move-funds 10025 12.00 refund")
    for user in ("U3", "U2"):
        assert await console.handle(f":as {user}")
        assert await console.handle("/billing approve 1")
        clock.advance(minutes=1)
    assert "⏳ #1 approved by @U3 and @U2, running…" in out.getvalue()
    assert "✅ #1 done — approved by @U3 and @U2" in out.getvalue()


async def test_files_are_saved_and_their_path_printed(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path, user="U0VIEWER")
    assert await console.handle("/smsc act get acme num=7")
    saved = tmp_path / "files" / "smsc-act-7.pdf"
    assert saved.read_bytes().startswith(b"%PDF-")
    assert "saved" in out.getvalue() and str(saved.resolve()) in out.getvalue()


async def test_bad_input_and_unknown_lines_fail(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path)
    assert not await console.handle("/smsc invoice create acme 0")
    assert "🔒 sum: must be greater than zero\nExpected: /smsc invoice create <user> <sum>" in (
        out.getvalue()
    )
    assert not await console.handle("sequences")
    assert "Type a slash command such as /billing help, or a button number." in out.getvalue()
    assert not await console.handle("9")
    assert "There is no button [9]." in out.getvalue()
    assert sandbox_of(runtime, "smsc").control.requests == []


async def test_as_takes_only_a_slack_user_id(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path)
    assert not await console.handle(":as bob")
    assert "Usage: :as U123ABC (a Slack user ID: U or W, then capitals/digits)." in out.getvalue()
    assert console.user == "U1"


async def test_replies_carry_no_slack_markup_or_ids(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path, channel=CONSOLE_CHANNEL)
    assert await console.handle("/invoicexpress sequence create 2027")
    assert await console.handle("/billing approvals")
    text = out.getvalue()
    assert "── console · message 1 ──" in text
    assert "#1 /invoicexpress sequence create serie=2027" in text and "— by @U1" in text
    assert "· message 1 above" in text
    for markup in ("`", "*", "<", "slack.com", CONSOLE_CHANNEL):
        assert markup not in text, markup


def test_mrkdwn_reads_as_plain_text() -> None:
    names = Names(
        channels={"C0BILLING": "billing"},
        message=lambda channel, ts: "message 2" if ts == "1712345678000100" else None,
    )
    cases = {
        "*Schedule #1* added: `0 8 * * 1`": "Schedule #1 added: 0 8 * * 1",
        "_nothing_ for *you*": "nothing for you",
        "see <https://example.com/a?b=1|the docs> or <https://example.com>": (
            "see the docs (https://example.com/a?b=1) or https://example.com"
        ),
        "posts to <#C0BILLING> and <#C0OTHER|ops>": "posts to #billing and #ops",
        "<@U1> and <!here>: ~old~": "@U1 and @here: old",
        "a &lt;b&gt; &amp; c": "a <b> & c",
        "<https://slack.com/archives/C0BILLING/p1712345678000100|open>": "message 2",
        "<https://slack.com/archives/C0BILLING/p1|open>": "an earlier message",
        "```\nID  Name\n1   *x*\n```": "ID  Name\n1   *x*",
        "snake_case_name and 2 * 3 * 4": "snake_case_name and 2 * 3 * 4",
    }
    for mrkdwn, shown in cases.items():
        assert plain(mrkdwn, names=names) == shown, mrkdwn


async def test_message_ids_differ_across_consoles(runtime: Runtime, tmp_path: Path) -> None:
    first, _ = console_for(runtime, tmp_path)
    second, _ = console_for(runtime, tmp_path)
    stamps = [first.next_ts(), first.next_ts(), second.next_ts()]
    assert len(set(stamps)) == 3
    assert stamps == sorted(stamps, key=float)


async def test_status_lists_sample_ids_for_each_sandbox(runtime: Runtime, tmp_path: Path) -> None:
    console, out = console_for(runtime, tmp_path)
    assert await console.handle("/billing status")
    text = out.getvalue()
    assert "InvoiceXpress sequences: 101 (2025), 102 (2026, default), 103 (NC2026)" in text
    assert "SMSC sub-clients: acme (ID 101), globex (ID 102)" in text
    assert "SMSC acts: 701 or num=7 (acme), 702 or num=8 (globex)" in text
    assert "VoIPcloud customer accounts: 10023–10222 (e.g. 10023 Jane Citizen" in text
    assert "ActivePlatform resellers: 1 (230 accounts, yours), 2 (4 accounts)" in text
    assert "ActivePlatform accounts: 2003001–2003230 (reseller 1)" in text


# --- cancelling -------------------------------------------------------------------------------


def stop_in(target: Any, name: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Replace `target.name` so that it does its work, says so, then waits until cancelled.
    Returns (reached, unwound): set when it got there, and when its cancellation unwound it."""
    real: Callable[..., Awaitable[Any]] = getattr(target, name)
    reached, unwound = asyncio.Event(), asyncio.Event()

    async def stopped(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        reached.set()
        try:
            await asyncio.Event().wait()
        finally:
            unwound.set()
        return result

    setattr(target, name, stopped)
    return reached, unwound


async def test_cancelling_a_command_stops_the_work_it_started(
    runtime: Runtime, tmp_path: Path
) -> None:
    console, out = console_for(runtime, tmp_path)
    runtime_ix = runtime.catalog.runtime("invoicexpress")
    assert runtime_ix is not None
    reached, unwound = stop_in(runtime_ix.client, "sequences")

    task = console.start("/invoicexpress sequences")
    await reached.wait()
    assert console.cancel() == ["/invoicexpress sequences"]
    assert await task is None

    # The handler ran in a task dispatch started; it was cancelled too, not left running.
    assert unwound.is_set()
    assert "cancelled: /invoicexpress sequences" in out.getvalue()
    assert not console.running


async def test_a_request_cancelled_before_it_was_shown_is_withdrawn(
    runtime: Runtime, tmp_path: Path
) -> None:
    console, out = console_for(runtime, tmp_path)
    reached, _ = stop_in(runtime.approvals, "create")

    task = console.start("/invoicexpress sequence create 2027")
    await reached.wait()  # the request is in the database, its card not shown yet
    console.cancel()
    assert await task is None

    assert await runtime.approvals.open() == []
    row = await runtime.approvals.get(1)
    assert row is not None and row.status is Status.REJECTED
    assert row.reason == "cancelled before the request was complete"
    assert "Approval request #1 withdrawn: the command was cancelled." in out.getvalue()
    assert "Approve" not in out.getvalue()
    audit = await runtime.audit.recent(5)
    assert audit[0]["decision"] == "withdrawn" and audit[0]["outcome"] == "not run"


async def test_an_approval_cancelled_while_it_runs_ends_unknown_and_is_not_rerun(
    runtime: Runtime, tmp_path: Path
) -> None:
    console, out = console_for(runtime, tmp_path)
    assert await console.handle("/invoicexpress sequence create 2027")
    runtime_ix = runtime.catalog.runtime("invoicexpress")
    assert runtime_ix is not None
    reached, _ = stop_in(runtime_ix.client, "create_sequence")
    assert await console.handle(":as U2")

    task = console.start("1")  # the Approve button
    await reached.wait()  # the sequence was created at the provider; the answer is pending
    console.cancel()
    assert await task is None

    row = await runtime.approvals.get(1)
    assert row is not None and row.status is Status.UNKNOWN
    assert "Approval #1 was cancelled while it ran, so its outcome is unknown" in out.getvalue()
    assert not await console.handle("1")
    assert "already" in out.getvalue().rsplit("(clicked", 1)[1]


# --- completion -------------------------------------------------------------------------------


def completions(runtime: Runtime, text: str) -> list[str]:
    completer = CommandCompleter(lambda: runtime.catalog.commands)
    found = completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [text[: len(text) + c.start_position] + c.text for c in found]


async def test_tab_completes_from_the_declarations(runtime: Runtime) -> None:
    assert completions(runtime, "/inv") == ["/invoicexpress "]
    assert "/smsc invoice " in completions(runtime, "/smsc inv")
    assert completions(runtime, "/invoicexpress sequence cr") == ["/invoicexpress sequence create "]
    assert completions(runtime, "/activeplatform accounts p") == ["/activeplatform accounts page="]
    assert completions(runtime, "/activeplatform accounts page=2 ") == [
        "/activeplatform accounts page=2 reseller=",
        "/activeplatform accounts page=2 email=",
    ]
    assert completions(runtime, "/invoicexpress at-communication communication_type=po") == [
        "/invoicexpress at-communication communication_type=portal_at "
    ]
    assert completions(runtime, "/invoicexpress sequence create 2027 d") == [
        "/invoicexpress sequence create 2027 default="
    ]
    assert completions(runtime, ":a") == [":as"]
    assert completions(runtime, "/nothing ") == []


# --- state beside the database ----------------------------------------------------------------


def sandboxes() -> dict[str, Sandbox]:
    return {r.provider.name: r.sandbox for r in open_providers(use_sandboxes=True) if r.sandbox}


def test_console_files_are_named_after_the_database(tmp_path: Path) -> None:
    files = ConsoleFiles.beside(f"sqlite:///{tmp_path}/data/team.db")
    assert files.database == tmp_path / "data" / "team.db"
    assert files.history == tmp_path / "data" / "team.history"
    assert files.sandboxes == tmp_path / "data" / "team.sandboxes"
    assert files.log == tmp_path / "data" / "team.console.log"
    server = ConsoleFiles.beside("postgresql://billing@127.0.0.1/billing")
    assert server.database is None and server.sandboxes == Path("billing-bot.sandboxes")


async def test_the_history_file_keeps_no_typed_secret(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "billing-bot.history"
    history = MaskedHistory(path, lambda: runtime.catalog.commands)
    history.append_string(
        "/invoicexpress at-communication subuser=123456789/3 password='hunter 2' "
        "communication_type=auto"
    )
    history.append_string("/smsc act get acme num=7")
    history.append_string("/billing mfa confirm 493817")
    history.append_string("/billing approve 12 code=650212 reason='checked'")

    written = path.read_text()
    assert "493817" not in written and "650212" not in written
    assert "/billing mfa confirm ••••••" in written
    assert "/billing approve 12 code=•••••• reason='checked'" in written
    assert "hunter" not in written
    assert "subuser=123456789/3 password=•••••• communication_type=auto" in written
    assert "/smsc act get acme num=7" in written


def test_sandbox_state_survives_a_save_and_a_load(tmp_path: Path) -> None:
    path = tmp_path / "state"
    before = sandboxes()
    invoicexpress: Any = before["invoicexpress"]
    new_id = invoicexpress.add("2027", default=False)
    save_state(path, before)

    after = sandboxes()
    load_state(path, after)
    restored: Any = after["invoicexpress"]
    assert restored.sequences[new_id].serie == "2027"
    assert restored.next_id == new_id


def test_a_snapshot_from_other_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"not a snapshot")
    with pytest.raises(StateError, match="state cannot be read"):
        load_state(path, sandboxes())
    save_state(path, {})
    with pytest.raises(StateError, match="no usable state for invoicexpress"):
        load_state(path, sandboxes())


def test_number_spans() -> None:
    assert number_span([3, 1, 2]) == "1–3"
    assert number_span([1, 5]) == "1, 5"
    assert number_span(list(range(0, 20, 2)), limit=3) == "0, 2, 4 and 7 more"
    assert number_span([]) == "none"


# --- the program without a terminal --------------------------------------------------------------


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "console", *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_one_command_mode_exit_codes(tmp_path: Path) -> None:
    ok = run(tmp_path, "-c", "/invoicexpress sequences")
    assert ok.returncode == 0, ok.stderr
    assert "invoice sequences" in ok.stdout
    bad = run(tmp_path, "-c", "/invoicexpress sequence abc")
    assert bad.returncode == 1
    assert "'abc' is not a positive whole number" in bad.stdout
    assert (tmp_path / "billing-bot.db").exists()
    config = run(tmp_path, "-c", "/billing help", BILLING_TIMEZONE="Mars/Base")
    assert config.returncode == 2
    assert config.stderr.strip() == (
        "configuration error: BILLING_TIMEZONE: 'Mars/Base' is not an IANA time zone such as "
        "Europe/Lisbon"
    )


def test_as_is_checked_and_help_describes_the_console(tmp_path: Path) -> None:
    bad = run(tmp_path, "--as", "bob", "-c", "/billing status")
    assert bad.returncode == 2
    assert "argument --as: 'bob' is not a Slack user ID" in bad.stderr
    assert not (tmp_path / "billing-bot.db").exists()

    shown = run(tmp_path, "--help")
    assert shown.returncode == 0
    for text in (
        "Try the bot in a terminal",
        "default UCONSOLE",
        "default billing-bot-files/",
        "--fresh",
        "billing-bot.sandboxes",
        "billing-bot.history",
        "Ctrl-C",
        "Schedules post to the console's own channel",
    ):
        assert text in shown.stdout, text


def test_sandboxes_keep_their_state_with_the_database_or_start_afresh_together(
    tmp_path: Path,
) -> None:
    requested = run(tmp_path, "-c", "/invoicexpress sequence create 2027")
    assert requested.returncode == 0, requested.stderr
    approved = run(tmp_path, "--as", "U2", "-c", "/billing approve 1")
    assert approved.returncode == 0, approved.stdout
    listed = run(tmp_path, "-c", "/invoicexpress sequences")
    assert "2027" in listed.stdout

    fresh = run(tmp_path, "--fresh", "-c", "/invoicexpress sequences")
    assert fresh.returncode == 0
    assert "2027" not in fresh.stdout
    audit = run(tmp_path, "-c", "/billing audit")
    assert "sequence create" not in audit.stdout
    assert "Traceback" not in requested.stderr + approved.stderr + fresh.stderr + audit.stderr


async def test_a_sandbox_can_lose_its_answers_to_try_an_unknown_outcome(
    runtime: Runtime, tmp_path: Path
) -> None:
    """`:sandbox voipcloud drop`, an approval, then Check now and Mark done, as the README's
    walk-through does it."""
    console, out = console_for(runtime, tmp_path, user="U1")
    assert await console.handle("/voipcloud move-funds 10025 12.00 refund")
    assert not await console.handle(":sandbox nowhere drop")
    assert "Usage: :sandbox <provider>" in out.getvalue()
    assert await console.handle(":sandbox voipcloud drop")
    assert await console.handle(":as U2")
    await console.handle("/billing approve 1")
    assert "outcome unknown" in out.getvalue()
    assert await console.handle(":sandbox voipcloud ok")
    assert await console.handle(":as U3")
    check = next(b for b in console.buttons if b.label == "Check now")
    assert await console.handle(str(console.buttons.index(check) + 1))
    assert "it happened" in out.getvalue()
    done = next(b for b in console.buttons if b.label == "Mark done")
    assert await console.handle(str(console.buttons.index(done) + 1))
    assert "outcome settled as done by @U3" in out.getvalue()
    assert "Traceback" not in out.getvalue()


async def test_marking_not_done_what_a_check_found_done_says_so(
    runtime: Runtime, tmp_path: Path
) -> None:
    console, out = console_for(runtime, tmp_path, user="U1")
    assert await console.handle("/voipcloud move-funds 10025 12.00 refund")
    assert await console.handle(":sandbox voipcloud drop")
    assert await console.handle(":as U2")
    await console.handle("/billing approve 1")
    assert await console.handle(":sandbox voipcloud ok")
    assert await console.handle(":as U3")
    check = next(b for b in console.buttons if b.label == "Check now")
    assert await console.handle(str(console.buttons.index(check) + 1))
    assert "It looks done." in out.getvalue()
    against = next(b for b in console.buttons if b.label == "Mark not done")
    assert await console.handle(str(console.buttons.index(against) + 1))
    assert "outcome settled as not done by @U3" in out.getvalue()
    assert "Reason: marked not done against the check, which found: Customer 10025's" in (
        out.getvalue()
    )
