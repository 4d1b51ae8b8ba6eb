"""The terminal adapter: type slash commands, read replies as text, pick buttons by number.

Like Hubot's shell or Errbot's text backend, it drives the real dispatcher, store, approval rules
and scheduler; providers without credentials answer from their sandboxes; files go to a folder.

    prompt (prompt_toolkit: history, Ctrl-R, Tab completion from the declarations)
      │ Enter
      ▼
    a task per command ──► Intake.run(…, surface=ConsoleSurface) ──► Screen (above the prompt)
      │ Ctrl-C: cancel it and every task it started; withdraw what it left half-made
      │ a form: the task asks the prompt loop to put the questions (one input at a time)

Commands run as tasks, so one waiting in a provider's queue does not block typing the next;
background posts (schedules, queued documents, progress) print above the prompt, which is
drawn again under them. This module is the console's core: a line, a button, `:as`,
`:sandbox`, starting and cancelling commands, and replies drawn as text. The prompt loop is in
`prompt`, forms in `forms`, the screen in `screen`, `billing-bot console` itself in `entry`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from prompt_toolkit.application.current import get_app_or_none
from prompt_toolkit.utils import get_cwidth

from bot.console.forms import Forms
from bot.console.screen import PlainScreen, TerminalScreen, Transcript
from bot.console.services import Intake, Providers
from bot.console.steps import StepRunner, run_step
from bot.console.surface import ConsoleSurface
from bot.console.tasks import Running, file_tasks, on_sigint
from bot.mrkdwn import Fragment, Names, fragments, table_fragments
from bot.storage.store import STORED_PREFIX, utcnow
from commands.base import Button, Reply, Table
from commands.secrets import redact

CONSOLE_USER = "UCONSOLE"
CONSOLE_CHANNEL = "CCONSOLE"
CONSOLE_CHANNEL_NAME = "console"
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{1,20}$")


class Console:
    def __init__(
        self,
        *,
        intake: Intake,
        providers: Providers,
        open_roles: bool,
        user: str = CONSOLE_USER,
        channel: str = CONSOLE_CHANNEL,
        files_dir: Path = Path("billing-bot-files"),
        out: TextIO | None = None,
        interactive: bool = False,
        on_change: Callable[[], None] = lambda: None,
        steps: StepRunner | None = None,
    ) -> None:
        self.intake = intake
        self.steps = steps
        self.providers = providers
        self.open_roles = open_roles
        self.user = user
        self.channel = channel
        self.files_dir = files_dir
        self.interactive = interactive
        self.on_change = on_change
        self.buttons: list[Button] = []
        self.saved: list[Path] = []
        self.running: dict[asyncio.Task[bool | None], Running] = {}
        self._messages: dict[tuple[str, str], int] = {}
        self._last_us = 0
        self._commands = 0
        self.names = Names(
            channels={CONSOLE_CHANNEL: CONSOLE_CHANNEL_NAME}, message=self._permalink_label
        )
        screen = PlainScreen(out) if out is not None else TerminalScreen()
        self.transcript = Transcript(screen, self.names)
        self.forms = Forms(intake, self.transcript)

    # --- messages ------------------------------------------------------------------------------

    def next_ts(self) -> str:
        """A message timestamp in Slack's form (seconds.micro), unique across console runs."""
        # Whole microseconds: a float near 1.8e9 rounds two stamps a microsecond apart to one.
        now = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = now
        return f"{now // 1_000_000}.{now % 1_000_000:06d}"

    def remember(self, channel: str, ts: str) -> str:
        number = len(self._messages) + 1
        self._messages[(channel, ts.replace(".", ""))] = number
        return f"message {number}"

    def message_label(self, channel: str, ts: str) -> str | None:
        number = self._messages.get((channel, ts.replace(".", "")))
        return None if number is None else f"message {number}"

    def _permalink_label(self, channel: str, ts: str) -> str | None:
        number = self._messages.get((channel, ts))
        return None if number is None else f"message {number} above"

    # --- replies -------------------------------------------------------------------------------

    def show_reply(self, reply: Reply, header: str) -> None:
        self.transcript.show(
            [("", "\n"), ("class:header", f"── {header} ──\n"), *self.render(reply)]
        )

    def render(self, reply: Reply) -> list[Fragment]:
        text = self.transcript.text
        out = [*text(reply.text, reveal=reply.private and reply.reveal), ("", "\n")]
        for section in reply.sections:
            out += [*text(section), ("", "\n")]
        width = max((get_cwidth(label) for label, _ in reply.fields), default=0)
        for label, value in reply.fields:
            pad = " " * (width - get_cwidth(label))
            out += [("bold", f"  {label}{pad}  "), *text(value), ("", "\n")]
        if reply.table is not None:
            rows = [[redact(cell) for cell in row] for row in reply.table.rows]
            table = Table(
                columns=reply.table.columns, rows=rows, align_right=reply.table.align_right
            )
            out += table_fragments(table)
        for button in reply.buttons:
            self.buttons.append(button)
            style = f"class:button.{button.style}" if button.style else "class:button"
            target = "(a stored command)" if button.command.startswith(STORED_PREFIX) else ""
            out += [
                (style, f"  [{len(self.buttons)}] {button.label}"),
                ("class:note", f"  → {target or redact(button.command)}\n"),
            ]
        for file in reply.files:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            path = self.files_dir / Path(file.filename).name
            path.write_bytes(file.content)
            self.saved.append(path)
            out.append(("", f"  📎 saved {file.title}: {path.resolve()}\n"))
        return out

    # --- commands ------------------------------------------------------------------------------

    def surface(self, *, channel: str | None = None, user: str | None = None) -> ConsoleSurface:
        return ConsoleSurface(self, channel=channel or self.channel, user=user or self.user)

    async def handle(self, line: str, *, number: int = 0) -> bool:
        """One input line: a slash command, a button number, or `:as U…`. False when it was
        refused or failed (the person has been told why)."""
        line = line.strip()
        if not line:
            return True
        if line.startswith(":as"):
            user = line[3:].strip()
            if not SLACK_USER.match(user):
                self.transcript.note(
                    "Usage: `:as U123ABC` (a Slack user ID: U or W, then capitals/digits)."
                )
                return False
            self.user = user
            self.transcript.print(f"now acting as {user}", "class:note")
            return True
        if line.startswith(":sandbox"):
            return self.sandbox_switch(line.removeprefix(":sandbox").split())
        if line.startswith(":step"):  # a Workflow Builder step, without Slack (bot.console.steps)
            return await run_step(self.steps, line, self.user, self.transcript.note)
        if line.isdigit():
            index = int(line)
            if not 1 <= index <= len(self.buttons):
                self.transcript.note(f"There is no button [{index}].")
                return False
            button = self.buttons[index - 1]
            self.transcript.print(f"(clicked “{button.label}” as {self.user})", "class:note")
            line = button.command
        if not line.startswith("/"):
            self.transcript.note(
                "Type a slash command such as `/billing help`, or a button number."
            )
            return False
        surface = ConsoleSurface(self, channel=self.channel, user=self.user, number=number)
        return await self.intake.run(line, user=self.user, channel=self.channel, surface=surface)

    def sandbox_switch(self, words: list[str]) -> bool:
        """`:sandbox voipcloud drop` — make a sandbox misbehave, to see what the bot does when
        a provider loses its answer (`drop`), is slow (`stall 5`), fails (`fail 503`), or
        behaves again (`ok`)."""
        usage = (
            "Usage: `:sandbox <provider> drop|stall <seconds>|fail <status>|ok`, e.g. "
            "`:sandbox voipcloud drop` to lose the provider's answers."
        )
        runtime = self.providers.runtime(words[0]) if words else None
        if runtime is None or runtime.sandbox is None or len(words) < 2:
            self.transcript.note(usage)
            return False
        control = runtime.sandbox.control
        switch, value = words[1].lower(), words[2] if len(words) > 2 else ""
        if switch == "drop":
            control.drop = True
        elif switch == "stall" and value.replace(".", "", 1).isdigit():
            control.stall = float(value)
        elif switch == "fail" and value.isdigit() and 400 <= int(value) <= 599:
            control.fail_status = int(value)
        elif switch == "ok":
            control.drop, control.stall, control.fail_status = False, 0.0, None
        else:
            self.transcript.note(usage)
            return False
        state = "behaves again" if switch == "ok" else f"now answers with {' '.join(words[1:])}"
        self.transcript.print(f"the {runtime.provider.title} sandbox {state}", "class:note")
        return True

    def start(self, line: str) -> asyncio.Task[bool | None]:
        """Run a line as a task of its own; the prompt stays free."""
        loop = asyncio.get_running_loop()
        file_tasks(loop)
        self._commands += 1
        running = Running(self._commands, line.strip(), self.user, utcnow())
        task = loop.create_task(self._run(running), context=running.context())
        running.task = task
        self.running[task] = running
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[bool | None]) -> None:
        self.running.pop(task, None)
        app = get_app_or_none()
        if app is not None and app.is_running:
            app.invalidate()  # the prompt shows how many commands are running

    async def _run(self, running: Running) -> bool | None:
        try:
            return await self.handle(running.line, number=running.number)
        except asyncio.CancelledError:
            await running.stop_the_rest()
            self.transcript.print(f"cancelled: {running.line}", "class:warning")
            return None
        finally:
            self._save()

    def _save(self) -> None:
        try:
            self.on_change()
        except Exception as exc:  # a full disk must not take the console down
            self.transcript.warn(f"could not save the sandboxes' state ({type(exc).__name__})")

    def cancel(self) -> list[str]:
        """Cancel every command in flight; returns their lines."""
        lines = []
        for task, running in list(self.running.items()):
            if not running.stopping:
                running.stopping = True
                task.cancel()
                lines.append(running.line)
        return lines

    def cancel_quietly(self) -> None:
        self.cancel()

    async def wait_all(self) -> None:
        tasks = list(self.running)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run_one(self, line: str) -> int:
        """`-c`: run one line; 0 done, 1 refused or failed, 130 cancelled (Ctrl-C)."""
        task = self.start(line)
        with on_sigint(self.cancel_quietly):
            result = await task
        return 130 if result is None else 0 if result else 1

    # --- the banner ----------------------------------------------------------------------------

    def banner(self, *, own_channel: bool, notes: list[str]) -> None:
        mode = {"live": "live", "sandbox": "built-in sandbox", "disabled": "not configured"}
        lines: list[Fragment] = [
            ("bold", "billing-bot console"),
            ("", " — Slack commands in a terminal. Type a slash command (Tab completes;\n"),
            ("", "`/billing help` lists them), a button's number to click it, `:as U2` to act\n"),
            ("", "as someone else, `:sandbox voipcloud drop` to lose a provider's answers.\n"),
            ("", "↑ and Ctrl-R search history; Ctrl-C cancels; Ctrl-D leaves.\n"),
        ]
        for runtime in self.providers.runtimes:
            lines.append(("", f"  {runtime.provider.title}: {mode[runtime.mode]}\n"))
        if any(r.mode == "sandbox" for r in self.providers.runtimes):
            lines.append(("", "  `/billing status` lists sample ids to try in the sandboxes.\n"))
        if self.open_roles:
            lines.append(
                (
                    "",
                    "No roles are configured, so everyone here is admin; the two-person rule "
                    "still holds:\napprove as someone else with `:as U2` or --as.\n",
                )
            )
        where = self.names.channel(self.channel)
        if own_channel:
            lines.append(("", f"Schedules post here, in #{where} (no BILLING_CHANNEL needed).\n"))
        lines.append(("", f"Acting as {self.user} in #{where}; files go to {self.files_dir}/\n"))
        parts: list[Fragment] = []
        for style, text in lines:
            parts += fragments(text, self.names, style) if "`" in text else [(style, text)]
        self.transcript.show(parts)
        for note in notes:
            self.transcript.print(note, "class:note")
