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
drawn again under them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application
from prompt_toolkit.application.current import get_app_or_none
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.console.completion import CommandCompleter
from bot.console.mrkdwn import Fragment, Names, fragments, table_fragments
from bot.console.services import Intake, Providers
from bot.runtime import ConfigError, open_runtime
from bot.storage.store import STORED_PREFIX, utcnow
from bot.surface import MessageRef, Surface
from commands.base import Button, Command, Form, FormField, Reply, Table
from commands.sandbox_state import StateError, load_state, save_state
from commands.secrets import MASK, install_log_redaction, redact

CONSOLE_USER = "UCONSOLE"
CONSOLE_CHANNEL = "CCONSOLE"
CONSOLE_CHANNEL_NAME = "console"
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{1,20}$")

STYLE = Style.from_dict(
    {
        "code": "#5fafd7",
        "pre": "#5fafd7",
        "link": "underline #5fafd7",
        "mention": "#d7af00",
        "header": "#8a8a8a",
        "rule": "#8a8a8a",
        "note": "#8a8a8a",
        "warning": "#d75f5f",
        "button": "bold",
        "button.primary": "bold #5faf5f",
        "button.danger": "bold #d75f5f",
        "prompt": "bold",
        "question": "bold",
    }
)


def plain(text: str, *, reveal: bool = False, names: Names | None = None) -> str:
    """Slack mrkdwn → the text a person reads (redacted unless a private reply reveals it)."""
    return "".join(t for _, t in fragments(text if reveal else redact(text), names))


# --- where text goes ---------------------------------------------------------------------------


class Screen(Protocol):
    def show(self, parts: list[Fragment]) -> None: ...


class PlainScreen:
    """Text without styling, to a stream (tests, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, parts: list[Fragment]) -> None:
        self.out.write("".join(text for _, text in parts))
        self.out.flush()


class TerminalScreen:
    """Styled text on the terminal; while a prompt is open it prints above it and redraws it."""

    def show(self, parts: list[Fragment]) -> None:
        print_formatted_text(
            FormattedText(parts), style=STYLE, end="", include_default_pygments_style=False
        )


# --- cancelling a command and everything it started -----------------------------------------------

# The tasks of one console command. Dispatch runs a handler in a task of its own (and a heartbeat
# beside it); cancelling the command must stop those too, or a handler would go on to call the
# provider after the person was told "cancelled". New tasks inherit their creator's context, so a
# task factory can file each one under the command that (indirectly) created it.
_GROUP: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "console_command_tasks", default=None
)


def _filing_factory(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
    context: contextvars.Context | None = kwargs.get("context")
    group = context.get(_GROUP) if context is not None else _GROUP.get()
    if group is not None:
        group.add(task)
        task.add_done_callback(group.discard)
    return task


def _file_tasks(loop: asyncio.AbstractEventLoop) -> None:
    if loop.get_task_factory() is None:
        loop.set_task_factory(_filing_factory)  # type: ignore[arg-type]


@dataclass(eq=False)
class Running:
    """One command in flight."""

    number: int
    line: str
    user: str
    started: datetime
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    task: asyncio.Task[bool | None] | None = None
    stopping: bool = False


# --- forms -------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """Ctrl-C at the command prompt."""


class _FormWaiting(Exception):
    """A form wants the keyboard; the prompt steps aside and gives back what was typed."""

    def __init__(self, draft: str) -> None:
        super().__init__("form waiting")
        self.draft = draft


@dataclass(eq=False)
class FormRequest:
    """Questions a command's task wants put to the person, answered by the prompt loop."""

    form: Form
    ask: list[FormField]
    answers: dict[str, str]
    errors: dict[str, str]
    future: asyncio.Future[dict[str, str] | None]


# --- the surface ---------------------------------------------------------------------------------


class ConsoleSurface:
    """Where one command's answers go: the screen. Remembers the approvals it showed."""

    def __init__(self, console: Console, *, channel: str, user: str, number: int = 0) -> None:
        self.console = console
        self.channel = channel
        self.user = user
        self.number = number

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        if reply.private:
            self.console.show_reply(reply, "only you see this")
            return None
        ts = self.console.next_ts()
        label = self.console.remember(self.channel, ts)
        self.console.show_reply(reply, f"{self.console.names.channel(self.channel)} · {label}")
        return MessageRef(self.channel, ts)

    async def private(self, text: str) -> None:
        self.console.note(text)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        found = self.console.message_label(ref.channel, ref.ts) if ref else None
        label = found or "a message from an earlier run"
        self.console.show_reply(reply, f"{label}, updated")

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        if not self.console.interactive:
            return False
        await self.console.fill_form(command, form, surface=self)
        return True


# --- the console ---------------------------------------------------------------------------------


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
    ) -> None:
        self.intake = intake
        self.providers = providers
        self.open_roles = open_roles
        self.user = user
        self.channel = channel
        self.files_dir = files_dir
        self.screen: Screen = PlainScreen(out) if out is not None else TerminalScreen()
        self.interactive = interactive
        self.on_change = on_change
        self.buttons: list[Button] = []
        self.saved: list[Path] = []
        self.running: dict[asyncio.Task[bool | None], Running] = {}
        self._messages: dict[tuple[str, str], int] = {}
        self._last_us = 0
        self._commands = 0
        self._forms: deque[FormRequest] = deque()
        self._session: PromptSession[str] | None = None
        self.names = Names(
            channels={CONSOLE_CHANNEL: CONSOLE_CHANNEL_NAME}, message=self._permalink_label
        )

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

    # --- output --------------------------------------------------------------------------------

    def print(self, text: str, style: str = "") -> None:
        self.screen.show([(style, text + "\n")])

    def note(self, text: str) -> None:
        """A private note (errors, hints, progress of a queue): 🔒 and the text."""
        self.screen.show([("", "🔒 "), *self._text(text), ("", "\n")])

    def warn(self, text: str) -> None:
        self.screen.show([("class:warning", f"⚠ {text}\n")])

    def _text(self, text: str, *, reveal: bool = False) -> list[Fragment]:
        return fragments(text if reveal else redact(text), self.names)

    def show_reply(self, reply: Reply, header: str) -> None:
        self.screen.show([("", "\n"), ("class:header", f"── {header} ──\n"), *self.render(reply)])

    def render(self, reply: Reply) -> list[Fragment]:
        out = [*self._text(reply.text, reveal=reply.private and reply.reveal), ("", "\n")]
        for section in reply.sections:
            out += [*self._text(section), ("", "\n")]
        width = max((get_cwidth(label) for label, _ in reply.fields), default=0)
        for label, value in reply.fields:
            pad = " " * (width - get_cwidth(label))
            out += [("bold", f"  {label}{pad}  "), *self._text(value), ("", "\n")]
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
                self.note("Usage: `:as U123ABC` (a Slack user ID: U or W, then capitals/digits).")
                return False
            self.user = user
            self.print(f"now acting as {user}", "class:note")
            return True
        if line.startswith(":sandbox"):
            return self.sandbox_switch(line.removeprefix(":sandbox").split())
        if line.isdigit():
            index = int(line)
            if not 1 <= index <= len(self.buttons):
                self.note(f"There is no button [{index}].")
                return False
            button = self.buttons[index - 1]
            self.print(f"(clicked “{button.label}” as {self.user})", "class:note")
            line = button.command
        if not line.startswith("/"):
            self.note("Type a slash command such as `/billing help`, or a button number.")
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
            self.note(usage)
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
            self.note(usage)
            return False
        state = "behaves again" if switch == "ok" else f"now answers with {' '.join(words[1:])}"
        self.print(f"the {runtime.provider.title} sandbox {state}", "class:note")
        return True

    def start(self, line: str) -> asyncio.Task[bool | None]:
        """Run a line as a task of its own; the prompt stays free."""
        loop = asyncio.get_running_loop()
        _file_tasks(loop)
        self._commands += 1
        running = Running(self._commands, line.strip(), self.user, utcnow())
        context = contextvars.copy_context()
        context.run(_GROUP.set, running.tasks)
        task = loop.create_task(self._run(running), context=context)
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
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            others = [t for t in running.tasks if t is not current]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            self.print(f"cancelled: {running.line}", "class:warning")
            return None
        finally:
            self._save()

    def _save(self) -> None:
        try:
            self.on_change()
        except Exception as exc:  # a full disk must not take the console down
            self.warn(f"could not save the sandboxes' state ({type(exc).__name__})")

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
        with _on_sigint(self.cancel_quietly):
            result = await task
        return 130 if result is None else 0 if result else 1

    # --- forms ---------------------------------------------------------------------------------

    async def fill_form(
        self, command: Command[Any, Any], form: Form, *, surface: ConsoleSurface
    ) -> None:
        """Ask a form's fields (in the command's task); a wrong field is asked again, alone,
        and every other answer is kept (secrets too, in memory only)."""
        answers: dict[str, str] = {}
        ask = list(form.fields)
        errors: dict[str, str] = {}
        while True:
            request = FormRequest(form, ask, dict(answers), errors, asyncio.Future())
            self._forms.append(request)
            self._make_way()
            try:
                got = await request.future
            finally:
                with contextlib.suppress(ValueError):
                    self._forms.remove(request)
            if got is None:
                self.print(f"{form.title}: cancelled, nothing was sent.", "class:warning")
                return
            answers = got
            found, errors = await self.intake.check_form(
                command.path, answers, user=surface.user, channel=surface.channel
            )
            if found is None:
                self.note(errors.get("_", "That command no longer exists."))
                return
            if not errors:
                break
            ask = [f for f in form.fields if f.name in errors] or list(form.fields)
        await self.intake.run_values(
            command, answers, user=surface.user, channel=surface.channel, surface=surface
        )

    def _make_way(self) -> None:
        """Ask the command prompt, if it is open, to step aside for a form."""
        session = self._session
        if session is not None and _accepting(session.app):
            draft = session.default_buffer.text
            session.app.exit(exception=_FormWaiting(draft))

    async def _serve_form(self, request: FormRequest) -> None:
        if request.future.done():
            return
        if request.errors:
            self.print("Please correct:", "class:warning")
            labels = {f.name: f.label for f in request.form.fields}
            for name, text in request.errors.items():
                self.screen.show(
                    [("", f"  ✗ {labels.get(name, name)}: "), *self._text(text), ("", "\n")]
                )
        else:
            self.print(
                f"{request.form.title} — Ctrl-C cancels the form; "
                "an empty answer skips an optional field.",
                "class:question",
            )
        answers = dict(request.answers)
        try:
            for form_field in request.ask:
                value = await self._ask_field(form_field, answers.get(form_field.name, ""))
                if value:
                    answers[form_field.name] = value
                else:
                    answers.pop(form_field.name, None)
        except (KeyboardInterrupt, EOFError):
            if not request.future.done():
                request.future.set_result(None)
            return
        if not request.future.done():
            request.future.set_result(answers)

    async def _ask_field(self, form_field: FormField, previous: str) -> str:
        options = [value for value, _ in form_field.options]
        label = form_field.label
        if options:
            label += f" ({'/'.join(options)})"
        if form_field.optional:
            label += " (optional)"
        if form_field.hint or form_field.placeholder:
            example = f" e.g. {form_field.placeholder}" if form_field.placeholder else ""
            self.print(f"  {form_field.hint or ''}{example}".rstrip(), "class:note")
        secret = form_field.kind == "secret"
        while True:
            # A session per question: answers (secrets above all) never reach the history file.
            session: PromptSession[str] = PromptSession(
                history=InMemoryHistory(),
                completer=WordCompleter(options) if options else None,
                is_password=secret,
            )
            text = await session.prompt_async(
                [("class:question", f"  {label}: ")],
                default="" if secret else previous,
                style=STYLE,
                handle_sigint=False,
            )
            text = text.strip()
            if not text and not form_field.optional:
                self.print("  required: type a value, or Ctrl-C to cancel the form", "class:note")
            elif text and options and text not in options:
                self.print(f"  choose one of: {', '.join(options)}", "class:note")
            else:
                return text

    # --- the prompt loop -----------------------------------------------------------------------

    def prompt_message(self) -> FormattedText:
        busy = len(self.running)
        status = [("class:note", f"[{busy} running] ")] if busy else []
        return FormattedText([*status, ("class:prompt", f"{self.user}> ")])

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

    def _sigint(self) -> None:
        """SIGINT (Ctrl-C when no prompt holds the keyboard, or `kill -INT`) acts like Ctrl-C."""
        app = get_app_or_none()
        if app is not None and _accepting(app):
            is_form = self._session is None or app is not self._session.app
            app.exit(exception=KeyboardInterrupt() if is_form else _Interrupted())
        else:
            self.cancel()

    async def interact(self, history: Path | None = None) -> int:
        """Read and run commands until Ctrl-D or a second Ctrl-C; returns the exit code (0)."""
        commands = self.providers.commands
        stored: History = MaskedHistory(history, lambda: commands) if history else InMemoryHistory()
        self._session = PromptSession(
            history=stored,
            completer=CommandCompleter(lambda: self.providers.commands),
            complete_while_typing=False,
            key_bindings=self._bindings(),
            style=STYLE,
            # The prompt line is drawn afresh under every background post; once a line is
            # entered it is printed as part of the transcript instead.
            erase_when_done=True,
        )
        armed = False
        draft = ""
        try:
            with patch_stdout(raw=True), _on_sigint(self._sigint):
                while True:
                    if self._forms:
                        await self._serve_form(self._forms.popleft())
                        continue
                    try:
                        line = await self._session.prompt_async(
                            self.prompt_message, default=draft, handle_sigint=False
                        )
                        draft = ""
                    except _FormWaiting as waiting:
                        draft = waiting.draft
                        continue
                    except _Interrupted:
                        cancelled = self.cancel()
                        if cancelled:
                            armed = False
                            self.print(f"cancelling: {', '.join(cancelled)}", "class:note")
                        elif armed:
                            break
                        else:
                            armed = True
                            self.print("(Ctrl-C again or Ctrl-D to leave)", "class:note")
                        continue
                    except EOFError:
                        break
                    armed = False
                    if line.strip():
                        self.screen.show([*self.prompt_message(), ("", line + "\n")])
                        self.start(line)
        finally:
            self.cancel()
            await self.wait_all()
            self._session = None
        self.print("")
        return 0

    async def read_lines(self, stream: TextIO) -> int:
        """Lines from a pipe or file, one after the other (no prompt, no forms)."""
        loop = asyncio.get_running_loop()
        ok = True
        with _on_sigint(self.cancel_quietly):
            while line := await loop.run_in_executor(None, stream.readline):
                if line.strip():
                    result = await self.start(line)
                    if result is None:
                        return 130
                    ok = ok and result
        return 0 if ok else 1

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
        self.screen.show(parts)
        for note in notes:
            self.print(note, "class:note")


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
            if info.annotation is SecretStr
        }

        def mask(match: re.Match[str]) -> str:
            name = match.group(1)
            hidden = name.replace("-", "_").lower() in secret
            return f"{name}={MASK}" if hidden else match.group(0)

        masked = re.sub(r"\b([A-Za-z][\w-]*)=(\"[^\"]*\"?|'[^']*'?|\S*)", mask, string)
        super().store_string(redact(masked))


@contextlib.contextmanager
def _on_sigint(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT to `handler` while inside (instead of cancelling the whole program)."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)


class ScreenLog(logging.Handler):
    """Warnings and errors as one line on the screen; the details (tracebacks too) are in the
    console's log file."""

    def __init__(self, console: Console, log_file: Path) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.log_file = log_file

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.warn(f"{record.getMessage()} (details in {self.log_file})")
        except Exception:
            self.handleError(record)


@dataclass(frozen=True)
class ConsoleFiles:
    """What the console keeps beside its database, named after it (billing-bot.db →
    billing-bot.history, billing-bot.sandboxes, billing-bot.console.log). With a server database
    (PostgreSQL) they are kept in the working directory."""

    database: Path | None  # the SQLite file, or None for a server database
    history: Path
    sandboxes: Path
    log: Path

    @classmethod
    def beside(cls, database_url: str) -> ConsoleFiles:
        url = make_url(database_url)
        database = url.database if url.get_backend_name() == "sqlite" else None
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            stem = path.with_name(path.stem)
            return cls(path, *_beside(stem))
        return cls(None, *_beside(Path("billing-bot")))

    def remove_database(self) -> None:
        """Delete the SQLite database (and its journal files)."""
        assert self.database is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.database.with_name(self.database.name + suffix).unlink(missing_ok=True)


def _beside(stem: Path) -> tuple[Path, Path, Path]:
    def named(suffix: str) -> Path:
        return stem.with_name(stem.name + suffix)

    return named(".history"), named(".sandboxes"), named(".console.log")


def is_terminal(stream: TextIO = sys.stdin) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- `billing-bot console` --------------------------------------------------------------------

DESCRIPTION = """\
Try the bot in a terminal. It runs the real dispatcher, roles, two-person approvals, audit log
and schedules with the same configuration as `serve` (.env and the environment). Providers
without credentials answer from built-in sandboxes. Replies print as text; type a button's
number to click it. With no roles configured, everyone in the console is admin."""

EPILOG = """\
kept between runs, beside the SQLite database (DATABASE_URL, default ./billing-bot.db):
  billing-bot.db           approvals, audit log, schedules
  billing-bot.sandboxes    the sandboxes' data (sequences, documents, customers, accounts)
  billing-bot.history      the command history
  billing-bot.console.log  warnings and errors in full
  --fresh deletes the first two, so they start afresh together.

keys:
  Tab         complete commands, action words, name= arguments and their choices
  Up, Ctrl-R  search the history
  Ctrl-C      cancel the running commands or the form; twice at an empty prompt: leave
  Ctrl-D      leave
  :as U2      act as another Slack user (the second person of an approval)

Schedules post to the console's own channel (#console) unless BILLING_CHANNEL is set.

examples:
  billing-bot console
  billing-bot console --as U0APPROVER
  billing-bot console -c "/invoicexpress sequences"
"""


def slack_user_id(value: str) -> str:
    """argparse type for `--as`: a Slack user ID such as U0123ABCD (or W… on Enterprise Grid)."""
    if not SLACK_USER.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a Slack user ID: U or W followed by capital letters and digits, "
            "like U0123ABCD"
        )
    return value


def add_console_parser(sub: Any) -> argparse.ArgumentParser:
    """`billing-bot console` and its flags (`sub` is the CLI's subparsers)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "console",
        help="try the bot in a terminal, on sandboxes",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        dest="one",
        metavar="COMMAND",
        help="run one command, print its answers and exit: 0 done, 1 refused or failed, "
        "130 interrupted",
    )
    parser.add_argument(
        "--as",
        dest="user",
        type=slack_user_id,
        default=CONSOLE_USER,
        metavar="USER_ID",
        help="act as this Slack user ID (U or W, then capitals and digits); default %(default)s",
    )
    parser.add_argument(
        "--files",
        default="billing-bot-files",
        metavar="DIR",
        help="folder for the PDFs, CSVs and charts that replies carry; default %(default)s/",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start afresh: delete the SQLite database and the sandboxes' saved data (by "
        "default both are kept between runs; the history stays either way)",
    )
    return parser


def console_logging(log_file: Path) -> None:
    """Records from INFO up go to the console's log file, redacted; the screen gets one line
    per warning (`ScreenLog`), never a traceback."""
    install_log_redaction()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    for noisy in ("httpx", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Wiring:
    """What the console is handed from the runtime."""

    intake: Intake
    providers: Providers
    open_roles: bool  # no roles configured: everyone in the console is admin
    sweep: Callable[[], Awaitable[None]]  # settle approvals an earlier run left behind
    start_scheduler: Callable[[], None]


async def run_console(settings: Settings, args: argparse.Namespace) -> int:
    """`billing-bot console`: the runtime on sandboxes, state kept beside the database.

    The one place that knows the dispatcher: it is the console's intake and its providers, and
    its approval flow sweeps before the prompt opens."""
    run = _Run.prepare(settings, args)
    console_logging(run.files.log)
    runtime = await open_runtime(
        run.settings, system_surface=run.system_surface, use_sandboxes=True, open_console=True
    )
    wiring = Wiring(
        intake=runtime.dispatcher,
        providers=runtime.dispatcher,
        open_roles=runtime.dispatcher.roles.open_console,
        sweep=runtime.dispatcher.flow.sweep,
        start_scheduler=runtime.start_scheduler,
    )
    try:
        return await run.converse(wiring)
    finally:
        await runtime.close()


@dataclass
class _Run:
    """One `billing-bot console`: its settings and files, notes for the banner and, once made,
    its console (schedules and approval cards of other channels post through it)."""

    args: argparse.Namespace
    settings: Settings
    files: ConsoleFiles
    notes: list[str]
    database_existed: bool
    own_channel: bool
    console: Console | None = None

    @classmethod
    def prepare(cls, settings: Settings, args: argparse.Namespace) -> _Run:
        """`--fresh` deletes the database and the sandboxes' data; without BILLING_CHANNEL,
        schedules post to the console's own channel."""
        files = ConsoleFiles.beside(settings.database_url)
        notes: list[str] = []
        if args.fresh:
            if files.database is None:
                raise ConfigError(
                    "--fresh deletes a SQLite database, but DATABASE_URL names a server database; "
                    "point DATABASE_URL at a new database instead"
                )
            files.remove_database()
            files.sandboxes.unlink(missing_ok=True)
            notes.append(f"Started afresh: {files.database} and {files.sandboxes} were deleted.")
        database_existed = files.database is None or files.database.exists()
        own_channel = not settings.billing_channel
        if own_channel:
            settings = settings.model_copy(update={"billing_channel": CONSOLE_CHANNEL})
        return cls(args, settings, files, notes, database_existed, own_channel)

    def system_surface(self, target: str) -> Surface:
        assert self.console is not None, "the console is made before anything posts"
        return self.console.surface(channel=target, user="")

    async def converse(self, wiring: Wiring) -> int:
        """Load the sandboxes' saved data, then run `-c`, the lines of a pipe or the prompt."""
        args, files, notes = self.args, self.files, self.notes
        sandboxes = {r.provider.name: r.sandbox for r in wiring.providers.runtimes if r.sandbox}
        if sandboxes and files.sandboxes.exists() and self.database_existed:
            try:
                load_state(files.sandboxes, sandboxes)
            except StateError as exc:
                notes.append(f"The sandboxes start with their sample data: {exc}.")
        elif sandboxes and self.database_existed and files.database is not None:
            notes.append(
                f"{files.database} has history but no sandbox data was saved beside it, so the "
                "sandboxes start with their sample data (--fresh starts both afresh)."
            )

        def save() -> None:
            if sandboxes:
                save_state(files.sandboxes, sandboxes)

        terminal = is_terminal(sys.stdin) and is_terminal(sys.stdout)
        console = Console(
            intake=wiring.intake,
            providers=wiring.providers,
            open_roles=wiring.open_roles,
            user=args.user,
            channel=self.settings.billing_channel or CONSOLE_CHANNEL,
            files_dir=Path(args.files),
            interactive=args.one is None and terminal,
            on_change=save,
        )
        self.console = console
        logging.getLogger().addHandler(ScreenLog(console, files.log))
        try:
            save()
            if args.one is not None:
                return await console.run_one(args.one)
            console.banner(own_channel=self.own_channel, notes=notes)
            await wiring.sweep()
            wiring.start_scheduler()
            if not terminal:
                return await console.read_lines(sys.stdin)
            return await console.interact(history=files.history)
        finally:
            save()
