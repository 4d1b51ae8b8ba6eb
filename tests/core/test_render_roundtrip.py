"""Every command line the bot builds reads back as exactly the arguments it was built from.

Buttons, stored button commands, reminders' proposals, schedules and approvals all carry
arguments as text (`grammar.line`, `grammar.render`, `Args.preview`). For every declared
command and arbitrary valid values — free text holding `=`, quotes, backslashes, newlines,
unicode, and words equal to argument names — `parse(render(args))` validates to `args`.
"""

from __future__ import annotations

import string
import types
import typing
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from bot.billing import billing_provider
from commands import grammar
from commands import types as value_types
from commands.base import Args, Command
from commands.registry import PROVIDERS

KINDS = {name: kind for p in PROVIDERS for name, kind in p.schedule_kinds.items()}
COMMANDS: list[Command[Any, Any]] = [
    *billing_provider(KINDS).commands,
    *(c for p in PROVIDERS for c in p.commands),
]


def _parts(annotation: Any) -> tuple[Any, list[Any], bool]:
    """(base type, its before-validators, optional?) of a field annotation."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(inner) < len(typing.get_args(annotation))
        annotation = inner[0] if len(inner) == 1 else annotation
    validators: list[Any] = []
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        validators = [m.func for m in metadata if isinstance(m, BeforeValidator)]
        annotation = base
    return annotation, validators, optional


# Free text meant to break a line that is rendered carelessly.
TRICKY = st.sampled_from(
    [
        "amount=5000",
        'say "hi"',
        "it’s “quoted”",
        "back\\slash \\n",
        "two\nlines",
        "tab\there",
        "help",
        "'",
        '"',
        "$(rm -rf /) `x` ;|&",
        "# not a comment",
        "--flag -x",
        "ünïcödé ✓ 日本",
        "a=b=c",
        "=",
    ]
)


def _free_text(names: list[str]) -> st.SearchStrategy[str]:
    words = st.sampled_from([*names, "help", "yes", "all", "last-month", "="])
    pieces = st.one_of(TRICKY, words, st.text(min_size=1, max_size=12))
    joined = st.lists(pieces, min_size=1, max_size=4).map(" ".join)
    assigned = st.tuples(words, pieces).map(lambda t: f"{t[0]}={t[1]}")
    return st.one_of(joined, assigned, st.text(min_size=1, max_size=40))


def _money(signed: bool) -> st.SearchStrategy[str]:
    cents = st.integers(min_value=1, max_value=10**8)
    sign = st.sampled_from([1, -1]) if signed else st.just(1)
    places = st.sampled_from([0, 1, 2])

    def text(t: tuple[int, int, int]) -> str:
        value, direction, decimals = t
        amount = Decimal(value * direction) / 100
        return f"{amount:.{decimals}f}" if decimals else str(amount.to_integral_value())

    return st.tuples(cents, sign, places).map(text)


def field_strategy(info: FieldInfo, names: list[str]) -> st.SearchStrategy[Any]:
    base, validators, _ = _parts(info.annotation)
    validator = validators[0] if validators else None
    options = typing.get_args(base) if typing.get_origin(base) is typing.Literal else ()
    by_validator: dict[Any, st.SearchStrategy[Any]] = {
        value_types.positive_amount: _money(signed=False),
        value_types.signed_amount: _money(signed=True),
        value_types.positive_int: st.integers(min_value=1, max_value=10**9).map(str),
        value_types.digits: st.from_regex(r"[0-9]{1,20}", fullmatch=True),
        value_types.iso_date: st.dates(date(2000, 1, 1), date(2099, 12, 31)).map(str),
        value_types.yes_no: st.sampled_from(["yes", "no", "y", "n", "true", "off"]),
        value_types.id_list: st.lists(
            st.from_regex(r"[0-9]{1,12}", fullmatch=True), min_size=1, max_size=6
        ).map(",".join),
        value_types.period_text: st.one_of(
            st.just("last-month"),
            st.dates(date(2000, 1, 1), date(2099, 12, 31)).map(lambda d: f"{d:%Y-%m}"),
            st.tuples(st.dates(date(2000, 1, 1), date(2049, 1, 1)), st.integers(0, 400)).map(
                lambda t: f"{t[0]}..{date.fromordinal(t[0].toordinal() + t[1])}"
            ),
        ),
    }
    examples = [str(e) for e in (info.examples or [])]
    if validator in by_validator:
        strategy = by_validator[validator]
    elif options:
        strategy = st.sampled_from([str(o) for o in options])
    else:
        strategy = _free_text(names)
    if examples:
        strategy = st.one_of(strategy, st.sampled_from(examples))
    return strategy


def _baseline(command: Command[Any, Any]) -> dict[str, Any]:
    """A valid set of raw values: the command's documented example."""
    slash, _, text = grammar.example(command).removeprefix("/").partition(" ")
    parsed = grammar.parse(slash, text, COMMANDS)
    assert isinstance(parsed, grammar.Parsed), grammar.example(command)
    return parsed.values


@st.composite
def valid_args(draw: st.DrawFn, command: Command[Any, Any]) -> Args:
    fields = command.args.model_fields
    names = list(fields)
    values: dict[str, Any] = {}
    for name, info in fields.items():
        if info.is_required() or draw(st.booleans()):
            values[name] = draw(field_strategy(info, names))
    baseline = _baseline(command)
    for _ in range(2):
        try:
            return grammar.validate(command, values)
        except grammar.FieldErrors as exc:
            # Values that only other fields make invalid (a period ending in the future, a
            # serie's pattern): fall back to the documented example for those fields.
            for name in exc.errors:
                if name in baseline:
                    values[name] = baseline[name]
                else:
                    values.pop(name, None)
    assume(False)
    raise AssertionError("unreachable")


def _read_back(command: Command[Any, Any], rendered: str) -> Args:
    slash, _, text = rendered.removeprefix("/").partition(" ")
    parsed = grammar.parse(slash, text, COMMANDS)
    assert isinstance(parsed, grammar.Parsed), rendered
    assert parsed.command is command, rendered
    return grammar.validate(command, parsed.values)


def _has_secret(command: Command[Any, Any]) -> bool:
    return any(_parts(f.annotation)[0] is SecretStr for f in command.args.model_fields.values())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_rendered_line_parses_back_to_the_same_arguments(
    command: Command[Any, Any], data: st.DataObject
) -> None:
    args = data.draw(valid_args(command))
    line = grammar.line(command.path, **args.as_text(reveal_secrets=True))
    assert _read_back(command, line) == args
    if not _has_secret(command):
        assert _read_back(command, grammar.render(command, args)) == args
        # The stored form of an approval reads back through validation alone.
        assert grammar.validate(command, args.preview()) == args


def test_every_approval_command_can_be_stored_exactly() -> None:
    """An approval keeps its arguments as text; none may need a secret to run."""
    assert [c.path for c in COMMANDS if c.approval and _has_secret(c)] == []


@pytest.mark.parametrize(
    "value",
    ["amount=5000", "x y", "'", '"', "a\\b", "l1\nl2", "’", "“q”", "", "help", "ü"],
)
def test_line_quotes_every_value_that_needs_it(value: str) -> None:
    rendered = grammar.line("voipcloud move-funds", description=value)
    slash, _, text = rendered.removeprefix("/").partition(" ")
    assert grammar.tokenize(text) == ["move-funds", f"description={value}"]
    bare = set(string.ascii_letters + string.digits + "_@%+:,./-")
    if value and set(value) <= bare:
        assert rendered.endswith(f"description={value}")
