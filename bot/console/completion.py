"""Tab completion for the console, generated from the command declarations.

`/sl` → the slash commands; `/smsc inv` → the action words that may follow; after a whole
command, its `name=` arguments (those not given yet); after `name=`, the choices of a `Literal`
field (or yes/no for a flag). Nothing here is written per command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from pydantic.fields import FieldInfo

from commands.base import Command

CONSOLE_WORDS = {
    ":as": "act as another Slack user, e.g. :as U2",
    ":step": "run a Workflow Builder step, e.g. :step voipcloud_balance account=10023",
}


def choices(info: FieldInfo) -> list[str]:
    """The values a field accepts when they are a closed list (a `Literal`, or yes/no)."""
    annotation: Any = info.annotation
    for _ in range(4):  # unwrap `X | None` and `Annotated[X, …]`
        origin = get_origin(annotation)
        if origin in (Union, UnionType):
            inner = [a for a in get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                break
            annotation = inner[0]
        elif origin is Annotated:
            annotation = get_args(annotation)[0]
        else:
            break
    if get_origin(annotation) is Literal:
        return [str(a) for a in get_args(annotation)]
    if annotation is bool:
        return ["yes", "no"]
    return []


class CommandCompleter(Completer):
    def __init__(self, commands: Callable[[], Sequence[Command[Any, Any]]]) -> None:
        self.commands = commands

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            for word, meta in CONSOLE_WORDS.items():
                if text and word.startswith(text):
                    yield Completion(word, -len(text), display_meta=meta)
            return
        words = text.split()
        current = "" if text[-1].isspace() else words.pop()
        if not words:
            yield from self._slashes(current)
            return
        slash = words[0].removeprefix("/").lower()
        own = [c for c in self.commands() if c.slash == slash]
        typed = tuple(w.lower() for w in words[1:])
        command = self._selected(own, typed)
        if command is None or len(command.words) == len(typed):
            yield from self._actions(own, typed, current)
        if command is not None:
            yield from self._arguments(command, words[1 + len(command.words) :], current)

    def _slashes(self, current: str) -> Iterable[Completion]:
        for slash in sorted({c.slash for c in self.commands()}):
            if f"/{slash}".startswith(current.lower()):
                yield Completion(f"/{slash} ", -len(current), display=f"/{slash}")

    @staticmethod
    def _selected(
        own: Sequence[Command[Any, Any]], typed: tuple[str, ...]
    ) -> Command[Any, Any] | None:
        """The deepest command whose action words were all typed, as the grammar picks it."""
        best: Command[Any, Any] | None = None
        for command in own:
            n = len(command.words)
            if typed[:n] == command.words and (best is None or n > len(best.words)):
                best = command
        return best

    @staticmethod
    def _actions(
        own: Sequence[Command[Any, Any]], typed: tuple[str, ...], current: str
    ) -> Iterable[Completion]:
        depth = len(typed)
        following: dict[str, list[Command[Any, Any]]] = {}
        for command in own:
            if len(command.words) > depth and command.words[:depth] == typed:
                following.setdefault(command.words[depth], []).append(command)
        if not following:
            return
        if "help".startswith(current.lower()):
            yield Completion("help", -len(current), display_meta="what follows, with examples")
        for word, under in sorted(following.items()):
            if word.startswith(current.lower()):
                exact = [c for c in under if len(c.words) == depth + 1]
                meta = exact[0].summary if exact and len(under) == 1 else f"{len(under)} commands"
                yield Completion(f"{word} ", -len(current), display=word, display_meta=meta)

    @staticmethod
    def _arguments(
        command: Command[Any, Any], rest: Sequence[str], current: str
    ) -> Iterable[Completion]:
        fields = command.args.model_fields
        name, equals, partial = current.partition("=")
        if equals:
            info = fields.get(name.replace("-", "_").lower())
            for value in choices(info) if info else []:
                if value.startswith(partial):
                    yield Completion(f"{value} ", -len(partial), display=value)
            return
        given = {w.split("=", 1)[0].replace("-", "_").lower() for w in rest if "=" in w}
        positional = set(command.args.positional)
        # Named-only arguments first: positional ones are usually typed as bare values.
        ordered = sorted(fields.items(), key=lambda item: item[0] in positional)
        for field_name, info in ordered:
            if field_name in given or not field_name.startswith(current.lower()):
                continue
            need = "required" if info.is_required() else "optional"
            meta = f"{need}: {info.description}" if info.description else need
            yield Completion(f"{field_name}=", -len(current), display_meta=meta)
