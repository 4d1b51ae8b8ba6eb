"""A command's form, asked in the terminal one field at a time.

The command's task files a `FormRequest` and waits for it; the prompt loop, which holds the
keyboard, steps aside and serves it (`Forms.serve`), one input at a time. A wrong field is asked
again, alone, and every other answer is kept (secrets too, in memory only)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.history import InMemoryHistory

from bot.console.screen import STYLE, Transcript
from bot.console.services import Intake
from bot.surface import Surface
from commands.base import Command, Form, FormField


@dataclass(eq=False)
class FormRequest:
    """Questions a command's task wants put to the person, answered by the prompt loop."""

    form: Form
    ask: list[FormField]
    answers: dict[str, str]
    errors: dict[str, str]
    future: asyncio.Future[dict[str, str] | None]


class Forms:
    """The forms waiting for the keyboard, and how their fields are asked."""

    def __init__(self, intake: Intake, transcript: Transcript) -> None:
        self.intake = intake
        self.transcript = transcript
        self.pending: deque[FormRequest] = deque()
        # Set by the prompt loop while it is open: asks it to step aside for a waiting form.
        self.make_way: Callable[[], None] = lambda: None

    async def fill(
        self, command: Command[Any, Any], form: Form, *, user: str, channel: str, surface: Surface
    ) -> None:
        """Ask a form's fields (in the command's task); a wrong field is asked again, alone,
        and every other answer is kept (secrets too, in memory only)."""
        answers: dict[str, str] = {}
        ask = list(form.fields)
        errors: dict[str, str] = {}
        while True:
            request = FormRequest(form, ask, dict(answers), errors, asyncio.Future())
            self.pending.append(request)
            self.make_way()
            try:
                got = await request.future
            finally:
                with contextlib.suppress(ValueError):
                    self.pending.remove(request)
            if got is None:
                self.transcript.print(
                    f"{form.title}: cancelled, nothing was sent.", "class:warning"
                )
                return
            answers = {**got, **form.fixed}
            found, errors = await self.intake.check_form(
                command.path, answers, user=user, channel=channel
            )
            if found is None:
                self.transcript.note(errors.get("_", "That command no longer exists."))
                return
            if not errors:
                break
            ask = [f for f in form.fields if f.name in errors] or list(form.fields)
        await self.intake.run_values(command, answers, user=user, channel=channel, surface=surface)

    async def serve(self, request: FormRequest) -> None:
        """Put a request's questions (in the prompt loop); Ctrl-C or Ctrl-D cancels the form."""
        if request.future.done():
            return
        out = self.transcript
        if request.errors:
            out.print("Please correct:", "class:warning")
            labels = {f.name: f.label for f in request.form.fields}
            for name, text in request.errors.items():
                out.show([("", f"  ✗ {labels.get(name, name)}: "), *out.text(text), ("", "\n")])
        else:
            out.print(
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
            self.transcript.print(f"  {form_field.hint or ''}{example}".rstrip(), "class:note")
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
                self.transcript.print(
                    "  required: type a value, or Ctrl-C to cancel the form", "class:note"
                )
            elif text and options and text not in options:
                self.transcript.print(f"  choose one of: {', '.join(options)}", "class:note")
            else:
                return text
