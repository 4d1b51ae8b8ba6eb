"""The terminal adapter: type slash commands, see replies as text, pick buttons by number.

Like Hubot's shell or Errbot's text backend, it drives the real dispatcher, store and approval
rules; providers without credentials answer from their sandboxes. Files are saved to a folder.
"""

from __future__ import annotations

import getpass
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bot.dispatch import Dispatcher
from bot.replies import MessageRef, table_text
from commands.base import Button, Command, Form, Reply
from commands.secrets import redact

CONSOLE_USER = "UCONSOLE"
CONSOLE_CHANNEL = "CCONSOLE"


def plain(text: str, *, reveal: bool = False) -> str:
    """Slack mrkdwn → terminal text (redacted unless a private reply reveals it)."""
    text = re.sub(r"<@([UW][A-Z0-9]+)>", r"@\1", text)
    # Bold and italics hug their words (`*bold*`), so a cron like `0 8 * * 1` is left alone.
    text = re.sub(r"(?<![\w`*])\*(\S(?:[^*\n]*\S)?)\*(?![\w`*])", r"\1", text)
    text = re.sub(r"(?<![\w`])_(\S(?:[^_\n]*\S)?)_(?![\w`])", r"\1", text)
    return text if reveal else redact(text)


class ConsoleSurface:
    """Prints replies; remembers every button so any can be picked by its number."""

    def __init__(
        self,
        console: Console,
        *,
        channel: str,
        user: str,
    ) -> None:
        self.console = console
        self.channel = channel
        self.user = user

    async def send(self, reply: Reply) -> MessageRef | None:
        ts = self.console.next_ts()
        who = "only you see this" if reply.private else f"#{self.channel}"
        self.console.print(f"\n── message {ts} ({who}) ──")
        self.console.render(reply)
        return None if reply.private else MessageRef(self.channel, ts)

    async def private(self, text: str) -> None:
        self.console.print(f"\n🔒 {plain(text)}")

    async def update(self, ref: MessageRef, reply: Reply) -> None:
        self.console.print(f"\n── message {ref.ts} updated ──")
        self.console.render(reply)

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        if not self.console.interactive:
            return False
        self.console.print(f"\n[{form.title}] (empty line to cancel a required field)")
        values: dict[str, str] = {}
        for f in form.fields:
            options = f" ({'/'.join(v for v, _ in f.options)})" if f.options else ""
            prompt = f"{f.label}{options}: "
            value = self.console.ask(prompt, secret=f.kind == "secret")
            if value:
                values[f.name] = value
        await self.console.dispatcher.run_values(
            command, values, user=self.user, channel=self.channel, surface=self
        )
        return True


class Console:
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        user: str = CONSOLE_USER,
        channel: str = CONSOLE_CHANNEL,
        files_dir: Path = Path("billing-bot-files"),
        out: TextIO = sys.stdout,
        interactive: bool = False,
        reader: Callable[[str], str] = input,
        secret_reader: Callable[[str], str] = getpass.getpass,
    ) -> None:
        self.dispatcher = dispatcher
        self.user = user
        self.channel = channel
        self.files_dir = files_dir
        self.out = out
        self.interactive = interactive
        self.reader = reader
        self.secret_reader = secret_reader
        self.buttons: list[Button] = []
        self.saved: list[Path] = []
        self._ts = 0

    def next_ts(self) -> str:
        """Unique across console runs, like Slack's message timestamps."""
        self._ts += 1
        return f"{int(time.time()) % 100000:05d}.{self._ts}"

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        return (self.secret_reader if secret else self.reader)(prompt).strip()

    def surface(self) -> ConsoleSurface:
        return ConsoleSurface(self, channel=self.channel, user=self.user)

    def render(self, reply: Reply) -> None:
        self.print(plain(reply.text, reveal=reply.private and reply.reveal))
        for section in reply.sections:
            self.print(plain(section))
        width = max((len(label) for label, _ in reply.fields), default=0)
        for label, value in reply.fields:
            self.print(f"  {label.ljust(width)}  {plain(value)}")
        if reply.table is not None:
            self.print(redact(table_text(reply.table, limit=100_000)))
        for button in reply.buttons:
            self.buttons.append(button)
            self.print(f"  [{len(self.buttons)}] {button.label}  → {button.command}")
        for file in reply.files:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            path = self.files_dir / Path(file.filename).name
            path.write_bytes(file.content)
            self.saved.append(path)
            self.print(f"  📎 saved {file.title}: {path.resolve()}")

    async def handle(self, line: str) -> bool:
        """One input line: a slash command, a button number, or `:as U…`."""
        line = line.strip()
        if not line:
            return True
        if line.startswith(":as"):
            user = line[3:].strip()
            if not re.fullmatch(r"[UW][A-Z0-9]+", user):
                self.print("usage: :as U123ABC")
                return False
            self.user = user
            self.print(f"now acting as {user}")
            return True
        if line.isdigit():
            index = int(line)
            if not 1 <= index <= len(self.buttons):
                self.print(f"there is no button [{index}]")
                return False
            button = self.buttons[index - 1]
            self.print(f"(clicked “{button.label}” as {self.user})")
            line = button.command
        if not line.startswith("/"):
            self.print("type a slash command such as /billing help, or a button number")
            return False
        return await self.dispatcher.run(
            line, user=self.user, channel=self.channel, surface=self.surface()
        )

    def banner(self, open_roles: bool) -> str:
        lines = ["billing-bot console — type a slash command (/billing help), a button number,"]
        lines.append("`:as U123` to act as someone else, Ctrl-D to leave.")
        for runtime in self.dispatcher.runtimes:
            mode = {"live": "live", "sandbox": "built-in sandbox", "disabled": "not configured"}
            lines.append(f"  {runtime.provider.title}: {mode[runtime.mode]}")
        if open_roles:
            lines.append(
                "No roles are configured, so everyone in this console is admin. The two-person "
                "rule still holds: approve as someone else with --as or :as."
            )
        lines.append(f"Acting as {self.user} in {self.channel}; files go to {self.files_dir}/")
        return "\n".join(lines)
