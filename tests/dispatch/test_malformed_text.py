"""Property: whatever malformed text follows any declared command, dispatch answers it with one
private sentence and makes no provider call, no approval request and no schedule.

Three kinds of text, each refused by the grammar before anything runs: arbitrary characters
(control characters, quotes, other scripts; kept only when the grammar refuses them, which is
what "malformed" means), a quote that never closes, and an option given twice."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.billing import billing_provider
from bot.runtime import Runtime
from bot.storage.store import approvals, schedules
from commands import grammar
from commands.base import Command
from commands.registry import PROVIDERS
from tests.support import RecordingSurface, sandbox_of

KINDS = {name: kind for p in PROVIDERS for name, kind in p.schedule_kinds.items()}
COMMANDS: list[Command[Any, Any]] = [
    *billing_provider(KINDS).commands,
    *(command for provider in PROVIDERS for command in provider.commands),
]
ADMIN = "U0ADMIN"  # every role: a refusal below is never about who asked

# Any character Slack could send (UTF-8 excludes lone surrogates), control characters included.
CHARACTERS = st.characters(codec="utf-8")
words = st.text(st.characters(codec="utf-8", exclude_characters="\"'\\"), max_size=40)
unquoted = st.text(st.characters(codec="utf-8", exclude_characters='"'), max_size=40)


@st.composite
def malformed(draw: st.DrawFn) -> tuple[Command[Any, Any], str]:
    command = draw(st.sampled_from(COMMANDS))
    fields = list(command.args.model_fields)
    kinds = ["garbage", "unclosed quote"] + (["option twice"] if fields else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "garbage":
        text = draw(st.text(CHARACTERS, max_size=80))
    elif kind == "unclosed quote":
        text = f'{draw(words)} "{draw(unquoted)}'
    else:
        name = draw(st.sampled_from(fields))
        text = f"{draw(words)} {name}={draw(words)} {name}={draw(words)}"
    return command, f"{' '.join(command.words)} {text}"


def refused_by_the_grammar(command: Command[Any, Any], text: str) -> bool:
    try:
        parsed = grammar.parse(command.slash, text, COMMANDS)
        if isinstance(parsed, grammar.HelpRequest):
            return False
        grammar.validate(parsed.command, parsed.values)
    except (grammar.GrammarError, grammar.FieldErrors):
        return True
    return False


async def count(runtime: Runtime, table: sa.Table) -> int:
    async with runtime.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


def provider_calls(runtime: Runtime) -> int:
    return sum(len(sandbox_of(runtime, p.name).control.requests) for p in PROVIDERS)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=malformed())
async def test_malformed_text_runs_nothing(
    runtime: Runtime, case: tuple[Command[Any, Any], str]
) -> None:
    command, text = case
    assume(refused_by_the_grammar(command, text))
    surface = RecordingSurface(user=ADMIN)

    ran = await runtime.dispatcher.run(
        f"/{command.slash} {text}", user=ADMIN, channel="C1", surface=surface
    )

    assert ran is False
    assert len(surface.privates) == 1 and surface.privates[0].strip()
    assert surface.sent == [] and surface.updates == []
    assert provider_calls(runtime) == 0
    assert await count(runtime, approvals) == 0
    assert await count(runtime, schedules) == 0


def test_every_declared_command_is_covered(runtime: Runtime) -> None:
    declared = {c.path for c in COMMANDS}
    assert declared == {c.path for c in runtime.catalog.commands}
