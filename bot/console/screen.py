"""Where the console's text goes: its colours, the screen (a terminal, or a plain stream for
tests and pipes), the transcript that writes lines, private notes and warnings on it, and the
log handler that turns a warning into one line there."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, TextIO

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style

from bot.mrkdwn import Fragment, Names, fragments
from commands.secrets import redact

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


class Transcript:
    """Lines, private notes and warnings on a screen; mrkdwn is read as text, and redacted."""

    def __init__(self, screen: Screen, names: Names) -> None:
        self.screen = screen
        self.names = names

    def show(self, parts: list[Fragment]) -> None:
        self.screen.show(parts)

    def print(self, text: str, style: str = "") -> None:
        self.screen.show([(style, text + "\n")])

    def note(self, text: str) -> None:
        """A private note (errors, hints, progress of a queue): 🔒 and the text."""
        self.screen.show([("", "🔒 "), *self.text(text), ("", "\n")])

    def warn(self, text: str) -> None:
        self.screen.show([("class:warning", f"⚠ {text}\n")])

    def text(self, text: str, *, reveal: bool = False) -> list[Fragment]:
        return fragments(text if reveal else redact(text), self.names)


class ScreenLog(logging.Handler):
    """Warnings and errors as one line on the screen; the details (tracebacks too) are in the
    console's log file."""

    def __init__(self, transcript: Transcript, log_file: Path) -> None:
        super().__init__(logging.WARNING)
        self.transcript = transcript
        self.log_file = log_file

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.transcript.warn(f"{record.getMessage()} (details in {self.log_file})")
        except Exception:
            self.handleError(record)
