"""`:step` in the console: run a Workflow Builder step by name, to try one without Slack.

    :step voipcloud_balance account=10023 requested_by=U2

The line becomes the `function_executed` event Slack would send (`requested_by` defaults to the
person the console acts as) and runs through `bot.steps.Steps`, as in Slack. Its completion
(`functions.completeSuccess` with the outputs, or `functions.completeError` with the sentence)
is shown in the billing channel; an approval step shows its card, and completes there once the
request is decided (`:as U2`, then the card's Approve).
"""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bot.steps import REQUESTED_BY, Completion, StepEvent, step_outputs
from commands.base import Command

USAGE = (
    "Usage: `:step <callback_id> name=value … [requested_by=U2]`, e.g. "
    "`:step voipcloud_balance account=10023 requested_by=U2`."
)
_serial = itertools.count(1)


class StepRunner(Protocol):
    """What `:step` uses of `bot.steps.Steps`."""

    @property
    def steps(self) -> Mapping[str, Command[Any, Any]]: ...

    async def run(self, event: StepEvent) -> Completion | None: ...

    async def approval_of(self, execution: str) -> int | None: ...


def parse(line: str, user: str) -> tuple[str, dict[str, str]] | str:
    """`:step name a=1 b="x y"` → (name, inputs), or the sentence saying what is wrong."""
    try:
        words = shlex.split(line.removeprefix(":step"))
    except ValueError as exc:
        return f"{USAGE} ({exc})"
    if not words:
        return USAGE
    name, *pairs = words
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            return f"`{pair}` is not `name=value`. {USAGE}"
        inputs[key] = value
    inputs.setdefault(REQUESTED_BY, user)
    return name, inputs


def refusal(steps: Mapping[str, Command[Any, Any]], name: str, inputs: Mapping[str, str]) -> str:
    """Why a console line names no step, or inputs the step does not take; "" when it is fine."""
    command = steps.get(name)
    if command is None:
        known = ", ".join(f"`{s}`" for s in sorted(steps)) or "none"
        return f"There is no step `{name}`. Steps: {known}."
    accepted = [*command.args.model_fields, REQUESTED_BY]
    unknown = [k for k in inputs if k not in accepted]
    if unknown:
        names = ", ".join(f"`{n}`" for n in accepted)
        return f"`{name}` takes no input `{unknown[0]}`. Its inputs: {names}."
    return ""


def execution_id() -> str:
    """A `function_execution_id` no other console run used (Slack's start with `Fx`)."""
    return f"Fx0CONSOLE{time.time_ns() // 1000}{next(_serial)}"


def waiting_note(command: Command[Any, Any], execution: str, approval: int | None) -> str:
    outputs = ", ".join(f"`{n}`" for n, _ in step_outputs(command))
    which = f"approval #{approval}" if approval is not None else "its approval"
    return (
        f"Step `{execution}` waits for {which}. Once it is decided, the step completes with "
        f"`functions.completeSuccess` ({outputs}) when it is done, or with "
        "`functions.completeError` and the reason when it is rejected, expires or fails."
    )


async def run_step(
    runner: StepRunner | None, line: str, user: str, note: Callable[[str], None]
) -> bool:
    """Run one `:step` line; False when it was refused or the step failed (said on screen)."""
    if runner is None:
        note("Workflow Builder steps are not wired into this console.")
        return False
    parsed = parse(line, user)
    if isinstance(parsed, str):
        note(parsed)
        return False
    name, inputs = parsed
    wrong = refusal(runner.steps, name, inputs)
    if wrong:
        note(wrong)
        return False
    execution = execution_id()
    event = StepEvent(callback_id=name, inputs=inputs, execution=execution, workflow="console")
    completion = await runner.run(event)
    if completion is not None:  # shown in the billing channel as Slack would be sent it
        return completion.outputs is not None
    note(waiting_note(runner.steps[name], execution, await runner.approval_of(execution)))
    return True
