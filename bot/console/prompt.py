"""Where the console's lines come from: the interactive prompt (history, Ctrl-R, Tab completion,
Ctrl-C, forms put between commands) or, without a terminal, a pipe read line by line."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application
from prompt_toolkit.application.current import get_app_or_none
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

from bot.console.completion import CommandCompleter
from bot.console.screen import STYLE
from bot.console.tasks import on_sigint
from commands import grammar
from commands.base import Command, is_secret
from commands.secrets import MASK, redact

if TYPE_CHECKING:
    from bot.console.app import Console


class _Interrupted(Exception):
    """Ctrl-C at the command prompt."""


class _FormWaiting(Exception):
    """A form wants the keyboard; the prompt steps aside and gives back what was typed."""

    def __init__(self, draft: str) -> None:
        super().__init__("form waiting")
        self.draft = draft


def _accepting(app: Application[Any]) -> bool:
    """A prompt that is open and not already on its way out (exit works once)."""
    return app.is_running and app.future is not None and not app.future.done()


class MaskedHistory(FileHistory):
    """The history file, with the values of secret arguments (`password=…`) masked and
    registered secrets redacted: a typed secret never reaches the file."""

    def __init__(self, path: Path, commands: Callable[[], Sequence[Command[Any, Any]]]) -> None:
        super().__init__(str(path))
        self.commands = commands

    def store_string(self, string: str) -> None:
        secret = {
            name
            for command in self.commands()
            for name, info in command.args.model_fields.items()
            if is_secret(info)
        }

        def mask(match: re.Match[str]) -> str:
            name = match.group(1)
            hidden = name.replace("-", "_").lower() in secret
            return f"{name}={MASK}" if hidden else match.group(0)

        masked = re.sub(r"\b([A-Za-z][\w-]*)=(\"[^\"]*\"?|'[^']*'?|\S*)", mask, string)
        for value in _positional_secrets(string, self.commands()):
            masked = masked.replace(value, MASK)
        super().store_string(redact(masked))


def _positional_secrets(line: str, commands: Sequence[Command[Any, Any]]) -> list[str]:
    """Secret values given by position (`/billing mfa confirm 123456`), as the grammar reads
    the line; none when it does not read."""
    slash, _, text = line.strip().removeprefix("/").partition(" ")
    try:
        parsed = grammar.parse(slash.lower(), text, commands)
    except grammar.GrammarError:
        return []
    if not isinstance(parsed, grammar.Parsed):
        return []
    fields = parsed.command.args.model_fields
    return [
        str(value)
        for name, value in parsed.values.items()
        if name in fields and is_secret(fields[name]) and str(value)
    ]


class PromptLoop:
    """The command prompt of a terminal: reads lines and starts each as a command of `console`;
    steps aside when a command's form wants the keyboard."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.session: PromptSession[str] | None = None

    def message(self) -> FormattedText:
        busy = len(self.console.running)
        status = [("class:note", f"[{busy} running] ")] if busy else []
        return FormattedText([*status, ("class:prompt", f"{self.console.user}> ")])

    def _bindings(self) -> KeyBindings:
        bindings = KeyBindings()

        @bindings.add("c-c")
        def _(event: KeyPressEvent) -> None:
            buffer = event.app.current_buffer
            if buffer.text:
                buffer.reset()
            else:
                event.app.exit(exception=_Interrupted())

        return bindings

    def _make_way(self) -> None:
        """Ask the command prompt, if it is open, to step aside for a form."""
        session = self.session
        if session is not None and _accepting(session.app):
            draft = session.default_buffer.text
            session.app.exit(exception=_FormWaiting(draft))

    def _sigint(self) -> None:
        """SIGINT (Ctrl-C when no prompt holds the keyboard, or `kill -INT`) acts like Ctrl-C."""
        app = get_app_or_none()
        if app is not None and _accepting(app):
            is_form = self.session is None or app is not self.session.app
            app.exit(exception=KeyboardInterrupt() if is_form else _Interrupted())
        else:
            self.console.cancel()

    async def run(self, history: Path | None = None) -> int:
        """Read and run commands until Ctrl-D or a second Ctrl-C; returns the exit code (0)."""
        console = self.console
        commands = console.providers.commands
        stored: History = MaskedHistory(history, lambda: commands) if history else InMemoryHistory()
        self.session = PromptSession(
            history=stored,
            completer=CommandCompleter(lambda: console.providers.commands),
            complete_while_typing=False,
            key_bindings=self._bindings(),
            style=STYLE,
            # The prompt line is drawn afresh under every background post; once a line is
            # entered it is printed as part of the transcript instead.
            erase_when_done=True,
        )
        console.forms.make_way = self._make_way
        armed = False
        draft = ""
        try:
            with patch_stdout(raw=True), on_sigint(self._sigint):
                while True:
                    if console.forms.pending:
                        await console.forms.serve(console.forms.pending.popleft())
                        continue
                    try:
                        line = await self.session.prompt_async(
                            self.message, default=draft, handle_sigint=False
                        )
                        draft = ""
                    except _FormWaiting as waiting:
                        draft = waiting.draft
                        continue
                    except _Interrupted:
                        cancelled = console.cancel()
                        if cancelled:
                            armed = False
                            console.transcript.print(
                                f"cancelling: {', '.join(cancelled)}", "class:note"
                            )
                        elif armed:
                            break
                        else:
                            armed = True
                            console.transcript.print(
                                "(Ctrl-C again or Ctrl-D to leave)", "class:note"
                            )
                        continue
                    except EOFError:
                        break
                    armed = False
                    if line.strip():
                        console.transcript.show([*self.message(), ("", line + "\n")])
                        console.start(line)
        finally:
            console.cancel()
            await console.wait_all()
            console.forms.make_way = lambda: None
            self.session = None
        console.transcript.print("")
        return 0


async def read_lines(console: Console, stream: TextIO) -> int:
    """Lines from a pipe or file, one after the other (no prompt, no forms)."""
    loop = asyncio.get_running_loop()
    ok = True
    with on_sigint(console.cancel_quietly):
        while line := await loop.run_in_executor(None, stream.readline):
            if line.strip():
                result = await console.start(line)
                if result is None:
                    return 130
                ok = ok and result
    return 0 if ok else 1
