"""`billing-bot console` in a pseudo-terminal, typed at as a person would: Ctrl-C at the prompt,
during a command and inside a form; Ctrl-D; Tab completion; a form with one bad field; a
scheduled post arriving while a line is half typed. Each test reads the screen (escape codes
removed), the exit code, and checks that no traceback appeared.

Every wait is for text to appear on the screen (with a generous deadline), never a sleep."""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "UCONSOLE>"  # the space after it is a cursor move, not a character
CTRL_C, CTRL_D, TAB, CTRL_U = "\x03", "\x04", "\t", "\x15"
# CSI and OSC sequences, and the lone ESC-x ones: what a terminal acts on but does not show.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)


class Terminal:
    """The console in a pseudo-terminal, and what it has shown so far."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "bot.cli", "console", *args],
            cwd=str(cwd),
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(ROOT),
                "HOME": str(cwd),
                "TERM": "xterm-256color",
                "LANG": "C.UTF-8",
                # A terminal answers prompt_toolkit's cursor-position request; this one doesn't.
                "PROMPT_TOOLKIT_NO_CPR": "1",
                **env,
            },
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(50, 160),
            timeout=90,
        )
        self.raw = ""
        self.seen = 0  # how far `expect` has read the screen text

    @property
    def text(self) -> str:
        return _ESCAPES.sub("", self.raw).replace("\r", "")

    def expect(self, wanted: str, timeout: float = 90) -> str:
        """Wait until `wanted` is shown after what was already expected; returns the new text."""
        deadline = time.monotonic() + timeout
        while wanted not in self.text[self.seen :]:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"{wanted!r} was not shown; the screen after the last match:\n"
                    f"{self.text[self.seen :]}"
                )
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=min(left, 5))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                pytest.fail(f"the console ended before showing {wanted!r}:\n{self.text}")
        start = self.seen
        self.seen = self.text.index(wanted, self.seen) + len(wanted)
        return self.text[start : self.seen]

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def exit_code(self) -> int:
        """Read to the end; the process's exit status."""
        while True:
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=60)
            except pexpect.EOF:
                break
        self.child.close()
        assert self.child.exitstatus is not None, "the console was killed by a signal"
        return int(self.child.exitstatus)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    term.expect("Acting as UCONSOLE")
    term.expect(PROMPT)
    yield term
    if term.child.isalive():
        term.child.terminate(force=True)
    assert "Traceback" not in term.text


def test_ctrl_c_twice_at_the_prompt_leaves_with_0(terminal: Terminal) -> None:
    terminal.send(CTRL_C)
    terminal.expect("(Ctrl-C again or Ctrl-D to leave)")
    terminal.send(CTRL_C)
    assert terminal.exit_code() == 0
    assert terminal.text.endswith("\n")


def test_ctrl_d_leaves_with_0_and_a_new_line(terminal: Terminal) -> None:
    terminal.send(CTRL_D)
    assert terminal.exit_code() == 0
    assert terminal.text.endswith("\n")
    assert "Traceback" not in terminal.text


def test_tab_completes_the_command_its_words_and_arguments(terminal: Terminal) -> None:
    terminal.send("/activepl" + TAB)
    terminal.expect("/activeplatform")
    terminal.send("acc" + TAB)
    terminal.expect("accounts")
    terminal.send("pa" + TAB)
    terminal.expect("page=")
    terminal.send("2\r")
    terminal.expect("UCONSOLE> /activeplatform accounts page=2")
    shown = terminal.expect("[2] Next page")
    assert "230 accounts of reseller 1: page 2 of 6 (accounts 41–80" in shown
    assert "2003041" in shown and "2003001" not in shown

    terminal.send("/invoicexpress at-communication communication_type=po" + TAB)
    terminal.expect("portal_at")
    terminal.send("\r")
    terminal.expect("UCONSOLE> /invoicexpress at-communication communication_type=portal_at")
    terminal.expect("subuser: is required")
    terminal.send(CTRL_D)
    assert terminal.exit_code() == 0


def test_ctrl_c_cancels_a_queued_command_without_blocking_the_prompt(terminal: Terminal) -> None:
    terminal.send("/smsc act get acme num=7\r")
    terminal.expect("saved SMSC act number 7")
    terminal.send("/smsc invoice get acme 501\r")
    terminal.expect("so yours is queued")  # SMSC takes one document request a minute

    terminal.send("/billing status\r")  # typed and run while the other one waits
    terminal.expect("[1 running] UCONSOLE> /billing status")
    terminal.expect("Sample ids to try in the sandboxes")

    terminal.send(CTRL_C)
    terminal.expect("cancelled: /smsc invoice get acme 501")
    terminal.expect(PROMPT)
    terminal.send("/billing approvals\r")
    echoed = terminal.expect("No open approval requests.")
    assert echoed.startswith("UCONSOLE> /billing approvals")  # nothing was running any more
    assert "[1 running] UCONSOLE> /billing approvals" not in terminal.text

    terminal.send(CTRL_C)
    terminal.expect("(Ctrl-C again or Ctrl-D to leave)")
    terminal.send(CTRL_C)
    assert terminal.exit_code() == 0
    assert "saved SMSC invoice" not in terminal.text


def test_ctrl_c_and_ctrl_d_inside_a_form_cancel_it(terminal: Terminal) -> None:
    terminal.send("/voipcloud register\r")
    terminal.expect("Register customer — Ctrl-C cancels the form")
    terminal.expect("First name:")
    terminal.send("Ada\r")
    terminal.expect("Last name:")
    terminal.send(CTRL_C)
    terminal.expect("Register customer: cancelled, nothing was sent.")
    terminal.expect(PROMPT)

    terminal.send("/voipcloud register\r")
    terminal.expect("First name:")
    terminal.send(CTRL_D)
    terminal.expect("Register customer: cancelled, nothing was sent.")
    terminal.expect(PROMPT)

    # Nothing was registered: the next account number is still free.
    terminal.send("/voipcloud balance 10223\r")
    terminal.expect("Customer not found")
    terminal.send(CTRL_D)
    assert terminal.exit_code() == 0


def test_a_form_asks_again_only_for_the_wrong_field(terminal: Terminal) -> None:
    terminal.send("/voipcloud register\r")
    terminal.expect("First name:")
    terminal.send("Ada\r")
    terminal.expect("Last name:")
    terminal.send("Lovelace\r")
    terminal.expect("E-mail:")
    terminal.send("ada-at-example\r")
    terminal.expect("Phone:")
    terminal.send("+61412345678\r")
    terminal.expect("Company (optional):")
    terminal.send("\r")
    terminal.expect("Please correct:")
    terminal.expect("E-mail: 'ada-at-example' is not an e-mail address")
    asked = terminal.expect("E-mail:")
    terminal.send(CTRL_U + "ada@example.com\r")
    done = terminal.expect("Customer Ada Lovelace registered as account 10223.")
    assert "First name" not in asked + done and "Phone" not in asked + done
    terminal.send(CTRL_D)
    assert terminal.exit_code() == 0


def test_a_scheduled_post_prints_above_a_half_typed_line(tmp_path: Path) -> None:
    schedule = Terminal(tmp_path, "-c", "/billing schedule add closing-reminder '0 9 1 * *'")
    schedule.expect("Schedule #1 added")
    assert schedule.exit_code() == 0
    assert "→ #console" in schedule.text  # no BILLING_CHANNEL: the console's own channel

    term = Terminal(tmp_path, SCHEDULER_TICK_SECONDS="1")
    term.expect("Schedules post here, in #console")
    term.expect(PROMPT)
    term.send("/billing sta")
    term.expect("/billing sta")
    with sqlite3.connect(tmp_path / "billing-bot.db") as db:  # make it due now
        db.execute("UPDATE schedules SET next_run_at = created_at WHERE id = 1")

    posted = term.expect("[3] Snooze")
    assert "Closing documents for" in posted and "230 accounts" in posted
    term.send("tus\r")  # the half-typed line is still there under the post
    term.expect("UCONSOLE> /billing status")
    term.expect("Sample ids to try in the sandboxes")
    term.send(CTRL_D)
    assert term.exit_code() == 0
    assert "Traceback" not in term.text


def test_a_step_up_code_is_asked_with_no_echo_and_approves_once(tmp_path: Path) -> None:
    """Enrol as U2 (the console shows the link and key; the QR is Slack's), confirm in the
    form, then approve a move whose rule asks for a code: both codes typed unseen."""
    import pyotp

    policy = tmp_path / "policy.yml"
    policy.write_text(
        "rules:\n  - name: code-for-moves\n    command: voipcloud move-funds\n    step_up: totp\n",
        encoding="utf-8",
    )
    terminal = Terminal(
        tmp_path,
        BILLING_POLICY_FILE=str(policy),
        BILLING_SECRET_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    try:
        terminal.expect(PROMPT)
        terminal.send("/voipcloud move-funds 10023 5.00 top-up\r")
        terminal.expect("Approval needed")
        terminal.send(":as U2\r")
        terminal.expect("U2>")
        terminal.send("/billing mfa enroll\r")
        shown = terminal.expect("Sent to your direct messages")
        found = re.search(r"secret=([A-Z2-7]+)", shown)
        assert found is not None, shown
        totp = pyotp.TOTP(found.group(1))
        terminal.send("/billing mfa confirm\r")
        terminal.expect("Authenticator code:")
        first = totp.now()
        terminal.send(first + "\r")
        terminal.expect("Step-up enrolled")
        terminal.send("/billing approve 1\r")
        terminal.expect("Authenticator code:")
        second = totp.at(time.time(), counter_offset=1)
        terminal.send(second + "\r")
        terminal.expect("Approval #1: done.")
        terminal.send(CTRL_D)
        assert terminal.exit_code() == 0
    finally:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)
    assert first not in terminal.text and second not in terminal.text
    assert "Traceback" not in terminal.text
