"""The typed-command grammar: `/<provider> <words…> [positional…] [name=value…]`.

Text is split like a shell (quotes group words; Slack's curly quotes count as quotes). The longest
run of leading words that names a declared command selects it; the rest fill its `Args` model.
Help, usage lines and examples are generated from the same declarations.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from commands import money
from commands.base import Args, Command, Role, format_value
from commands.types import Label, money_fields

_CURLY = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
_NAMED = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.*)$", re.DOTALL)


# Slack's slash-command documentation (https://api.slack.com/interactivity/slash-commands) names
# no maximum length for `text`, and none could be found elsewhere in its documents: 4,000
# characters is a chosen limit (Slack's advice for message text, chat.postMessage "Truncating
# content"), far above any command line this bot takes.
MAX_COMMAND_TEXT = 4_000


def text_refusal(text: str) -> str | None:
    """The sentence refusing command text longer than Slack sends, or None when it fits."""
    if len(text) <= MAX_COMMAND_TEXT:
        return None
    return (
        f"That command is too long: Slack sends at most {MAX_COMMAND_TEXT:,} characters after "
        f"the command name, and this one has {len(text):,}."
    )


class GrammarError(Exception):
    """Typed text that does not fit any declaration; `message` is what the user sees."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Parsed:
    command: Command[Any, Any]
    values: dict[str, Any]  # raw strings by field name, not validated yet


@dataclass(frozen=True)
class HelpRequest:
    slash: str
    prefix: tuple[str, ...]


def tokenize(text: str) -> list[str]:
    """Words as a shell splits them. Curly quotes (what Slack's smart punctuation makes of typed
    quotes) group words only in text with no straight quotes, so a rendered line whose values hold
    a `’` reads back unchanged."""
    if "'" not in text and '"' not in text:
        text = text.translate(_CURLY)
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise GrammarError(f"Could not read the command: {exc} (close every quote).") from exc


def parse(slash: str, text: str, commands: Sequence[Command[Any, Any]]) -> Parsed | HelpRequest:
    """Select the command and sort its words into raw field values."""
    tokens = tokenize(text)
    own = [c for c in commands if c.slash == slash]
    if not tokens or tokens[0].lower() == "help":
        return HelpRequest(slash, ())
    lowered = [t.lower() for t in tokens]
    best: Command[Any, Any] | None = None
    for command in own:
        n = len(command.words)
        if tuple(lowered[:n]) == command.words and (best is None or n > len(best.words)):
            best = command
    if best is None:
        prefix = _longest_known_prefix(lowered, own)
        if prefix and len(lowered) > len(prefix) and lowered[len(prefix)] == "help":
            return HelpRequest(slash, prefix)
        if prefix and len(lowered) == len(prefix):
            return HelpRequest(slash, prefix)
        raise GrammarError(_unknown(slash, tokens, own))
    rest = tokens[len(best.words) :]
    if rest and rest[0].lower() == "help" and len(rest) == 1:
        return HelpRequest(slash, best.words)
    if rest:
        _refuse_misspelt_subcommand(slash, best, rest[0], own)
    return Parsed(best, assign(best, rest))


def assign(command: Command[Any, Any], tokens: Sequence[str]) -> dict[str, Any]:
    model = command.args
    fields = model.model_fields
    positional = list(model.positional)
    values: dict[str, Any] = {}
    loose: list[str] = []
    for token in tokens:
        match = _NAMED.match(token)
        name = match.group(1).replace("-", "_").lower() if match else ""
        if match and name in fields and name not in positional:
            if name in values:
                raise GrammarError(f"`{name}` is given twice.\n{usage_block(command)}")
            values[name] = match.group(2)
        elif match and name in fields:
            if name in values:
                raise GrammarError(f"`{name}` is given twice.\n{usage_block(command)}")
            values[name] = match.group(2)
        elif match and model.rest is None:
            known = [f for f in fields if f not in positional]
            guess = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean `{guess[0]}=`?" if guess else ""
            raise GrammarError(
                f"`{command.audit_name}` has no option `{name}`.{hint}\n{usage_block(command)}"
            )
        else:
            loose.append(token)
    slots = [p for p in positional if p not in values]
    for i, token in enumerate(loose):
        if i >= len(slots):
            if model.rest and model.rest in slots:
                break
            raise GrammarError(
                f"Too many words: `{' '.join(loose[len(slots) :])}` is not expected.\n"
                f"{usage_block(command)}"
            )
        if slots[i] == model.rest:
            values[slots[i]] = " ".join(loose[i:])
            break
        values[slots[i]] = token
    return values


def render(command: Command[Any, Any], args: Args) -> str:
    """The command line that `parse` reads back into exactly `args` (secrets masked)."""
    return line(command.path, **args.preview())


def shown(command: Command[Any, Any], args: Args) -> str:
    """`render`'s line as an approval card shows it: each amount written as the card's summary
    writes it, in cents (`sum=100.00`, `amount=-12.50`), through `money.rounded`, the one
    display rounding. Display only: what is stored and runs is `args`, exact."""
    values = args.preview()
    for name in money_fields(command.args):
        amount = getattr(args, name)
        if amount is not None:
            values[name] = money.exact(money.rounded(amount))
    return line(command.path, **values)


def line(path: str, **values: object) -> str:
    """`/path name=value…` for a button, a proposal or an approval: every value named and quoted
    as needed, so free text can never be read as another option, word or positional value
    (`description="amount=5000"`). None values are left out."""
    parts = [f"/{path}"]
    for name, value in values.items():
        if value is not None:
            parts.append(f"{name}={_shell_quote(format_value(value))}")
    return " ".join(parts)


_BARE = re.compile(r"[A-Za-z0-9_@%+:,./-]+")


def _shell_quote(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    if '"' not in value and "\\" not in value:
        return f'"{value}"'  # reads best: `reason="customer's balance"`
    return shlex.quote(value)


def validate(command: Command[Any, Any], values: Mapping[str, Any]) -> Args:
    """Build the Args model; a `FieldErrors` carries one sentence per bad field."""
    try:
        args: Args = command.args.model_validate(dict(values))
    except ValidationError as exc:
        raise FieldErrors(command, field_errors(exc)) from None
    return args


class FieldErrors(Exception):
    def __init__(self, command: Command[Any, Any], errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.command = command
        self.errors = errors

    @property
    def message(self) -> str:
        lines = [
            _whole(text) if name == WHOLE else f"`{name}`: {text}"
            for name, text in self.errors.items()
        ]
        return "\n".join([*lines, usage_block(self.command)])


# The key of an error about the arguments together (a model validator), which no field owns.
WHOLE = "arguments"


def field_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or WHOLE
        errors.setdefault(name, _sentence(error))
    return errors


def _whole(text: str) -> str:
    """An error about the arguments together reads as a sentence of its own."""
    return f"{text[:1].upper()}{text[1:]}".rstrip(".") + "."


def _sentence(error: Any) -> str:
    """One of pydantic's errors as a person reads it. The error types and their `ctx` keys are
    pydantic's (https://docs.pydantic.dev/latest/errors/validation_errors/)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not an option of this command"
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace("'", "")
        return f"'{given}' is not one of the choices: use {choices}"
    if kind == "string_too_long":
        length = len(given) if isinstance(given, str) else "too many"
        return f"is {length} characters long; the most allowed is {ctx.get('max_length')}"
    if kind == "string_too_short":
        least = ctx.get("min_length")
        return "must not be empty" if least == 1 else f"must be at least {least} characters long"
    if kind in {"int_parsing", "int_type"}:
        return f"'{given}' is not a whole number"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    for raw, plain in (("Input should be ", "must be "), ("String should ", "must ")):
        if message.startswith(raw):
            return plain + message.removeprefix(raw)
    return message


# --- help ----------------------------------------------------------------------------------


def type_label(info: FieldInfo) -> str:
    for meta in info.metadata:
        if isinstance(meta, Label):
            return meta.text
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):  # `X | None`: describe X
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            for meta in getattr(inner[0], "__metadata__", ()):
                if isinstance(meta, Label):
                    return meta.text
            annotation = inner[0]
            if get_origin(annotation) is Annotated:
                annotation = get_args(annotation)[0]
    options = get_args(annotation)
    if options and all(isinstance(o, str) for o in options):
        return "|".join(options)
    if annotation is SecretStr:
        return "secret"
    if annotation is int:
        return "number"
    if annotation is bool:
        return "yes/no"
    return "text"


def usage(command: Command[Any, Any]) -> str:
    model = command.args
    parts = [f"/{command.path}"]
    for name in model.positional:
        info = model.model_fields[name]
        word = f"<{name}…>" if name == model.rest else f"<{name}>"
        parts.append(word if info.is_required() else f"[{word.strip('<>')}]")
    for name, info in model.model_fields.items():
        if name in model.positional:
            continue
        part = f"{name}=<{type_label(info)}>"
        parts.append(part if info.is_required() else f"[{part}]")
    return " ".join(parts)


def example(command: Command[Any, Any]) -> str:
    if command.example:
        return command.example
    model = command.args
    parts = [f"/{command.path}"]
    for name in model.positional:
        sample = _sample(model.model_fields[name])
        if sample is not None:
            parts.append(_quote(sample))
    for name, info in model.model_fields.items():
        sample = _sample(info)
        if name not in model.positional and info.is_required() and sample is not None:
            parts.append(f"{name}={_quote(sample)}")
    return " ".join(parts)


def _sample(info: FieldInfo) -> str | None:
    return str(info.examples[0]) if info.examples else None


def _quote(value: str) -> str:
    return f'"{value}"' if " " in value else value


def usage_block(command: Command[Any, Any]) -> str:
    return f"Expected: `{usage(command)}`\nExample: `{example(command)}`"


def describe_fields(command: Command[Any, Any]) -> list[str]:
    lines = []
    for name, info in command.args.model_fields.items():
        need = "required" if info.is_required() else "optional"
        text = info.description or ""
        sample = _sample(info)
        tail = f", e.g. `{sample}`" if sample else ""
        lines.append(f"• `{name}` ({type_label(info)}, {need}) {text}{tail}".rstrip())
    return lines


def help_text(
    slash: str,
    prefix: tuple[str, ...],
    commands: Sequence[Command[Any, Any]],
    *,
    role: Role | None = None,
) -> str:
    """Everything under `/slash prefix…`, with role marks; a single command in full."""
    matching = [c for c in commands if c.slash == slash and c.words[: len(prefix)] == prefix]
    exact = [c for c in matching if c.words == prefix]
    if len(exact) == 1 and len(matching) == 1:
        command = exact[0]
        lines = [
            f"*/{command.path}* — {command.summary}",
            f"Usage: `{usage(command)}`",
            f"Example: `{example(command)}`",
            f"Role: {command.role.label}"
            + (" · needs a second person's approval" if command.approval else ""),
        ]
        if command.form:
            lines.append("Typed with no arguments, it opens a form.")
        fields = describe_fields(command)
        if fields:
            lines += ["Arguments:", *fields]
        return "\n".join(lines)
    if not matching:
        return f"Nothing under `/{' '.join((slash, *prefix))}`."
    lines = [f"*/{' '.join((slash, *prefix))}* commands:"]
    for command in matching:
        lock = "" if role is None or role >= command.role else f"  _(needs {command.role.label})_"
        flag = " · approval" if command.approval else ""
        lines.append(f"• `{usage(command)}` — {command.summary}{flag}{lock}")
    lines.append(f"Add `help` after a command for its arguments, e.g. `/{matching[0].path} help`.")
    return "\n".join(lines)


def _refuse_misspelt_subcommand(
    slash: str, best: Command[Any, Any], word: str, commands: Sequence[Command[Any, Any]]
) -> None:
    """`sequence regster 5` selects `sequence`; if the next word is a near-miss of a deeper
    command's word (and not a value), suggest that command instead of misreading it."""
    depth = len(best.words)
    deeper = sorted(
        {c.words[depth] for c in commands if len(c.words) > depth and c.words[:depth] == best.words}
    )
    lowered = word.lower()
    if not deeper or "=" in lowered or any(ch.isdigit() for ch in lowered):
        return
    guess = difflib.get_close_matches(lowered, deeper, n=1, cutoff=0.75)
    if guess:
        here = " ".join((slash, *best.words))
        raise GrammarError(
            f"`/{here} {word}` is not a command. Did you mean `/{here} {guess[0]}`?\n"
            f"See `/{here} help` for the list."
        )


def _longest_known_prefix(
    words: Sequence[str], commands: Sequence[Command[Any, Any]]
) -> tuple[str, ...]:
    best: tuple[str, ...] = ()
    for command in commands:
        for n in range(1, len(command.words) + 1):
            if tuple(words[:n]) == command.words[:n] and n > len(best):
                best = command.words[:n]
    return best


def _unknown(slash: str, tokens: Sequence[str], commands: Sequence[Command[Any, Any]]) -> str:
    typed = " ".join(tokens[:3]).lower()
    paths = {" ".join(c.words): c for c in commands}
    candidates = list(paths)
    for n in (3, 2, 1):
        guess = difflib.get_close_matches(" ".join(tokens[:n]).lower(), candidates, n=1, cutoff=0.6)
        if guess:
            return (
                f"`/{slash} {typed}` is not a command. Did you mean `/{slash} {guess[0]}`?\n"
                f"See `/{slash} help` for the list."
            )
    return f"`/{slash} {typed}` is not a command. See `/{slash} help` for the list."
