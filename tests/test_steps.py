"""Approval steps end as their request ends: done completes with the outputs; rejected,
expired, failed and unknown fail with a sentence saying why (unknown says so, so a workflow does
not retry a transfer). Run without Slack: completions are shown in the billing channel
(`bot.steps.ShownCompletions`), as the console shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.runtime import Runtime
from bot.steps import StepEvent, callback_id, input_values, slack_type
from commands.base import Reply
from commands.voipcloud.commands import COMMANDS
from tests.support import Clock, OpenBot, RecordingSurface, sandbox_of

CHANNEL = "C0BILLING"
MOVE = {"account": "10023", "amount": "8.00", "description": "refund form", "requested_by": "U1"}


@pytest.fixture
async def billing(open_bot: OpenBot) -> Runtime:
    """A bot whose billing channel takes steps' cards and shows their completions."""
    return await open_bot(billing_channel=CHANNEL)


async def move_step(runtime: Runtime, execution: str) -> None:
    event = StepEvent("voipcloud_move_funds", MOVE, execution=execution, workflow="Wx0TEST")
    assert await runtime.steps.run(event) is None  # it waits for the request


def completions(runtime: Runtime) -> list[Reply]:
    surface: RecordingSurface = runtime.system_surfaces[CHANNEL]  # type: ignore[attr-defined]
    return [r for r in surface.sent if r.text.startswith("Step `")]


def puts(runtime: Runtime) -> int:
    return len([r for r in sandbox_of(runtime, "voipcloud").control.requests if r.method == "PUT"])


async def decide(runtime: Runtime, line: str, user: str = "U2") -> None:
    surface = RecordingSurface(channel=CHANNEL, user=user)
    await runtime.dispatcher.run(line, user=user, channel=CHANNEL, surface=surface)


async def test_an_expired_request_fails_its_step(open_bot: OpenBot) -> None:
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    runtime = await open_bot(billing_channel=CHANNEL, clock=clock)
    await move_step(runtime, "Fx0EXPIRE")
    assert completions(runtime) == []
    clock.advance(hours=runtime.settings.approval_ttl_hours + 1)
    await runtime.flow.sweep()
    [done] = completions(runtime)
    assert done.text == "Step `Fx0EXPIRE`: `functions.completeError`"
    assert done.sections == [
        "Approval #1 (/voipcloud move-funds) expired: nobody decided it in time. Nothing was sent."
    ]
    await runtime.flow.sweep()  # a second sweep completes nothing again
    assert len(completions(runtime)) == 1 and puts(runtime) == 0


async def test_an_unknown_outcome_fails_its_step_saying_not_to_retry(billing: Runtime) -> None:
    runtime = billing
    await move_step(runtime, "Fx0UNKNOWN")
    sandbox_of(runtime, "voipcloud").control.drop = True  # the move happens, its answer is lost
    await decide(runtime, "/billing approve 1")
    [done] = completions(runtime)
    assert done.text == "Step `Fx0UNKNOWN`: `functions.completeError`"
    [sentence] = done.sections
    assert sentence.startswith("Approval #1 (/voipcloud move-funds): the outcome is unknown (")
    assert sentence.endswith(
        "it may have happened. Do not run it again: check it first with `/billing check-outcome 1`."
    )
    assert puts(runtime) == 1


async def test_a_failed_run_fails_its_step_with_the_providers_reason(billing: Runtime) -> None:
    runtime = billing
    await move_step(runtime, "Fx0FAILED")
    sandbox_of(runtime, "voipcloud").control.fail_status = 401
    await decide(runtime, "/billing approve 1")
    [done] = completions(runtime)
    assert done.text == "Step `Fx0FAILED`: `functions.completeError`"
    assert done.sections[0].startswith("Approval #1 (/voipcloud move-funds) failed: ")


async def test_a_withdrawn_request_says_its_requester_withdrew_it(billing: Runtime) -> None:
    runtime = billing
    await move_step(runtime, "Fx0WITHDRAWN")
    assert await runtime.flow.withdraw(1, by="U1", reason="wrong customer")
    await runtime.flow.sweep()
    [done] = completions(runtime)
    assert done.sections == [
        "Approval #1 (/voipcloud move-funds) was withdrawn by its requester: wrong customer."
    ]
    assert puts(runtime) == 0


# --- declarations -------------------------------------------------------------------------------


def declared(words: tuple[str, ...]) -> Any:
    return next(c for c in COMMANDS if c.words == words)


def test_callback_ids_join_provider_and_words_with_dashes_as_underscores() -> None:
    assert callback_id("voipcloud", declared(("partner-balance",))) == "voipcloud_partner_balance"
    assert callback_id("voipcloud", declared(("move-funds",))) == "voipcloud_move_funds"


def test_slack_types_dates_as_dates_and_money_as_text() -> None:
    move, balance = declared(("move-funds",)), declared(("balance",))
    assert slack_type(balance.args.model_fields["from_date"]) == "slack#/types/date"
    assert slack_type(move.args.model_fields["amount"]) == "string"


def test_inputs_become_the_text_a_person_types() -> None:
    move = declared(("move-funds",))
    assert input_values(move, {**MOVE, "description": None}) == {
        "account": "10023",
        "amount": "8.00",
    }
